"""Do two cemasim checkouts corrupt images the same? Every corruption, severity, size and dtype.

    git worktree add /tmp/old <commit>                          # the checkout to compare against
    python analysis/identical/corruptions.py --old /tmp/old     # about 1 min on 2 cores

Each checkout (its own code, in a child process) corrupts the same images: 256 at 32 px and 16 at
224 px in float32 (the second is above corrupt()'s CHUNK_MIN_BYTES, so the batch-splitting paths
run), 5 at 97x80 in float64 and 3 grey ones at 28 px, every one of the 15 + 4 corruptions at
severities 1-5 with the generator seeded by the severity. Outputs are compared by a hash of their
bytes; where two differ, both are recomputed and the largest absolute difference is reported.
Writes identical_corruptions.csv beside this file (one row per corruption and workload) and exits 1
if any output differs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKLOADS = {"32px x256 float32": (256, 3, 32, 32, "float32"), "224px x16 float32": (16, 3, 224, 224, "float32"),
             "97x80 x5 float64": (5, 3, 97, 80, "float64"), "28px grey x3 float32": (3, 1, 28, 28, "float32")}


def outputs(keep: set[str] | None = None):
    """(key, output) for every workload, corruption and severity, computed with the cemasim on sys.path."""
    import torch

    from cemasim.data.corruptions import CORRUPTION_NAMES, VALIDATION_CORRUPTIONS, corrupt

    torch.set_num_threads(1)
    for label, (n, c, h, w, dtype) in WORKLOADS.items():
        x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(h * w), dtype=getattr(torch, dtype))
        for name in (*CORRUPTION_NAMES, *VALIDATION_CORRUPTIONS):
            for s in range(1, 6):
                key = f"{label}|{name}|{s}"
                if keep is None or key in keep:
                    yield key, corrupt(x, name, s, torch.Generator().manual_seed(s))


def child(out: Path, keep: list[str]) -> None:
    """Hashes of every output into out (JSON), or the outputs named in `keep` (torch.save)."""
    if keep:
        import torch

        torch.save(dict(outputs(set(keep))), out)
        return
    hashes = {k: f"{y.dtype} {tuple(y.shape)} " + hashlib.sha1(y.contiguous().numpy().tobytes()).hexdigest()
              for k, y in outputs()}
    out.write_text(json.dumps(hashes))


def run_child(tree: Path, out: Path, keep: Sequence[str] = ()) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, __file__, "--child", str(out), *(["--keep", *keep] if keep else [])],
                   cwd=tree, env=env, check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, help="folder of the other checkout (e.g. a git worktree)")
    p.add_argument("--new", type=Path, default=REPO, help="folder of this checkout (default: this repository)")
    p.add_argument("--csv", default="identical_corruptions.csv", help="file name of the table, beside this script")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--keep", nargs="*", default=[], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.keep)
        return 0
    if args.old is None:
        p.error("--old is required")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        old_h, new_h = Path(tmp, "old.json"), Path(tmp, "new.json")
        run_child(args.old.resolve(), old_h)
        run_child(args.new.resolve(), new_h)
        a, b = json.loads(old_h.read_text()), json.loads(new_h.read_text())
        differ = sorted(k for k in a if a[k] != b.get(k))
        diff: dict[str, float] = {}
        if differ:
            run_child(args.old.resolve(), Path(tmp, "old.pt"), differ)
            run_child(args.new.resolve(), Path(tmp, "new.pt"), differ)
            ya, yb = torch.load(Path(tmp, "old.pt")), torch.load(Path(tmp, "new.pt"))
            diff = {k: float((ya[k].double() - yb[k].double()).abs().max()) if ya[k].shape == yb[k].shape
                    else float("inf") for k in differ}
    rows: dict[tuple[str, str], dict] = {}
    for key in a:
        label, name, _ = key.split("|")
        row = rows.setdefault((label, name), {"workload": label, "corruption": name, "severities": 0,
                                              "identical": 0, "max_abs_diff": 0.0})
        row["severities"] += 1
        row["identical"] += key not in diff
        row["max_abs_diff"] = max(row["max_abs_diff"], diff.get(key, 0.0))
    with open(HERE / args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, ["workload", "corruption", "severities", "identical", "max_abs_diff"])
        writer.writeheader()
        writer.writerows(rows.values())
    changed = [r for r in rows.values() if r["identical"] < r["severities"]]
    listed = ", ".join(f"{r['corruption']} at {r['workload']} (max {r['max_abs_diff']:.2g})" for r in changed)
    print(f"{len(a)} outputs, {len(a) - len(diff)} bit-identical; differing: {listed or 'none'}")
    print(f"-> {HERE / args.csv}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
