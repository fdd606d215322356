"""The deployer's question: is the cloud worth it against the strongest alternatives of today?

Workload: scenarios/study.yaml (4 devices, 15 simulated minutes, five test corruptions at severity
4, learning rates from the fmnist_zoo preset, chosen on the validation corruptions), on paired
seeds: a seed fixes the images, their order, the corruption noise and the arrivals for every
strategy, so each strategy is compared with bn_adapt by per-seed differences (mean and 95 % t
interval).

Strategies (every method in every deployment it supports):
- forward-only on a device that cannot train (rpi4): source, bn_adapt, onda, lame, t3a;
- edge-trained on a device that can (jetson-nano): tent, pl, eta, eata, sar, cotta, deyo, roid, rotta;
- in the cloud (the device forwards and uploads; rpi4): cema, upload_all, cloud_inference, and every
  TTA method offloaded (the cloud adapts the device's copy and sends its norm parameters back).
Conditions: uplinks of 5, 20 and 100 kbit/s and 5 Mbit/s (downlink as in the study, 20 Mbit/s),
fast shifts (the study's 60 s segments) and slow ones (300 s segments: in 15 minutes a device sees
the first three corruptions, five minutes each). What runs on the device alone does not depend on
the uplink, so it runs once per shift speed. To fit about an hour on two cores, the offloaded TTA
methods run at every uplink only for Tent (the paper's offloaded baseline) and the strongest
edge-only method (analysis/hparams/strongest.csv, chosen on the validation corruptions); the other
seven are offloaded at 5 Mbit/s only. This rule was fixed before any run.

    python analysis/hparams/strongest.py --workers 2       # first, once: the strongest per class
    python analysis/decision/study.py --workers 2          # about an hour here (2 cores)

Writes runs.csv (one row per run), strategies.csv (per strategy, shift and uplink: paired gain over
bn_adapt with its CI, bytes per device-hour up and down, p95 upload delay, parameter age, device
compute per sample, whether the device must train), decision.csv (per uplink, shift speed and
device kind: the winner, the strategies tied with it within the CI), the figures, and prints the
decision table. Run folders go to sweeps/ (not committed); a rerun resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cemasim import sweeps as sw
from cemasim.results.stats import ci95

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "analysis" / "hparams"))
from strongest import CAN_TRAIN_PROFILE, strongest  # noqa: E402

STUDY = ROOT / "scenarios" / "study.yaml"
SEEDS = [0, 1, 2]
UPLINKS_MBPS = [0.005, 0.02, 0.1, 5.0]
FAST_UPLINK = 5.0
CORRUPTIONS = ["gaussian_noise", "motion_blur", "fog", "contrast", "jpeg_compression"]
SHIFTS = {"fast": 60, "slow": 300}  # segment seconds
FORWARD_ONLY = ["source", "bn_adapt", "onda", "lame", "t3a"]
TTA = ["tent", "pl", "eta", "eata", "sar", "cotta", "deyo", "roid", "rotta"]
CLOUD = ["cema", "upload_all", "cloud_inference"]
BASELINE = "bn_adapt"
FIXED = {"output.plots": False, "compute_device": "cpu"}


def _segments(seconds: int) -> list[dict]:
    return [{"corruption": c, "severity": 4, "duration_s": seconds} for c in CORRUPTIONS]


def plan(edge_strongest: str) -> list[tuple[str, dict, dict, dict]]:
    """(sweep name, fixed, grid, variants) per sweep, for one shift speed at a time (filled in by run)."""
    device = {f"{m}": {"method.name": m} for m in FORWARD_ONLY}
    device |= {f"{m}@edge": {"method.name": m, "method.deployment": "edge", "fleet.profile": CAN_TRAIN_PROFILE}
               for m in TTA}
    every_uplink = ["tent"] + ([edge_strongest] if edge_strongest != "tent" else [])
    cloud = {m: {"method.name": m} for m in CLOUD}
    cloud |= {f"{m}@cloud": {"method.name": m, "method.deployment": "cloud"} for m in every_uplink}
    rest = {f"{m}@cloud": {"method.name": m, "method.deployment": "cloud"} for m in TTA if m not in every_uplink}
    return [("device", {}, {}, device),
            ("cloud", {}, {"uplink.bandwidth_mbps": UPLINKS_MBPS}, cloud),
            ("offload", {"uplink.bandwidth_mbps": FAST_UPLINK}, {}, rest)]


def _device_compute(run_folder: Path, samples: int) -> tuple[float, float]:
    """(GFLOP, simulated busy seconds) of the devices' own model calls per predicted sample."""
    c = pd.read_parquet(run_folder / "compute.parquet", columns=["flops", "start_s", "end_s"])
    n = max(samples, 1)
    return float(c["flops"].sum()) / 1e9 / n, float((c["end_s"] - c["start_s"]).sum()) / n


def run(seeds: list[int], workers: int) -> pd.DataFrame:
    from cemasim import scenario

    sc = scenario.load(STUDY)
    device_hours = sc.fleet.devices * sc.duration_s / 3600
    frames = []
    for shift, seconds in SHIFTS.items():
        for part, fixed, grid, variants in plan(strongest()["edge_only"]):
            name = f"decision-{shift}-{part}"
            spec = sw.build_sweep(name, STUDY, {**FIXED, "shift.segments": _segments(seconds), **fixed}, grid,
                                  seeds, source=f"decision {name}", variants=variants)
            table = sw.run_sweep(spec, HERE / "sweeps", workers=workers)
            failed = table[table["status"] != "ok"]
            if len(failed):
                raise SystemExit(f"{name}: {len(failed)} runs failed: {failed['error'].iloc[0]}")
            table = table.assign(shift=shift, strategy=table["variant"])
            if "uplink.bandwidth_mbps" not in table:
                table["uplink.bandwidth_mbps"] = fixed.get("uplink.bandwidth_mbps", np.nan)
            frames.append(table)
    runs = pd.concat(frames, ignore_index=True)
    compute = [_device_compute(Path(f), int(s)) for f, s in zip(runs["run_folder"], runs["samples"])]
    runs["device_gflop_per_sample"] = [c[0] for c in compute]
    runs["device_busy_ms_per_sample"] = [1e3 * c[1] for c in compute]
    runs["uplink_kb_per_device_hour"] = runs["uplink_bytes"] / 1e3 / device_hours
    runs["downlink_kb_per_device_hour"] = runs["downlink_bytes"] / 1e3 / device_hours
    runs["deployment"] = [s.split("@")[1] if "@" in s else ("edge" if s in FORWARD_ONLY else "cloud")
                          for s in runs["strategy"]]
    runs["must_train"] = runs["strategy"].str.endswith("@edge")
    runs["uplink_mbps"] = runs.pop("uplink.bandwidth_mbps")
    keep = ["shift", "strategy", "deployment", "must_train", "uplink_mbps", "seed", "accuracy", "upload_ratio",
            "uplink_kb_per_device_hour", "downlink_kb_per_device_hour", "upload_delay_p95_s", "param_age_mean_s",
            "dropped_samples", "device_gflop_per_sample", "device_busy_ms_per_sample"]
    return runs[keep]


def expand_uplinks(runs: pd.DataFrame) -> pd.DataFrame:
    """What runs on the device alone is the same at every uplink: one row per uplink for the tables."""
    alone = runs[runs["uplink_mbps"].isna()]
    copies = [alone.assign(uplink_mbps=u) for u in UPLINKS_MBPS]
    return pd.concat([runs[runs["uplink_mbps"].notna()], *copies], ignore_index=True)


def strategies(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (shift, uplink, strategy): paired gain over bn_adapt (points) with its 95 % CI, and costs."""
    runs = expand_uplinks(runs)
    base = runs[runs["strategy"] == BASELINE].set_index(["shift", "uplink_mbps", "seed"])["accuracy"]
    rows = []
    for (shift, uplink, strategy), g in runs.groupby(["shift", "uplink_mbps", "strategy"]):
        diff = 100 * (g.set_index(["shift", "uplink_mbps", "seed"])["accuracy"] - base).dropna()
        half = ci95(diff)
        rows.append({"shift": shift, "uplink_mbps": uplink, "strategy": strategy,
                     "deployment": g["deployment"].iloc[0], "must_train": bool(g["must_train"].iloc[0]),
                     "seeds": len(diff), "accuracy": round(100 * g["accuracy"].mean(), 2),
                     "gain_vs_bn": round(float(diff.mean()), 2), "ci95": round(half, 2),
                     "uplink_kb_per_device_hour": round(g["uplink_kb_per_device_hour"].mean(), 1),
                     "downlink_kb_per_device_hour": round(g["downlink_kb_per_device_hour"].mean(), 1),
                     "upload_delay_p95_s": round(g["upload_delay_p95_s"].mean(), 2),
                     "param_age_mean_s": round(g["param_age_mean_s"].mean(), 1),
                     "upload_ratio": round(100 * g["upload_ratio"].mean(), 1),
                     "dropped_samples": round(g["dropped_samples"].mean(), 1),
                     "device_gflop_per_sample": round(g["device_gflop_per_sample"].mean(), 4),
                     "device_busy_ms_per_sample": round(g["device_busy_ms_per_sample"].mean(), 3)})
    return pd.DataFrame(rows).sort_values(["shift", "uplink_mbps", "gain_vs_bn"], ascending=[True, True, False])


def decide(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per (uplink, shift, device kind): the strategy with the highest mean paired gain, and those whose
    paired difference with it has a 95 % interval containing 0 (tied: the seeds cannot separate them)."""
    runs = expand_uplinks(runs)
    wide = runs.pivot_table(index=["shift", "uplink_mbps", "seed"], columns="strategy", values="accuracy")
    rows = []
    for (shift, uplink), t in table.groupby(["shift", "uplink_mbps"]):
        for device, cand in (("cannot train", t[~t["must_train"]]), ("can train", t)):
            cand = cand.sort_values("gain_vs_bn", ascending=False)
            best = cand.iloc[0]
            per_seed = wide.loc[(shift, uplink)]
            tied = []
            for _, other in cand.iloc[1:].iterrows():
                diff = 100 * (per_seed[best["strategy"]] - per_seed[other["strategy"]])
                half = ci95(diff)
                if not diff.mean() - half > 0:
                    tied.append(f"{other['strategy']} ({other['gain_vs_bn']:+.2f})")
            rows.append({"uplink_mbps": uplink, "shift": shift, "device": device, "winner": best["strategy"],
                         "gain_vs_bn": best["gain_vs_bn"], "ci95": best["ci95"],
                         "uplink_kb_per_device_hour": best["uplink_kb_per_device_hour"],
                         "downlink_kb_per_device_hour": best["downlink_kb_per_device_hour"],
                         "tied_within_ci": "; ".join(tied) or "none"})
    return pd.DataFrame(rows).sort_values(["device", "shift", "uplink_mbps"], ascending=[False, True, True])


def figures(table: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (shift, t) in zip(axes, table.groupby("shift")):
        for strategy, g in t.groupby("strategy"):
            if g["uplink_kb_per_device_hour"].max() == 0 and strategy not in (BASELINE, "t3a", "source"):
                continue  # edge-only lines are flat: the best two are drawn below
            g = g.sort_values("uplink_mbps")
            ax.errorbar(1e3 * g["uplink_mbps"], g["gain_vs_bn"], yerr=g["ci95"].fillna(0), marker="o", ms=3,
                        capsize=2, label=strategy)
        edge = t[t["must_train"]].groupby("strategy")["gain_vs_bn"].mean().nlargest(2)
        for strategy in edge.index:
            g = t[t["strategy"] == strategy].sort_values("uplink_mbps")
            ax.plot(1e3 * g["uplink_mbps"], g["gain_vs_bn"], ls="--", label=f"{strategy} (device trains)")
        _panel(ax, f"{shift} shift ({SHIFTS[shift]} s segments)", "uplink per device (kbit/s)")
    _save(plt, fig, axes, "accuracy gain over bn_adapt (points, 95 % CI)", "gain_vs_uplink.png")

    # what each cloud strategy pays for its gain: bytes both ways per device-hour, one marker per uplink
    cloud = table[table["deployment"] == "cloud"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    markers = dict(zip(UPLINKS_MBPS, "v^so"))
    for ax, (shift, t) in zip(axes, cloud.groupby("shift")):
        for i, (strategy, g) in enumerate(t.groupby("strategy")):
            color = f"C{i % 10}"
            g = g.sort_values("uplink_mbps")
            total = g["uplink_kb_per_device_hour"] + g["downlink_kb_per_device_hour"]
            ax.plot(total, g["gain_vs_bn"], color=color, lw=0.8, label=strategy)
            for x, y, u in zip(total, g["gain_vs_bn"], g["uplink_mbps"]):
                ax.plot(x, y, markers[u], color=color, ms=4)
        _panel(ax, f"{shift} shift: markers v ^ s o = 5, 20, 100 kbit/s, 5 Mbit/s",
               "uplink + downlink KB per device-hour")
    _save(plt, fig, axes, "accuracy gain over bn_adapt (points)", "gain_vs_bytes.png")


def _panel(ax, title: str, xlabel: str) -> None:
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)


def _save(plt, fig, axes, ylabel: str, name: str) -> None:
    axes[0].set_ylabel(ylabel)
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(HERE / name, dpi=150)
    plt.close(fig)


def markdown(decision: pd.DataFrame) -> str:
    lines = ["| device | shift | uplink | winner | gain over bn_adapt (points, 95 % CI) | up / down KB per "
             "device-hour | tied within the CI |", "|---|---|---|---|---|---|---|"]
    for _, r in decision.iterrows():
        up = f"{1e3 * r['uplink_mbps']:g} kbit/s" if r["uplink_mbps"] < 1 else f"{r['uplink_mbps']:g} Mbit/s"
        lines.append(f"| {r['device']} | {r['shift']} | {up} | {r['winner']} | {r['gain_vs_bn']:+.2f} "
                     f"± {r['ci95']:.2f} | {r['uplink_kb_per_device_hour']:,.0f} / "
                     f"{r['downlink_kb_per_device_hour']:,.0f} | {r['tied_within_ci']} |")
    return "\n".join(lines)


def strategy_markdown(table: pd.DataFrame, shift: str, uplink: float) -> str:
    """Every strategy at one uplink and shift speed, best first (the README's per-condition tables)."""
    t = table[(table["shift"] == shift) & (table["uplink_mbps"] == uplink)]
    lines = ["| strategy | device trains | accuracy % | gain over bn_adapt (95 % CI) | up / down KB per device-hour | "
             "p95 upload delay s | mean parameter age s | device GFLOP / sample |", "|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        delay = "—" if pd.isna(r["upload_delay_p95_s"]) else f"{r['upload_delay_p95_s']:.1f}"
        lines.append(f"| {r['strategy']} | {'yes' if r['must_train'] else 'no'} | {r['accuracy']:.2f} | "
                     f"{r['gain_vs_bn']:+.2f} ± {r['ci95']:.2f} | {r['uplink_kb_per_device_hour']:,.0f} / "
                     f"{r['downlink_kb_per_device_hour']:,.0f} | {delay} | {r['param_age_mean_s']:.1f} | "
                     f"{r['device_gflop_per_sample']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS, help="paired seeds (default 0 1 2)")
    args = ap.parse_args()
    runs = run(args.seeds, args.workers)
    runs.to_csv(HERE / "runs.csv", index=False)
    table = strategies(runs)
    table.to_csv(HERE / "strategies.csv", index=False)
    decision = decide(runs, table)
    decision.to_csv(HERE / "decision.csv", index=False)
    figures(table)
    print(markdown(decision))
    for shift in SHIFTS:
        for uplink in (UPLINKS_MBPS[0], UPLINKS_MBPS[-1]):
            print(f"\n{shift} shift, uplink {uplink:g} Mbit/s\n" + strategy_markdown(table, shift, uplink))


if __name__ == "__main__":
    main()
