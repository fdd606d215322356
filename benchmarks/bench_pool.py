"""Max pooling: torch's max_pool2d against the four-view route of models/pooling.py, side by side.

    python benchmarks/bench_pool.py          # about 30 seconds

For the edge CNN's three pools (20x28x28, 40x14x14, 64x7x7 before pooling) at batch 1, 4, 16 and 64,
one torch thread: microseconds a call of F.max_pool2d and of pooling.max_pool_2x2 (best of three
timed loops), after checking that both give the same tensor. `MaxPool2d` takes the four-view route
from FOUR_VIEW_MIN_ELEMENTS elements on. Appends to pool.csv beside this file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from csvlog import append_rows  # noqa: E402  (beside this script)

from cemasim.models import pooling  # noqa: E402

SHAPES = [(20, 28, False), (40, 14, False), (64, 7, True)]  # channels, size, ceil_mode: EdgeCNN's pools


def per_call_us(fn, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return 1e6 * best


def main() -> None:
    torch.set_num_threads(1)
    date, rows = time.strftime("%Y-%m-%d %H:%M"), []
    print(f"# max pooling, 1 thread, torch {torch.__version__}; switch at {pooling.FOUR_VIEW_MIN_ELEMENTS:,} elements")
    print("| batch | input | elements | max_pool2d us | four views us | max_pool2d / four views | MaxPool2d takes |")
    for batch in (1, 4, 16, 64):
        for channels, size, ceil in SHAPES:
            x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
            assert torch.equal(F.max_pool2d(x, 2, 2, ceil_mode=ceil), pooling.max_pool_2x2(x, ceil))
            calls = max(20, 2000 // batch)
            direct = per_call_us(lambda: F.max_pool2d(x, 2, 2, ceil_mode=ceil), calls)
            four = per_call_us(lambda: pooling.max_pool_2x2(x, ceil), calls)
            route = "four views" if x.numel() >= pooling.FOUR_VIEW_MIN_ELEMENTS else "max_pool2d"
            print(f"| {batch} | {channels}x{size}x{size} | {x.numel():,} | {direct:.1f} | {four:.1f} | "
                  f"{direct / four:.2f} | {route} |")
            rows.append({"date": date, "torch": torch.__version__, "batch": batch, "input": f"{channels}x{size}x{size}",
                         "elements": x.numel(), "max_pool2d_us": round(direct, 1), "four_views_us": round(four, 1),
                         "route": route})
    append_rows(HERE / "pool.csv", rows)


if __name__ == "__main__":
    main()
