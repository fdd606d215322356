"""Adaptive selection policies against the paper's, on the link and on the cloud, paired by seed.

    bandwidth  the default study workload (scenarios/study.yaml: 4 devices, 15 simulated minutes,
               three passes over five test corruptions) with the uplink from 5 kbit/s to 1 Mbit/s
               per device; arms: CEMA static, dynamic (the paper's), budget, staleness;
               random_upload under the same budget policy (random ranks instead of entropy: the
               same bytes, chosen at random); upload_all. Seeds 0, 1, 2.
    fleet      the fleet-size workload (analysis/fleet_size: 1 sample/s per device in batches of 16,
               one small accelerator, 30 GFLOP/s effective) for 180 s, 32 to 512 devices, the cloud
               from idle to saturated; arms: CEMA static, dynamic, backpressure; random_upload under
               backpressure; upload_all. Seeds 0, 1.

Policies' hyper-parameters are the schema defaults, chosen on the validation corruptions by
choose_policies.py. Every difference is paired: per seed, arm minus CEMA dynamic (same images,
order, corruption noise and arrivals), mean and 95 % t interval over seeds.

    python analysis/adaptive/study.py [--workers 2] [--only bandwidth|fleet]   # 90 + 30 runs

Writes <study>_runs.csv, <study>_summary.csv (means per arm and point), <study>_paired.csv (vs
cema_dynamic) and figures/<study>_*.png|pdf. Sweeps resume from sweeps/ (delete it to re-measure).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import cemasim

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RANDOM_RATE = 0.57  # CEMA's upload ratio on this workload (analysis/claims/arms.csv: 56.88 %)

BANDWIDTH = (ROOT / "scenarios" / "study.yaml", {"output.plots": False})
FLEET = (ROOT / "scenarios" / "quickstart.yaml", {
    "duration_s": 180, "drain_s": 120, "arrivals.rate_hz": 1, "arrivals.batch_size": 16, "arrivals.max_wait_s": 20,
    "cloud.profile": {"peak_flops_per_s": 1.0e11, "utilization": 0.3, "overhead_s": 0.002, "can_train": True},
    "output.plots": False})


def cema(policy: str) -> dict:
    return {"method.name": "cema", "selection.policy": policy}


STUDIES = {
    "bandwidth": {
        "workload": BANDWIDTH, "grid": {"uplink.bandwidth_mbps": [0.005, 0.01, 0.02, 0.05, 1.0]}, "seeds": [0, 1, 2],
        "control": ("random_budget", "cema_budget"),
        "arms": {
            "cema_static": cema("static"), "cema_dynamic": cema("dynamic"), "cema_budget": cema("budget"),
            "cema_staleness": cema("staleness"),
            "random_budget": {"method.name": "random_upload", "selection.policy": "budget",
                              "selection.random_rate": RANDOM_RATE},
            "upload_all": {"method.name": "upload_all"},
        }},
    "fleet": {
        "workload": FLEET, "grid": {"fleet.devices": [32, 128, 512]}, "seeds": [0, 1],
        "control": ("random_backpressure", "cema_backpressure"),
        "arms": {
            "cema_static": cema("static"), "cema_dynamic": cema("dynamic"), "cema_backpressure": cema("backpressure"),
            "random_backpressure": {"method.name": "random_upload", "selection.policy": "backpressure",
                                    "selection.random_rate": RANDOM_RATE},
            "upload_all": {"method.name": "upload_all"},
        }},
}
METRICS = ["accuracy", "uplink_bytes", "upload_ratio", "upload_delay_p95_s", "uploads_never_used", "dropped_samples",
           "drops_expired", "gpu_wait_mean_s", "param_age_mean_s"]
BASELINE = "variant=cema_dynamic"


def run(name: str, workers: int) -> pd.DataFrame:
    spec = STUDIES[name]
    base, fixed = spec["workload"]
    cemasim.sweep(base, spec["grid"], spec["seeds"], set=fixed, variants=spec["arms"], name=name,
                  out=HERE / "sweeps", workers=workers, progress=True)
    # the record, in its units (fractions): the CSVs of this study were written from it
    table = pd.read_parquet(HERE / "sweeps" / name / "results.parquet")
    bad = table[table["status"] != "ok"]
    if len(bad):
        raise SystemExit(f"{len(bad)} runs failed: {bad[['variant', 'seed', 'status']].to_string(index=False)}")
    return table


def summarise(name: str, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    key = next(iter(STUDIES[name]["grid"]))
    runs = table[[key, "variant", "seed", *METRICS]].sort_values([key, "variant", "seed"])
    runs.to_csv(HERE / f"{name}_runs.csv", index=False)
    summary = runs.groupby([key, "variant"], sort=False)[METRICS].mean().reset_index()
    summary["accuracy"] = (100 * summary["accuracy"]).round(2)
    summary["upload_ratio"] = (100 * summary["upload_ratio"]).round(1)
    summary["uplink_mb"] = (summary.pop("uplink_bytes") / 1e6).round(3)
    rest = [c for c in summary.columns if c not in (key, "variant", "accuracy", "upload_ratio", "uplink_mb")]
    summary[rest] = summary[rest].round(2)
    summary.to_csv(HERE / f"{name}_summary.csv", index=False)
    metrics = ["accuracy", "uplink_bytes", "upload_delay_p95_s", "uploads_never_used"]
    paired = cemasim.paired(table, BASELINE, metrics)
    paired.to_csv(HERE / f"{name}_paired.csv", index=False)
    # is entropy worth it under the policy? random ranks against entropy ranks, same gate, same seed
    random_arm, entropy_arm = STUDIES[name]["control"]
    control = cemasim.paired(table, f"variant={entropy_arm}", metrics)
    control[control["variant"] == random_arm].to_csv(HERE / f"{name}_random_vs_entropy.csv", index=False)
    return summary, paired


def figures(name: str, summary: pd.DataFrame, paired: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = next(iter(STUDIES[name]["grid"]))
    color = {arm: f"C{i}" for i, arm in enumerate(STUDIES[name]["arms"])}  # one colour per arm in every panel
    out = HERE / "figures"
    out.mkdir(exist_ok=True)
    waits = ("upload_delay_p95_s", "p95 upload delay (s)") if name == "bandwidth" else \
        ("gpu_wait_mean_s", "mean GPU wait of a cloud job (s)")  # what runs out: the link, or the cloud
    panels = [("accuracy", "online accuracy (%)"), ("uplink_mb", "uplink (MB)"), waits,
              ("uploads_never_used", "uploads never trained on")]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.6))
    ax = axes[0]  # what to read first: the paired difference, per seed, with its 95 % interval
    for arm, rows in paired.groupby("variant", sort=False):
        mean, lo, hi = (100 * rows[c] for c in ("accuracy_diff", "accuracy_diff_lo", "accuracy_diff_hi"))
        ax.errorbar(rows[key], mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3, label=arm, color=color[arm])
    ax.axhline(0, color=color["cema_dynamic"], lw=1)
    ax.set_ylabel("minus cema_dynamic, same seed (points)")
    for ax, (metric, label) in zip(axes[1:], panels, strict=True):
        for arm, rows in summary.groupby("variant", sort=False):
            ax.plot(rows[key], rows[metric], marker="o", label=arm, color=color[arm])
        ax.set_ylabel(label)
        if metric == "upload_delay_p95_s":
            ax.set_yscale("log")
    grid = STUDIES[name]["grid"][key]
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(grid, [f"{v:g}" for v in grid])
        ax.minorticks_off()
        ax.set_xlabel("uplink per device (Mbit/s)" if name == "bandwidth" else "devices")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=120)
    plt.close(fig)


def report(name: str) -> str:
    """The README's tables, from the CSVs this script wrote (no runs)."""
    key = next(iter(STUDIES[name]["grid"]))
    summary = pd.read_csv(HERE / f"{name}_summary.csv")
    paired = pd.read_csv(HERE / f"{name}_paired.csv").set_index([key, "variant"])
    cols = ["accuracy", "upload_ratio", "uplink_mb", "upload_delay_p95_s", "uploads_never_used", "dropped_samples"]
    head = [key.split(".")[-1], "arm", "accuracy %", "minus cema_dynamic (points, 95 % CI)", "upload %", "uplink MB",
            "upload delay p95 s", "never trained on", "dropped"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for _, row in summary.iterrows():
        p = paired.loc[(row[key], row["variant"])] if (row[key], row["variant"]) in paired.index else None
        diff = "(baseline)" if p is None else \
            f"{100 * p['accuracy_diff']:+.2f} [{100 * p['accuracy_diff_lo']:+.2f}, {100 * p['accuracy_diff_hi']:+.2f}]"
        values = [f"{row[c]:g}" if c != "uploads_never_used" else f"{row[c]:.0f}" for c in cols]
        lines.append(f"| {row[key]:g} | {row['variant']} | {values[0]} | {diff} | " + " | ".join(values[1:]) + " |")
    random_arm, entropy_arm = STUDIES[name]["control"]
    control = pd.read_csv(HERE / f"{name}_random_vs_entropy.csv")
    lines += ["", f"{random_arm} minus {entropy_arm}, same seed (points, 95 % CI): " + ", ".join(
        f"{row[key]:g}: {100 * row['accuracy_diff']:+.2f} [{100 * row['accuracy_diff_lo']:+.2f}, "
        f"{100 * row['accuracy_diff_hi']:+.2f}]" for _, row in control.iterrows())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=list(STUDIES))
    ap.add_argument("--report", action="store_true", help="print the README's tables from the CSVs, run nothing")
    args = ap.parse_args()
    for name in [args.only] if args.only else list(STUDIES):
        if not args.report:
            summary, paired = summarise(name, run(name, args.workers))
            figures(name, summary, paired[paired["variant"] != "cema_dynamic"])
        print(report(name))


if __name__ == "__main__":
    main()
