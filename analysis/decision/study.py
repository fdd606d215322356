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
the uplink, so it runs once per shift speed. To bound the number of runs, the offloaded TTA
methods run at every uplink only for Tent (the paper's offloaded baseline) and the strongest
edge-only method (analysis/hparams/strongest.csv, chosen on the validation corruptions); the other
seven are offloaded at 5 Mbit/s only. This rule was fixed before any run.

    python analysis/hparams/strongest.py --workers 2       # first, once: the strongest per class
    python analysis/decision/study.py --workers 2          # 246 runs; a rerun resumes

Writes runs.csv (one row per run), strategies.csv (per strategy, shift and uplink: paired gain over
bn_adapt with its CI, bytes per device-hour up and down, p95 upload delay, parameter age, device
compute per sample, whether the device must train), decision.csv (per uplink, shift speed and
device kind: the winner, the strategies tied with it within the CI), cema_vs.csv (CEMA minus each
alternative a deployer weighs, paired, per shift and uplink), the figures, and prints the
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
from cemasim.results.units import rate_text

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
    compute = [_device_compute(Path(f), int(s)) for f, s in zip(runs["run_folder"], runs["samples"], strict=True)]
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


def cema_versus(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per (shift, uplink): CEMA minus each alternative a deployer weighs, paired by seed (points, 95 %
    t CI): the strongest edge-trained method of the shift, the strongest offloaded TTA method at that
    uplink, uploading everything, and bn_adapt (the strongest forward-only method)."""
    runs = expand_uplinks(runs)
    wide = runs.pivot_table(index=["shift", "uplink_mbps", "seed"], columns="strategy", values="accuracy")
    rows = []
    for (shift, uplink), t in table.groupby(["shift", "uplink_mbps"]):
        best = lambda rows: rows.sort_values("gain_vs_bn", ascending=False)["strategy"].iloc[0]  # noqa: E731
        against = {"strongest edge-trained": best(t[t["must_train"]]),
                   "strongest offloaded TTA": best(t[t["strategy"].str.endswith("@cloud")]),
                   "upload everything": "upload_all", "strongest forward-only": BASELINE}
        per_seed = wide.loc[(shift, uplink)]
        cema = t.set_index("strategy").loc["cema"]
        for role, other in against.items():
            diff = 100 * (per_seed["cema"] - per_seed[other]).dropna()
            half = ci95(diff)
            ref = t.set_index("strategy").loc[other]
            rows.append({"shift": shift, "uplink_mbps": uplink, "against": role, "strategy": other,
                         "seeds": len(diff), "cema_minus": round(float(diff.mean()), 2), "ci95": round(half, 2),
                         "resolved": bool(abs(diff.mean()) > half),
                         "cema_uplink_kb_per_device_hour": cema["uplink_kb_per_device_hour"],
                         "other_uplink_kb_per_device_hour": ref["uplink_kb_per_device_hour"]})
    return pd.DataFrame(rows)


# The figures show the decision: the cloud strategies that ran at every uplink as lines, and what a
# device does alone as horizontal references (the strongest edge-trained method of the shift, and
# bn_adapt, the strongest forward-only method and the zero of the axis). Every strategy is in the tables.
LINES = {"cema": ("C3", "o"), "upload_all": ("C0", "s"), "tent@cloud": ("C2", "^"), "eta@cloud": ("C4", "v"),
         "cloud_inference": ("C7", "D")}
FLOOR = -4.0  # points: a gain below this (cloud_inference on a full link) is marked at the axis' edge


def figures(table: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(x_of, xlabel: str, name: str, label_points: bool, ticks: list[float]) -> None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
        top = table.loc[table["strategy"].isin(LINES), "gain_vs_bn"] + table["ci95"].fillna(0)
        for ax, shift in zip(axes, SHIFTS, strict=True):
            t = table[table["shift"] == shift]
            for strategy, (color, marker) in LINES.items():
                g = t[t["strategy"] == strategy].sort_values("uplink_mbps")
                x, y, ci = x_of(g), g["gain_vs_bn"].to_numpy(float), g["ci95"].fillna(0).to_numpy(float)
                inside = y >= FLOOR
                ax.plot(x, np.maximum(y, FLOOR), color=color, lw=1.6, zorder=3)
                ax.errorbar(x[inside], y[inside], yerr=ci[inside], fmt=marker, color=color, ms=5, capsize=2,
                            elinewidth=0.8, alpha=0.9, zorder=4, label=strategy)
                for xi, yi in zip(x[~inside], y[~inside], strict=True):  # off the axis: an arrow and the value
                    ax.annotate(f"{strategy} {yi:+.1f}", (xi, FLOOR), xytext=(4, 6), textcoords="offset points",
                                fontsize=7, color=color, arrowprops={"arrowstyle": "->", "color": color})
                if label_points:  # uplinks whose bytes coincide (the link carried everything) share a label
                    groups: dict[float, list[float]] = {}
                    for xi, u in zip(x[inside], g["uplink_mbps"].to_numpy(float)[inside], strict=True):
                        key = next((k for k in groups if abs(xi / k - 1) < 0.02), xi)
                        groups.setdefault(key, []).append(u)
                    for xi, us in groups.items():
                        text = " to ".join(dict.fromkeys(rate_text(u) for u in (us[0], us[-1])))
                        ax.annotate(text, (xi, float(np.mean(y[inside][np.isclose(x[inside], xi, rtol=0.02)]))),
                                    xytext=(4, -11) if len(us) == 1 else (-4, -11), textcoords="offset points",
                                    ha="left" if len(us) == 1 else "right", fontsize=6, color=color)
            edge = t[t["must_train"]].groupby("strategy")["gain_vs_bn"].mean()
            best = edge.idxmax()
            ax.axhline(edge[best], color="C1", ls="--", lw=1.2, zorder=2,
                       label="strongest edge-trained (device trains)")
            ax.annotate(f"{best} on the device {edge[best]:+.2f}", (0.01, edge[best]),
                        xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=7,
                        color="C1")
            ax.axhline(0, color="0.35", lw=0.9, zorder=2, label=f"{BASELINE} (strongest forward-only)")
            ax.set_xscale("log")
            _plain_ticks(ax, ticks)
            ax.margins(x=0.06)
            ax.set_title(f"{shift} shift ({SHIFTS[shift]} s segments)", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.25, which="both")
        axes[0].set_ylim(FLOOR - 0.8, float(top.max()) + 0.8)
        axes[0].set_ylabel("accuracy gain over bn_adapt (points, 95 % CI)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.text(0.99, 0.005, f"{int(table['seeds'].min())} paired seeds; "
                 "every strategy in strategies.csv", ha="right", va="bottom", fontsize=7, color="0.3")
        fig.tight_layout(rect=(0, 0.13, 1, 1))
        fig.savefig(HERE / name, dpi=150)
        plt.close(fig)

    draw(lambda g: 1e3 * g["uplink_mbps"].to_numpy(float), "uplink per device (kbit/s)", "gain_vs_uplink.png", False,
         [1e3 * u for u in UPLINKS_MBPS])
    draw(lambda g: (g["uplink_kb_per_device_hour"] + g["downlink_kb_per_device_hour"]).to_numpy(float),
         "uplink + downlink kB per device-hour of data", "gain_vs_bytes.png", True,
         [2000, 3000, 4000, 5000, 6000, 8000, 10000, 15000, 20000])


def _plain_ticks(ax, ticks: list[float]) -> None:
    """Ticks at the given values, written out (5, 20, 100, 5,000), none of matplotlib's 3x10^3."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def markdown(decision: pd.DataFrame) -> str:
    lines = ["| device | shift | uplink | winner | gain over bn_adapt (points, 95 % CI) | up / down KB per "
             "device-hour | tied within the CI |", "|---|---|---|---|---|---|---|"]
    for _, r in decision.iterrows():
        lines.append(f"| {r['device']} | {r['shift']} | {rate_text(r['uplink_mbps'])} | {r['winner']} | "
                     f"{r['gain_vs_bn']:+.2f} "
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
    cema_versus(runs, table).to_csv(HERE / "cema_vs.csv", index=False)
    figures(table)
    print(markdown(decision))
    for shift in SHIFTS:
        for uplink in (UPLINKS_MBPS[0], UPLINKS_MBPS[-1]):
            print(f"\n{shift} shift, uplink {uplink:g} Mbit/s\n" + strategy_markdown(table, shift, uplink))


if __name__ == "__main__":
    main()
