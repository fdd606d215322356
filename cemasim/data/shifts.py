"""Shift schedules: which (corruption, severity) domain a device sees at each simulated second,
and which images (label shift) it draws.

Protocols (shift.protocol): continual and reset follow the segment list in time (reset also
returns the models to the source at each boundary: see the edge and cloud actors); gradual
expands every segment into severities 1-2-3-4-5-4-3-2-1; mixed draws each sample's domain
uniformly from the segments. Fleet assignments (shift.order): same, shuffled, disjoint, random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Domain = tuple[str, int]  # (corruption or "clean", severity)
GRADUAL = (1, 2, 3, 4, 5, 4, 3, 2, 1)


@dataclass(frozen=True)
class Schedule:
    domains: list[Domain]
    ends_s: np.ndarray  # cumulative segment ends
    loop: bool
    mixed: bool = False

    def segment_index(self, times: np.ndarray) -> np.ndarray:
        """Index of the segment active at each time (counting repeats when looping)."""
        total = self.ends_s[-1]
        laps = np.floor(times / total).astype(int) if self.loop else np.zeros(len(times), int)
        t = np.mod(times, total) if self.loop else np.minimum(times, np.nextafter(total, 0))
        within = np.minimum(np.searchsorted(self.ends_s, t, side="right"), len(self.domains) - 1)
        return laps * len(self.domains) + within

    def domain_index(self, times: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Index into `domains` for each time (random per sample when mixed)."""
        if self.mixed:
            assert rng is not None, "a mixed schedule draws each sample's domain"
            return rng.integers(0, len(self.domains), size=len(times))
        return self.segment_index(times) % len(self.domains)

    def domain_and_segment(self, times: np.ndarray, rng: np.random.Generator | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
        """(domain_index, segment_index) of each of the sorted `times`, the segments found once when they fix
        the domain."""
        if not self.mixed and (not len(times) or (times[0] >= 0 and times[-1] < self.ends_s[-1])):
            # all in the first lap: no laps to count or wrap (x / total < 1 rounds below 1, fmod(x) is x),
            # and a segment is its domain
            segment = np.minimum(np.searchsorted(self.ends_s, times, side="right"), len(self.domains) - 1)
            return segment, segment
        segment = self.segment_index(times)
        return (self.domain_index(times, rng) if self.mixed else segment % len(self.domains)), segment


def expand_gradual(segments: list[dict]) -> list[dict]:
    """Each segment becomes nine of equal length with severities 1..5..1."""
    out = []
    for seg in segments:
        step = float(seg["duration_s"]) / len(GRADUAL)
        out += [{"corruption": seg["corruption"], "severity": s, "duration_s": step} for s in GRADUAL]
    return out


def device_schedule(segments: list[dict], order: str, loop: bool, rng: np.random.Generator, device: int = 0,
                    protocol: str = "continual") -> Schedule:
    picks = schedule_picks(len(segments), order, rng, device)
    return build_schedule([segments[i] for i in picks], loop, protocol)


def schedule_picks(n: int, order: str, rng: np.random.Generator, device: int = 0) -> np.ndarray:
    """Which of the n segments a device sees, in order (shift.order; shuffled and random draw from rng)."""
    if order == "shuffled":
        return rng.permutation(n)
    if order == "disjoint":
        return np.array([device % n])
    if order == "random":
        return rng.integers(0, n, size=n)
    return np.arange(n)


def build_schedule(segs: list[dict], loop: bool, protocol: str = "continual") -> Schedule:
    """The schedule of these segments, in this order (gradual expands each into nine)."""
    if protocol == "gradual":
        segs = expand_gradual(segs)
    ends = np.cumsum([float(s["duration_s"]) for s in segs])
    ends.setflags(write=False)  # a schedule is shared by the devices that pick the same segments
    return Schedule(domains=[(s["corruption"], int(s["severity"])) for s in segs], ends_s=ends, loop=loop,
                    mixed=protocol == "mixed")


def all_domains(segments: list[dict], protocol: str) -> list[Domain]:
    """Every domain a scenario can produce, in first-appearance order."""
    segs = expand_gradual(segments) if protocol == "gradual" else segments
    return list(dict.fromkeys((s["corruption"], int(s["severity"])) for s in segs))


# ---- which images ------------------------------------------------------------------------------
def image_order(pool: np.ndarray, labels: np.ndarray, n: int, mode: str, rng: np.random.Generator,
                alpha: float = 0.1) -> np.ndarray:
    """n image indices drawn from `pool` for one device's stream.

    none: random permutations of the pool, cycled; sorted: class-sorted (correlated stream);
    dirichlet: each sample's class drawn from a per-device mix p ~ Dir(alpha), image cycled within class.
    """
    if n == 0 or len(pool) == 0:
        return np.zeros(0, dtype=np.int64)
    if mode == "dirichlet":
        classes = np.unique(labels[pool])
        mix = rng.dirichlet(np.full(len(classes), alpha))
        drawn = rng.choice(len(classes), size=n, p=mix)
        by_class = {c: _cycle(pool[labels[pool] == classes[c]], int((drawn == c).sum()), rng) for c in set(drawn)}
        out, taken = np.empty(n, dtype=np.int64), {c: 0 for c in by_class}
        for i, c in enumerate(drawn):
            out[i] = by_class[c][taken[c]]
            taken[c] += 1
        return out
    order = _cycle(pool, n, rng)
    if mode == "sorted":
        order = order[np.argsort(labels[order], kind="stable")]
    return order


def _cycle(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    # pool[permutation(len(pool))] is permutation(pool): the same swaps, whatever the values; a device
    # keeps only the n it uses (a new array, not a view of the whole permutation)
    reps = -(-n // len(pool))
    if reps == 1:
        return pool[rng.permutation(len(pool))[:n]]
    return np.concatenate([pool[rng.permutation(len(pool))] for _ in range(reps)])[:n].copy()
