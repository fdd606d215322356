"""Progress inside the runs of a sweep. A run writes how many of its samples it has predicted to a
small file in its folder (every few seconds, removed when the run ends); the sweep's progress bar
reads those files, so a sweep of 128-device runs shows each run moving instead of sitting silent for
minutes. Files work for every backend: a local pool, one process, or Ray nodes on shared storage."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGRESS_FILE = ".progress"  # "<predicted> <total>"; a folder with summary.json never has one
EVERY_S = 2.0


def reporter(folder: Path) -> Callable[[int, int], None]:
    """A callback(predicted, total) that rewrites folder/.progress at most every EVERY_S seconds."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < EVERY_S and done < total:
            return
        last[0] = now
        tmp = folder / (PROGRESS_FILE + ".tmp")
        try:
            tmp.write_text(f"{done} {total}")
            os.replace(tmp, folder / PROGRESS_FILE)
        except OSError:  # progress is a courtesy: a full disk must not fail the run here
            pass

    return report


def clear(folder: Path) -> None:
    for name in (PROGRESS_FILE, PROGRESS_FILE + ".tmp"):
        with contextlib.suppress(OSError):
            (folder / name).unlink()


def running(folders: list[Path]) -> list[float]:
    """Fractions done of those run folders that hold a progress file (runs in flight), most advanced first."""
    out = []
    for folder in folders:
        try:
            done, total = (int(v) for v in (folder / PROGRESS_FILE).read_text().split())
        except (OSError, ValueError):  # not started, finished, or a file half-written
            continue
        if total > 0:
            out.append(min(done / total, 1.0))
    return sorted(out, reverse=True)


class Watch:
    """Shows the in-flight runs' progress on a tqdm bar's postfix every EVERY_S seconds, with the count
    of failed runs that the sweep loop keeps in `failed`. Workers take runs in the order they were
    submitted, so only the first `window` unfinished folders are looked at, not a whole sweep's."""

    def __init__(self, bar: Any, folders: dict[str, Path], window: int):
        self.bar, self.failed, self.window = bar, 0, window
        self._pending = dict(folders)  # point id -> run folder, in submission order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cemasim-run-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finished(self, point_id: str) -> None:
        with self._lock:
            self._pending.pop(point_id, None)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def show(self) -> None:
        with self._lock:
            first = list(itertools.islice(self._pending.values(), self.window))
        parts = [f"failed={self.failed}"]
        inflight = running(first)
        if inflight:
            parts.append("running " + " ".join(f"{100 * f:.0f}%" for f in inflight[:8]))
        self.bar.set_postfix_str(", ".join(parts))

    def _loop(self) -> None:
        while not self._stop.wait(EVERY_S):
            self.show()
