"""Torch CPU threads for one run: wall and CPU time of `cemasim run` at 1 and 2 threads, on an idle
machine and next to a competing CPU-bound process, side by side in one invocation.

    python benchmarks/bench_threads.py [--reps 2] [--scenario scenarios/quickstart.yaml]

Each run is its own `cemasim run --threads T` process (timed from outside with os.wait4: wall, user +
system CPU); the order of thread counts alternates per repetition. "Contended" starts one busy
process per core for the duration of the run (the situation of a sweep with as many workers as
cores, or a shared machine). The summaries of all runs are compared: a thread count must not change
results. Writes threads.csv beside this file and prints the ratios 2 threads / 1 thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _burn(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x += 1


def one_run(scenario: str, threads: int, out: str) -> tuple[float, float, dict]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cemasim", "run", scenario, "--quiet", "--threads", str(threads),
                             "--out", out, "--set", "output.plots=false", "--set", "name=run"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"cemasim run --threads {threads} failed (status {status})")
    summary = json.loads((Path(out) / "run" / "summary.json").read_text())
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--scenario", default="scenarios/quickstart.yaml")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    rows, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for load in ("idle", "contended"):
            for rep in range(args.reps):
                for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
                    burners = []
                    if load == "contended":
                        stop = time.time() + 3600
                        burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(cores)]
                        for b in burners:
                            b.start()
                    try:
                        wall, cpu, summary = one_run(args.scenario, threads, f"{tmp}/{load}-{rep}-{threads}")
                    finally:
                        for b in burners:
                            b.terminate()
                    summaries.append({k: v for k, v in summary.items() if k != "wall_time_s"})
                    rows.append({"load": load, "rep": rep, "threads": threads, "wall_s": round(wall, 2),
                                 "cpu_s": round(cpu, 2)})
                    print(rows[-1], flush=True)
    identical = all(s == summaries[0] for s in summaries)
    with open(HERE / "threads.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{args.scenario}, {cores} cores, results identical across runs: {identical}")
    for load in ("idle", "contended"):
        mean = {t: [sum(r[k] for r in rows if r["load"] == load and r["threads"] == t) / args.reps
                    for k in ("wall_s", "cpu_s")] for t in (1, 2)}
        print(f"{load:10s} 1 thread: {mean[1][0]:6.1f} s wall {mean[1][1]:6.1f} CPU-s   2 threads: "
              f"{mean[2][0]:6.1f} s wall {mean[2][1]:6.1f} CPU-s   ratio 2/1: wall {mean[2][0] / mean[1][0]:.2f}, "
              f"CPU {mean[2][1] / mean[1][1]:.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
