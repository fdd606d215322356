"""A point-to-point link: a bounded FIFO queue, serialisation at the link rate, then one-way
propagation latency. One message is on the wire at a time; propagation is pipelined.

Times: seconds. Rates: Mbit/s (10^6 bit/s). bandwidth None = infinite (zero serialisation).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import simpy

from cemasim.sim.messages import Message


class Link:
    def __init__(self, env: simpy.Environment, bandwidth_mbps: float | None, latency_ms: float,
                 deliver: simpy.Store, capacity: int | None = None, drop_policy: str = "tail",
                 on_drop: Callable[[Message], None] | None = None):
        self.env, self.deliver = env, deliver
        self.bits_per_s = None if bandwidth_mbps is None else bandwidth_mbps * 1e6
        self.latency_s = latency_ms / 1e3
        self.capacity, self.drop_policy = capacity, drop_policy
        self.on_drop = on_drop
        self.queue: deque[Message] = deque()
        self.queued_droppable = 0
        self.bytes_sent = 0
        self._idle = True  # nothing on the wire: send() puts a message there at once
        self._starting: Message | None = None
        self._wake: simpy.Event = env.event()
        env.process(self.run())

    def tx_time_s(self, size_bytes: int) -> float:
        return 0.0 if self.bits_per_s is None else size_bytes * 8 / self.bits_per_s

    def send(self, msg: Message) -> bool:
        """Enqueue `msg` (onto the wire at once if the link is idle); with a full queue, drop per
        the policy. Returns False if `msg` itself was dropped. `capacity` counts waiting uploads."""
        msg.enqueued_s = self.env.now
        if self._idle:
            self._idle, self._starting = False, msg
            self._wake.succeed()
            return True
        if msg.droppable and self.capacity is not None and self.queued_droppable >= self.capacity:
            if self.drop_policy == "tail":
                self._drop(msg, "queue_full")
                return False
            self._drop_oldest()
        self.queued_droppable += msg.droppable
        self.queue.append(msg)
        return True

    def run(self):
        while True:
            if self._starting is not None:
                msg, self._starting = self._starting, None
            elif self.queue:
                msg = self.queue.popleft()
                self.queued_droppable -= msg.droppable
            else:
                self._idle, self._wake = True, self.env.event()
                yield self._wake
                continue
            msg.tx_start_s = self.env.now
            yield self.env.timeout(self.tx_time_s(msg.size_bytes))
            msg.tx_end_s = self.env.now
            self.bytes_sent += msg.size_bytes
            self._propagate(msg)

    def _propagate(self, msg: Message) -> None:
        if self.latency_s == 0:
            self._arrive(msg)
            return
        self.env.timeout(self.latency_s, value=msg).callbacks.append(lambda ev: self._arrive(ev.value))

    def _arrive(self, msg: Message) -> None:
        msg.received_s = self.env.now
        self.deliver.put(msg)

    def _drop_oldest(self) -> None:
        for i, queued in enumerate(self.queue):
            if queued.droppable:
                del self.queue[i]
                self.queued_droppable -= 1
                self._drop(queued, "queue_full")
                return

    def _drop(self, msg: Message, cause: str) -> None:
        msg.dropped = cause
        if self.on_drop is not None:
            self.on_drop(msg)
