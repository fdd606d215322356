"""The quickstart's numbers in the main README: one `cemasim run` per method, as a user runs it.

    python analysis/quickstart/measure.py [--methods source bn_adapt upload_all cema] [--tests]

Each method runs in its own `cemasim run scenarios/quickstart.yaml --set method.name=M` process;
the command's wall time and peak RSS are measured from outside (os.wait4), the rest comes from the
run's summary.json. Writes quickstart.csv beside this file. With --tests it also times the README's
test command (`python -m pytest -q`, as .ci/run runs it) and adds a dated row to tests.csv (earlier
rows stay: this host's speed moves, and the history shows by how much). Both name the machine
(CPU, cores, memory, GPU). Run it on an otherwise idle machine: wall times are this host's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def measure(method: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "cemasim", "run", str(ROOT / "scenarios" / "quickstart.yaml"),
           "--set", f"method.name={method}", "--set", "output.plots=false", "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {status}")
    summary = json.loads((out / "quickstart" / "summary.json").read_text())
    return {"method": method, "accuracy_pct": 100 * summary["accuracy"], "samples": summary["samples"],
            "upload_ratio_pct": 100 * summary["upload_ratio"], "uplink_mb": summary["uplink_bytes"] / 1e6,
            "downlink_mb": summary["downlink_bytes"] / 1e6, "simulation_wall_s": summary["wall_time_s"],
            "command_wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20}  # ru_maxrss is in KiB on Linux


def machine() -> str:
    """This host in words: CPU model, cores, memory, GPU (what a wall time means)."""
    import torch

    from cemasim.models.measure import cpu_name

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}"


def time_tests() -> dict:
    """The README's test command from the repository root: wall time and pytest's own count."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    pytest_s = re.search(r"in ([\d.]+)s", last)
    failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    return {"command": "python -m pytest -q", "exit_code": proc.returncode, "wall_s": round(wall, 1),
            "pytest_s": float(pytest_s.group(1)) if pytest_s else float("nan"), "passed": counts.get("passed", 0),
            "failed": counts.get("failed", 0) + counts.get("error", 0), "skipped": counts.get("skipped", 0),
            "failures": " ".join(failures), "machine": machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["source", "bn_adapt", "upload_all", "cema"])
    ap.add_argument("--tests", action="store_true", help="also time the test suite (tests.csv)")
    args = ap.parse_args()
    rows = []
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(method, Path(tmp)))
    table = pd.DataFrame(rows).round(4).assign(machine=machine())
    table.to_csv(HERE / "quickstart.csv", index=False)
    print(table.to_string(index=False))
    if args.tests:
        row = {"measured_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), **time_tests()}
        path = HERE / "tests.csv"
        earlier = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        tests = pd.concat([earlier, pd.DataFrame([row])], ignore_index=True)
        tests.to_csv(path, index=False)
        print(tests.to_string(index=False))


if __name__ == "__main__":
    main()
