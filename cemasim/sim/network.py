"""Shared capacity: transfers crossing common resources (an access point, a cell, the cloud's
ingress) share them max-min fairly, as fluid flows, or first come first served (fifo resources).

Each flow crosses a path of resources; rates come from progressive filling (every flow's rate
is limited by its most contended resource, and no flow can gain without a slower one losing).
Rates are recomputed whenever a flow starts or ends and whenever a capacity on a path changes
(trace steps, outages), so a shared link follows its traces piece by piece. With one resource
and equal flows this is egalitarian processor sharing (M/M/1-PS under Poisson arrivals).
"""

from __future__ import annotations

import heapq
import itertools
import math

import simpy

from cemasim.net.capacity import Capacity, ConstantRate, Gated

_EPS_BITS = 1e-6  # a flow within this many bits of done is done (float residue of rate x time)


class Resource:
    """`fifo`: the resource serves its flows in the order they started, each taking what the rest of its
    path allows and leaving the remainder to the next (one drop-tail queue, as at a real access point's
    interface); otherwise its flows share it max-min fairly."""

    def __init__(self, name: str, capacity: Capacity, fifo: bool = False):
        self.name, self.capacity, self.fifo = name, capacity, fifo
        self.flows: set[Flow] = set()
        self.varies = not isinstance(capacity, ConstantRate)  # may change rate: its next change is an event


class Flow:
    __slots__ = ("abort_at", "abort_cause", "bits", "cause", "done", "ok", "own", "path", "rate", "remaining",
                 "seq", "shared")

    def __init__(self, env: simpy.Environment, path: list[Resource], bits: float, seq: int = 0):
        self.path, self.bits, self.remaining, self.rate, self.seq = path, bits, bits, 0.0, seq
        self.own, self.shared = path[0], tuple(path[1:])  # its access link, and what it shares beyond
        self.done, self.ok, self.cause = env.event(), True, ""
        self.abort_at, self.abort_cause = math.inf, ""

    @property
    def sent_bits(self) -> float:
        return self.bits - max(self.remaining, 0.0)


class FluidNetwork:
    def __init__(self, env: simpy.Environment):
        self.env = env
        self.flows: list[Flow] = []
        self._varying: dict[Resource, None] = {}  # resources carrying a flow whose rate may change
        self._last = 0.0
        self._generation = 0  # wake-ups scheduled before the latest change are stale
        self._started = itertools.count()  # flows' start order, for fifo resources

    def transfer(self, path: list[Resource], bits: float) -> Flow:
        """Start a flow now; `flow.done` fires when it completes (ok) or is lost (ok False, cause)."""
        self._advance()
        flow = Flow(self.env, path, bits, next(self._started))
        for r in path:
            if isinstance(r.capacity, Gated):
                loss = r.capacity.next_loss(self.env.now, math.inf)
                if loss is not None and loss[0] < flow.abort_at:
                    flow.abort_at, flow.abort_cause = loss
            r.flows.add(flow)
            if r.varies:
                self._varying[r] = None
        self.flows.append(flow)
        self._update()
        return flow

    def _advance(self) -> None:
        dt = self.env.now - self._last
        if dt > 0:
            for f in self.flows:
                if f.rate > 0:
                    f.remaining -= f.rate * dt
        self._last = self.env.now

    def _update(self) -> None:
        """Settle finished and aborted flows, reallocate, and schedule the next change. One pass over
        the flows finds the ended ones and the earliest finish or abort. A flow is finished when done,
        or so close that its finish time rounds to now (float time cannot advance by it)."""
        now = self.env.now
        while True:
            self._allocate(now)
            ended, nxt = [], math.inf
            for f in self.flows:
                rate, remaining = f.rate, f.remaining
                finish = now + remaining / rate if rate > 0 else math.inf
                if remaining <= _EPS_BITS or math.isinf(rate) or finish <= now:
                    ended.append((f, True))
                elif f.abort_at <= now:
                    ended.append((f, False))
                elif finish < nxt or f.abort_at < nxt:  # nxt = min(nxt, finish, abort) without the call
                    nxt = min(finish, f.abort_at)
            if not ended:
                break
            for f, ok in ended:
                self._end(f, ok)
        self._schedule(now, nxt)

    def _end(self, flow: Flow, ok: bool) -> None:
        self.flows.remove(flow)
        for r in flow.path:
            r.flows.discard(flow)
            if not r.flows:
                self._varying.pop(r, None)
        if ok:
            flow.remaining = 0.0
        flow.ok, flow.cause = ok, "" if ok else flow.abort_cause
        flow.done.succeed(flow)

    def _allocate(self, now: float) -> None:
        if not self._allocate_unshared(now):
            self._fill(now)

    def _allocate_unshared(self, now: float) -> bool:
        """The common case, in O(flows x path): every flow alone on its first resource (its own access
        link) and every other resource below capacity at those rates. Progressive filling then gives
        each flow its own link's rate (a shared resource's fair share stays above every remaining
        flow's own rate, so it never bottlenecks), and this sets those same rates without the heap.
        False when it does not apply; the filling then sets every flow's rate anew."""
        load: dict[Resource, float] = {}
        isfinite = math.isfinite
        for f in self.flows:
            own = f.own
            rate = own.capacity.rate_at(now)
            if len(own.flows) != 1 or not isfinite(rate):
                return False
            f.rate = rate
            for r in f.shared:
                load[r] = load.get(r, 0.0) + rate
        return all(total < r.capacity.rate_at(now) * (1 - 1e-09) for r, total in load.items())

    def _fill(self, now: float) -> None:
        """Max-min fair rates by progressive filling: repeatedly the resource with the smallest fair
        share fixes the rate of its unfixed flows. A heap of shares (stale entries skipped) makes it
        O((flows x path length) log resources) instead of a scan of every resource per step. A fifo
        resource offers all it has left to its oldest unfixed flow alone."""
        resources = {r for f in self.flows for r in f.path}
        left = {r: r.capacity.rate_at(now) for r in resources}
        count = {r: len(r.flows) for r in resources}
        version = dict.fromkeys(resources, 0)
        order = itertools.count()  # ties: first pushed first, never comparing Resources

        def share_of(r: Resource) -> float:
            return left[r] if r.fifo else left[r] / count[r]

        heap = [(share_of(r), next(order), 0, r) for r in resources]
        heapq.heapify(heap)
        frozen: set[Flow] = set()
        while len(frozen) < len(self.flows):
            share, _, ver, bottleneck = heapq.heappop(heap)
            if ver != version[bottleneck] or count[bottleneck] == 0:
                continue  # stale entry: this resource's share changed since it was pushed
            share = max(share, 0.0)
            touched = set()
            unfixed = [f for f in bottleneck.flows if f not in frozen]
            for f in [min(unfixed, key=lambda g: g.seq)] if bottleneck.fifo else unfixed:
                f.rate = share
                frozen.add(f)
                for r in f.path:
                    left[r] -= share if not math.isinf(share) else 0.0
                    count[r] -= 1
                    touched.add(r)
            for r in touched:
                version[r] += 1
                if count[r] > 0:
                    heapq.heappush(heap, (share_of(r), next(order), version[r], r))

    def _schedule(self, now: float, nxt: float) -> None:
        """Wake up at `nxt` (the earliest finish or abort) or at the next capacity change on a path."""
        self._generation += 1
        if not self.flows:
            return
        for r in self._varying:
            nxt = min(nxt, r.capacity.next_change(now))
        if math.isinf(nxt):
            return  # stalled for good (a trace that stopped): flows stay in flight
        generation = self._generation
        self.env.timeout(max(nxt - now, 0.0)).callbacks.append(lambda _ev: self._wake(generation))

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._advance()
        self._update()
