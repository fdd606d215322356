"""Arrival processes: when samples reach a device (simulated seconds), and how they group into
test batches (a batch closes when full or `max_wait_s` after its first sample)."""

from __future__ import annotations

import numpy as np

from cemasim.registry import Registry

ARRIVALS: Registry = Registry("arrival process")


@ARRIVALS.register("constant", help="one sample every 1/rate_hz seconds, random phase per device")
def constant(rate_hz: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    period = 1.0 / rate_hz
    start = rng.uniform(0.0, period)
    return np.arange(start, duration_s, period)


@ARRIVALS.register("poisson", help="exponential gaps with mean 1/rate_hz")
def poisson(rate_hz: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    n_guess = int(rate_hz * duration_s + 6 * np.sqrt(rate_hz * duration_s) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate_hz, size=n_guess))
    while times[-1] < duration_s:  # rare: extend
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_hz, size=n_guess))])
    return times[times < duration_s]


def batch_bounds(times: np.ndarray, batch_size: int, max_wait_s: float) -> list[tuple[int, int, float]]:
    """(start, stop, ready_s) per test batch over sorted arrival `times`."""
    bounds, i, n = [], 0, len(times)
    while i < n:
        deadline = times[i] + max_wait_s
        stop = min(i + batch_size, int(np.searchsorted(times, deadline, side="right")), n)
        ready = times[stop - 1] if stop - i == batch_size else deadline
        bounds.append((i, stop, float(ready)))
        i = stop
    return bounds
