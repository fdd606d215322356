"""Write the SYNTHETIC example traces of this folder (deterministic: same seed, same files).

    lte_commute_up.mahimahi, lte_commute_down.mahimahi   a commuter's LTE link: Markov-modulated rate with
                                                           log-normal jitter and tunnel gaps (Mahimahi format)
    wifi_office.csv                                        an office Wi-Fi link in 1 s rows with latency (CSV)

Usage: python scenarios/traces/generate.py [--seed 7] [--out-dir scenarios/traces] [--duration-s 600]
Prints each file's size and its mean rate as read back with cemasim.net.traces.read_trace.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from cemasim.net.traces import Trace, read_trace, write_mahimahi

STEP_S = 0.1  # jitter resolution of the LTE link

# LTE radio states: (name, uplink Mbit/s, downlink Mbit/s, mean holding time s). Exponential holding times,
# at least MIN_HOLD_S; the brief "good" state is a cell tower passing by.
LTE_STATES = [("poor", 1.0, 3.0, 25.0), ("fair", 4.0, 12.0, 15.0), ("good", 10.0, 30.0, 6.0)]
LTE_NEXT = np.array([[0.0, 0.85, 0.15],  # state-change probabilities, rows: from poor / fair / good
                     [0.55, 0.0, 0.45],
                     [0.2, 0.8, 0.0]])
MIN_HOLD_S = 2.0
JITTER_SIGMA, JITTER_RHO = 0.35, 0.6  # log-rate jitter per 100 ms: std and AR(1) correlation step to step
TUNNELS = (2, 3)  # how many tunnels (no delivery at all, both directions) ...
TUNNEL_S = (10.0, 30.0)  # ... and how long each lasts (uniform)

WIFI_MBPS, WIFI_SPREAD, WIFI_RANGE = 30.0, 5.0, (20.0, 40.0)  # AR(1) around 30 Mbit/s, clipped to 20-40
WIFI_DIP_EVERY_S, WIFI_DIP_S, WIFI_DIP_FACTOR = 90.0, (2, 8), (0.1, 0.4)  # Poisson dips: length s, rate factor
WIFI_LATENCY_MS, WIFI_LATENCY_SPREAD, WIFI_DIP_LATENCY_MS, WIFI_LATENCY_RANGE = 8.0, 1.5, 4.0, (5.0, 15.0)


def ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    """A stationary AR(1) series with unit variance."""
    z = np.empty(n)
    z[0] = rng.standard_normal()
    noise = rng.standard_normal(n) * np.sqrt(1 - rho**2)
    for k in range(1, n):
        z[k] = rho * z[k - 1] + noise[k]
    return z


def lte_states(rng: np.random.Generator, n: int) -> np.ndarray:
    """State index of each STEP_S step, starting in 'fair'."""
    states = np.empty(n, np.int64)
    state, k = 1, 0
    while k < n:
        hold = max(MIN_HOLD_S, rng.exponential(LTE_STATES[state][3]))
        steps = round(hold / STEP_S)
        states[k : k + steps] = state
        k += steps
        state = int(rng.choice(len(LTE_STATES), p=LTE_NEXT[state]))
    return states


def tunnels(rng: np.random.Generator, duration_s: float) -> list[tuple[float, float]]:
    """Non-overlapping (start, end) gaps, one in each equal slot of [30 s, duration - 30 s]."""
    count = int(rng.integers(TUNNELS[0], TUNNELS[1] + 1))
    edges = np.linspace(30.0, duration_s - 30.0, count + 1)
    gaps = []
    for lo, hi in itertools.pairwise(edges):
        length = rng.uniform(*TUNNEL_S)
        start = rng.uniform(lo, max(lo, hi - length))
        gaps.append((round(start, 1), round(start + length, 1)))
    return gaps


def lte_commute(rng: np.random.Generator, duration_s: float) -> tuple[Trace, Trace, np.ndarray, list]:
    n = round(duration_s / STEP_S)
    times = np.arange(n) * STEP_S
    states = lte_states(rng, n)
    gaps = tunnels(rng, duration_s)
    inside = np.zeros(n, bool)
    for start, end in gaps:
        inside |= (times >= start - 1e-9) & (times < end - 1e-9)
    links = []
    for column in (1, 2):  # uplink, downlink: same radio states, independent jitter
        mean = np.array([s[column] for s in LTE_STATES])[states]
        jitter = np.exp(JITTER_SIGMA * ar1(rng, n, JITTER_RHO) - JITTER_SIGMA**2 / 2)  # mean 1
        links.append(Trace(times, np.where(inside, 0.0, mean * jitter), duration_s))
    return links[0], links[1], states, gaps


def wifi_office(rng: np.random.Generator, duration_s: float) -> Trace:
    n = round(duration_s)
    mbps = np.clip(WIFI_MBPS + WIFI_SPREAD * ar1(rng, n, 0.8), *WIFI_RANGE)
    dip = np.zeros(n, bool)
    for start in rng.uniform(0, duration_s, rng.poisson(duration_s / WIFI_DIP_EVERY_S)).astype(int):
        length = int(rng.integers(WIFI_DIP_S[0], WIFI_DIP_S[1] + 1))
        mbps[start : start + length] *= rng.uniform(*WIFI_DIP_FACTOR)
        dip[start : start + length] = True
    latency = WIFI_LATENCY_MS + WIFI_LATENCY_SPREAD * ar1(rng, n, 0.7) + WIFI_DIP_LATENCY_MS * dip
    return Trace(np.arange(n, dtype=np.float64), np.round(mbps, 3), float(n), np.round(np.clip(latency,
                 *WIFI_LATENCY_RANGE), 2))


def write_csv(path: Path, trace: Trace, seed: int) -> None:
    rows = [f"{t:g},{r:.3f},{lat:.2f}" for t, r, lat in zip(trace.times_s, trace.mbps, trace.latency_ms, strict=True)]
    note = f"# SYNTHETIC office Wi-Fi trace written by scenarios/traces/generate.py --seed {seed}; not a measurement"
    header = [note, "time_s,mbps,latency_ms"]
    path.write_text("\n".join(header + rows) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--duration-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    # One stream per file, so changing one generator leaves the other file as it was.
    up, down, states, gaps = lte_commute(np.random.default_rng([args.seed, 0]), args.duration_s)
    write_mahimahi(out / "lte_commute_up.mahimahi", up)
    write_mahimahi(out / "lte_commute_down.mahimahi", down)
    write_csv(out / "wifi_office.csv", wifi_office(np.random.default_rng([args.seed, 1]), args.duration_s), args.seed)

    shares = ", ".join(f"{name} {np.mean(states == i):.0%}" for i, (name, *_) in enumerate(LTE_STATES))
    print(f"seed {args.seed}; LTE time in state: {shares}; tunnels (s): "
          + ", ".join(f"{a:g}-{b:g}" for a, b in gaps))
    print(f"{'file':28} {'bytes':>9} {'lines':>8} {'period_s':>9} {'mean_mbps':>10}")
    for name in ("lte_commute_up.mahimahi", "lte_commute_down.mahimahi", "wifi_office.csv"):
        path = out / name
        trace = read_trace(path)
        lines = len(path.read_bytes().splitlines())
        print(f"{name:28} {path.stat().st_size:>9} {lines:>8} {trace.period_s:>9g} {trace.mean_mbps():>10.3f}")


if __name__ == "__main__":
    main()
