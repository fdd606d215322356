"""The link and its queue: exact FIFO timing, drop policies, and queueing theory.

Poisson arrivals of fixed-size messages on one link form an M/D/1 queue (mean wait in queue
rho / (2 mu (1 - rho))); exponential sizes form an M/M/1 queue (rho / (mu - lambda)).
Assertions are against theory with a stated tolerance, never against pinned simulation output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from cemasim.net.capacity import ConstantRate
from cemasim.sim.link import Link
from cemasim.sim.messages import Message


def test_fifo_serialisation_and_latency_exact():
    """1000 B at 8 Mbit/s = 1 ms on the wire; 5 ms latency; back-to-back messages pipeline."""
    env = simpy.Environment()
    inbox = simpy.Store(env)
    link = Link(env, ConstantRate(8e6), 5e-3, deliver=inbox)
    msgs = [Message(0, 1000) for _ in range(3)]
    for m in msgs:
        link.send(m)
    env.run()
    assert [m.tx_start_s for m in msgs] == pytest.approx([0.0, 0.001, 0.002])
    assert [m.received_s for m in msgs] == pytest.approx([0.006, 0.007, 0.008])
    assert [m for m in inbox.items] == msgs  # delivered in order
    assert link.bytes_sent == 3000


def test_packet_headers_by_hand():
    """With 66 header bytes per 1448-byte segment, 3000 bytes travel as 3 segments: 3198 bytes, 3.198 ms
    at 8 Mbit/s; wire_bytes counts them, the message's size and bytes_sent stay its payload."""
    env = simpy.Environment()
    inbox = simpy.Store(env)
    link = Link(env, ConstantRate(8e6), 0.0, deliver=inbox, packet_header_bytes=66, mss_bytes=1448)
    big, small = Message(0, 3000), Message(0, 16)
    link.send(big)
    link.send(small)
    env.run()
    assert big.received_s == pytest.approx(3198 * 8 / 8e6)
    assert small.received_s == pytest.approx((3198 + 82) * 8 / 8e6)
    assert (big.wire_bytes, small.wire_bytes, big.size_bytes) == (3198, 82, 3000)
    assert link.bytes_sent == 3016
    assert Link(env, ConstantRate(8e6), 0.0, inbox).wire_bits(3000) == 24000  # the default: the message's bytes alone


def test_infinite_bandwidth_zero_latency_is_instant():
    env = simpy.Environment()
    inbox = simpy.Store(env)
    link = Link(env, ConstantRate(math.inf), 0.0, deliver=inbox)
    m = Message(0, 10**9)
    link.send(m)
    env.run()
    assert m.received_s == 0.0


@pytest.mark.parametrize("policy, survivors", [("tail", [0, 1, 2]), ("head", [0, 2, 3])])
def test_bounded_queue_drop_policies(policy, survivors):
    """Capacity 2 waiting uploads; the first message goes straight onto the idle wire."""
    env = simpy.Environment()
    dropped = []
    link = Link(env, ConstantRate(8e6), 0.0, simpy.Store(env), capacity=2, drop_policy=policy, on_drop=dropped.append)
    msgs = [Message(0, 1000) for _ in range(4)]
    for m in msgs:
        link.send(m)
    env.run()
    kept = [i for i, m in enumerate(msgs) if not m.dropped]
    assert kept == survivors
    assert all(m.dropped == "queue_full" for m in dropped) and len(dropped) == 1


def test_control_messages_are_never_dropped():
    env = simpy.Environment()
    link = Link(env, ConstantRate(8e6), 0.0, simpy.Store(env), capacity=1)
    msgs = [Message(0, 1000, droppable=False) for _ in range(5)]
    for m in msgs:
        link.send(m)
    env.run()
    assert not any(m.dropped for m in msgs)


def _mean_wait(sizes: np.ndarray, gaps: np.ndarray, bandwidth_mbps: float) -> float:
    env = simpy.Environment()
    link = Link(env, ConstantRate(bandwidth_mbps * 1e6), 0.0, simpy.Store(env))
    msgs = [Message(0, float(s)) for s in sizes]

    def source():
        for gap, m in zip(gaps, msgs, strict=True):
            yield env.timeout(gap)
            link.send(m)

    env.process(source())
    env.run()
    waits = np.array([m.tx_start_s - m.enqueued_s for m in msgs])
    return float(waits[len(waits) // 10:].mean())  # drop the warm-up tenth


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait_matches_theory(rho):
    """M/D/1: Wq = rho / (2 mu (1 - rho)); tolerance 8 % (40,000 customers)."""
    rng = np.random.default_rng(1)
    service_s = 1000 * 8 / 8e6  # 1000 B at 8 Mbit/s
    mu = 1 / service_s
    lam = rho * mu
    n = 40_000
    wait = _mean_wait(np.full(n, 1000), rng.exponential(1 / lam, n), 8.0)
    theory = rho / (2 * mu * (1 - rho))
    assert wait == pytest.approx(theory, rel=0.08)


def test_mm1_mean_wait_matches_theory():
    """M/M/1 with exponential sizes: Wq = rho / (mu - lambda); tolerance 10 %."""
    rng = np.random.default_rng(2)
    mean_bytes, bw = 1000.0, 8.0
    mu = 1 / (mean_bytes * 8 / (bw * 1e6))
    rho = 0.6
    lam = rho * mu
    n = 60_000
    wait = _mean_wait(rng.exponential(mean_bytes, n), rng.exponential(1 / lam, n), bw)
    assert wait == pytest.approx(rho / (mu - lam), rel=0.10)
