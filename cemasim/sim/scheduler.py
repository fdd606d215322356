"""Cloud GPU pool whose waiting jobs are ordered by a policy evaluated when a GPU frees.

Non-preemptive and work-conserving: a job starts at once if a GPU is free, otherwise it waits and
release() hands the freed GPU to the job the policy picks *now* (priorities are dynamic, not fixed
at request time). Ties always go to the earliest request, so every policy is deterministic.

    fifo         earliest request first
    round_robin  the first device after the one served last (increasing id, wrapping) with a waiting job
    staleness    the device with the largest staleness(device) (seconds since its params were refreshed)
    backlog      the device with the largest backlog(device) (uploads waiting for it at the cloud)

Within a device jobs are always FIFO.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import deque
from collections.abc import Callable
from itertools import count

import simpy

POLICIES = ("fifo", "round_robin", "staleness", "backlog")

_Job = tuple[int, int, simpy.Event]  # (request sequence number, device, grant event)


class GpuPool:
    def __init__(self, env: simpy.Environment, gpus: int, policy: str = "fifo",
                 staleness: Callable[[int], float] | None = None, backlog: Callable[[int], int] | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown GPU scheduling policy {policy!r}; choose one of {', '.join(POLICIES)}")
        if gpus < 1:
            raise ValueError(f"gpus must be >= 1, got {gpus}")
        score = {"staleness": staleness, "backlog": backlog}.get(policy)
        if policy in ("staleness", "backlog") and score is None:
            raise ValueError(f"policy {policy!r} needs a {policy}(device) callable")
        self.env, self.gpus, self.policy = env, gpus, policy
        self._score = score
        self._busy, self._waiting = 0, 0
        self._seq = count()
        # fifo: one global queue, O(1) per operation
        self._fifo: deque[_Job] = deque()
        # other policies: per-device FIFO queues; a device is a key only while it has waiting jobs
        self._queues: dict[int, deque[_Job]] = {}
        # round_robin: sorted ids of devices with waiting jobs (bisect: O(log n) search, O(n) memmove insert)
        self._devices: list[int] = []
        self._last: int | None = None  # device served last (round_robin)

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
        job = (next(self._seq), device, event)
        self._waiting += 1
        if self.policy == "fifo":
            self._fifo.append(job)
        elif device in self._queues:
            self._queues[device].append(job)
        else:
            self._queues[device] = deque([job])
            if self.policy == "round_robin":
                insort(self._devices, device)
        return event

    def release(self) -> None:
        """The job holding a GPU finished: hand the GPU to the next waiting job per the policy."""
        if self._busy == 0:
            raise RuntimeError("release() without a granted job")
        if not self._waiting:
            self._busy -= 1
            return
        self._waiting -= 1
        if self.policy == "fifo":
            _, device, event = self._fifo.popleft()
        else:
            device = self._next_device()
            queue = self._queues[device]
            _, _, event = queue.popleft()
            if not queue:
                self._drop_device(device)
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

    def _next_device(self) -> int:
        if self.policy == "round_robin":
            i = 0 if self._last is None else bisect_right(self._devices, self._last)
            return self._devices[i if i < len(self._devices) else 0]
        # staleness/backlog: scores change over time, so scan the devices with waiting jobs,
        # O(waiting devices) per grant; the key's second part breaks ties by request order
        score = self._score
        assert score is not None  # staleness and backlog policies are built with a score
        return min(self._queues.items(), key=lambda item: (-score(item[0]), item[1][0][0]))[0]

    def _drop_device(self, device: int) -> None:
        del self._queues[device]
        if self.policy == "round_robin":
            del self._devices[bisect_right(self._devices, device) - 1]

    def _cancel(self, device: int, event: simpy.Event) -> None:
        """Remove a job that was never granted (O(its queue); only on interrupts)."""
        queue = self._fifo if self.policy == "fifo" else self._queues[device]
        for job in queue:
            if job[2] is event:
                queue.remove(job)
                break
        self._waiting -= 1
        if self.policy != "fifo" and not queue:
            self._drop_device(device)
