"""Throughput of cemasim's batched corruptions against the per-image `imagecorruptions` package.

    python benchmarks/bench_corruptions.py [--quick] [--severity 3] [--only fog,snow] [--threads N]
                                           [--root CHECKOUT] [--no-csv]

For each of the 15 ImageNet-C test corruptions and the 4 validation corruptions (speckle_noise,
gaussian_blur, spatter, saturate) and two workloads (32x32 RGB in batches of 256, 224x224 RGB in
batches of 32) it times, in the same run on the same images:

* cemasim: one `corrupt(batch, name, severity, generator)` call on a float [N, 3, H, W] tensor;
* reference: `imagecorruptions.corrupt(img, severity, corruption_name)` on each uint8 HxWx3 image
  of the batch in a Python loop (the package works per image, on numpy arrays).

Each side is warmed up once, then timed with time.perf_counter, the two sides' repetitions
alternating (so that a machine whose speed drifts during the run moves both alike); the best of 3
repetitions is reported as images/s, with the speed-up cemasim / reference. `--quick` uses 64 and 8 images.
Under the table it prints, per size, the geometric mean of the speed-ups over the corruptions
where the reference runs (the 15 test ones, and all 19). Every row (and the geomeans, as
corruption '(geomean test)' / '(geomean all)') is appended to corruptions.csv beside this script
(`--no-csv`: not). `--root CHECKOUT` imports cemasim from another checkout (e.g. a
`git worktree add /tmp/old HEAD` made before a change), to measure before and after side by side.

The reference is optional (it is not a cemasim dependency): `pip install imagecorruptions`. Without
it the table shows cemasim only. imagecorruptions 1.1.2 imports `pkg_resources`, which setuptools
>= 81 no longer ships; this script then provides a minimal stand-in for the one function it uses
(`resource_filename`, to find its frost images). Corruptions that fail with today's numpy /
scikit-image (glass_blur: skimage's removed `multichannel`; fog: numpy's removed `np.float_`) are
shown as 'n/a (error: ...)'. Note that imagecorruptions applies the ImageNet-C severity table at
every image size, while cemasim uses the CIFAR-10-C table for images up to 64 px, so at 32x32 the
two sides run the same algorithm with different parameters (costs differ mostly for blur widths).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from csvlog import append_rows  # noqa: E402

WORKLOADS = {"full": ((32, 256), (224, 32)), "quick": ((32, 64), (224, 8))}
REPEATS = 3


def load_reference() -> tuple[Callable | None, str]:
    """imagecorruptions.corrupt and a description, or (None, why it is missing)."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, name: str) -> str:
            return os.path.join(os.path.dirname(importlib.import_module(package).__file__), name)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
        shimmed = " (pkg_resources stand-in: setuptools >= 81 has none)"
    else:
        shimmed = ""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import imagecorruptions
        from importlib.metadata import version

        return imagecorruptions.corrupt, f"imagecorruptions {version('imagecorruptions')}{shimmed}"
    except Exception as e:  # ImportError, or the package failing at import time
        return None, f"imagecorruptions unavailable ({type(e).__name__}: {e}); pip install imagecorruptions"


def make_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """Natural-ish test images (three octaves of smooth noise): uint8 [n, H, W, 3] and float [n, 3, H, W]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, size, size)
    for factor, weight in ((8, 0.5), (4, 0.3), (2, 0.2)):
        low = torch.rand(n, 3, max(size // factor, 2), max(size // factor, 2), generator=g)
        x += weight * F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return u8.permute(0, 2, 3, 1).contiguous().numpy(), u8.float() / 255


def best_times(*fns: Callable[[], object]) -> list[float]:
    """Each function's best time in seconds, after one warm-up each (caches, lazy imports, allocator).

    Their repeats alternate (a, b, a, b, ...): when the machine speeds up or slows down during a run
    (this VM's reference throughput moved 2x between two runs a minute apart), both sides see it alike,
    and their ratio keeps.
    """
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def cemasim_call(corrupt: Callable, name: str, x: torch.Tensor, severity: int) -> Callable[[], object]:
    return lambda: corrupt(x, name, severity, torch.Generator().manual_seed(0))


def reference_call(ref: Callable, name: str, imgs: np.ndarray, severity: int) -> Callable[[], object]:
    """The package on every image in turn (raises at once if it breaks on this corruption)."""
    np.random.seed(0)  # the package draws from numpy's global generator
    ref(imgs[0], severity=severity, corruption_name=name)  # fail fast on one image

    def run() -> None:
        for img in imgs:
            ref(img, severity=severity, corruption_name=name)

    return run


def machine_info(reference: str, cpu: str) -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"machine:   {platform.node()} | {platform.platform()} | {cpu}",
        f"cpus:      {cores} usable of {os.cpu_count()} | torch threads: {torch.get_num_threads()}"
        f" (interop {torch.get_num_interop_threads()})",
        f"load:      {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15-min averages; other jobs skew timings)"
        if hasattr(os, "getloadavg")
        else "load:      unknown",
        f"software:  python {platform.python_version()} | torch {torch.__version__} | numpy {np.__version__}",
        f"reference: {reference}",
    ]


def git_commit(root: Path) -> str:
    """The checkout's commit (short hash, '+dirty' with uncommitted changes), or '' outside git."""
    import subprocess

    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,  # noqa: E731
                                        check=True).stdout.strip()
        return run("rev-parse", "--short", "HEAD") + ("+dirty" if run("status", "--porcelain", "--", "cemasim") else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def print_table(workloads: tuple, rows: list[list[str]], errors: dict[str, str]) -> None:
    """The markdown table, then the reference's errors."""
    head = ["corruption"]
    for size, n in workloads:
        head += [f"{size}px x{n} cemasim", f"{size}px ref", f"{size}px speed-up"]
    widths = [max(len(str(r[i])) for r in [*rows, head]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:  # markdown table row: names left-aligned, numbers right-aligned
        cells = (str(v).ljust(w) if i == 0 else str(v).rjust(w)
                 for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        return "| " + " | ".join(cells) + " |"

    print(fmt(head))
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        print(fmt(r))
    for name, msg in errors.items():
        print(f"\n{name}: reference n/a (error: {msg})", end="")
    print("\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 images at 32x32 and 8 at 224x224 (default 256 and 32)")
    ap.add_argument("--severity", type=int, default=3, choices=range(1, 6), help="severity for both sides (default 3)")
    ap.add_argument("--only", default="", help="comma-separated corruption names (default: all 15 + 4)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N) first (default: torch's choice)")
    ap.add_argument("--root", type=Path, default=HERE.parent, help="checkout whose cemasim is measured (default: this)")
    ap.add_argument("--no-csv", action="store_true", help="do not append the rows to corruptions.csv")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root.resolve()
    sys.path.insert(0, str(root))  # before the first import of cemasim: this checkout's code
    import cemasim
    from cemasim.data.corruptions import CORRUPTION_NAMES, VALIDATION_CORRUPTIONS, corrupt
    from cemasim.models.measure import cpu_name

    if Path(cemasim.__file__).resolve().parents[1] != root:
        ap.error(f"--root {root}: imported cemasim from {cemasim.__file__} instead")
    all_names = list(CORRUPTION_NAMES) + list(VALIDATION_CORRUPTIONS)
    names = [n for n in args.only.split(",") if n] or all_names
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        ap.error(f"unknown corruption(s): {', '.join(unknown)}")
    ref, ref_desc = load_reference()
    workloads = WORKLOADS["quick" if args.quick else "full"]

    commit = git_commit(root)
    print("\n".join(machine_info(ref_desc, cpu_name())))
    print(f"cemasim:   {root} ({commit or 'no git'})")
    if ref is None:
        print("NOTE: reference package missing: showing cemasim only, no comparison.")
    print(f"severity {args.severity}; best of {REPEATS} after one warm-up, ours and the reference's alternating; "
          "images/s (higher is better)\n")

    data = {size: make_images(n, size) for size, n in workloads}
    rows, errors, records = [], {}, []
    speedups: dict[int, dict[str, float]] = {size: {} for size, _ in workloads}
    stamp = {"date": time.strftime("%Y-%m-%d %H:%M"), "root": str(root), "commit": commit,
             "threads": torch.get_num_threads(), "severity": args.severity}
    for name in names:
        row = [name]
        for size, n in workloads:
            u8, x = data[size]
            mine, theirs = cemasim_call(corrupt, name, x, args.severity), None
            try:
                if ref is not None:  # timed side by side with ours
                    t_mine, t_ref = best_times(mine, reference_call(ref, name, u8, args.severity))
                    theirs = n / t_ref
            except Exception as e:  # the reference breaks on some corruptions with current numpy/skimage
                errors[name] = f"{type(e).__name__}: {e}"
            if theirs is None:
                (t_mine,) = best_times(mine)
            ours = n / t_mine
            if theirs is not None:
                speedups[size][name] = ours / theirs
            row += [f"{ours:,.0f}", f"{theirs:,.0f}" if theirs else (f"n/a (error: {errors[name].split(':')[0]})"
                    if name in errors else "-"), f"{ours / theirs:.1f}x" if theirs else "-"]
            records.append({**stamp, "size": size, "images": n, "corruption": name, "cemasim_img_s": round(ours, 1),
                            "ref_img_s": round(theirs, 1) if theirs else "",
                            "speedup": round(ours / theirs, 3) if theirs else ""})
        rows.append(row)
        print("  done:", name, file=sys.stderr, flush=True)

    print_table(workloads, rows, errors)
    for size, n in workloads:
        for label, group in (("test", CORRUPTION_NAMES), ("all", all_names)):
            ups = [v for k, v in speedups[size].items() if k in group]
            if ups:
                print(f"geomean speed-up {size}px ({label}: {len(ups)} corruptions where the reference runs): "
                      f"{geomean(ups):.2f}x")
                records.append({**stamp, "size": size, "images": n, "corruption": f"(geomean {label}, {len(ups)})",
                                "speedup": round(geomean(ups), 3)})
    if not args.no_csv:
        append_rows(HERE / "corruptions.csv", records)
        print(f"rows appended to {HERE / 'corruptions.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
