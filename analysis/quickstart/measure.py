"""The quickstart's numbers in the main README: one `cemasim run` per method, as a user runs it.

    python analysis/quickstart/measure.py [--methods source bn_adapt upload_all cema]

Each method runs in its own `cemasim run scenarios/quickstart.yaml --set method.name=M` process;
the command's wall time and peak RSS are measured from outside (os.wait4), the rest comes from the
run's summary.json. Writes quickstart.csv beside this file. Run it on an otherwise idle machine:
wall times are this host's.
"""

from __future__ import annotations

import argparse
import json
import os
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
    return {"method": method, "accuracy": summary["accuracy"], "samples": summary["samples"],
            "upload_ratio": summary["upload_ratio"], "uplink_mb": summary["uplink_bytes"] / 1e6,
            "downlink_mb": summary["downlink_bytes"] / 1e6, "simulation_wall_s": summary["wall_time_s"],
            "command_wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20}  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["source", "bn_adapt", "upload_all", "cema"])
    args = ap.parse_args()
    rows = []
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(method, Path(tmp)))
    table = pd.DataFrame(rows).round(4)
    table.to_csv(HERE / "quickstart.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
