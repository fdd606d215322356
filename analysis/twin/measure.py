"""cemasim's upload delays against a real network stack: each cemasim run's uplink messages replayed
over TCP through a shaped link between two network namespaces, message by message.

Workload: scenarios/quickstart.yaml with upload_all (every sample goes up as a PNG of about 790
bytes, in bursts of 4 per batch, plus a 16-byte report per batch on the same link), Poisson arrivals
sized so the uplink carries half its capacity, about 120 uploads per case, no propagation latency
(the veth has none and netem is not available to add it). Cases: uplinks of 20 kbit/s to 5 Mbit/s,
and 1 device on its own link or 8 devices sharing one shaped segment (uplink.shared_mbps, the
devices' own links unlimited).

Per case: cemasim runs the scenario three times: today's default link model; with
uplink.packet_header_bytes = 66 (TCP/IPv4 headers with timestamps and the Ethernet header on every
1,448-byte segment); and with those headers and uplink.shared_discipline = fifo (the shared segment
serves transfers in the order they started, as one queue does). The twin (netlab.py, replay.py)
replays the first run's uplink messages, each device's in its queue order, at their simulated
enqueue times in real time, over one TCP connection per device, and captures each packet where it
leaves the shaper. A message is received when the packet holding its last byte has crossed the
link: its capture time plus its frame's serialisation at the link rate (the shaper releases a packet
when its transmission would begin, the veth delivers it at once). The delay compared is enqueue ->
received, as cemasim's uploads table gives it (received_s - enqueued_s); in the twin, the moment of
the write -> received.

    python analysis/twin/measure.py                 # needs root, ip and tc; minutes (replays in real time)

Writes messages.csv (one row per upload), errors.csv (per case: mean and p95 delays of the twin and
of each model, their relative errors against the twin) and delays.png, and prints the table of
the README. Everything it creates in the kernel is removed when it ends or fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import netlab  # noqa: E402

import cemasim  # noqa: E402
from cemasim.results.units import rate_text  # noqa: E402

RATES_MBPS = [0.02, 0.1, 0.5, 1.0, 5.0]
FLEETS = [1, 8]
MESSAGES = 120  # uploads per case
LOAD = 0.5  # offered share of the link's capacity
MEAN_UPLOAD_BYTES = 790  # a PNG of a Fashion-MNIST test image: sizes the arrival rate only
HEADER_BYTES = 66  # Ethernet 14 + IPv4 20 + TCP 20 + timestamp option 12, per segment
PORT = 5201
# the link models compared with the twin: today's default, and the two keys that close the gaps
MODELS = {"model": {},
          "headers": {"uplink.packet_header_bytes": HEADER_BYTES},
          "fifo": {"uplink.packet_header_bytes": HEADER_BYTES, "uplink.shared_discipline": "fifo"}}
LABELS = {"model": "default model", "headers": "+ packet headers", "fifo": "+ headers, fifo segment"}


def overrides(rate_mbps: float, devices: int, messages: int) -> dict:
    per_device_hz = LOAD * rate_mbps * 1e6 / (8 * MEAN_UPLOAD_BYTES * devices)
    duration_s = messages / (per_device_hz * devices)
    link = {"uplink.bandwidth_mbps": rate_mbps} if devices == 1 else \
        {"uplink.bandwidth_mbps": None, "uplink.shared_mbps": rate_mbps, "uplink.group_size": None}
    return {"method.name": "upload_all", "fleet.devices": devices, "duration_s": duration_s,
            "drain_s": max(60.0, duration_s), "arrivals.rate_hz": per_device_hz, "arrivals.batch_size": 4,
            "arrivals.max_wait_s": 4 / per_device_hz,  # a late partial batch would idle the replay for 30 s
            "uplink.latency_ms": 0.0, "compute_device": "cpu",
            **link}


def simulate(rate_mbps: float, devices: int, messages: int, seed: int, model: dict) -> pd.DataFrame:
    """The run's uplink messages that got across: uploads and reports, each device's in queue order."""
    sc = cemasim.load_scenario(ROOT / "scenarios" / "quickstart.yaml",
                               overrides(rate_mbps, devices, messages) | model, seed=seed)
    tables = cemasim.simulate(sc, progress=False).tables
    parts = [tables[kind].assign(kind=kind[:-1]) for kind in ("uploads", "reports") if len(tables[kind])]
    msgs = pd.concat(parts, ignore_index=True)
    msgs = msgs[msgs.dropped.eq("") & msgs.received_s.notna()]
    msgs = msgs.sort_values(["device", "tx_start_s", "enqueued_s"], kind="stable").reset_index(drop=True)
    msgs["delay_s"] = msgs.received_s - msgs.enqueued_s
    return msgs[["device", "kind", "size_bytes", "enqueued_s", "delay_s"]]


def replay(msgs: pd.DataFrame, rate_bps: int, work: Path, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Each message's delay over the real stack (seconds) and whether TCP packed its end with the next
    message's bytes, in the rows' order."""
    plan = {"devices": {str(d): g[["enqueued_s", "size_bytes"]].values.tolist() for d, g in msgs.groupby("device")}}
    (work / "plan.json").write_text(json.dumps(plan))
    py = [sys.executable, str(HERE / "replay.py")]
    with netlab.Lab(rate_bps) as lab:
        receiver = lab.start("cloud", [*py, "receive", "--plan", str(work / "plan.json"), "--port", str(PORT),
                                       "--iface", lab.ifname["cloud"], "--out", str(work / "capture.json"),
                                       "--timeout-s", str(timeout_s)], stdout=subprocess.PIPE, text=True)
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the receiver did not start (exit {receiver.wait()})")
        sender = lab.start("device", [*py, "send", "--plan", str(work / "plan.json"), "--host", netlab.CLOUD_ADDR,
                                      "--port", str(PORT), "--out", str(work / "sends.json"),
                                      "--timeout-s", str(timeout_s)])
        for name, proc in (("sender", sender), ("receiver", receiver)):
            if proc.wait(timeout=timeout_s + 30) != 0:
                raise RuntimeError(f"the {name} failed (exit {proc.returncode})")
        stats = lab.shaper_stats()
    if "dropped 0," not in stats:
        raise RuntimeError(f"the shaper dropped packets: {stats}")
    capture = json.loads((work / "capture.json").read_text())
    if capture["capture_drops"]:
        raise RuntimeError(f"the capture lost {capture['capture_drops']} packets")
    sends = json.loads((work / "sends.json").read_text())
    return _delays(msgs, capture, sends, rate_bps)


def _delays(msgs: pd.DataFrame, capture: dict, sends: dict, rate_bps: int) -> tuple[np.ndarray, np.ndarray]:
    """For each message: (capture time of the packet holding its last byte + that frame's serialisation)
    - the moment it was written; and whether that packet also carries bytes of the next message."""
    packets = pd.DataFrame(capture["packets"], columns=["port", "seq", "payload", "syn", "t_ns", "frame"])
    packets["device"] = packets.port.astype(str).map(capture["ports"])
    delays, packed = np.full(len(msgs), np.nan), np.zeros(len(msgs), dtype=bool)
    for device, rows in msgs.groupby("device"):
        mine = packets[packets.device == device]
        isn = int(mine[mine.syn].seq.iloc[0])
        data = mine[(mine.payload > 0) & ~mine.syn].copy()
        data["start"] = (data.seq - isn - 1) % 2**32
        data["end"] = data.start + data.payload
        data = data.sort_values("t_ns", kind="stable")
        ends = 4 + np.cumsum(rows.size_bytes.to_numpy())  # stream offsets after the 4-byte hello
        written = np.array(sends["written_ns"][str(device)], dtype=np.int64)
        starts, stops = data.start.to_numpy(), data.end.to_numpy()
        times = data.t_ns.to_numpy() + data.frame.to_numpy() * 8e9 / rate_bps
        for i, end in enumerate(ends):
            holding = np.flatnonzero((starts < end) & (stops >= end))
            if len(holding):
                delays[rows.index[i]] = (times[holding[0]] - written[i]) / 1e9
                packed[rows.index[i]] = stops[holding[0]] > end
    return delays, packed


def measure_case(rate_mbps: float, devices: int, messages: int = MESSAGES, seed: int = 0) -> pd.DataFrame:
    """One case, per upload: each model's delay (MODELS) and the twin's."""
    runs = {name: simulate(rate_mbps, devices, messages, seed, keys) for name, keys in MODELS.items()}
    msgs, sent = runs["model"], ["device", "kind", "size_bytes", "enqueued_s"]
    if not all(run[sent].equals(msgs[sent]) for run in runs.values()):
        raise RuntimeError("a link key changed which messages were sent: the replay fits one run only")
    busy_s = float(msgs.enqueued_s.max() + msgs.delay_s.max())
    with tempfile.TemporaryDirectory(prefix="cstwin-") as work:
        twin, packed = replay(msgs, int(rate_mbps * 1e6), Path(work), timeout_s=busy_s * 3 + 60)
    out = msgs.drop(columns="delay_s")
    for name, run in runs.items():
        out[f"{name}_s"] = run.delay_s
    out["twin_s"] = twin
    out["packed"] = packed  # its last byte shared a segment with the next message's first
    out["kernel"] = platform.release()
    out.insert(0, "devices", devices)
    out.insert(0, "rate_mbps", rate_mbps)
    return out[out.kind == "upload"].drop(columns="kind")


def errors(messages: pd.DataFrame) -> pd.DataFrame:
    """Per case: mean and p95 delays and their relative errors against the twin (percent; + = the model
    predicts longer delays than the real stack gives)."""
    rows = []
    for (rate, devices), g in messages.groupby(["rate_mbps", "devices"], sort=True):
        twin = g.twin_s.dropna()
        twin_mean, twin_p95 = twin.mean(), twin.quantile(0.95)
        row = {"rate_mbps": rate, "devices": devices, "uploads": len(g), "unmatched": int(g.twin_s.isna().sum()),
               "twin_mean_ms": 1e3 * twin_mean, "twin_p95_ms": 1e3 * twin_p95, "packed_share": float(g.packed.mean())}
        for name in MODELS:
            delay = g[f"{name}_s"]
            mean, p95 = delay.mean(), delay.quantile(0.95)
            error = (delay - g.twin_s) / g.twin_s  # per upload; packed ones end with a later message
            row |= {f"{name}_mean_ms": 1e3 * mean, f"{name}_p95_ms": 1e3 * p95,
                    f"{name}_mean_err_pct": 100 * (mean - twin_mean) / twin_mean,
                    f"{name}_p95_err_pct": 100 * (p95 - twin_p95) / twin_p95,
                    f"{name}_median_abs_err_pct": 100 * error.abs().median(),
                    f"{name}_within_2pct_share": float((error.abs() <= 0.02).mean()),
                    f"{name}_packed_err_pct": 100 * error[g.packed].mean(),
                    f"{name}_alone_err_pct": 100 * error[~g.packed].mean()}
        row["kernel"] = g.kernel.iloc[0]  # the machine that replayed, not the one re-tabulating
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """Mean / p95 upload delay (ms) of the twin and each model, the model's errors in percent."""
    lines = ["| uplink | devices | uploads | real stack: mean / p95 ms | "
             + " | ".join(f"{LABELS[m]}: mean / p95 ms (error %)" for m in MODELS) + " |",
             "|---|---|---|---|" + "---|" * len(MODELS)]
    for r in table.to_dict("records"):
        cells = [f"{r[f'{m}_mean_ms']:.1f} / {r[f'{m}_p95_ms']:.1f} ({r[f'{m}_mean_err_pct']:+.1f} / "
                 f"{r[f'{m}_p95_err_pct']:+.1f})" for m in MODELS]
        lines.append(f"| {rate_text(r['rate_mbps'])} | {r['devices']} | {r['uploads']} | "
                     f"{r['twin_mean_ms']:.1f} / {r['twin_p95_ms']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(messages: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fleets = sorted(messages.devices.unique())
    fig, axes = plt.subplots(1, len(fleets), figsize=(5.2 * len(fleets), 4.6), squeeze=False)
    for ax, devices in zip(axes[0], fleets, strict=True):
        g = messages[messages.devices == devices]
        for rate, r in g.groupby("rate_mbps"):
            label = rate_text(rate)
            ax.scatter(1e3 * r.twin_s, 1e3 * r.model_s, s=7, marker="x", alpha=0.6, label=f"{label}: default")
            best = "fifo" if devices > 1 else "headers"
            ax.scatter(1e3 * r.twin_s, 1e3 * r[f"{best}_s"], s=7, alpha=0.6, label=f"{label}: {LABELS[best]}")
        lo, hi = 1e3 * np.nanmin(g.twin_s) / 1.5, 1e3 * np.nanmax(g.twin_s) * 1.5
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="real stack: upload delay (ms)", ylabel="cemasim: upload delay (ms)",
               title=f"{devices} device{'s' if devices > 1 else ''}" + (" sharing one segment" if devices > 1 else ""))
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cemasim's upload delays against a real network stack")
    ap.add_argument("--rates", type=float, nargs="+", default=RATES_MBPS, help="uplink rates, Mbit/s")
    ap.add_argument("--devices", type=int, nargs="+", default=FLEETS)
    ap.add_argument("--messages", type=int, default=MESSAGES, help="uploads per case")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for the CSVs and the figure")
    ap.add_argument("--from-messages", type=Path, metavar="CSV",
                    help="recompute errors.csv, the figure and the table from a messages.csv; replays nothing")
    a = ap.parse_args(argv)
    if a.from_messages:
        return _write(pd.read_csv(a.from_messages), a.out)
    reason = netlab.unavailable()
    if reason:
        print(f"error: the twin cannot run here: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through Lab.__exit__
    parts = []
    for devices in a.devices:
        for rate in a.rates:
            print(f"{rate:g} Mbit/s, {devices} device(s) ...", flush=True)
            parts.append(measure_case(rate, devices, a.messages))
    messages = pd.concat(parts, ignore_index=True)
    a.out.mkdir(parents=True, exist_ok=True)
    messages.to_csv(a.out / "messages.csv", index=False, float_format="%.6g")
    return _write(messages, a.out)


def _write(messages: pd.DataFrame, out: Path) -> int:
    table = errors(messages)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "errors.csv", index=False, float_format="%.4g")
    figure(messages, out / "delays.png")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
