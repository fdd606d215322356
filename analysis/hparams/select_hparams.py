"""Choose the `fmnist_zoo` learning rates on the 4 validation corruptions only.

The workload is the default study (scenarios/study.yaml: 4 devices, 15 simulated minutes, three
passes) with its five test corruptions replaced by the ImageNet-C validation corruptions
(speckle noise, Gaussian blur, spatter, saturate, severity 5), on seeds 100 and 101 (the study
uses 0, 1, 2, ...). The 15 test corruptions are never run here.

Rule: for each method, the *largest* learning rate whose mean online accuracy over the seeds is
within 0.25 points of the best candidate's ("defaults that act": of the steps the validation
data cannot tell apart, take the one that moves the model; for CEMA's two rates, the largest
distillation rate first). CEMA's cloud (foundation and distillation rates) is chosen on `cema` and
serves upload_all and random_upload too (the same cloud code).

A first pass used "the smallest rate within 0.1 points of the best"; it picked the ImageNet value
for every method, where the steps barely move the models. selected.csv keeps that pass's choice
(`smallest_within_0.1`) beside the rule above so the change is visible; see README.md.

    python analysis/hparams/select_hparams.py [--workers 2]

Writes runs.csv (one row per run), by_candidate.csv (mean over seeds) and selected.csv (the choice per method, \
with the ImageNet
value's accuracy beside it). cemasim/methods/presets.py's FMNIST_ZOO must equal selected.csv
(tests/test_presets.py checks it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cemasim import sweeps as sw
from cemasim.methods.presets import IMAGENET

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent.parent / "scenarios" / "study.yaml"
SEEDS = [100, 101]
VALIDATION_SEGMENTS = [{"corruption": c, "severity": 5, "duration_s": 60}
                       for c in ("speckle_noise", "gaussian_blur", "spatter", "saturate")]
LRS = [2.5e-4, 1e-3, 3e-3, 1e-2, 3e-2]
CANDIDATES: dict[str, dict[str, list[float]]] = {
    **{m: {"method.lr": LRS} for m in ("tent", "pl", "eta", "eata", "sar", "deyo", "roid", "rotta")},
    "cotta": {"method.lr": [1e-3, 3e-3, 1e-2]},
    "cema": {"cloud.foundation_lr": [2.5e-4, 1e-3, 4e-3], "cloud.distill_lr": [2.5e-3, 1e-2, 4e-2]},
}
TOLERANCE_POINTS = 0.25  # "cannot tell apart" on the validation stream
FIRST_PASS_POINTS = 0.1
REFERENCES = ["source", "bn_adapt"]  # no learning rate: what adapting beyond BN statistics must beat


def run(workers: int, only: list[str] | None = None) -> pd.DataFrame:
    frames = []
    todo = {**{m: {"method.name": [m]} for m in REFERENCES}, **CANDIDATES}
    for method, grid in todo.items():
        if only and method not in only:
            continue
        fixed = {"method.name": method, "shift.segments": VALIDATION_SEGMENTS, "output.plots": False,
                 "compute_device": "cpu"}
        sweep = sw.build_sweep(f"hparams-{method}", STUDY, fixed, grid, SEEDS, source=f"hparams {method}")
        table = sw.run_sweep(sweep, HERE / "sweeps", workers=workers)
        table = table[table["status"] == "ok"].copy()
        table["method"] = method
        for key in ("method.lr", "cloud.foundation_lr", "cloud.distill_lr"):
            if key not in table:
                table[key] = float("nan")
        frames.append(table[["method", "method.lr", "cloud.foundation_lr", "cloud.distill_lr", "seed",
                             "accuracy", "uplink_bytes", "upload_ratio"]])
    return pd.concat(frames, ignore_index=True)


def select(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for method, grid in CANDIDATES.items():
        keys = list(grid)
        mean = runs[runs["method"] == method].groupby(keys)["accuracy"].agg(["mean", "count"]).reset_index()
        if mean.empty:  # never run (a method added since): no row, rather than a crash of `--only` for another
            continue
        best = mean["mean"].max()
        order = keys[::-1]  # cema: distillation rate first
        near = mean[mean["mean"] >= best - TOLERANCE_POINTS / 100].sort_values(order)
        choice = near.iloc[-1]  # the largest rates the validation data cannot tell from the best
        first_pass = mean[mean["mean"] >= best - FIRST_PASS_POINTS / 100].sort_values(keys).iloc[0]
        names = {k: method if k == "method.lr" else k.split(".")[-1] for k in keys}  # preset keys
        imagenet = mean[(mean[keys] == [IMAGENET[names[k]] for k in keys]).all(axis=1)]
        for k in keys:
            name = names[k]
            rows.append({"preset_key": name, "chosen_by": method, "value": float(choice[k]),
                         "validation_accuracy": round(100 * float(choice["mean"]), 2),
                         "best_validation_accuracy": round(100 * float(best), 2),
                         "smallest_within_0.1": float(first_pass[k]),
                         "imagenet_value": IMAGENET[name],
                         "imagenet_validation_accuracy": round(100 * float(imagenet["mean"].iloc[0]), 2)
                         if len(imagenet) else float("nan"),
                         "seeds": int(choice["count"])})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", choices=REFERENCES + list(CANDIDATES),
                    help="run just these methods' candidates")
    args = ap.parse_args()
    runs = run(args.workers, args.only)
    if args.only:  # keep the other methods' earlier runs
        old = pd.read_csv(HERE / "runs.csv") if (HERE / "runs.csv").is_file() else runs.iloc[:0]
        runs = pd.concat([old[~old["method"].isin(args.only)], runs], ignore_index=True)
    runs.sort_values(["method", "method.lr", "cloud.foundation_lr", "cloud.distill_lr", "seed"]).to_csv(
        HERE / "runs.csv", index=False)
    keys = ["method", "method.lr", "cloud.foundation_lr", "cloud.distill_lr"]
    by = runs.groupby(keys, dropna=False).agg(accuracy_mean=("accuracy", "mean"), seeds=("seed", "count"),
                                              upload_ratio=("upload_ratio", "mean")).reset_index()
    by["accuracy_mean"] = (100 * by["accuracy_mean"]).round(2)
    by.to_csv(HERE / "by_candidate.csv", index=False)
    chosen = select(runs)
    chosen.to_csv(HERE / "selected.csv", index=False)
    print(chosen.to_string(index=False))
    refs = runs[runs["method"].isin(REFERENCES)].groupby("method")["accuracy"].mean() * 100
    print("references (no learning rate):", refs.round(2).to_dict())


if __name__ == "__main__":
    main()
