"""Which method is the strongest a device can run alone? Chosen on the validation corruptions only.

The claims table (analysis/claims/) and the decision study (analysis/decision/) compare CEMA with
"the strongest edge-only method" and "the strongest forward-only method". Picking those on the test
corruptions would flatter them (or CEMA); so they are picked here, on the validation stream of
select_hparams.py (the default study with the four ImageNet-C validation corruptions, severity 5,
seeds 100 and 101), with every learning rate at its fmnist_zoo preset:

- edge-only: the methods that back-propagate on the device (`method.deployment: edge`, a
  jetson-nano profile, which can train): tent, pl, eta, eata, sar, cotta, deyo, roid, rotta;
- forward-only: the methods a device that cannot train runs (rpi4): source, bn_adapt, onda, lame, t3a.

The strongest of a class is its highest mean online accuracy over the two seeds. The rule was
written before any of these runs.

    python analysis/hparams/strongest.py [--workers 2]     # 28 runs, about 12 min here (2 cores)

Writes strongest_runs.csv (one row per run) and strongest.csv (per class: every method's mean, the
chosen one marked); claims.py and decision/study.py read strongest.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cemasim import sweeps as sw

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent.parent / "scenarios" / "study.yaml"
SEEDS = [100, 101]
VALIDATION_SEGMENTS = [{"corruption": c, "severity": 5, "duration_s": 60}
                       for c in ("speckle_noise", "gaussian_blur", "spatter", "saturate")]
CAN_TRAIN_PROFILE = "jetson-nano"  # where edge-only methods back-propagate (claims and decision use it too)
CLASSES = {
    "edge_only": {"methods": ["tent", "pl", "eta", "eata", "sar", "cotta", "deyo", "roid", "rotta"],
                  "fixed": {"method.deployment": "edge", "fleet.profile": CAN_TRAIN_PROFILE}},
    "forward_only": {"methods": ["source", "bn_adapt", "onda", "lame", "t3a"], "fixed": {"fleet.profile": "rpi4"}},
}


def run(workers: int) -> pd.DataFrame:
    frames = []
    for cls, spec in CLASSES.items():
        fixed = {"shift.segments": VALIDATION_SEGMENTS, "output.plots": False, "compute_device": "cpu",
                 **spec["fixed"]}
        sweep = sw.build_sweep(f"strongest-{cls}", STUDY, fixed, {"method.name": spec["methods"]}, SEEDS,
                               source=f"strongest {cls}")
        table = sw.run_sweep(sweep, HERE / "sweeps", workers=workers)
        failed = table[table["status"] != "ok"]
        if len(failed):
            raise SystemExit(f"strongest {cls}: {len(failed)} runs failed: {failed['error'].iloc[0]}")
        table = table.assign(method_class=cls, method=table["method.name"])
        frames.append(table[["method_class", "method", "seed", "accuracy"]])
    return pd.concat(frames, ignore_index=True)


def choose(runs: pd.DataFrame) -> pd.DataFrame:
    """Per class, every method's mean over the seeds; `strongest` marks the highest."""
    by = runs.groupby(["method_class", "method"])["accuracy"].agg(["mean", "count"]).reset_index()
    by = by.sort_values(["method_class", "mean"], ascending=[True, False])  # exact means: no tie by rounding
    by["validation_accuracy"] = (100 * by.pop("mean")).round(3)
    by = by.rename(columns={"count": "seeds"})
    by["strongest"] = ~by.duplicated("method_class")
    return by.reset_index(drop=True)


def strongest(path: Path = HERE / "strongest.csv") -> dict[str, str]:
    """{'edge_only': name, 'forward_only': name} from strongest.csv (run this script first)."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python analysis/hparams/strongest.py` first")
    table = pd.read_csv(path)
    chosen = table[table["strongest"]]
    return dict(zip(chosen["method_class"], chosen["method"], strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    runs = run(args.workers)
    runs.sort_values(["method_class", "method", "seed"]).to_csv(HERE / "strongest_runs.csv", index=False)
    chosen = choose(runs)
    chosen.to_csv(HERE / "strongest.csv", index=False)
    print(chosen.to_string(index=False))


if __name__ == "__main__":
    main()
