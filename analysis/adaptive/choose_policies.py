"""Choose the selection policies' hyper-parameters on the 4 validation corruptions only.

The two workloads of the study (study.py) with their test corruptions replaced by the ImageNet-C
validation corruptions (speckle noise, Gaussian blur, spatter, saturate; severity 5, looping), on
seeds 100 and 101 (the study uses 0, 1, 2). No run here touches one of the 15 test corruptions.

    budget     selection.link_fraction in {0.5, 0.8, 0.95}  } the bandwidth workload at 10 and
    staleness  selection.max_delay_s in {10, 30, 90} s        } 20 kbit/s per device (where the link binds)
    backpressure selection.backlog_target in {8, 16, 32}       the fleet workload at 512 devices

Rule, written before any run: per policy, the candidate with the highest mean validation accuracy
(over seeds and, for the link policies, both bandwidths); candidates within 0.05 points of it are
ties, broken by fewer uplink bytes. The scenario schema's defaults must equal selected.csv
(tests/test_policies.py checks it).

    python analysis/adaptive/choose_policies.py [--workers 2]     # 36 runs

Writes validation_runs.csv (one row per run), validation_by_candidate.csv (means) and selected.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import cemasim

HERE = Path(__file__).resolve().parent
SEEDS = [100, 101]
VALIDATION_SEGMENTS = [{"corruption": c, "severity": 5, "duration_s": 60}
                       for c in ("speckle_noise", "gaussian_blur", "spatter", "saturate")]
CANDIDATES = {
    "budget": ("selection.link_fraction", [0.5, 0.8, 0.95]),
    "staleness": ("selection.max_delay_s", [10.0, 30.0, 90.0]),
    "backpressure": ("selection.backlog_target", [8, 16, 32]),
}
VALIDATION_BANDWIDTHS = [0.01, 0.02]
VALIDATION_DEVICES = 512
TIE_POINTS = 0.05


def run(workers: int) -> pd.DataFrame:
    from study import BANDWIDTH, FLEET  # the study's workloads (same folder)

    frames = []
    for policy, (key, values) in CANDIDATES.items():
        on_link = policy != "backpressure"
        base, fixed = (BANDWIDTH if on_link else FLEET)
        grid = {"uplink.bandwidth_mbps": VALIDATION_BANDWIDTHS} if on_link else {}
        variants = {f"{policy}={v}": {"method.name": "cema", "selection.policy": policy, key: v} for v in values}
        fixed = {**fixed, "shift.segments": VALIDATION_SEGMENTS}
        if not on_link:
            fixed["fleet.devices"] = VALIDATION_DEVICES
        cemasim.sweep(base, grid, SEEDS, set=fixed, variants=variants, name=f"validation-{policy}",
                      out=HERE / "sweeps", workers=workers, progress=True)
        table = pd.read_parquet(HERE / "sweeps" / f"validation-{policy}" / "results.parquet")  # fractions
        table = table[table["status"] == "ok"].copy()
        table["policy"], table["key"] = policy, key
        table["value"] = table["variant"].str.split("=").str[1].astype(float)
        if "uplink.bandwidth_mbps" not in table:
            table["uplink.bandwidth_mbps"] = float("nan")
        frames.append(table[["policy", "key", "value", "uplink.bandwidth_mbps", "seed", "accuracy", "uplink_bytes",
                             "upload_ratio", "upload_delay_p95_s", "uploads_never_used"]])
    return pd.concat(frames, ignore_index=True)


def select(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    by = runs.groupby(["policy", "key", "value"]).agg(
        accuracy=("accuracy", "mean"), uplink_mb=("uplink_bytes", "mean"), runs=("seed", "count"),
        upload_delay_p95_s=("upload_delay_p95_s", "mean"), uploads_never_used=("uploads_never_used", "mean"),
    ).reset_index()
    by["accuracy"] = (100 * by["accuracy"]).round(3)
    by["uplink_mb"] = (by["uplink_mb"] / 1e6).round(3)
    chosen = []
    for policy, rows in by.groupby("policy", sort=False):
        near = rows[rows["accuracy"] >= rows["accuracy"].max() - TIE_POINTS]
        pick = near.sort_values("uplink_mb").iloc[0]
        chosen.append({"policy": policy, "key": pick["key"], "value": pick["value"],
                       "validation_accuracy": pick["accuracy"], "best_validation_accuracy": rows["accuracy"].max(),
                       "uplink_mb": pick["uplink_mb"], "runs": int(pick["runs"])})
    return by, pd.DataFrame(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    runs = run(args.workers)
    runs.sort_values(["policy", "value", "uplink.bandwidth_mbps", "seed"]).to_csv(HERE / "validation_runs.csv",
                                                                                  index=False)
    by, chosen = select(runs)
    by.to_csv(HERE / "validation_by_candidate.csv", index=False)
    chosen.to_csv(HERE / "selected.csv", index=False)
    print(by.to_string(index=False))
    print(chosen.to_string(index=False))


if __name__ == "__main__":
    main()
