"""Are two cemasim checkouts the same simulator? Every method, every table, bit for bit.

    git worktree add /tmp/old <commit>                     # the checkout to compare against
    python analysis/identical/compare.py --old /tmp/old    # about 5 min on 2 cores
    python analysis/identical/compare.py --old /tmp/old --scenario scenarios/commuter.yaml \
        --methods cema upload_all --set fleet.devices=24 --csv identical_commuter.csv
                                           # 12 devices on traced links behind one shared Wi-Fi AP

Runs `cemasim run scenarios/quickstart.yaml` shortened (3 devices, 60 s of arrivals + 60 s of drain,
one torch thread, CPU) once per method with each checkout's code (`python -m cemasim` from its
folder), then compares every parquet table of the two run folders with DataFrame.equals and every
summary value except wall time. Columns and summary keys only the new checkout has are listed as
additions (a new output), not counted as differences. Writes identical.csv beside this file (one row per method) and
exits 1 if anything differs. A refactor that claims "results unchanged" must leave 0 here.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
METHODS = ["source", "bn_adapt", "onda", "lame", "tent", "pl", "eta", "eata", "sar", "cotta", "upload_all",
           "random_upload", "cema", "cloud_inference"]
SHORT = ["duration_s=60", "drain_s=60", "fleet.devices=3", "output.plots=false", "compute_device=cpu"]


def run(tree: Path, method: str, out: Path, scenario: str = "scenarios/quickstart.yaml",
        extra: tuple[str, ...] = ()) -> Path:
    sets = [a for s in [*SHORT, *extra, f"method.name={method}", f"name={method}"] for a in ("--set", s)]
    subprocess.run([sys.executable, "-m", "cemasim", "run", scenario, "--quiet", "--threads", "1",
                    "--out", str(out), *sets], cwd=tree, check=True, capture_output=True)
    return out / method


def differences(old: Path, new: Path) -> tuple[list[str], list[str]]:
    """(what differs, what the new checkout adds): tables compared on the columns both have, summary
    values on the old keys; a column or key only the new one has is an addition, not a difference."""
    found, added = [], []
    for table in sorted(old.glob("*.parquet")):
        a, b = pd.read_parquet(table), pd.read_parquet(new / table.name)
        added += [f"{table.stem}.{c}" for c in b.columns if c not in a.columns]
        if list(a.columns) != [c for c in b.columns if c in a.columns] or not a.equals(b[list(a.columns)]):
            found.append(table.name)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (old, new))
    found += [f"summary.{k}" for k in a if k != "wall_time_s" and a[k] != b.get(k)]
    added += [f"summary.{k}" for k in b if k not in a]
    return found, added


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="folder of the other checkout (e.g. a git worktree)")
    p.add_argument("--new", default=str(REPO), help="folder of this checkout (default: this repository)")
    p.add_argument("--methods", nargs="*", default=METHODS)
    p.add_argument("--scenario", default="scenarios/quickstart.yaml", help="shortened as above (path in each checkout)")
    p.add_argument("--csv", default="identical.csv", help="file name of the table, beside this script")
    p.add_argument("--set", action="append", default=[], help="more KEY=VALUE after the shortening ones")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            old = run(Path(args.old), method, Path(tmp) / "old", args.scenario, tuple(args.set))
            new = run(Path(args.new), method, Path(tmp) / "new", args.scenario, tuple(args.set))
            diff, added = differences(old, new)
            summaries = [json.loads((d / "summary.json").read_text()) for d in (old, new)]
            rows.append({"method": method, "tables": len(list(old.glob("*.parquet"))), "differences": len(diff),
                         "what": " ".join(diff), "added": " ".join(added),
                         "accuracy_old": summaries[0]["accuracy"], "accuracy_new": summaries[1]["accuracy"],
                         # the engine's event count, to tell a change of bookkeeping from one of the run
                         "events_old": summaries[0]["events"], "events_new": summaries[1]["events"]})
            print(f"{method:16s} tables {rows[-1]['tables']:2d}  differences {len(diff)}  {' '.join(diff)}"
                  f"{'  added: ' + ' '.join(added) if added else ''}")
    with open(HERE / args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total = sum(r["differences"] for r in rows)
    print(f"{len(rows)} methods, {total} differences")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
