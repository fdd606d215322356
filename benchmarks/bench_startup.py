"""What one cemasim process costs before its run: a short `cemasim run` of the quickstart, end to end.

    python benchmarks/bench_startup.py [--root CHECKOUT ...] [--repeats 3] [--no-csv]

Every CLI call and every sweep worker is such a process (imports, building the models, counting their
FLOPs, then the run), so this is the fixed cost a sweep pays per worker and the test suite per
subprocess. The command is `python -m cemasim run scenarios/quickstart.yaml --set duration_s=5
--set fleet.devices=1 --set output.plots=false` with the checkout on PYTHONPATH, in a fresh
temporary folder; the wall time includes Python's own start. Each repeat runs every checkout in
turn, so that a machine whose speed drifts moves them alike. It also notes whether the process
imported torch._dynamo and torchvision (a probe run of the same command). Prints best and median
per checkout and appends one row per checkout to startup.csv beside this script (`--no-csv`: not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_corruptions import git_commit  # noqa: E402  (beside this script)
from csvlog import append_rows  # noqa: E402

SETS = ("duration_s=5", "fleet.devices=1", "output.plots=false")
# The same run with a line after it that reports which heavy modules the process imported.
PROBE = ("import runpy, sys; sys.argv = ['cemasim', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('cemasim', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print('MODULES', 'torch._dynamo' in sys.modules, 'torchvision' in sys.modules, file=sys.stderr)")


def command(root: Path, out: Path) -> list[str]:
    sets = [a for s in (*SETS, f"output.dir={out}") for a in ("--set", s)]
    return ["run", str(root / "scenarios" / "quickstart.yaml"), *sets]


def run_once(root: Path, probe: bool = False) -> tuple[float, str]:
    """Seconds of one run of `root`'s checkout (and the probe's stderr line)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as tmp:
        argv = command(root, Path(tmp) / "out")
        cmd = [sys.executable, "-c", PROBE, *argv] if probe else [sys.executable, "-m", "cemasim", *argv]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{root}: exit {done.returncode}\n{done.stderr[-2000:]}")
    line = next((x for x in done.stderr.splitlines() if x.startswith("MODULES")), "")
    return seconds, line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, action="append", help="checkout to time (repeatable; default: this one)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each checkout, alternating (default 3)")
    ap.add_argument("--no-csv", action="store_true", help="do not append the rows to startup.csv")
    args = ap.parse_args(argv)
    roots = [r.resolve() for r in (args.root or [HERE.parent])]
    for root in roots:
        if not (root / "cemasim" / "__init__.py").is_file():
            ap.error(f"--root {root}: no cemasim package there")
    modules = {root: run_once(root, probe=True)[1].split()[1:] for root in roots}  # also warms the file cache
    times: dict[Path, list[float]] = {root: [] for root in roots}
    for _ in range(args.repeats):
        for root in roots:
            times[root].append(run_once(root)[0])
    stamp = time.strftime("%Y-%m-%d %H:%M")
    rows = []
    for root in roots:
        dynamo, torchvision = (modules[root] + ["?", "?"])[:2]
        ts = times[root]
        rows.append({"date": stamp, "root": str(root), "commit": git_commit(root), "repeats": len(ts),
                     "best_s": round(min(ts), 2), "median_s": round(statistics.median(ts), 2),
                     "all_s": " ".join(f"{t:.2f}" for t in ts), "imports_dynamo": dynamo,
                     "imports_torchvision": torchvision})
        print(f"{rows[-1]['commit'] or root}: best {min(ts):.2f} s, median {statistics.median(ts):.2f} s "
              f"({rows[-1]['all_s']}); torch._dynamo imported: {dynamo}, torchvision: {torchvision}")
    if not args.no_csv:
        append_rows(HERE / "startup.csv", rows)
        print(f"rows appended to {HERE / 'startup.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
