"""Arrival processes: when samples reach a device (simulated seconds), and how they group into
test batches (a batch closes when full or `max_wait_s` after its first sample).

Each process takes the scenario's `arrivals` section, the run's duration, the device's RNG and
the device index.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from cemasim.csvfile import device_value, read_rows, time_value
from cemasim.errors import DataError
from cemasim.registry import Registry

ARRIVALS: Registry = Registry("arrival process")


@ARRIVALS.register("constant", help="one sample every 1/rate_hz seconds, random phase per device")
def constant(cfg: Any, duration_s: float, rng: np.random.Generator, device: int = 0) -> np.ndarray:
    period = 1.0 / cfg.rate_hz
    phase = rng.uniform(0.0, period)
    return np.arange(0.0 if getattr(cfg, "aligned", False) else phase, duration_s, period)


@ARRIVALS.register("poisson", help="exponential gaps with mean 1/rate_hz")
def poisson(cfg: Any, duration_s: float, rng: np.random.Generator, device: int = 0) -> np.ndarray:
    return poisson_times(cfg.rate_hz, 0.0, duration_s, rng)


@ARRIVALS.register("onoff", help="Poisson at rate_hz during on periods, silent during off periods "
                                 "(exponential lengths, means on_s and off_s)")
def onoff(cfg: Any, duration_s: float, rng: np.random.Generator, device: int = 0) -> np.ndarray:
    times, t, on = [], 0.0, bool(rng.random() < cfg.on_s / (cfg.on_s + cfg.off_s))
    while t < duration_s:
        length = rng.exponential(cfg.on_s if on else cfg.off_s)
        if on:
            times.append(poisson_times(cfg.rate_hz, t, min(t + length, duration_s), rng))
        t += length
        on = not on
    return np.concatenate(times) if times else np.zeros(0)


@ARRIVALS.register("trace", help="arrival times from a CSV file (column time_s, or device,time_s)")
def trace(cfg: Any, duration_s: float, rng: np.random.Generator, device: int = 0) -> np.ndarray:
    times = read_trace(cfg.trace, device)
    return times[times < duration_s]


def poisson_times(rate_hz: float, start: float, stop: float, rng: np.random.Generator) -> np.ndarray:
    span = stop - start
    n_guess = int(rate_hz * span + 6 * math.sqrt(rate_hz * span) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate_hz, size=n_guess))
    if start:  # (0.0 + t is t: most devices start at 0)
        times += start
    while len(times) and times[-1] < stop:  # rare: extend
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_hz, size=n_guess))])
    return times[times < stop]


def read_trace(path: str, device: int) -> np.ndarray:
    """Sorted arrival times of `device`: rows without a device column (or with it empty) reach every device."""
    times, devices = read_arrival_file(path)
    return np.sort(times[(devices == device) | (devices < 0)])


@lru_cache(maxsize=16)
def read_arrival_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(time_s, device or -1 for every device) of an arrival CSV, parsed once per process (every device
    of a fleet reads the same file). Raises DataError naming the file and line."""
    times, devices = [], []
    for line_no, row in read_rows(path, "arrival trace", ("time_s",), ("device",)):
        times.append(time_value(row["time_s"], "time_s", path, line_no))
        device = device_value(row.get("device", ""), path, line_no)
        devices.append(-1 if device is None else device)
    if not times:
        raise DataError(f"{path}: no arrival times after the header")
    out = np.array(times, np.float64), np.array(devices, np.int64)
    for array in out:
        array.setflags(write=False)
    return out


def batch_arrays(times: np.ndarray, batch_size: int, max_wait_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, stops, ready_s) of the test batches over sorted arrival `times`: where a batch starting at
    sample i would stop is computed for every i at once; the batches are the chain 0 -> stop(0) -> ...
    (a walk over the batches, not the samples: a fleet of batch-1 devices builds in microseconds a
    device)."""
    n = len(times)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    if batch_size == 1:  # each sample its own full batch, ready on arrival
        starts = np.arange(n)
        return starts, starts + 1, times.copy()
    deadline = times + max_wait_s  # the float a scalar sum gives
    full_at = np.minimum(np.arange(batch_size, n + batch_size), n)
    stop_at = np.minimum(full_at, np.searchsorted(times, deadline, "right"))
    chain, i, nxt = [], 0, stop_at.tolist()
    while i < n:
        chain.append(i)
        i = nxt[i]
    starts = np.array(chain, np.int64)
    stops = stop_at[starts]
    full = stops - starts == batch_size
    ready = np.where(full, times[np.maximum(stops - 1, 0)], deadline[starts])
    return starts, stops, ready
