"""Benchmark rows kept beside the scripts (the READMEs quote them): every invocation adds its rows."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def append_rows(path: Path, rows: list[dict]) -> None:
    """Add `rows` to the CSV at `path`. A column the file lacks is added (older rows leave it empty); the
    file is rewritten to a temporary one and renamed, so a kill mid-write keeps the old file whole."""
    old: list[dict] = []
    header = list(dict.fromkeys(k for row in rows for k in row))
    if path.is_file():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old = list(reader)
            header = list(reader.fieldnames or []) + [k for k in header if k not in (reader.fieldnames or [])]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(old + rows)
    os.replace(tmp, path)
