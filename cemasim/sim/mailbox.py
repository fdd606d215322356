"""A device's inbox: messages the downlink delivers, handed one at a time to the device.

It stands in for a `simpy.Store` read by a process that loops `msg = yield store.get(); handle(msg)`,
event for event: a put schedules the Store's put event; when that event is processed, a waiting
consumer's get is triggered (a second event); when that is processed, the message is handled, and a
message that arrived meanwhile is handed over at once (the consumer's next get finds it). The same
events are scheduled at the same moments, so runs are unchanged; what a device saves is the Store, the
process and its pending get (1.1 kB, a million devices 1.1 GB). Only the process's start at time 0 is
gone from the run's event count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import simpy


class Mailbox:
    __slots__ = ("env", "handler", "items", "waiting")

    def __init__(self, env: simpy.Environment, handler: Callable[[Any], None] | None = None):
        self.env, self.handler = env, handler
        self.items: deque[Any] | None = None  # delivered, not yet handed over (made when needed)
        self.waiting = True  # the consumer waits for a message (it is not handling one)

    def put(self, msg: Any) -> None:
        if self.items is None:
            self.items = deque()
        self.items.append(msg)
        put = self.env.event()  # the Store's put event: it triggers the waiting get when processed
        put.callbacks.append(self._trigger_get)
        put.succeed()

    def _trigger_get(self, _event: simpy.Event) -> None:
        if self.waiting and self.items:
            self.waiting = False
            self._hand_over(self.items.popleft())

    def _hand_over(self, msg: Any) -> None:
        get = self.env.event()
        get.callbacks.append(self._handle)
        get.succeed(msg)

    def _handle(self, get: simpy.Event) -> None:
        assert self.handler is not None, "a mailbox is given its handler before the run"
        self.handler(get.value)
        if self.items:  # the consumer's next get finds a message at once
            self._hand_over(self.items.popleft())
        else:
            self.waiting, self.items = True, None
