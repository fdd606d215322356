"""Cloud GPU pool whose waiting jobs are ordered by a scheduling policy (cemasim/scheduling.py)
asked when a GPU frees.

Non-preemptive and work-conserving: a job starts at once if a GPU is free, otherwise it waits and
release() hands the freed GPU to the job the policy picks *now* (priorities are dynamic, not fixed
at request time).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

import simpy

from cemasim.errors import ConfigError
from cemasim.scheduling import SCHEDULERS, Scores


class GpuPool:
    def __init__(self, env: simpy.Environment, gpus: int, policy: str = "fifo",
                 staleness: Callable[[int], float] | None = None, backlog: Callable[[int], int] | None = None):
        try:
            build = SCHEDULERS.get(policy)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if gpus < 1:
            raise ValueError(f"gpus must be >= 1, got {gpus}")
        self.env, self.gpus, self.policy = env, gpus, policy
        self._waiting_jobs = build(Scores(staleness, backlog))
        self._busy, self._waiting = 0, 0
        self._seq = count()
        self._last: int | None = None  # device served last

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return self._waiting

    def request(self, device: int) -> simpy.Event:
        """An event that succeeds when a GPU is granted to this job; the holder must call release()."""
        event = self.env.event()
        if self._busy < self.gpus:  # work-conserving: a free GPU implies nothing is waiting
            self._busy += 1
            self._grant(device, event)
            return event
        self._waiting += 1
        self._waiting_jobs.push((next(self._seq), device, event))
        return event

    def release(self) -> None:
        """The job holding a GPU finished: hand the GPU to the next waiting job per the policy."""
        if self._busy == 0:
            raise RuntimeError("release() without a granted job")
        if not self._waiting:
            self._busy -= 1
            return
        self._waiting -= 1
        _, device, event = self._waiting_jobs.pop(self._last)
        self._grant(device, event)

    def job(self, device: int, duration_s: float | Callable[[], float],
            settle: Callable[[], simpy.Event] | None = None):
        """SimPy generator: wait for a GPU, hold it `duration_s`, release it. Returns (requested_s, start_s, end_s).
        A callable duration is evaluated when the GPU is granted (the job decides its work then), after
        `settle()` fires when given (every other event due at that instant has run).
        Like `with resource.request()`: an interrupted job gives back its GPU or its place in the queue."""
        requested = self.env.now
        event = self.request(device)
        try:
            yield event
            start = self.env.now
            if settle is not None:
                yield settle()
            yield self.env.timeout(duration_s() if callable(duration_s) else duration_s)
        finally:
            if event.triggered:
                self.release()
            else:
                self._cancel(device, event)
        return requested, start, self.env.now

    def _grant(self, device: int, event: simpy.Event) -> None:
        self._last = device
        event.succeed()

    def _cancel(self, device: int, event: simpy.Event) -> None:
        """Remove a job that was never granted (O(its queue); only on interrupts)."""
        self._waiting_jobs.remove(device, event)
        self._waiting -= 1
