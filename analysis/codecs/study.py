"""Both directions of the link: which refresh and upload codecs buy accuracy per byte?

Workload: scenarios/study.yaml (4 devices, 15 simulated minutes, five test corruptions at severity
4, learning rates from the fmnist_zoo preset), on paired seeds: a seed fixes the images, their
order, the corruption noise and the arrivals for every codec pair, so each pair is compared with the
default (float32 refreshes, PNG uploads) by per-seed differences (mean and 95 % t interval).

Grid (fixed before any run): CEMA and upload_all, at an uplink of 20 kbit/s (the uploads fill it)
and 5 Mbit/s (they do not), over codec pairs:
- each refresh codec with PNG uploads: float32, float16, bfloat16, int8, int8_channel, topk (k 0.1);
- each upload codec with float32 refreshes: JPEG quality 90 and 50, PNG and JPEG 50 at half the side;
- the two smallest of each direction together: int8 and topk refreshes with JPEG 50 at half the side.
And CEMA with method.norm_mode tbr (the released code's statistics, which refreshes carry): float32,
stats (the statistics only) and int8 refreshes with PNG uploads, at both uplinks.

    python analysis/codecs/study.py --workers 2      # 144 + 18 runs; a rerun resumes

Writes runs.csv (one row per run), frontier.csv (per method, uplink and pair: accuracy, paired
difference from the default with its CI, kB per device-hour up, down and in all, whether the pair is
on the Pareto front of accuracy against total bytes), scaled_downlink.csv (CEMA's refresh schedule
with larger edge models: refresh_sizes.csv, written by refresh_sizes.py, times the refreshes per
device-hour), frontier.png, and prints the tables.
Run folders go to sweeps/ (not committed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from cemasim import sweeps as sw
from cemasim.results.stats import ci95
from cemasim.results.units import rate_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STUDY = ROOT / "scenarios" / "study.yaml"
SEEDS = [0, 1, 2]
UPLINKS_MBPS = [0.02, 5.0]
METHODS = ["cema", "upload_all"]
FIXED = {"output.plots": False, "compute_device": "cpu"}
DEFAULT = "float32 + png"

DOWN = {"float32": {}, "float16": {"cloud.refresh_codec": "float16"},
        "bfloat16": {"cloud.refresh_codec": "bfloat16"}, "int8": {"cloud.refresh_codec": "int8"},
        "int8_channel": {"cloud.refresh_codec": "int8_channel"},
        "topk 0.1": {"cloud.refresh_codec": "topk", "cloud.refresh_topk": 0.1}}
UP = {"png": {}, "jpeg 90": {"upload.encoding": "jpeg", "upload.jpeg_quality": 90},
      "jpeg 50": {"upload.encoding": "jpeg", "upload.jpeg_quality": 50},
      "png x0.5": {"upload.downscale": 0.5},
      "jpeg 50 x0.5": {"upload.encoding": "jpeg", "upload.jpeg_quality": 50, "upload.downscale": 0.5}}
# norm_mode tbr: the refresh carries the BatchNorm statistics too, and the stats codec sends only them
TBR, TBR_DOWN = "cema, norm_mode tbr", ["float32", "stats", "int8"]
PAIRS = [(d, "png") for d in DOWN] + [("float32", u) for u in UP if u != "png"] + \
    [(d, "jpeg 50 x0.5") for d in ("int8", "topk 0.1")]


def variants() -> dict[str, dict]:
    return {f"{d} + {u}": {**DOWN[d], **UP[u]} for d, u in PAIRS}


def tbr_variants() -> dict[str, dict]:
    return {f"{d} + png": DOWN.get(d, {"cloud.refresh_codec": d}) for d in TBR_DOWN}


def run(seeds: list[int], workers: int) -> pd.DataFrame:
    from cemasim import scenario

    sc = scenario.load(STUDY)
    device_hours = sc.fleet.devices * sc.duration_s / 3600
    main = sw.build_sweep("codecs", STUDY, FIXED, {"method.name": METHODS, "uplink.bandwidth_mbps": UPLINKS_MBPS},
                          seeds, source="codecs study", variants=variants())
    tbr = sw.build_sweep("codecs-tbr", STUDY, {**FIXED, "method.name": "cema", "method.norm_mode": "tbr"},
                         {"uplink.bandwidth_mbps": UPLINKS_MBPS}, seeds, source="codecs study, tbr",
                         variants=tbr_variants())
    frames = []
    for spec, label in ((main, None), (tbr, TBR)):
        table = sw.run_sweep(spec, HERE / "sweeps", workers=workers)
        failed = table[table["status"] != "ok"]
        if len(failed):
            raise SystemExit(f"{spec.name}: {len(failed)} runs failed: {failed['error'].iloc[0]}")
        frames.append(pd.DataFrame({
            "method": table["method.name"] if label is None else label, "uplink_mbps": table["uplink.bandwidth_mbps"],
            "pair": table["variant"], "refresh_codec": [p.split(" + ")[0] for p in table["variant"]],
            "upload_codec": [p.split(" + ")[1] for p in table["variant"]], "seed": table["seed"],
            "accuracy_pct": 100 * table["accuracy"], "upload_pct": 100 * table["upload_ratio"],
            "uplink_kb_per_device_hour": table["uplink_bytes"] / 1e3 / device_hours,
            "downlink_kb_per_device_hour": table["downlink_bytes"] / 1e3 / device_hours,
            "refreshes": table["refreshes"], "param_age_mean_s": table["param_age_mean_s"],
            "dropped_samples": table["dropped_samples"]}))
    runs = pd.concat(frames, ignore_index=True)
    runs["total_kb_per_device_hour"] = runs["uplink_kb_per_device_hour"] + runs["downlink_kb_per_device_hour"]
    return runs.sort_values(["method", "uplink_mbps", "pair", "seed"]).reset_index(drop=True)


def pareto(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Points no other point dominates (at least as accurate for at most the bytes, better in one)."""
    keep = np.ones(len(accuracy), dtype=bool)
    for i in range(len(accuracy)):
        better = (accuracy >= accuracy[i]) & (cost <= cost[i]) & ((accuracy > accuracy[i]) | (cost < cost[i]))
        keep[i] = not better.any()
    return keep


def frontier(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, uplink, pair): means over seeds, the paired difference from the default pair (points,
    95 % t CI), and membership of the Pareto front of mean accuracy against mean total bytes."""
    rows = []
    for (method, uplink), g in runs.groupby(["method", "uplink_mbps"]):
        wide = g.pivot(index="seed", columns="pair", values="accuracy_pct")
        for pair, p in g.groupby("pair"):
            diff = (wide[pair] - wide[DEFAULT]).dropna()
            rows.append({"method": method, "uplink_mbps": uplink, "pair": pair,
                         "refresh_codec": p["refresh_codec"].iloc[0], "upload_codec": p["upload_codec"].iloc[0],
                         "seeds": len(diff), "accuracy_pct": round(p["accuracy_pct"].mean(), 2),
                         "vs_default_pts": round(float(diff.mean()), 2), "ci95": round(ci95(diff), 2),
                         "uplink_kb_per_device_hour": round(p["uplink_kb_per_device_hour"].mean(), 1),
                         "downlink_kb_per_device_hour": round(p["downlink_kb_per_device_hour"].mean(), 1),
                         "total_kb_per_device_hour": round(p["total_kb_per_device_hour"].mean(), 1),
                         "upload_pct": round(p["upload_pct"].mean(), 1),
                         "param_age_mean_s": round(p["param_age_mean_s"].mean(), 1)})
    table = pd.DataFrame(rows)
    table["pareto"] = False
    for _, g in table.groupby(["method", "uplink_mbps"]):
        table.loc[g.index, "pareto"] = pareto(g["accuracy_pct"].to_numpy(), g["total_kb_per_device_hour"].to_numpy())
    return table.sort_values(["method", "uplink_mbps", "total_kb_per_device_hour"]).reset_index(drop=True)


def scaled_downlink(runs: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """What the same refresh schedule would cost with larger edge models: CEMA's refreshes per device-hour
    on the study (float32 + png, at each uplink; one per test batch that changed the student) times one
    refresh's bytes of each model and codec (refresh_sizes.csv, method.norm_mode batch), against CEMA's
    uplink bytes there (the uploads do not depend on the edge model's size)."""
    rows = []
    device_hours = 4 * 900 / 3600  # scenarios/study.yaml: 4 devices, 900 s
    base = runs[(runs["method"] == "cema") & (runs["pair"] == DEFAULT)]
    for uplink, g in base.groupby("uplink_mbps"):
        per_hour = g["refreshes"].mean() / device_hours
        up_mb = g["uplink_kb_per_device_hour"].mean() / 1e3
        for _, model in sizes[sizes["norm_mode"] == "batch"].iterrows():
            for codec in ["float32", "float16", "int8", "topk 0.1", "topk 0.01"]:
                down_mb = per_hour * model[codec] / 1e6
                rows.append({"uplink_mbps": uplink, "model": model["model"], "refresh_codec": codec,
                             "bytes_per_refresh": int(model[codec]), "refreshes_per_device_hour": round(per_hour, 1),
                             "downlink_mb_per_device_hour": round(down_mb, 2),
                             "cema_uplink_mb_per_device_hour": round(up_mb, 2),
                             "down_over_up": round(down_mb / up_mb, 3)})
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {d: f"C{i}" for i, d in enumerate([*DOWN, "stats"])}
    markers = {u: m for u, m in zip(UP, "os^vD", strict=True)}
    methods = [m for m in [*METHODS, TBR] if m in set(table["method"])]
    fig, axes = plt.subplots(len(methods), len(UPLINKS_MBPS), figsize=(11, 4.1 * len(methods)), squeeze=False)
    for row, method in enumerate(methods):
        for col, uplink in enumerate(UPLINKS_MBPS):
            ax = axes[row, col]
            t = table[(table["method"] == method) & (table["uplink_mbps"] == uplink)]
            front = t[t["pareto"]].sort_values("total_kb_per_device_hour")
            ax.plot(front["total_kb_per_device_hour"], front["accuracy_pct"], color="0.6", lw=1, zorder=1,
                    label="Pareto front")
            for _, r in t.iterrows():
                ax.errorbar(r["total_kb_per_device_hour"], r["accuracy_pct"], yerr=r["ci95"],
                            fmt=markers[r["upload_codec"]], color=colors[r["refresh_codec"]], ms=6, capsize=2,
                            elinewidth=0.8, zorder=3, mfc=colors[r["refresh_codec"]] if r["pareto"] else "white")
            _label_apart(ax, t)
            ax.set_xscale("log")
            _plain_ticks(ax, t["total_kb_per_device_hour"].to_numpy(float))
            ax.set_title(f"{method}, uplink {rate_text(uplink)}", fontsize=10)
            ax.set_xlabel("uplink + downlink kB per device-hour")
            ax.grid(alpha=0.25, which="both")
        axes[row, 0].set_ylabel("accuracy % (paired 95 % CI)")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=f"refresh {d}") for d, c in colors.items()]
    handles += [plt.Line2D([], [], color="0.3", marker=m, ls="", mfc="white", label=f"upload {u}")
                for u, m in markers.items()]
    handles += [plt.Line2D([], [], color="0.6", lw=1, label="Pareto front (filled markers)")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7.5, frameon=False)
    fig.text(0.99, 0.005, f"scenarios/study.yaml, {int(table['seeds'].min())} paired seeds", ha="right", va="bottom",
             fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.9 / (4.1 * len(methods)), 1, 1))
    fig.savefig(HERE / "frontier.png", dpi=150)
    plt.close(fig)


def _label_apart(ax, t: pd.DataFrame) -> None:
    """Name the Pareto points, then every other point whose label would not overprint one already placed
    (the legend's colour and marker name them all)."""
    x, y = np.log10(t["total_kb_per_device_hour"].to_numpy(float)), t["accuracy_pct"].to_numpy(float)
    span_x, span_y = max(np.ptp(x), 1e-9), max(np.ptp(y), 1e-9)
    placed: list[tuple[float, float]] = []
    for i in np.argsort(~t["pareto"].to_numpy(bool), kind="stable"):
        if any(abs(x[i] - px) < 0.12 * span_x and abs(y[i] - py) < 0.06 * span_y for px, py in placed):
            continue
        placed.append((x[i], y[i]))
        ax.annotate(t["pair"].iloc[i], (10 ** x[i], y[i]), xytext=(5, 3), textcoords="offset points", fontsize=6,
                    color="0.2")


def _plain_ticks(ax, values: np.ndarray) -> None:
    """Three or four round ticks across the data, written out (3,000 not 3x10^3)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    low, high = values.min(), values.max()
    ticks = [v for v in np.unique(np.round(np.geomspace(low, high, 4), -2)) if v > 0]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.margins(x=0.12)


def markdown(table: pd.DataFrame, method: str, uplink: float) -> str:
    t = table[(table["method"] == method) & (table["uplink_mbps"] == uplink)]
    lines = ["| refresh + upload codec | accuracy % | vs float32 + png (points, 95 % CI) | "
             "up / down kB per device-hour | Pareto |", "|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {r['pair']} | {r['accuracy_pct']:.2f} | {r['vs_default_pts']:+.2f} ± {r['ci95']:.2f} | "
                     f"{r['uplink_kb_per_device_hour']:,.0f} / {r['downlink_kb_per_device_hour']:,.1f} | "
                     f"{'yes' if r['pareto'] else ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS, help="paired seeds (default 0 1 2)")
    ap.add_argument("--from-runs", type=Path, help="rebuild the tables and the figure from a runs.csv")
    args = ap.parse_args()
    runs = pd.read_csv(args.from_runs) if args.from_runs else run(args.seeds, args.workers)
    runs.to_csv(HERE / "runs.csv", index=False)
    table = frontier(runs)
    table.to_csv(HERE / "frontier.csv", index=False)
    scaled_downlink(runs, pd.read_csv(HERE / "refresh_sizes.csv")).to_csv(HERE / "scaled_downlink.csv", index=False)
    figure(table)
    for method in [*METHODS, TBR]:
        for uplink in UPLINKS_MBPS:
            print(f"\n{method}, uplink {rate_text(uplink)}\n" + markdown(table, method, uplink))


if __name__ == "__main__":
    main()
