"""Capacities, shared links, loss and outages against closed forms and hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from cemasim.net.capacity import ConstantRate, DownIntervals, Gated, TraceRate
from cemasim.net.intervals import exponential_intervals
from cemasim.net.loss import Bernoulli, GilbertElliott
from cemasim.sim.link import Link, Retransmission
from cemasim.sim.messages import Message
from cemasim.sim.network import FluidNetwork, Resource


def down(starts, ends, cause="link_outage", lose=False) -> DownIntervals:
    return DownIntervals(np.array(starts, float), np.array(ends, float), cause, lose)


# ---- capacity shapes ---------------------------------------------------------------------------
def test_step_trace_finish_time_by_hand():
    trace = TraceRate(np.array([0.0, 2.0]), np.array([1e6, 4e6]), period_s=3.0, end="hold")
    # 3 Mbit from t=1: 1 Mbit by t=2 at 1 Mbit/s, then 2 Mbit at 4 Mbit/s = 0.5 s
    assert trace.finish_time(1.0, 3e6) == pytest.approx(2.5)
    assert trace.bits_between(1.0, 2.5) == pytest.approx(3e6)
    # past the period, hold keeps 4 Mbit/s
    assert trace.finish_time(5.0, 8e6) == pytest.approx(7.0)


def test_looping_trace_wraps_and_respects_its_offset():
    trace = TraceRate(np.array([0.0, 1.0]), np.array([2e6, 0.0]), period_s=2.0, end="loop", offset_s=0.5)
    # trace time 0.5 at t=0: 1 Mbit by t=0.5, a 1 s gap, then 2 Mbit/s again from t=1.5
    assert trace.finish_time(0.0, 3e6) == pytest.approx(2.5)
    assert trace.rate_at(0.7) == 0.0 and trace.rate_at(1.6) == 2e6
    assert trace.next_change(0.0) == pytest.approx(0.5)
    assert trace.next_change(0.6) == pytest.approx(1.5)
    # whole periods: 10 periods of 2 Mbit each end when the 10th on-piece ends
    assert trace.finish_time(-0.5, 20e6) == pytest.approx(18.5)


def test_stopped_trace_never_finishes():
    trace = TraceRate(np.array([0.0]), np.array([1e6]), period_s=1.0, end="stop")
    assert trace.finish_time(0.0, 0.5e6) == pytest.approx(0.5)
    assert math.isinf(trace.finish_time(0.0, 2e6))
    assert trace.rate_at(3.0) == 0.0 and math.isinf(trace.next_change(3.0))


@pytest.mark.parametrize("start,bits", [(0.0, 1e6), (0.3, 7.5e6), (12.25, 123456.0)])
def test_gated_capacity_pauses_for_outages(start, bits):
    cap = Gated(ConstantRate(2e6), [down([1.0, 3.0], [2.0, 3.5])])
    plain = bits / 2e6
    expected = start + plain
    for s, e in [(1.0, 2.0), (3.0, 3.5)]:
        if start < s < expected:
            expected += e - s
    assert cap.finish_time(start, bits) == pytest.approx(expected)
    assert cap.bits_between(start, cap.finish_time(start, bits)) == pytest.approx(bits)


def test_exponential_intervals_have_the_stationary_down_share():
    iv = exponential_intervals(np.random.default_rng(1), up_s=30.0, down_s=10.0, horizon_s=400_000.0, cause="x")
    assert iv.down_time(0, 400_000.0) / 400_000.0 == pytest.approx(0.25, abs=0.01)
    assert np.all(iv.ends > iv.starts) and np.all(iv.starts[1:] > iv.ends[:-1])


# ---- links -------------------------------------------------------------------------------------
def poisson_link_delays(access, seed=0, n=3000, rate_hz=20.0, size=25_000) -> list[float]:
    env, inbox = simpy.Environment(), None
    inbox = simpy.Store(env)
    link = Link(env, access, 5e-3, inbox)
    rng = np.random.default_rng(seed)
    msgs = []

    def source():
        for _ in range(n):
            yield env.timeout(rng.exponential(1 / rate_hz))
            msg = Message(0, size)
            msgs.append(msg)
            link.send(msg)

    env.process(source())
    env.run()
    return [m.received_s - m.enqueued_s for m in msgs]


def test_constant_trace_reproduces_the_constant_link_exactly():
    constant = poisson_link_delays(ConstantRate(8e6))
    trace = TraceRate(np.arange(0.0, 10.0, 0.1), np.full(100, 8e6), period_s=10.0, end="loop", offset_s=3.7)
    assert poisson_link_delays(trace) == pytest.approx(constant, rel=1e-9, abs=1e-12)


def test_transfer_follows_trace_changes_in_flight():
    env = simpy.Environment()
    inbox = simpy.Store(env)
    trace = TraceRate(np.array([0.0, 1.0]), np.array([8e6, 1e6]), period_s=2.0, end="hold")
    link = Link(env, trace, 0.0, inbox)
    msg = Message(0, 2_000_000)  # 16 Mbit: 8 in the first second, 8 more at 1 Mbit/s
    link.send(msg)
    env.run()
    assert msg.tx_end_s == pytest.approx(9.0) and msg.received_s == pytest.approx(9.0)


@pytest.mark.parametrize("lose", [False, True])
def test_outage_pauses_or_loses_the_transfer_in_flight(lose):
    env = simpy.Environment()
    inbox = simpy.Store(env)
    access = Gated(ConstantRate(1e6), [down([0.5], [2.0], lose=lose)])
    link = Link(env, access, 0.0, inbox)
    first, second = Message(0, 125_000), Message(0, 125_000)  # 1 s each at 1 Mbit/s
    link.send(first)
    link.send(second)
    env.run()
    if lose:
        assert first.dropped == "link_outage" and first.wire_bytes == 62_500
        assert second.tx_start_s == pytest.approx(2.0) and second.tx_end_s == pytest.approx(3.0)
    else:
        assert first.dropped == "" and first.tx_end_s == pytest.approx(2.5)
        assert second.tx_end_s == pytest.approx(3.5)


@pytest.mark.parametrize("lose", [False, True])
def test_message_to_an_off_device_waits_or_is_lost(lose):
    env = simpy.Environment()
    inbox = simpy.Store(env)
    link = Link(env, ConstantRate(math.inf), 20e-3, inbox, receiver=down([0.01], [5.0], cause="device_off", lose=lose))
    msg = Message(0, 100, droppable=False)
    link.send(msg)
    env.run()
    if lose:
        assert msg.dropped == "device_off" and math.isnan(msg.received_s)
    else:
        assert msg.dropped == "" and msg.received_s == pytest.approx(5.0)


def test_bernoulli_loss_retransmits_geometrically():
    env = simpy.Environment()
    inbox = simpy.Store(env)
    rt = Retransmission(Bernoulli(np.random.default_rng(3), rate=0.3), max_retries=1000, retry_s=0.0)
    link = Link(env, ConstantRate(8e6), 0.0, inbox, retransmission=rt)
    msgs = [Message(0, 1000) for _ in range(20_000)]
    for m in msgs:
        link.send(m)
    env.run()
    attempts = np.array([m.attempts for m in msgs])
    assert attempts.mean() == pytest.approx(1 / 0.7, rel=0.02)
    assert all(m.wire_bytes == 1000 * m.attempts for m in msgs[:100])
    assert env.now == pytest.approx(attempts.sum() * 1000 * 8 / 8e6)


def test_retries_exhausted_drop_with_cause_loss():
    env = simpy.Environment()
    rt = Retransmission(Bernoulli(np.random.default_rng(0), rate=1.0), max_retries=2, retry_s=0.1)
    link = Link(env, ConstantRate(8e6), 0.0, simpy.Store(env), retransmission=rt)
    msg = Message(0, 1000)
    link.send(msg)
    env.run()
    assert msg.dropped == "loss" and msg.attempts == 3 and env.now == pytest.approx(3 * 0.001 + 2 * 0.1)


def test_gilbert_elliott_loss_rate_and_burstiness():
    ge = GilbertElliott(np.random.default_rng(5), p_gb=0.02, p_bg=0.2, loss_good=0.01, loss_bad=0.6)
    fates = np.array([ge.lost() for _ in range(200_000)])
    assert fates.mean() == pytest.approx(ge.stationary_rate(), rel=0.05)
    # bursty: a loss is far more likely right after a loss than on average
    after_loss = fates[1:][fates[:-1]].mean()
    assert after_loss > 3 * fates.mean()


# ---- shared links ------------------------------------------------------------------------------
def test_processor_sharing_matches_mm1_ps_mean_sojourn():
    """Poisson arrivals, exponential sizes, one shared resource: M/M/1-PS, E[T] = 1 / (mu - lambda)."""
    env = simpy.Environment()
    net = FluidNetwork(env)
    shared = Resource("ap", ConstantRate(10e6))
    lam, mean_bits = 8.0, 1e6  # rho = 0.8, mu = 10 transfers/s
    rng = np.random.default_rng(11)
    sojourn: list[float] = []

    def transfer(bits):
        start = env.now
        flow = net.transfer([shared], bits)
        yield flow.done
        sojourn.append(env.now - start)

    def arrivals():
        for _ in range(40_000):
            yield env.timeout(rng.exponential(1 / lam))
            env.process(transfer(rng.exponential(mean_bits)))

    env.process(arrivals())
    env.run()
    assert np.mean(sojourn) == pytest.approx(1 / (10.0 - lam), rel=0.08)


def test_max_min_fair_shares_by_hand():
    env = simpy.Environment()
    net = FluidNetwork(env)
    ap = Resource("ap", ConstantRate(10e6))
    slow, fast = Resource("slow", ConstantRate(2e6)), Resource("fast", ConstantRate(100e6))
    a, b = net.transfer([slow, ap], 4e6), net.transfer([fast, ap], 16e6)
    assert (a.rate, b.rate) == (pytest.approx(2e6), pytest.approx(8e6))
    env.run()
    # a: 4 Mbit at 2 Mbit/s = 2 s; b: 16 Mbit at 8 Mbit/s = 2 s
    assert a.done.value.ok and b.done.value.ok and env.now == pytest.approx(2.0)


def test_fifo_segment_serves_transfers_in_start_order_by_hand():
    """A fifo segment of 10 Mbit/s behind unlimited own links: one transfer at a time, oldest first;
    behind a 2 Mbit/s own link the oldest takes 2 and the next the remaining 8 (work-conserving)."""
    env = simpy.Environment()
    net = FluidNetwork(env)
    ap = Resource("ap", ConstantRate(10e6), fifo=True)
    free = [Resource(f"own{i}", ConstantRate(math.inf)) for i in range(3)]
    flows = [net.transfer([free[i], ap], bits) for i, bits in enumerate((5e6, 10e6, 5e6))]
    assert [f.rate for f in flows] == [pytest.approx(10e6), 0.0, 0.0]
    ends = []
    for f in flows:
        f.done.callbacks.append(lambda ev: ends.append(env.now))
    env.run()
    assert ends == pytest.approx([0.5, 1.5, 2.0])

    env = simpy.Environment()
    net = FluidNetwork(env)
    ap = Resource("ap", ConstantRate(10e6), fifo=True)
    slow, fast = Resource("slow", ConstantRate(2e6)), Resource("fast", ConstantRate(math.inf))
    a, b = net.transfer([slow, ap], 4e6), net.transfer([fast, ap], 16e6)
    assert (a.rate, b.rate) == (pytest.approx(2e6), pytest.approx(8e6))


def test_fifo_segment_matches_mm1_mean_sojourn():
    """Poisson arrivals, exponential sizes, one fifo resource: M/M/1, E[T] = 1 / (mu - lambda), the same
    mean as processor sharing; its p95 is shorter (PS finishes concurrent transfers together late)."""
    rng = np.random.default_rng(5)
    lam, mean_bits, n = 6.0, 1e6, 30_000  # rho = 0.6: short busy periods, a tight estimate
    gaps, sizes = rng.exponential(1 / lam, n), rng.exponential(mean_bits, n)
    sojourns = {}
    for fifo in (False, True):
        env = simpy.Environment()
        net = FluidNetwork(env)
        ap = Resource("ap", ConstantRate(10e6), fifo=fifo)
        own = [Resource(f"own{i}", ConstantRate(math.inf)) for i in range(n)]
        got: list[float] = []

        def transfer(i, bits, net=net, ap=ap, own=own, got=got, env=env):
            start = env.now
            flow = net.transfer([own[i], ap], bits)
            yield flow.done
            got.append(env.now - start)

        def arrivals(env=env, transfer=transfer):
            for i in range(n):
                yield env.timeout(gaps[i])
                env.process(transfer(i, sizes[i]))

        env.process(arrivals())
        env.run()
        sojourns[fifo] = np.array(got)
    assert sojourns[True].mean() == pytest.approx(1 / (10.0 - lam), rel=0.08)
    # M/M/1 FIFO sojourn is exponential with rate mu - lambda: p95 = ln(20) / (mu - lambda)
    assert np.quantile(sojourns[True], 0.95) == pytest.approx(math.log(20) / (10.0 - lam), rel=0.08)
    assert np.quantile(sojourns[True], 0.95) < np.quantile(sojourns[False], 0.95)


def test_shared_link_behind_traced_and_gated_access_links():
    env = simpy.Environment()
    net = FluidNetwork(env)
    ap = Resource("ap", ConstantRate(4e6))
    inbox = simpy.Store(env)
    gated = Gated(ConstantRate(10e6), [down([0.5], [1.5])])
    one = Link(env, gated, 0.0, inbox, shared=[ap], network=net)
    two = Link(env, ConstantRate(10e6), 0.0, inbox, shared=[ap], network=net)
    m1, m2 = Message(0, 250_000), Message(1, 250_000)  # 2 Mbit each
    one.send(m1)
    two.send(m2)
    env.run()
    # 0-0.5 s: 2 Mbit/s each (1 Mbit each); 0.5-1.0 s: m2 alone at 4 Mbit/s (done at 0.75 s);
    # m1 resumes at 1.5 s alone at 4 Mbit/s for its last 1 Mbit: 1.75 s
    assert m2.tx_end_s == pytest.approx(0.75) and m1.tx_end_s == pytest.approx(1.75)


def test_next_change_always_moves_forward_despite_round_off():
    """Walking from change to change never stalls (a stall would spin a shared link forever)."""
    starts = np.arange(0.0, 60.0, 0.1)
    trace = TraceRate(starts, np.where(np.arange(len(starts)) % 2, 1e6, 2e6), period_s=60.0, end="loop",
                      offset_s=37.123456789)
    t = 0.0
    for _ in range(3000):
        nxt = trace.next_change(t)
        assert nxt > t
        t = nxt
    assert t == pytest.approx(300.0, abs=0.2)


@pytest.mark.parametrize("seed", range(5))
def test_allocation_is_max_min_fair_on_random_topologies(seed):
    """Max-min fairness: every flow has a bottleneck on its path, saturated, where no flow is faster."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    net = FluidNetwork(env)
    shared = [Resource(f"s{i}", ConstantRate(float(rng.uniform(1e6, 20e6)))) for i in range(4)]
    flows = []
    for i in range(30):
        own = Resource(f"own{i}", ConstantRate(float(rng.uniform(0.2e6, 10e6))))
        path = [own] + [r for r in shared if rng.random() < 0.4]
        flows.append(net.transfer(path, 1e9))
    for f in flows:
        def saturated(r):
            return sum(g.rate for g in r.flows) >= r.capacity.rate_at(0.0) * (1 - 1e-9)

        assert any(saturated(r) and f.rate >= max(g.rate for g in r.flows) * (1 - 1e-9) for r in f.path)
    for r in shared:
        assert sum(g.rate for g in r.flows) <= r.capacity.rate_at(0.0) * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_unshared_fast_path_gives_progressive_fillings_rates_to_the_bit(seed):
    """When no shared resource is full, FluidNetwork skips progressive filling; its rates must be the
    very floats the filling computes (results stay identical), and it must decline otherwise."""
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    net = FluidNetwork(env)
    shared = [Resource(f"s{i}", ConstantRate(float(rng.uniform(5e6, 60e6)))) for i in range(3)]
    for i in range(int(rng.integers(1, 25))):
        own = Resource(f"own{i}", ConstantRate(float(rng.choice([0.0, rng.uniform(0.1e6, 8e6)]))))
        net.transfer([own] + [r for r in shared if rng.random() < 0.5], 1e9)
    fast = net._allocate_unshared(0.0)
    rates = [f.rate for f in net.flows]
    net._fill(0.0)
    if fast:
        assert rates == [f.rate for f in net.flows]
    else:  # declined: some shared resource is full at the flows' own rates
        load = {r: sum(f.path[0].capacity.rate_at(0.0) for f in r.flows) for r in shared if r.flows}
        assert any(total >= r.capacity.rate_at(0.0) * (1 - 1e-9) for r, total in load.items())


def _looked_up(trace: TraceRate, t: float) -> tuple[float, float]:
    """The uncached lookup at t: (rate, next change)."""
    i, change = trace._locate(t)
    return (trace._rates[i] if i >= 0 else 0.0), change


@pytest.mark.parametrize("end", ["loop", "hold", "stop"])
def test_remembered_piece_answers_the_very_floats_of_the_lookup(end):
    """TraceRate keeps the piece around the last time asked; its rate and next change must equal a
    fresh lookup's (the uncached computation) at every time, edges and their float neighbours included."""
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(1, 12))
        starts = np.concatenate([[0.0], np.sort(rng.uniform(0, 5, n - 1))])
        rates = rng.choice([0.0, 1e5, 2.5e6, 7e6], n)
        period = float(starts[-1] + rng.uniform(0.05, 2))
        trace = TraceRate(starts, rates, period, end, offset_s=float(rng.uniform(0, period)))
        edges = [k * trace.period_s + e - trace.offset_s for k in range(4) for e in trace.edges]
        times = sorted({t for e in edges for t in (e, math.nextafter(e, -math.inf), math.nextafter(e, math.inf))
                        if t >= 0} | set(rng.uniform(0, 4 * period, 300).tolist()))
        for t in times:  # forward in time, as a simulation asks, then a few jumps back
            assert (trace.rate_at(t), trace.next_change(t)) == _looked_up(trace, t), (trial, t)
        for t in rng.choice(times, 50):
            rate, change = _looked_up(trace, t)
            assert trace.next_change(t) == change
            assert trace.rate_at(t) == rate
