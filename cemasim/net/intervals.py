"""On/off processes over the run's horizon, as down intervals: link outages and device availability.

    exponential   alternating up and down periods with exponential lengths (means up_s, down_s),
                  starting in the stationary state (up with probability up_s / (up_s + down_s))
    trace         a CSV of down intervals: columns start_s,end_s and optionally device

Two registries name them as the scenario does: OUTAGES (`uplink/downlink.outages.process`: none,
exponential, trace) and AVAILABILITY (`availability.process`: always, onoff, trace). Each entry builds
a device's intervals from its section, a random generator, the device, the horizon, the cause and
whether transfers in flight are lost; `random` says whether it draws (a link without anything random
builds no generator). A plugin may register more.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cemasim.csvfile import device_value, read_rows, time_value
from cemasim.errors import DataError
from cemasim.net.capacity import DownIntervals, merge
from cemasim.registry import Registry


def exponential_intervals(rng: np.random.Generator, up_s: float, down_s: float, horizon_s: float, cause: str,
                          lose_in_flight: bool = False) -> DownIntervals:
    starts, ends = [], []
    up = rng.random() < up_s / (up_s + down_s)
    t = 0.0
    while t < horizon_s:  # exponential lengths are memoryless: the first period needs no residual-life care
        length = rng.exponential(up_s if up else down_s)
        if not up:
            starts.append(t)
            ends.append(t + length)
        t += length
        up = not up
    return DownIntervals(np.array(starts, np.float64), np.array(ends, np.float64), cause, lose_in_flight)


def read_interval_file(path: str | Path) -> list[tuple[int | None, float, float]]:
    """(device or None for every device, start_s, end_s) rows of a down-interval CSV."""
    rows: list[tuple[int | None, float, float]] = []
    for line_no, row in read_rows(path, "interval", ("start_s", "end_s"), ("device",)):
        start = time_value(row["start_s"], "start_s", path, line_no)
        end = time_value(row["end_s"], "end_s", path, line_no)
        if not start < end:
            raise DataError(f"{path}, line {line_no}: need start_s < end_s, got {start:g}, {end:g}")
        rows.append((device_value(row.get("device", ""), path, line_no), start, end))
    return rows


@lru_cache(maxsize=32)
def cached_interval_file(path: str) -> list[tuple[int | None, float, float]]:
    """read_interval_file once per process: validation and every device share one parse."""
    return read_interval_file(path)


def intervals_for(rows: list[tuple[int | None, float, float]], device: int, cause: str,
                  lose_in_flight: bool = False) -> DownIntervals:
    """The rows that apply to `device` (its own and the all-device ones), merged."""
    mine = [(s, e) for d, s, e in rows if d is None or d == device]
    raw = DownIntervals(np.array([s for s, _ in mine], np.float64), np.array([e for _, e in mine], np.float64), cause)
    starts, ends = merge([raw])
    return DownIntervals(starts, ends, cause, lose_in_flight)


@cache
def no_intervals(cause: str) -> DownIntervals:
    """The empty set of intervals, one read-only instance per cause (most of a fleet's devices and links)."""
    empty = np.zeros(0)
    empty.setflags(write=False)
    return DownIntervals(empty, empty, cause)


# (section, generator (None unless the entry is random), device, horizon_s, cause, lose_in_flight) -> DownIntervals
IntervalBuilder = Callable[[Any, Any, int, float, str, bool], DownIntervals]


def _kinds(kind: str, never: str, alternating: str, up: str, down: str, state: str) -> Registry[IntervalBuilder]:
    """The three built-in kinds under the names and keys of one scenario section."""
    kinds: Registry[IntervalBuilder] = Registry(kind)
    kinds.add(never, lambda cfg, rng, device, horizon, cause, lose: no_intervals(cause), f"never {state}")
    kinds.add(alternating, lambda cfg, rng, device, horizon, cause, lose:
              exponential_intervals(rng, getattr(cfg, up), getattr(cfg, down), horizon, cause, lose),
              f"alternating periods with exponential lengths (means {up}, {down})", random=True)
    kinds.add("trace", lambda cfg, rng, device, horizon, cause, lose:
              intervals_for(cached_interval_file(cfg.trace), device, cause, lose),
              f"{state} intervals from a CSV (start_s,end_s[,device])")
    return kinds


OUTAGES = _kinds("outage process", "none", "exponential", "up_s", "down_s", "down")
AVAILABILITY = _kinds("availability process", "always", "onoff", "on_s", "off_s", "off")
