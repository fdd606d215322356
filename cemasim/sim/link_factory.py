"""Build each device's uplink and downlink from its class's link specs: own capacity (a capacity
model: constant, a trace at a per-device phase, or a plugin's), outages, the device's off intervals,
loss with retransmission, and the shared resources behind it (its class's shared segment, the
cloud's ingress or egress). Every rate arrives in bit/s and every time in seconds (assembly.py).
"""

from __future__ import annotations

import simpy

from cemasim.net.capacity import Capacity, ConstantRate, DownIntervals, Gated
from cemasim.net.capacity_models import CAPACITY_MODELS
from cemasim.net.intervals import AVAILABILITY, OUTAGES
from cemasim.net.loss import loss_model
from cemasim.rng import numpy_rng
from cemasim.sim.inbox import Inbox
from cemasim.sim.link import Link, Retransmission
from cemasim.sim.mailbox import Mailbox
from cemasim.sim.network import FluidNetwork, Resource
from cemasim.specs import CloudSpec, DownSpec, LinkSpec

DEVICE_OFF, LINK_OUTAGE = "device_off", "link_outage"


def off_intervals(availability: DownSpec, seed: int, device: int, horizon_s: float) -> DownIntervals:
    """When `device` is off (its class's availability)."""
    rng = numpy_rng(seed, "availability", device) if availability.random else None
    return AVAILABILITY.get(availability.process)(availability.params, rng, device, horizon_s, DEVICE_OFF,
                                                  availability.lose_in_flight)


class LinkFactory:
    """Shared pieces of the network (fluid network, shared segments, cloud ingress/egress) and the
    per-device construction."""

    def __init__(self, env: simpy.Environment, seed: int, horizon_s: float, cloud: CloudSpec | None):
        self.env, self.seed, self.horizon_s = env, seed, horizon_s
        self.network = FluidNetwork(env)
        ingress, egress = (cloud.ingress_bits_per_s, cloud.egress_bits_per_s) if cloud is not None else (None, None)
        self.cloud_side = {"uplink": self._resource("cloud_ingress", ingress),
                           "downlink": self._resource("cloud_egress", egress)}
        self.segments: dict[tuple[str, str, int], Resource] = {}

    @staticmethod
    def _resource(name: str, bits_per_s: float | None) -> Resource | None:
        return None if bits_per_s is None else Resource(name, ConstantRate(bits_per_s))

    def build(self, spec: LinkSpec, device: int, position: int, device_class: str, off: DownIntervals,
              deliver: simpy.Store | Inbox | Mailbox, queue_capacity: int | None = None, drop_policy: str = "tail",
              expire_s: float | None = None) -> Link:
        """`position`: the device's index within its class (shared-segment grouping); `expire_s`: uploads
        that waited longer are discarded (the staleness policy)."""
        # the link's random parts draw from one stream; a link without any needs none (building one
        # per link costs a hash and a seeding, the largest share of building a big fleet)
        rng = numpy_rng(self.seed, "link", spec.direction, device) if spec.random else None
        access: Capacity
        access, latency_s = CAPACITY_MODELS.get(spec.capacity)(spec, rng)
        # an off device's radio is off too: its transfers pause or are lost like in an outage
        down = [d for d in (self._outages(spec, device, rng), off) if len(d.starts)]
        if down:
            access = Gated(access, down)
        shared = self._shared(spec, position, device_class)
        return Link(self.env, access, latency_s if latency_s is not None else spec.latency_s, deliver, queue_capacity,
                    drop_policy, shared=shared, network=self.network if shared else None,
                    retransmission=self._retransmission(spec, rng),
                    receiver=off if spec.direction == "downlink" and len(off.starts) else None, expire_s=expire_s,
                    packet_header_bytes=spec.packet_header_bytes, mss_bytes=spec.mss_bytes)

    def _outages(self, spec: LinkSpec, device: int, rng) -> DownIntervals:
        out = spec.outages
        return OUTAGES.get(out.process)(out.params, rng, device, self.horizon_s, LINK_OUTAGE, out.lose_in_flight)

    def _shared(self, spec: LinkSpec, position: int, device_class: str) -> list[Resource]:
        shared = []
        segment = spec.shared
        if segment is not None:
            group = position // segment.group_size if segment.group_size else 0
            key = (device_class, spec.direction, group)
            if key not in self.segments:
                self.segments[key] = Resource(f"{device_class}/{spec.direction}/{group}",
                                              ConstantRate(segment.bits_per_s), fifo=segment.fifo)
            shared.append(self.segments[key])
        cloud_side = self.cloud_side[spec.direction]
        if cloud_side is not None:
            shared.append(cloud_side)
        return shared

    @staticmethod
    def _retransmission(spec: LinkSpec, rng) -> Retransmission | None:
        loss = spec.loss
        process = loss_model(loss.params, rng)
        if process is None:
            return None
        return Retransmission(process, loss.max_retries, loss.retry_s)
