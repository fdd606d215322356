"""Link capacity over simulated time: a piecewise-constant bit rate.

Three shapes compose every link cemasim models:
    ConstantRate    the classic pipe (bandwidth_mbps), possibly infinite
    TraceRate       a bandwidth trace (CSV or Mahimahi), looping / holding / stopping at its end
    Gated           any capacity switched off during down intervals (link outages, device off)

Each answers `finish_time(t0, bits)` exactly by inverting the cumulative bits function, so a
transfer alone on its link follows every rate change of a trace without one event per change.
Rates: bit/s; times: s.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Capacity(Protocol):
    """What a link or a shared resource asks of its capacity: ConstantRate, TraceRate, Gated, or a
    plugin's capacity model (net/capacity_models.py). Rates in bit/s, times in s."""

    def rate_at(self, t: float) -> float: ...
    def next_change(self, t: float) -> float: ...  # the next time the rate changes (math.inf: never)
    def bits_between(self, t0: float, t1: float) -> float: ...
    def finish_time(self, t0: float, bits: float) -> float: ...  # exact: `bits` sent from t0 are done then


class ConstantRate:
    def __init__(self, bits_per_s: float):
        self.bits_per_s = bits_per_s

    def rate_at(self, t: float) -> float:
        return self.bits_per_s

    def next_change(self, t: float) -> float:
        return math.inf

    def bits_between(self, t0: float, t1: float) -> float:
        if t1 <= t0:
            return 0.0
        return math.inf if math.isinf(self.bits_per_s) and self.bits_per_s > 0 else self.bits_per_s * (t1 - t0)

    def finish_time(self, t0: float, bits: float) -> float:
        if bits <= 0 or math.isinf(self.bits_per_s):
            return t0
        return math.inf if self.bits_per_s <= 0 else t0 + bits / self.bits_per_s


class TraceRate:
    """Rates `bits_per_s[i]` over [edges[i], edges[i+1]) of one period, shifted by `offset_s`
    (the trace time at t = 0). After the period: `loop` repeats, `hold` keeps the last rate,
    `stop` is zero forever."""

    def __init__(self, starts_s: np.ndarray, bits_per_s: np.ndarray, period_s: float, end: str = "loop",
                 offset_s: float = 0.0):
        if end not in ("loop", "hold", "stop"):
            raise ValueError(f"trace end must be loop, hold or stop, got {end!r}")
        starts, rates = np.asarray(starts_s, np.float64), np.asarray(bits_per_s, np.float64)
        keep = np.append(True, rates[1:] != rates[:-1])  # merge equal neighbours: fewer breakpoints, exact sums
        self.edges = np.append(starts[keep], period_s)
        self.rates = rates[keep]
        self.period_s, self.end, self.offset_s = float(period_s), end, float(offset_s)
        self.cum = np.concatenate([[0.0], np.cumsum(self.rates * np.diff(self.edges))])
        self.total = float(self.cum[-1])  # bits deliverable in one period
        # the same numbers as Python lists: bisect on a list is ~10x a scalar np.searchsorted, with the
        # same indices, and float arithmetic on them gives the same doubles (shared links look up a
        # rate for every flow at every change)
        self._edges, self._rates, self._cum = self.edges.tolist(), self.rates.tolist(), self.cum.tolist()
        # the current piece: rate_at and next_change answer from it for any t in [lo, hi) (see _remember)
        self._lo, self._hi, self._rate, self._change = math.inf, -math.inf, 0.0, math.inf

    # -- trace time tau = t + offset -----------------------------------------------------------
    def _lap(self, tau: float) -> tuple[int, float]:
        """(k, p) with tau = k periods + p, p in [0, period): the one split that the rate, the next
        change and the cumulative bits all use. `tau % period` is the exact remainder of the doubles and
        can disagree with floor(tau / period) at a lap's start (1.02 % 0.02 = 0.019999..., the last
        piece, where floor gives 51 laps and p = 0, the first): the rate would then be the last piece's
        while the bits and the next change are the first piece's."""
        k = math.floor(tau / self.period_s)
        p = tau - k * self.period_s
        if p < 0:  # the quotient rounded up
            k, p = k - 1, max(p + self.period_s, 0.0)
        if p >= self.period_s:
            k, p = k + 1, 0.0
        return k, p

    def _piece(self, p: float) -> int:
        return min(bisect_right(self._edges, p) - 1, len(self._rates) - 1)

    def _cum_in_period(self, p: float) -> float:
        i = self._piece(p)
        return self._cum[i] + self._rates[i] * (p - self._edges[i])

    def _bits_until(self, tau: float) -> float:
        """Cumulative bits from trace time 0 to tau."""
        if self.end == "loop":
            k, p = self._lap(tau)
            return k * self.total + self._cum_in_period(p)
        if tau <= self.period_s:
            return self._cum_in_period(tau)
        return self.total + (self.rates[-1] * (tau - self.period_s) if self.end == "hold" else 0.0)

    def _first_reaching(self, y: float) -> float:
        """Smallest trace time in [0, period] with cumulative bits >= y, for 0 < y <= total."""
        j = max(bisect_left(self._cum, y), 1)
        return self._edges[j - 1] + (y - self._cum[j - 1]) / self._rates[j - 1]

    def rate_at(self, t: float) -> float:
        if not self._lo <= t < self._hi:
            self._remember(t)
        return self._rate

    def next_change(self, t: float) -> float:
        if not self._lo <= t < self._hi:
            self._remember(t)
        return self._change

    def _remember(self, t: float) -> None:
        """Look up the rate and next change at t and keep them for the piece around t: a shared link
        asks every flow's rate and next change at every event, hundreds of times per trace step. Both
        answers are step functions of t that never decrease within a lap (float rounding is monotone),
        so where they agree at t and at a time shortly before the change, they hold everywhere between:
        the cache gives the very floats the lookup would. Where they do not (in the last nanoseconds
        before a change round-off can move the rate's step a few ulps away from the computed change),
        the answers are kept for t alone."""
        index, change = self._locate(t)
        if not math.isfinite(change):
            hi = math.inf  # past the end of a held or stopped trace: one rate forever
        else:
            last = change - 1e-9 * max(1.0, abs(change) + abs(self.offset_s))
            agree = last >= t and self._locate(last) == (index, change)
            hi = math.nextafter(last if agree else t, math.inf)
        self._lo, self._hi, self._change = t, hi, change
        self._rate = self._rates[index] if index >= 0 else 0.0

    def _locate(self, t: float) -> tuple[int, float]:
        """(index of the rate in force at t, -1 for the zero after a stopped trace; the next change),
        from one split of the trace time, so that the rate and the change always belong to one piece."""
        tau = t + self.offset_s
        after_end = (len(self._rates) - 1 if self.end == "hold" else -1), math.inf
        if self.end != "loop" and tau >= self.period_s:
            return after_end
        k, p = self._lap(tau) if self.end == "loop" else (0, tau)
        base = k * self.period_s
        i = min(bisect_right(self._edges, p), len(self._edges) - 1)
        change = base + self._edges[i] - self.offset_s
        while change <= t:  # round-off put t on the edge itself: t is in the piece that starts there
            i += 1
            if i == len(self._edges):
                if self.end != "loop":
                    return after_end
                base, i = base + self.period_s, 1
            change = base + self._edges[i] - self.offset_s
        return i - 1, change

    def bits_between(self, t0: float, t1: float) -> float:
        if t1 <= t0:
            return 0.0
        return self._bits_until(t1 + self.offset_s) - self._bits_until(t0 + self.offset_s)

    @property
    def constant(self) -> bool:
        """One rate forever (a flat trace that loops or holds)."""
        return len(self.rates) == 1 and self.end in ("loop", "hold")

    def finish_time(self, t0: float, bits: float) -> float:
        if bits <= 0:
            return t0
        rate, change = self.rate_at(t0), self.next_change(t0)
        if rate > 0 and bits <= rate * (change - t0):  # within the current piece: no cumulative round-off
            return t0 + bits / rate
        target = self._bits_until(t0 + self.offset_s) + bits
        if self.end == "loop":
            if self.total <= 0:
                return math.inf
            k = math.floor(target / self.total)
            rem = target - k * self.total
            if rem <= 0:  # exactly a whole number of periods: reached inside the previous one
                k, rem = k - 1, self.total
            tau = k * self.period_s + self._first_reaching(rem)
        elif target <= self.total:
            tau = self._first_reaching(target) if target > 0 else 0.0
        elif self.end == "hold" and self.rates[-1] > 0:
            tau = self.period_s + (target - self.total) / self.rates[-1]
        else:
            return math.inf
        return max(tau - self.offset_s, t0)


@dataclass(frozen=True)
class DownIntervals:
    """Sorted, disjoint [start, end) intervals during which a capacity is zero, with their cause.
    lose_in_flight: a transfer on the wire when one starts is lost (else it pauses and resumes)."""

    starts: np.ndarray
    ends: np.ndarray
    cause: str
    lose_in_flight: bool = False

    def containing(self, t: float) -> int:
        """Index of the interval containing t, or -1."""
        i = int(np.searchsorted(self.starts, t, side="right")) - 1
        return i if i >= 0 and t < self.ends[i] else -1

    def up_at(self, t: float) -> float:
        """t when outside every interval, else the end of the interval containing t."""
        i = self.containing(t)
        return t if i < 0 else float(self.ends[i])

    def covers(self, times: np.ndarray) -> np.ndarray:
        """Boolean mask: which of `times` fall inside an interval."""
        i = np.searchsorted(self.starts, times, side="right") - 1
        return (i >= 0) & (times < self.ends[np.maximum(i, 0)]) if len(self.starts) else np.zeros(len(times), bool)

    def next_start(self, t: float) -> float:
        """The first interval start strictly after t."""
        i = int(np.searchsorted(self.starts, t, side="right"))
        return float(self.starts[i]) if i < len(self.starts) else math.inf

    def down_time(self, t0: float, t1: float) -> float:
        """Seconds of [t0, t1) covered by the intervals."""
        if not len(self.starts):
            return 0.0
        return float(np.clip(np.minimum(self.ends, t1) - np.maximum(self.starts, t0), 0, None).sum())


def merge(intervals: list[DownIntervals]) -> tuple[np.ndarray, np.ndarray]:
    """The union of several interval sets as sorted, disjoint (starts, ends)."""
    if not intervals:
        return np.zeros(0), np.zeros(0)
    s = np.concatenate([iv.starts for iv in intervals])
    e = np.concatenate([iv.ends for iv in intervals])
    order = np.argsort(s, kind="stable")
    starts: list[float] = []
    ends: list[float] = []
    for a, b in zip(s[order], e[order], strict=True):
        if starts and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return np.array(starts, np.float64), np.array(ends, np.float64)


class Gated:
    """`inner` capacity, zero while any of `down` is in force."""

    def __init__(self, inner: Capacity, down: list[DownIntervals]):
        self.inner, self.down = inner, [d for d in down if len(d.starts)]
        self.union = DownIntervals(*merge(self.down), cause="any")

    def up_at(self, t: float) -> float:
        """t if the capacity is up at t, else the end of the down interval containing t."""
        return self.union.up_at(t)

    def rate_at(self, t: float) -> float:
        return 0.0 if self.union.containing(t) >= 0 else self.inner.rate_at(t)

    def next_change(self, t: float) -> float:
        i = self.union.containing(t)
        boundary = float(self.union.ends[i]) if i >= 0 else self.union.next_start(t)
        return min(boundary, self.inner.next_change(t))

    def bits_between(self, t0: float, t1: float) -> float:
        total, t = 0.0, t0
        while t < t1:
            t = self.up_at(t)
            if t >= t1:
                break
            stop = min(self.union.next_start(t), t1)
            total += self.inner.bits_between(t, stop)
            t = stop
        return total

    def finish_time(self, t0: float, bits: float) -> float:
        """Exact, walking across the down intervals crossed (paused transfers resume)."""
        t, left = t0, bits
        while True:
            t = self.up_at(t)
            down = self.union.next_start(t)
            done = self.inner.finish_time(t, left)
            if done <= down:
                return done
            left -= self.inner.bits_between(t, down)
            t = down

    def next_loss(self, t0: float, t1: float) -> tuple[float, str] | None:
        """The first start of a lose-in-flight interval in (t0, t1), with its cause."""
        first: tuple[float, str] | None = None
        for d in self.down:
            if d.lose_in_flight:
                s = d.next_start(t0)
                if s < t1 and (first is None or s < first[0]):
                    first = (s, d.cause)
        return first

