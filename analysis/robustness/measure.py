"""Count how cemasim answers every bad input of tests/bad_inputs.py.

    python analysis/robustness/measure.py [--timeout 60] [--out analysis/robustness]

Each case runs in a forked child of one process that has imported cemasim and validated the
defaults once (fast, and a case that hangs or exhausts memory cannot take the others down),
under a wall-clock limit and an 8 GiB address-space limit. Outcomes (see tests/bad_inputs.py):
clear, vague, internal, accepted, hang, crash (killed by a signal or out of memory). Writes
cases_<label>.csv (one row per case) and counts.csv (outcome x group, one block per label).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bad_inputs import all_cases, judge, run_case  # noqa: E402

OUTCOMES = ("clear", "vague", "internal", "accepted", "hang", "crash")


def run_isolated(case, folder: Path, timeout_s: float) -> tuple[str, float]:
    """The outcome of one case in a forked child, and its wall time."""
    read, write = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
        try:
            verdict = judge(case, run_case(case, folder), folder)
        except MemoryError:
            verdict = "crash"
        os.write(write, verdict.encode())
        os._exit(0)
    os.close(write)
    deadline = start + timeout_s
    while True:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return "hang", time.perf_counter() - start
        time.sleep(0.01)
    verdict = os.read(read, 64).decode() or "crash"
    os.close(read)
    return verdict, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    p.add_argument("--out", default=str(Path(__file__).parent))
    p.add_argument("--label", default="after", help="label of this measurement in counts.csv")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    cases = all_cases()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.yaml"  # import what validation imports once, before the children fork
        warm.write_text("{}\n")
        run_case(type(cases[0])("warm", ("validate", str(warm)), names=("ok",)), Path(tmp) / "warm")
        for i, case in enumerate(cases):
            outcome, wall = run_isolated(case, Path(tmp) / f"c{i}", args.timeout)
            rows.append({"case": case.id, "group": case.group, "outcome": outcome, "wall_s": round(wall, 3)})
            if outcome != "clear":
                print(f"{outcome:9s} {case.id}", file=sys.stderr)
    out = Path(args.out)
    with open(out / f"cases_{args.label}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    counts = Counter((r["group"], r["outcome"]) for r in rows)
    groups = sorted({r["group"] for r in rows})
    path = out / "counts.csv"
    old = []
    if path.is_file():
        with path.open() as f:
            old = list(csv.DictReader(f))
    old = [r for r in old if r["label"] != args.label]
    new = [{"label": args.label, "group": g, "tried": sum(counts[(g, o)] for o in OUTCOMES),
            **{o: counts[(g, o)] for o in OUTCOMES}} for g in [*groups, "all"]]
    for row in new[-1:]:
        for o in OUTCOMES:
            row[o] = sum(counts[(g, o)] for g in groups)
        row["tried"] = len(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "group", "tried", *OUTCOMES])
        w.writeheader()
        w.writerows(old + new)
    for row in new:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
