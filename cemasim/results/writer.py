"""The run folder (output contract, see docs/outputs.md):

    scenario.yaml  manifest.json  summary.json  accuracy_by_domain.csv
    samples.parquet  uploads.parquet  reports.parquet  refreshes.parquet  cloud_jobs.parquet
    timeline.parquet  plots/*.png

summary.json is written last and atomically: it marks a complete folder (`is_complete`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
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
    from importlib.metadata import version  # the simulator's version, without importing it here

    import torch

    return {
        "cemasim_version": cemasim.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "simpy": version("simpy"),
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


COMPLETE = "summary.json"


def write_json(path: Path, data: dict[str, Any], atomic: bool = False) -> None:
    """JSON without NaN; `atomic`: through a temporary file and a rename, so readers never see half of it."""
    text = json.dumps(_jsonable(data), indent=2) + "\n"
    if not atomic:
        path.write_text(text)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def is_complete(folder: Path) -> bool:
    """Whether a run folder was written to the end (its summary.json exists)."""
    return (folder / COMPLETE).is_file()


def check_writable(parent: Path, flag: str = "--out") -> None:
    """Fail before simulating when run folders cannot be created under `parent` (read-only, a file, no
    permission): raise ConfigError naming it."""
    from cemasim.errors import ConfigError

    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {parent}: is a file, not a folder", source=flag)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".cemasim-probe-"):
            pass  # created and removed: the folder takes new files
    except OSError as exc:
        raise ConfigError(f"{flag} {parent}: cannot write there ({exc.strerror or exc})", source=flag) from None


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
