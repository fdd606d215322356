"""GPU scheduling policies: which waiting cloud job runs next, by name (`cloud.scheduler`; `cemasim
list schedulers`). Pure bookkeeping: the SimPy pool (sim/scheduler.py) pushes a job that finds every
GPU busy and pops one when a GPU frees, so a policy's priorities are read *then* (dynamic, not fixed
at request time). Within a device jobs are always FIFO; ties go to the earliest request, so every
policy is deterministic.

    fifo         earliest request first
    round_robin  the first device after the one served last (increasing id, wrapping) with a waiting job
    staleness    the device with the largest staleness(device) (seconds since its params were refreshed)
    backlog      the device with the largest backlog(device) (uploads waiting for it at the cloud)

A policy is a factory (scores) -> WaitingJobs; a plugin registers more (docs/extending.md).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cemasim.registry import Registry

Job = tuple[int, int, Any]  # (request sequence number, device, the pool's grant token)


@dataclass(frozen=True)
class Scores:
    """What the cloud can tell a policy about a device when a GPU frees."""

    staleness: Callable[[int], float] | None = None  # seconds since the device's parameters were refreshed
    backlog: Callable[[int], int] | None = None  # uploads waiting for the device at the cloud


class WaitingJobs(Protocol):
    def push(self, job: Job) -> None: ...
    def pop(self, last: int | None) -> Job: ...  # the next job to run; `last`: the device served last
    def remove(self, device: int, token: Any) -> None: ...  # a job that will never run (interrupted)


class Fifo:
    """One global queue, O(1) per operation."""

    def __init__(self, scores: Scores):
        self._jobs: deque[Job] = deque()

    def push(self, job: Job) -> None:
        self._jobs.append(job)

    def pop(self, last: int | None) -> Job:
        return self._jobs.popleft()

    def remove(self, device: int, token: Any) -> None:
        self._jobs.remove(next(job for job in self._jobs if job[2] is token))


class PerDevice:
    """Per-device FIFO queues; a device is a key only while it has waiting jobs. Subclasses choose
    the device."""

    def __init__(self, scores: Scores):
        self._queues: dict[int, deque[Job]] = {}

    def push(self, job: Job) -> None:
        device = job[1]
        if device in self._queues:
            self._queues[device].append(job)
        else:
            self._queues[device] = deque([job])
            self._added(device)

    def pop(self, last: int | None) -> Job:
        device = self._choose(last)
        queue = self._queues[device]
        job = queue.popleft()
        if not queue:
            self._drop(device)
        return job

    def remove(self, device: int, token: Any) -> None:
        queue = self._queues[device]
        queue.remove(next(job for job in queue if job[2] is token))
        if not queue:
            self._drop(device)

    def _choose(self, last: int | None) -> int:
        raise NotImplementedError

    def _added(self, device: int) -> None:
        pass

    def _drop(self, device: int) -> None:
        del self._queues[device]


class RoundRobin(PerDevice):
    """Sorted ids of devices with waiting jobs (bisect: O(log n) search, O(n) memmove insert)."""

    def __init__(self, scores: Scores):
        super().__init__(scores)
        self._devices: list[int] = []

    def _choose(self, last: int | None) -> int:
        i = 0 if last is None else bisect_right(self._devices, last)
        return self._devices[i if i < len(self._devices) else 0]

    def _added(self, device: int) -> None:
        insort(self._devices, device)

    def _drop(self, device: int) -> None:
        super()._drop(device)
        del self._devices[bisect_right(self._devices, device) - 1]


class Largest(PerDevice):
    """The device with the largest score. Scores change over time, so each pop scans the devices with
    waiting jobs, O(waiting devices); the key's second part breaks ties by request order."""

    def __init__(self, score: Callable[[int], float]):
        super().__init__(Scores())
        self._score = score

    def _choose(self, last: int | None) -> int:
        score = self._score
        return min(self._queues.items(), key=lambda item: (-score(item[0]), item[1][0][0]))[0]


def largest(name: str) -> Callable[[Scores], Largest]:
    def build(scores: Scores) -> Largest:
        score = getattr(scores, name)
        if score is None:
            raise ValueError(f"policy {name!r} needs a {name}(device) callable")
        return Largest(score)

    return build


SCHEDULERS: Registry[Callable[[Scores], WaitingJobs]] = Registry("GPU scheduling policy")
SCHEDULERS.add("fifo", Fifo, "by GPU request: a device's uploads queued behind one slow step wait")
SCHEDULERS.add("round_robin", RoundRobin, "the next device after the one served last")
SCHEDULERS.add("staleness", largest("staleness"), "the device whose parameters are oldest")
SCHEDULERS.add("backlog", largest("backlog"), "the device with the most uploads waiting")
