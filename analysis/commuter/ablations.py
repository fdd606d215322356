"""What each network feature changes in scenarios/commuter.yaml: the scenario, then one feature
switched off at a time, over several seeds. Writes ablations.csv (one row per run) and prints the
mean per variant.

    python analysis/commuter/ablations.py [--seeds 3] [--workers 2] [--only VARIANT ...] [--csv NAME]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

import cemasim

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent.parent / "scenarios" / "commuter.yaml"
COMMUTER, OFFICE = "fleet.classes[0]", "fleet.classes[1]"

# each variant: the overrides that switch one feature off (trace means from scenarios/traces/README.md)
VARIANTS = {
    "scenario": [],
    "constant links (trace means)": [
        f"{COMMUTER}.uplink.trace=null", f"{COMMUTER}.uplink.bandwidth_mbps=2.222",
        f"{COMMUTER}.downlink.trace=null", f"{COMMUTER}.downlink.bandwidth_mbps=6.699",
        f"{OFFICE}.uplink.trace=null", f"{OFFICE}.uplink.bandwidth_mbps=27.564",
        f"{OFFICE}.downlink.trace=null", f"{OFFICE}.downlink.bandwidth_mbps=27.564"],
    "no outages": [f"{COMMUTER}.uplink.outages.process=none", f"{COMMUTER}.downlink.outages.process=none"],
    "always on": [f"{COMMUTER}.availability.process=always"],
    "no loss": [f"{COMMUTER}.uplink.loss.model=none", f"{COMMUTER}.downlink.loss.model=none"],
    "no shared AP": [f"{OFFICE}.uplink.shared_mbps=null"],
    "fifo scheduler": ["cloud.scheduler=fifo"],
    "homogeneous (no classes)": ["fleet.classes=[]"],
    # stressed: a cloud GPU slow enough to queue jobs, and an access point narrower than the office load
    "slow cloud, staleness": ["cloud.profile=jetson-nano"],
    "slow cloud, fifo": ["cloud.profile=jetson-nano", "cloud.scheduler=fifo"],
    "slow cloud, round_robin": ["cloud.profile=jetson-nano", "cloud.scheduler=round_robin"],
    "slow cloud, backlog": ["cloud.profile=jetson-nano", "cloud.scheduler=backlog"],
    "AP 0.1 Mbit/s": [f"{OFFICE}.uplink.shared_mbps=0.1"],
    **{f"overloaded cloud, {p}": ["cloud.profile=rpi4", f"cloud.scheduler={p}"]
       for p in ("staleness", "fifo", "round_robin", "backlog")},
}
ORDER = {name: i for i, name in enumerate(VARIANTS)}
KEYS = ["accuracy", "cloud_utilization", "samples", "missed_samples", "upload_ratio",
        "uplink_bytes", "downlink_bytes", "dropped_samples",
        "retransmissions", "upload_delay_mean_s", "upload_delay_p95_s", "refreshes", "param_age_mean_s",
        "energy_j", "energy_tx_j", "energy_compute_j", "energy_mj_per_sample", "wall_time_s"]


def as_values(overrides: list[str]) -> dict:
    """'key=value' strings (values as YAML) as the mapping cemasim.sweep's variants take."""
    return {key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in overrides)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="run just these variants")
    ap.add_argument("--csv", default="ablations.csv", help="file name under analysis/commuter/")
    args = ap.parse_args()
    chosen = {name: as_values(VARIANTS[name]) for name in (args.only or VARIANTS)}
    cemasim.sweep(SCENARIO, variants=chosen, seeds=args.seeds, workers=args.workers, threads=1,
                  set={"output.plots": False, "compute_device": "cpu"}, name="commuter-ablations",
                  out=HERE / "sweeps")  # resumes
    table = pd.read_parquet(HERE / "sweeps" / "commuter-ablations" / "results.parquet")  # fractions, as the CSV
    failed = table[table["status"] != "ok"]
    if len(failed):
        raise SystemExit(f"{len(failed)} runs failed: {failed['error'].iloc[0]}")
    drops = sorted(c for c in table if c.startswith("drops_"))
    df = table[["variant", "seed", *KEYS, *drops]].sort_values(["seed", "variant"], key=lambda c: c.map(ORDER)
                                                                if c.name == "variant" else c).fillna(0)
    df.to_csv(HERE / args.csv, index=False)
    mean = df.drop(columns="seed").groupby("variant", sort=False).mean()
    mean["accuracy"] *= 100
    cols = ["accuracy", "cloud_utilization", "missed_samples", "upload_ratio",
            "uplink_bytes", "retransmissions", "dropped_samples",
            "upload_delay_mean_s", "upload_delay_p95_s", "param_age_mean_s", "refreshes", "energy_j"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"mean over {args.seeds} seeds (accuracy in %)")
        print(mean[cols].to_string())


if __name__ == "__main__":
    main()
