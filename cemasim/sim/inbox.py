"""A cloud worker's inbox: what the uplink delivers, read by the worker's process one `get` at a time.

It schedules the events an unbounded `simpy.Store` schedules for one reading process, event for event:
a put appends the message and schedules its put event at once; when that event is processed, a get
the process waits on is given the oldest message (scheduled then); a get made while messages wait
is given the oldest at once. So runs and their event counts are unchanged. What it leaves out is the
Store's machinery for many producers and consumers (put and get queues, bound event classes, the
queue loops): 737 bytes a worker (the Store and its pending get; tracemalloc) become 256, and a message
costs two plain events instead of a StorePut and a StoreGet. (A run's peak resident memory and time
did not move measurably at 100,000 devices: benchmarks/README.md.)
"""

from __future__ import annotations

from typing import Any

import simpy


class Inbox:
    __slots__ = ("_getter", "env", "items")

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.items: list[Any] = []  # delivered, not yet read (a list, as a Store's)
        self._getter: simpy.Event | None = None  # the get the reading process waits on

    def put(self, item: Any) -> simpy.Event:
        self.items.append(item)
        put = simpy.Event(self.env)
        put.callbacks.append(self._trigger_get)
        put.succeed()
        return put

    def get(self) -> simpy.Event:
        if self._getter is not None:
            raise RuntimeError("an Inbox has one reader, which waits on one get at a time")
        get = simpy.Event(self.env)
        if self.items:
            get.succeed(self.items.pop(0))
        else:
            self._getter = get
        return get

    def _trigger_get(self, _put: simpy.Event) -> None:
        if self._getter is not None and self.items:
            get, self._getter = self._getter, None
            get.succeed(self.items.pop(0))
