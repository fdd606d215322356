"""Shift schedules: which (corruption, severity) domain a device sees at each simulated second.

A schedule is a continual sequence of segments; devices follow the list in the same order or in a
per-device shuffled order, looping when the run outlasts it (else the last segment persists).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Domain = tuple[str, int]  # (corruption or "clean", severity)


@dataclass(frozen=True)
class Schedule:
    domains: list[Domain]
    ends_s: np.ndarray  # cumulative segment ends
    loop: bool

    def domain_index(self, times: np.ndarray) -> np.ndarray:
        """Index into `domains` of the segment active at each time."""
        total = self.ends_s[-1]
        t = np.mod(times, total) if self.loop else np.minimum(times, np.nextafter(total, 0))
        return np.minimum(np.searchsorted(self.ends_s, t, side="right"), len(self.domains) - 1)


def device_schedule(segments: list[dict], order: str, loop: bool, rng: np.random.Generator) -> Schedule:
    perm = rng.permutation(len(segments)) if order == "shuffled" else np.arange(len(segments))
    segs = [segments[i] for i in perm]
    return Schedule(
        domains=[(s["corruption"], int(s["severity"])) for s in segs],
        ends_s=np.cumsum([float(s["duration_s"]) for s in segs]),
        loop=loop,
    )
