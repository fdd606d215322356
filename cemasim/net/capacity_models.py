"""Capacity models: how a link's own capacity varies over simulated time, by name (the link
section's `capacity` key; `cemasim list capacities`).

    constant   bandwidth_mbps all the time (null: unlimited)
    trace      a bandwidth trace (CSV or Mahimahi) at the device's phase, and its latency column if any

A model is a function (link, rng) -> (capacity, latency): `link` is the link's spec (specs.LinkSpec:
rates in bit/s, times in s, the section's own keys in `link.params`), `rng` the link's own stream
(None unless the model is registered with random=True or the link draws for something else);
`capacity` answers finish_time(t0, bits) like net/capacity.py's shapes, `latency` is a function of
the time a message leaves the wire, or None for the constant latency_ms. A plugin registers more
(docs/extending.md), with `params=Section` for keys of its own under `capacity_params`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from cemasim.net.capacity import Capacity, ConstantRate, TraceRate
from cemasim.net.traces import cached_trace
from cemasim.registry import Registry

if TYPE_CHECKING:
    from cemasim.specs import LinkSpec


Latency = Callable[[float], float] | None
CapacityModel = Callable[["LinkSpec", "np.random.Generator | None"], "tuple[Capacity, Latency]"]
CAPACITY_MODELS: Registry[CapacityModel] = Registry("capacity model")


def constant(link: LinkSpec, rng: np.random.Generator | None) -> tuple[ConstantRate, Latency]:
    return constant_rate(link.bits_per_s), None


@cache
def constant_rate(bits_per_s: float) -> ConstantRate:
    """One ConstantRate a rate, shared by every link at it (it holds no state; 0.2 kB a link)."""
    return ConstantRate(bits_per_s)


def trace(link: LinkSpec, rng: np.random.Generator | None) -> tuple[ConstantRate | TraceRate, Latency]:
    spec = link.trace
    assert spec is not None, "the trace model reads the link's trace (checked with the scenario)"
    data = cached_trace(spec.path, spec.format, spec.bin_ms)
    assert rng is not None or not spec.random_phase, "a random phase draws from the link's stream (LinkSpec.random)"
    offset = float(rng.uniform(0, data.period_s)) if rng is not None and spec.random_phase else 0.0
    varying = TraceRate(data.times_s, data.mbps * 1e6, data.period_s, spec.end, offset)
    # a flat trace is exactly the constant link
    rate = ConstantRate(float(varying.rates[0])) if varying.constant else varying
    if data.latency_ms is None:
        return rate, None
    end = "hold" if spec.end == "stop" else spec.end  # a stopped link keeps its last latency
    return rate, TraceRate(data.times_s, data.latency_ms / 1e3, data.period_s, end, offset).rate_at


CAPACITY_MODELS.add("constant", constant, "bandwidth_mbps all the time (null: unlimited)")
CAPACITY_MODELS.add("trace", trace, "the link's bandwidth trace (and its latency column), at the device's phase")
