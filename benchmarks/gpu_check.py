"""GPU check: every method on CUDA against the CPU, and a timed 224-px study (timm resnet50 edge, ViT-B foundation).

    python benchmarks/gpu_check.py --out benchmarks/gpu_check.csv        # on a GPU machine (planned: < 8 min, H100)
    python benchmarks/gpu_check.py --device cpu --methods source,cema --quick   # the same code, CPU against CPU

1. compare  each method of the registry on a shortened quickstart (scenarios/quickstart.yaml, 4 devices,
            120 simulated seconds; --quick: 2 devices, 30 s), once with compute_device cpu and once with
            cuda, through the Python API (nothing written). Passes when the predictions agree on >= 99.9 %
            of the samples, accuracy is within 0.1 points, the CUDA run really ran on CUDA, and the runs
            are equal in shape and counts: every table's row count and columns, the samples' (device,
            sample_id, label, domain, arrival_s), and the summary's counts (selected_samples,
            uploaded_samples, dropped_samples, refreshes, uploads_trained, missed_samples).
            With --device cpu both runs are on the CPU and must agree exactly (100 %, 0 points, equal
            entropies). --no-tf32 turns off TF32 (on by default for cuDNN convolutions) for a rerun.
2. study    CEMA on 224x224 images on the tested device: timm:resnet50 edge and timm:vit_base_patch16_224
            foundation, both with random weights (nothing is downloaded), on a synthetic CIFAR-10 test
            split written to a temporary folder and resized to 224 px; wall time, samples, samples/s and
            accuracy (chance level with random weights: the row is a timing).

One CSV row per method and one for the study, appended to --out with the GPU's name and torch's
version. Exit status: 0 when every check passes, 1 when one fails or was skipped for time, 2 when
CUDA is missing (without --device cpu) or an argument is wrong.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from csvlog import append_rows  # noqa: E402  (beside this script)

import cemasim  # noqa: E402
from cemasim.methods import METHODS  # noqa: E402

QUICKSTART = HERE.parent / "scenarios" / "quickstart.yaml"
# (devices, simulated seconds of arrivals, drain) of the comparison; the quickstart's five segments are
# scaled to the duration so that every corruption is still seen
SIZES = {"full": (4, 120.0, 60.0), "quick": (2, 30.0, 30.0)}
# (devices, seconds at 4 samples/s a device, cloud chunk): ~1,024 / ~16 samples; --quick's chunk lets the cloud run
STUDY = {"full": (4, 64.0, 32), "quick": (1, 4.0, 8)}
MIN_AGREE_PCT, MAX_ACC_DIFF_PTS = 99.9, 0.1
COUNTS = ("selected_samples", "uploaded_samples", "dropped_samples", "refreshes", "uploads_trained", "missed_samples")
SAMPLE_KEYS = ["device", "sample_id", "label", "domain", "arrival_s"]


def quickstart(devices: int, duration_s: float, drain_s: float, device: str,
               extra: dict[str, Any] | None = None) -> cemasim.Scenario:
    """The quickstart scenario shortened to `duration_s`, its segments scaled alike, on `device`."""
    base = cemasim.load_scenario(QUICKSTART)
    scale = duration_s / base.duration_s
    segments = [{**s, "duration_s": s["duration_s"] * scale} for s in base.to_dict()["shift"]["segments"]]
    return cemasim.load_scenario(QUICKSTART, {"fleet.devices": devices, "duration_s": duration_s, "drain_s": drain_s,
                                              "shift.segments": segments, "compute_device": device,
                                              "output.plots": False, **(extra or {})})


def timed_run(sc: cemasim.Scenario) -> tuple[cemasim.RunResult, float]:
    start = time.perf_counter()
    result = cemasim.simulate(sc, progress=False)
    return result, time.perf_counter() - start


def differences(ref: cemasim.RunResult, test: cemasim.RunResult, test_device: str) -> list[str]:
    """What differs in shape and counts between two runs of one scenario (empty: equal)."""
    out = []
    for name in sorted(set(ref.tables) | set(test.tables)):
        a, b = ref.tables.get(name), test.tables.get(name)
        if a is None or b is None:
            out.append(f"{name}: only in {'cpu' if b is None else test_device} run")
        elif len(a) != len(b):
            out.append(f"{name} rows {len(a)} vs {len(b)}")
        elif list(a.columns) != list(b.columns):
            out.append(f"{name} columns differ")
    keys = [r.samples[SAMPLE_KEYS].sort_values(["device", "sample_id"]).reset_index(drop=True) for r in (ref, test)]
    if len(keys[0]) == len(keys[1]) and not keys[0].equals(keys[1]):
        out.append("sample ids/labels/domains/arrivals differ")
    out += [f"{k} {ref.summary.get(k)} vs {test.summary.get(k)}" for k in COUNTS
            if ref.summary.get(k) != test.summary.get(k)]
    if test.summary["compute_device"] != test_device:  # the run must really have used the tested device
        out.append(f"ran on {test.summary['compute_device']}, not {test_device}")
    return out


def compare(method: str, test_device: str, size: tuple[int, float, float], exact: bool) -> dict[str, Any]:
    """One method on the CPU and on `test_device`; the row of the CSV."""
    row: dict[str, Any] = {"check": "compare", "method": method, "devices": f"cpu vs {test_device}",
                           "scenario": f"quickstart, devices {size[0]}, {size[1]:g} s"}
    try:
        ref, wall_cpu = timed_run(quickstart(*size, "cpu", {"method.name": method}))
        test, wall_test = timed_run(quickstart(*size, test_device, {"method.name": method}))
    except Exception as exc:  # one method's crash (e.g. a tensor on the wrong device) is its row, not the end
        traceback.print_exc()
        return row | {"result": "error", "differed": brief(exc)}
    both = ref.samples.merge(test.samples, on=["device", "sample_id"], suffixes=("_cpu", "_test"))
    agree = 100.0 * float((both["pred_cpu"] == both["pred_test"]).sum()) / max(len(ref.samples), 1)
    acc_cpu, acc_test = 100.0 * ref.summary["accuracy"], 100.0 * test.summary["accuracy"]
    differed = differences(ref, test, test_device)
    entropy_diff = float((both["entropy_cpu"] - both["entropy_test"]).abs().max()) if len(both) else 0.0
    if exact and entropy_diff > 0:  # the same device twice must give the same floats, not only the same argmax
        differed.append(f"entropies differ (max {entropy_diff:.3g})")
    min_agree, max_diff = (100.0, 0.0) if exact else (MIN_AGREE_PCT, MAX_ACC_DIFF_PTS)
    ok = agree >= min_agree and abs(acc_test - acc_cpu) <= max_diff and not differed
    return row | {
        "wall_cpu_s": round(wall_cpu, 2), "wall_test_s": round(wall_test, 2), "samples": len(ref.samples),
        "agree_pct": round(agree, 3), "accuracy_cpu_pct": round(acc_cpu, 3),
        "accuracy_test_pct": round(acc_test, 3), "accuracy_diff_pts": round(acc_test - acc_cpu, 3),
        "entropy_max_abs_diff": entropy_diff,
        "tables_equal": "no" if differed else "yes", "differed": "; ".join(differed),
        "uploads": len(ref.tables["uploads"]), "refreshes": len(ref.tables["refreshes"]),
        "result": "pass" if ok else "fail"}


def brief(exc: Exception) -> str:
    """An exception on one CSV line (the traceback goes to stderr)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def synthetic_cifar10(root: Path, n: int = 1000) -> None:
    """A CIFAR-10 test split of smooth random 32x32 images (8x8 blocks), in torchvision's pickle layout."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8).repeat(4, axis=2).repeat(4, axis=3)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {b"data": images.reshape(n, -1), b"labels": rng.integers(0, 10, n).tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))


def study(device: str, devices: int, duration_s: float, chunk: int) -> dict[str, Any]:
    """CEMA at 224 px with timm models of random weights on `device`: the timing row."""
    row: dict[str, Any] = {"check": "study224", "method": "cema", "devices": device,
                           "scenario": f"quickstart on synthetic CIFAR-10, devices {devices}, {duration_s:g} s",
                           "models": "timm:resnet50 / timm:vit_base_patch16_224 (random weights), 224 px"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        synthetic_cifar10(Path(tmp))
        extra = {"data.dataset": "cifar10", "data.root": tmp, "data.image_size": 224,
                 "models.edge": "timm:resnet50", "models.foundation": "timm:vit_base_patch16_224",
                 "models.edge_weights": "random", "models.foundation_weights": "random",
                 "fleet.profile": "jetson-orin-nano", "cloud.profile": "a100",  # rpi4 would lag its arrivals
                 # random weights give near-uniform outputs, which CEMA's E_max would never upload: upload them
                 # all, so that the foundation model and the distillation are timed too
                 "selection.e_max": 1.0, "selection.dynamic_e_max": False, "cloud.chunk_size": chunk}
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            result, wall = timed_run(quickstart(devices, duration_s, 60.0, device, extra))
        except Exception as exc:  # as in compare: a crash is the row's result
            traceback.print_exc()
            return row | {"result": "error", "differed": brief(exc)}
    run_s, n = result.summary["wall_time_s"], len(result.samples)
    ok = n > 0 and result.summary["compute_device"] == device
    return row | {"samples": n, "wall_test_s": round(wall, 2), "run_s": round(run_s, 2),
                  "samples_per_s": round(n / run_s, 1), "accuracy_test_pct": round(100 * result.summary["accuracy"], 3),
                  "uploads": len(result.tables["uploads"]), "refreshes": len(result.tables["refreshes"]),
                  "gpu_mem_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else "",
                  "differed": "" if ok else f"ran on {result.summary['compute_device']}",
                  "result": "pass" if ok else "fail"}


def machine(device: str) -> dict[str, Any]:
    """What the CSV names on every row: the GPU, torch, and the settings that change CUDA's floats."""
    cuda = device == "cuda"
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "gpu": torch.cuda.get_device_name(0) if cuda else "none",
            "torch": torch.__version__, "cuda": torch.version.cuda or "", "cpu_cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "host": platform.node(),
            "tf32": f"cudnn {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}"
            if cuda else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="device compared with the CPU (cpu: a CPU-against-CPU run of the same code)")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    parser.add_argument("--quick", action="store_true", help="smaller comparison scenario and study")
    parser.add_argument("--no-study", action="store_true", help="skip the 224-px study")
    parser.add_argument("--no-tf32", action="store_true",
                        help="CUDA in full float32 (torch lets cuDNN convolutions use TF32 by default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="no method starts past this many seconds minus the study's share (default 420)")
    parser.add_argument("--out", type=Path, default=HERE / "gpu_check.csv", help="CSV the rows are appended to")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else METHODS.names()
    unknown = [m for m in methods if m not in METHODS.names()]
    if unknown:
        print(f"gpu_check: unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS.names())}",
              file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
              "run it on a GPU machine, or with --device cpu to check the comparison CPU against CPU",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_tf32:  # tells float32 rounding apart from TF32's 10-bit mantissa when predictions disagree
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    size = SIZES["quick" if args.quick else "full"]
    info = machine(args.device)
    print(f"# gpu_check: {args.device} vs cpu on {info['gpu']}, torch {info['torch']} (CUDA {info['cuda']}), "
          f"{info['threads']} threads, {info['cpu_cores']} cores; quickstart at {size[0]} devices, {size[1]:g} s",
          flush=True)
    start = time.perf_counter()
    for dev in dict.fromkeys(["cpu", args.device]):  # imports, data, CUDA context: not in the first method's times
        try:
            cemasim.simulate(quickstart(1, 4.0, 30.0, dev, {"method.name": "cema"}), progress=False)
        except Exception as exc:  # the methods' own runs will show it, each in its row
            print(f"# warm-up on {dev} failed: {brief(exc)}", flush=True)
    reserve = 0.0 if args.no_study else (15.0 if args.quick else 120.0)
    rows, longest = [], 0.0
    for method in methods:
        if time.perf_counter() - start + longest > args.budget_s - reserve:
            row = {"check": "compare", "method": method, "devices": f"cpu vs {args.device}", "result": "skipped",
                   "differed": f"time budget (--budget-s {args.budget_s:g})"}
        else:
            t0 = time.perf_counter()
            row = compare(method, args.device, size, exact=args.device == "cpu")
            longest = max(longest, time.perf_counter() - t0)
        numbers = (f"agree {row['agree_pct']} %, accuracy {row['accuracy_cpu_pct']} / {row['accuracy_test_pct']} %, "
                   f"wall {row['wall_cpu_s']} / {row['wall_test_s']} s  " if "agree_pct" in row else "")
        print(f"{method:16s} {row['result']:7s} {numbers}{row['differed']}", flush=True)
        rows.append(info | row)
        append_rows(args.out, [rows[-1]])  # row by row: a run stopped at its time limit keeps what it measured
    if not args.no_study:
        row = study(args.device, *STUDY["quick" if args.quick else "full"])
        print(f"study224         {row['result']:7s} {row.get('samples', '-')} samples in {row.get('run_s', '-')} s "
              f"({row.get('samples_per_s', '-')} samples/s), wall {row.get('wall_test_s', '-')} s, accuracy "
              f"{row.get('accuracy_test_pct', '-')} %  {row.get('differed', '')}", flush=True)
        rows.append(info | row)
        append_rows(args.out, [rows[-1]])
    failed = [r["method"] if r["check"] == "compare" else r["check"] for r in rows if r["result"] != "pass"]
    print(f"# {len(rows) - len(failed)} of {len(rows)} checks passed in {time.perf_counter() - start:.0f} s"
          + (f"; not passed: {', '.join(failed)}" if failed else "") + f"; rows appended to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
