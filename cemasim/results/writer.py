"""The run folder (output contract, see docs/outputs.md):

    scenario.yaml  manifest.json  summary.json  accuracy_by_domain.csv
    samples.parquet  uploads.parquet  reports.parquet  refreshes.parquet  cloud_jobs.parquet
    timeline.parquet  plots/*.png
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import cemasim


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(cemasim.__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def manifest(seed: int, compute_device: str, wall_time_s: float, command: list[str]) -> dict[str, Any]:
    import simpy
    import torch

    return {
        "cemasim_version": cemasim.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "simpy": simpy.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "seed": seed,
        "compute_device": compute_device,
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "wall_time_s": wall_time_s,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; null means "not defined for this run"
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2) + "\n")


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    for name, df in tables.items():
        if name == "answers" and not len(df):  # only cloud_inference answers (docs/outputs.md)
            continue
        df.to_parquet(folder / f"{name}.parquet", index=False)


def next_run_folder(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ... so earlier results are never overwritten."""
    parent.mkdir(parents=True, exist_ok=True)
    folder, k = parent / name, 1
    while folder.exists():
        k += 1
        folder = parent / f"{name}-{k}"
    folder.mkdir()
    return folder


def write_command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
