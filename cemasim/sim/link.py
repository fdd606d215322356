"""A device's link in one direction: a bounded FIFO queue, then one message at a time on the wire,
then one-way propagation latency (pipelined).

    queue --(access link up?)--> wire: own capacity alone (exact), or a flow across shared
    resources (max-min fair) --(lost? retry after a timeout)--> latency --> receiver (on?) --> deliver

Capacities may follow traces and be down (link outages, device off): a transfer in flight then
pauses and resumes, or is lost, as each down interval says. Every drop is recorded with its cause:
queue_full, budget (device), loss (retries exhausted), link_outage, device_off, expired (an upload
that waited in the queue longer than `expire_s`, the staleness policy's bound).
Times: seconds. Rates: Mbit/s (10^6 bit/s). bandwidth None = infinite.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import simpy

from cemasim.net.capacity import Capacity, DownIntervals, Gated
from cemasim.net.loss import LossModel
from cemasim.sim.inbox import Inbox
from cemasim.sim.mailbox import Mailbox
from cemasim.sim.messages import Message
from cemasim.sim.network import FluidNetwork, Resource


@dataclass
class Retransmission:
    """Per-attempt loss and the sender's recovery: retry `retry_s` after a lost attempt ends."""

    loss: LossModel
    max_retries: int = 5
    retry_s: float = 0.2


class Link:
    def __init__(self, env: simpy.Environment, access: Capacity, latency_s: float | Callable[[float], float],
                 deliver: simpy.Store | Inbox | Mailbox, capacity: int | None = None, drop_policy: str = "tail",
                 on_drop: Callable[[Message], None] | None = None, *, shared: Sequence[Resource] = (),
                 network: FluidNetwork | None = None, retransmission: Retransmission | None = None,
                 receiver: DownIntervals | None = None, expire_s: float | None = None,
                 packet_header_bytes: int = 0, mss_bytes: int = 1448):
        """`access`: the link's own capacity (ConstantRate(bits_per_s) for the classic pipe); `latency_s`:
        one-way latency in seconds, or a function of the time a message leaves the wire; `shared`:
        resources of `network` crossed after the own link; `receiver`: when the receiving device is off;
        `packet_header_bytes`: what each packet of `mss_bytes` payload adds on the wire."""
        self.env, self.deliver = env, deliver
        self.access = access
        # a fixed latency is kept as a number: a closure a link is 200 bytes, a million devices have two links
        self._latency_at: Callable[[float], float] | None = latency_s if callable(latency_s) else None
        self._latency = 0.0 if callable(latency_s) else latency_s
        self.shared, self.network = tuple(shared), network
        self._own = Resource("access", self.access) if self.shared else None
        self.retransmission, self.receiver = retransmission, receiver
        self.capacity, self.drop_policy, self.expire_s = capacity, drop_policy, expire_s
        self.on_drop = on_drop
        self.packet_header_bytes, self.mss_bytes = packet_header_bytes, mss_bytes
        self.queue: deque[Message] | None = None  # made at the first message that waits (an empty deque is 600 bytes)
        self.queued_droppable = 0
        self.bytes_sent = 0  # bytes of messages that made it across (one per message)
        self.backlog_bytes = 0  # bytes waiting or on the wire: what a new message queues behind
        self._idle = True  # nothing on the wire: send() puts a message there at once
        self._starting: Message | None = None
        # the process starts with the first message: a link that never carries one (a downlink without
        # refreshes) costs no process (0.6 kB a link)
        self._wake: simpy.Event | None = None

    def wire_bits(self, size_bytes: int) -> int:
        """Bits a message of `size_bytes` puts on the wire: its bytes and its packets' headers."""
        packets = -(-size_bytes // self.mss_bytes) if self.packet_header_bytes else 0
        return (size_bytes + packets * self.packet_header_bytes) * 8

    def tx_time_s(self, size_bytes: int) -> float:
        """Time to serialise a message of `size_bytes` starting now, alone on this link."""
        return self.access.finish_time(self.env.now, self.wire_bits(size_bytes)) - self.env.now

    def send(self, msg: Message) -> bool:
        """Enqueue `msg` (onto the wire at once if the link is idle); with a full queue, drop per
        the policy. Returns False if `msg` itself was dropped. `capacity` counts waiting uploads."""
        msg.enqueued_s = self.env.now
        if self._idle:
            self._idle, self._starting = False, msg
            self.backlog_bytes += msg.size_bytes
            if self._wake is None:  # the first message
                self._wake = self.env.event()
                self._wake.succeed()
                self.env.process(self.run())
            else:
                self._wake.succeed()
            return True
        if msg.droppable and self.capacity is not None and self.queued_droppable >= self.capacity:
            if self.drop_policy == "tail":
                self._drop(msg, "queue_full")
                return False
            self._drop_oldest()
        self.queued_droppable += msg.droppable
        if self.queue is None:
            self.queue = deque()
        self.queue.append(msg)
        self.backlog_bytes += msg.size_bytes
        return True

    def run(self):
        # Started by the first message, whose wake-up is already scheduled: the process resumes with it,
        # where a process waiting since time 0 would (its start runs no further than this line)
        yield self._wake
        while True:
            if self._starting is not None:
                msg, self._starting = self._starting, None
            elif self.queue:
                msg = self.queue.popleft()
                self.queued_droppable -= msg.droppable
                if msg.droppable and self.expire_s is not None and self.env.now - msg.enqueued_s > self.expire_s:
                    self.backlog_bytes -= msg.size_bytes
                    self._drop(msg, "expired")
                    continue
            else:
                self._idle, self._wake = True, self.env.event()
                self.queue = None  # an idle link holds no deque (a million devices' uplinks, 0.6 GB)
                yield self._wake
                continue
            yield from self._carry(msg)
            self.backlog_bytes -= msg.size_bytes

    def _carry(self, msg: Message):
        """Attempts until the message is across, lost for good, or cut by a down interval."""
        while True:
            yield from self._wait_up()
            if math.isnan(msg.tx_start_s):
                msg.tx_start_s = self.env.now
            msg.attempts += 1
            ok, cause, sent_bits = yield from self._transmit(self.wire_bits(msg.size_bytes))
            msg.wire_bytes += math.ceil(sent_bits / 8)
            if not ok:
                self._drop(msg, cause)
                return
            rt = self.retransmission
            if rt is None or not rt.loss.lost():
                break
            if msg.attempts > rt.max_retries:
                self._drop(msg, "loss")
                return
            yield self.env.timeout(rt.retry_s)
        msg.tx_end_s = self.env.now
        self.bytes_sent += msg.size_bytes
        self._propagate(msg)

    def _wait_up(self):
        """Messages wait in the queue while the own link is down."""
        if isinstance(self.access, Gated):
            up = self.access.up_at(self.env.now)
            if up > self.env.now:
                yield self.env.timeout(up - self.env.now)

    def _transmit(self, bits: int):
        """(ok, cause, bits put on the wire) of one attempt."""
        now = self.env.now
        if self._own is not None:  # shared resources: a fluid flow through the network
            assert self.network is not None, "a link with shared resources is built with their network"
            flow = self.network.transfer([self._own, *self.shared], bits)
            yield flow.done
            return flow.ok, flow.cause, flow.sent_bits
        finish = self.access.finish_time(now, bits)
        cut = self.access.next_loss(now, finish) if isinstance(self.access, Gated) else None
        if cut is not None:
            yield self.env.timeout(cut[0] - now)
            return False, cut[1], self.access.bits_between(now, cut[0])
        if math.isinf(finish):
            yield self.env.event()  # the capacity never comes back (a stopped trace): in flight for good
        yield self.env.timeout(finish - now)
        return True, "", bits

    def _propagate(self, msg: Message) -> None:
        latency = self._latency if self._latency_at is None else self._latency_at(self.env.now)
        if latency == 0:
            self._arrive(msg)
            return
        self.env.timeout(latency, value=msg).callbacks.append(lambda ev: self._arrive(ev.value))

    def _arrive(self, msg: Message) -> None:
        if self.receiver is not None:
            up = self.receiver.up_at(self.env.now)
            if up > self.env.now:  # the receiving device is off: lost, or delivered when it is back
                if self.receiver.lose_in_flight:
                    self._drop(msg, self.receiver.cause)
                    return
                self.env.timeout(up - self.env.now, value=msg).callbacks.append(lambda ev: self._arrive(ev.value))
                return
        msg.received_s = self.env.now
        self.deliver.put(msg)

    def _drop_oldest(self) -> None:
        if self.queue is None:
            return
        for i, queued in enumerate(self.queue):
            if queued.droppable:
                del self.queue[i]
                self.queued_droppable -= 1
                self.backlog_bytes -= queued.size_bytes
                self._drop(queued, "queue_full")
                return

    def _drop(self, msg: Message, cause: str) -> None:
        msg.dropped = cause
        msg.release()
        if self.on_drop is not None:
            self.on_drop(msg)
