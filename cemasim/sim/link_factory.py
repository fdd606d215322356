"""Build each device's uplink and downlink from the scenario its class sees: own capacity (constant
or trace, at a per-device phase), outages, the device's off intervals, loss with retransmission,
and the shared resources behind it (its class's shared segment, the cloud's ingress or egress).
"""

from __future__ import annotations

import math

import simpy

from cemasim.net.capacity import ConstantRate, DownIntervals, Gated, TraceRate
from cemasim.net.intervals import AVAILABILITY, OUTAGES
from cemasim.net.loss import LOSS_MODELS, loss_model
from cemasim.net.traces import cached_trace
from cemasim.rng import numpy_rng
from cemasim.sim.link import Link, Retransmission
from cemasim.sim.network import FluidNetwork, Resource

DEVICE_OFF, LINK_OUTAGE = "device_off", "link_outage"


def off_intervals(sc, seed: int, device: int, horizon_s: float) -> DownIntervals:
    """When `device` is off (availability section of its scenario)."""
    av = sc.availability
    rng = numpy_rng(seed, "availability", device) if AVAILABILITY.meta(av.process).get("random") else None
    return AVAILABILITY.get(av.process)(av, rng, device, horizon_s, DEVICE_OFF, av.in_flight == "lost")


class LinkFactory:
    """Shared pieces of the network (fluid network, shared segments, cloud ingress/egress) and the
    per-device construction."""

    def __init__(self, env: simpy.Environment, sc, horizon_s: float):
        self.env, self.seed, self.horizon_s = env, sc.seed, horizon_s
        self.network = FluidNetwork(env)
        self.cloud_side = {"uplink": self._resource("cloud_ingress", sc.cloud.ingress_mbps),
                           "downlink": self._resource("cloud_egress", sc.cloud.egress_mbps)}
        self.segments: dict[tuple[str, str, int], Resource] = {}

    @staticmethod
    def _resource(name: str, mbps: float | None) -> Resource | None:
        return None if mbps is None else Resource(name, ConstantRate(mbps * 1e6))

    def build(self, direction: str, sc, device: int, position: int, device_class: str, off: DownIntervals,
              deliver: simpy.Store, queue_capacity: int | None = None, drop_policy: str = "tail",
              expire_s: float | None = None) -> Link:
        """`position`: the device's index within its class (shared-segment grouping); `expire_s`: uploads
        that waited longer are discarded (the staleness policy)."""
        spec = sc[direction]
        # the link's random parts draw from one stream; a link without any needs none (building one
        # per link costs a hash and a seeding, the largest share of building a big fleet)
        random = (spec.trace is not None and spec.trace_phase == "random") \
            or bool(OUTAGES.meta(spec.outages.process).get("random")) or LOSS_MODELS.get(spec.loss.model) is not None
        rng = numpy_rng(self.seed, "link", direction, device) if random else None
        access, latency_s = self._capacity(spec, rng)
        # an off device's radio is off too: its transfers pause or are lost like in an outage
        down = [d for d in (self._outages(spec, device, rng), off) if len(d.starts)]
        if down:
            access = Gated(access, down)
        shared = self._shared(direction, spec, position, device_class)
        return Link(self.env, None, spec.latency_ms, deliver, queue_capacity, drop_policy, access=access,
                    latency_s=latency_s, shared=shared, network=self.network if shared else None,
                    retransmission=self._retransmission(spec, rng),
                    receiver=off if direction == "downlink" and len(off.starts) else None, expire_s=expire_s,
                    packet_header_bytes=spec.packet_header_bytes, mss_bytes=spec.mss_bytes)

    def _capacity(self, spec, rng):
        if spec.trace is None:
            rate = math.inf if spec.bandwidth_mbps is None else spec.bandwidth_mbps * 1e6
            return ConstantRate(rate), None
        trace = cached_trace(spec.trace, spec.trace_format, spec.trace_bin_ms)
        offset = float(rng.uniform(0, trace.period_s)) if spec.trace_phase == "random" else 0.0
        rate = TraceRate(trace.times_s, trace.mbps * 1e6, trace.period_s, spec.trace_end, offset)
        if rate.constant:  # a flat trace is exactly the constant link
            rate = ConstantRate(float(rate.rates[0]))
        if trace.latency_ms is None:
            return rate, None
        end = "hold" if spec.trace_end == "stop" else spec.trace_end  # a stopped link keeps its last latency
        latency = TraceRate(trace.times_s, trace.latency_ms / 1e3, trace.period_s, end, offset)
        return rate, latency.rate_at

    def _outages(self, spec, device: int, rng) -> DownIntervals:
        out = spec.outages
        return OUTAGES.get(out.process)(out, rng, device, self.horizon_s, LINK_OUTAGE, out.in_flight == "lost")

    def _shared(self, direction: str, spec, position: int, device_class: str) -> list[Resource]:
        shared = []
        if spec.shared_mbps is not None:
            group = position // spec.group_size if spec.group_size else 0
            key = (device_class, direction, group)
            if key not in self.segments:
                self.segments[key] = Resource(f"{device_class}/{direction}/{group}",
                                              ConstantRate(spec.shared_mbps * 1e6),
                                              fifo=spec.shared_discipline == "fifo")
            shared.append(self.segments[key])
        cloud_side = self.cloud_side[direction]
        if cloud_side is not None:
            shared.append(cloud_side)
        return shared

    @staticmethod
    def _retransmission(spec, rng) -> Retransmission | None:
        loss = spec.loss
        process = loss_model(loss, rng)
        if process is None:
            return None
        retry_ms = loss.retry_timeout_ms if loss.retry_timeout_ms is not None else 2 * spec.latency_ms + 200.0
        return Retransmission(process, loss.max_retries, retry_ms / 1e3)
