"""Properties of the pure kernels, over inputs hypothesis draws (and shrinks to the smallest that
fails): a transfer's finish time inverts the bits a capacity delivers, max-min fair shares are
feasible and every flow has its bottleneck, fleet classes get their largest-remainder sizes, and a
dotted key parses into the path it was written from. Derandomized: the same examples on every run,
so CI never meets a new one by chance; the hand-picked cases live beside each kernel's own tests."""

from __future__ import annotations

import math

import numpy as np
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from cemasim.net.capacity import ConstantRate, DownIntervals, Gated, TraceRate
from cemasim.scenario import path_steps
from cemasim.scenario.classes import class_sizes
from cemasim.sim.network import FluidNetwork, Resource

settings.register_profile("cemasim", derandomize=True, deadline=None, max_examples=150, database=None)
settings.load_profile("cemasim")

rates = st.sampled_from([0.0, 1e5, 2.5e6, 7e6, 1.23e7])
TOP_RATE = 1e8
positive_rates = st.floats(1e4, TOP_RATE)


@st.composite
def traces(draw: st.DrawFn) -> TraceRate:
    n = draw(st.integers(1, 8))
    gaps = draw(st.lists(st.floats(0.01, 3.0), min_size=n, max_size=n))
    starts = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    values = draw(st.lists(rates, min_size=n, max_size=n))
    if not any(values):
        values[0] = 1e6  # a trace that never delivers is tested by hand (finish time inf)
    period = float(starts[-1] + gaps[-1])
    end = draw(st.sampled_from(["loop", "hold"]))
    if end == "hold" and values[-1] == 0:
        values[-1] = 3e6  # holding a zero rate never finishes
    return TraceRate(starts, np.array(values), period, end, offset_s=draw(st.floats(0, period)))


@st.composite
def gated(draw: st.DrawFn) -> Gated:
    edges = sorted(draw(st.lists(st.floats(0, 30), min_size=0, max_size=8, unique=True)))
    edges = edges[: len(edges) // 2 * 2]
    down = DownIntervals(np.array(edges[0::2]), np.array(edges[1::2]), "link_outage")
    inner = draw(st.one_of(positive_rates.map(ConstantRate), traces()))
    return Gated(inner, [down])


capacities = st.one_of(positive_rates.map(ConstantRate), traces(), gated())


@given(capacities, st.floats(0, 50), st.floats(1.0, 5e7))
def test_the_finish_time_delivers_the_bits_and_no_sooner(capacity, t0, bits):
    t1 = capacity.finish_time(t0, bits)
    assert math.isfinite(t1) and t1 >= t0
    # exact up to float time: a trace reads t1 + its offset (< 100 s here), known to a few ulps, at the top rate
    assert math.isclose(capacity.bits_between(t0, t1), bits, rel_tol=1e-9,
                        abs_tol=4 * TOP_RATE * math.ulp(t1 + 100.0))
    before = t0 + (t1 - t0) * (1 - 1e-6)  # a moment earlier, the bits are not all through
    assert capacity.bits_between(t0, before) <= bits * (1 + 1e-9)


@given(capacities, st.floats(0, 50), st.floats(1.0, 5e7), st.floats(1.0, 5e7))
def test_more_bits_never_finish_earlier(capacity, t0, a, b):
    small, big = sorted((a, b))
    assert capacity.finish_time(t0, small) <= capacity.finish_time(t0, big)


@given(st.lists(positive_rates, min_size=1, max_size=4),
       st.lists(st.tuples(st.floats(1e4, 2e7), st.lists(st.booleans(), min_size=4, max_size=4)),
                min_size=1, max_size=12))
def test_max_min_fair_shares_are_feasible_and_every_flow_has_its_bottleneck(shared_rates, flows):
    net = FluidNetwork(simpy.Environment())
    shared = [Resource(f"s{i}", ConstantRate(r)) for i, r in enumerate(shared_rates)]
    made = []
    for i, (own, uses) in enumerate(flows):
        on_path = [r for r, on in zip(shared, uses[:len(shared)], strict=True) if on]
        path = [Resource(f"own{i}", ConstantRate(own)), *on_path]
        made.append(net.transfer(path, 1e9))
    for r in shared:  # feasible: no resource carries more than its capacity
        assert sum(f.rate for f in r.flows) <= r.capacity.rate_at(0.0) * (1 + 1e-9)
    for f in made:  # max-min: a saturated resource on its path where no flow is faster
        assert any(sum(g.rate for g in r.flows) >= r.capacity.rate_at(0.0) * (1 - 1e-9)
                   and f.rate >= max(g.rate for g in r.flows) * (1 - 1e-9) for r in f.path)


@given(st.integers(0, 10_000), st.lists(st.one_of(st.integers(0, 50), st.floats(0.0, 1.0)), min_size=1, max_size=6))
def test_class_sizes_keep_counts_and_round_fractions_by_largest_remainder(devices, shares):
    fractions = [s for s in shares if isinstance(s, float)]
    total = sum(fractions)
    fractions = [f / total for f in fractions] if total > 1 else fractions  # the schema caps their sum at 1
    it = iter(fractions)
    classes = [{"count": s} if isinstance(s, int) else {"fraction": next(it)} for s in shares]
    sizes = class_sizes(classes, devices)
    quotas = [c["fraction"] * devices for c in classes if "fraction" in c]
    by_fraction = [n for n, c in zip(sizes, classes, strict=True) if "fraction" in c]
    assert [n for n, c in zip(sizes, classes, strict=True) if "count" in c] == [c["count"] for c in classes
                                                                                if "count" in c]
    assert all(math.floor(q) <= n <= math.floor(q) + 1 for n, q in zip(by_fraction, quotas, strict=True))
    assert sum(by_fraction) == round(sum(quotas))


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(st.lists(st.tuples(names, st.lists(st.integers(0, 99), max_size=2)), min_size=1, max_size=5))
def test_a_dotted_key_parses_into_the_path_it_was_written_from(parts):
    key = ".".join(name + "".join(f"[{i}]" for i in indices) for name, indices in parts)
    assert path_steps(key) == [step for name, indices in parts for step in (name, *indices)]
