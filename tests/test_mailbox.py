"""sim/mailbox.py and sim/inbox.py stand in for a simpy.Store read by one process: a device's inbox
without a process hands messages over, and a cloud worker's inbox schedules its events, at the very
moments and in the very order among other events that the Store and its reader would."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import simpy

from cemasim.sim.inbox import Inbox
from cemasim.sim.mailbox import Mailbox


def _run(env: simpy.Environment, put: Callable, log: list, rng: random.Random, tick_s: float, end_s: float) -> int:
    """Three senders in bursts at shared instants (several puts before the first is read) and a rival
    process ticking at the same instants; the events processed until end_s."""

    def sender(name: str):
        for i in range(30):
            yield env.timeout(rng.choice([0, 0, 0.5, 1.0]))
            put((name, i))
            yield env.timeout(0)  # an event scheduled after the put: the hand-over comes after it
            log.append(("sent", env.now, name, i))

    def rival():
        while True:
            yield env.timeout(tick_s)
            log.append(("tick", env.now))

    for name in "abc":
        env.process(sender(name))
    env.process(rival())
    events = 0
    while env.peek() <= end_s:
        env.step()
        events += 1
    return events


def _mailbox_trace(use_mailbox: bool, seed: int) -> tuple[list[tuple], int]:
    env, log, rng = simpy.Environment(), [], random.Random(seed)
    if use_mailbox:
        box = Mailbox(env, lambda msg: log.append(("handled", env.now, msg)))
    else:
        box = simpy.Store(env)

        def reader():
            while True:
                msg = yield box.get()
                log.append(("handled", env.now, msg))

        env.process(reader())
    return log, _run(env, box.put, log, rng, tick_s=0.5, end_s=40)


def test_mailbox_hands_over_like_a_store_and_its_reader():
    for seed in range(5):
        (store_log, store_events), (box_log, box_events) = _mailbox_trace(False, seed), _mailbox_trace(True, seed)
        assert box_log == store_log
        assert sum(1 for e in box_log if e[0] == "handled") == 90
        assert store_events - box_events == 1  # the reader process's start: the one event a mailbox saves


def _inbox_trace(use_inbox: bool, seed: int) -> tuple[list[tuple], int]:
    """The reader is sometimes busy for a while after a read (a GPU job): messages wait meanwhile."""
    env, log, rng = simpy.Environment(), [], random.Random(seed)
    box = Inbox(env) if use_inbox else simpy.Store(env)

    def reader():
        while True:
            msg = yield box.get()
            log.append(("read", env.now, msg, len(box.items)))
            busy = rng.choice([None, 0, 0.25, 1.0])
            if busy is not None:
                yield env.timeout(busy)

    env.process(reader())
    return log, _run(env, box.put, log, rng, tick_s=0.25, end_s=60)


@pytest.mark.parametrize("seed", range(6))
def test_inbox_schedules_like_a_store_and_its_reader(seed: int):
    (store_log, store_events), (box_log, box_events) = _inbox_trace(False, seed), _inbox_trace(True, seed)
    assert box_log == store_log
    assert sum(1 for e in box_log if e[0] == "read") == 90
    assert any(e[0] == "read" and e[3] > 0 for e in box_log)  # messages waited while the reader was busy
    assert box_events == store_events


def test_an_inbox_has_one_reader_at_a_time():
    box = Inbox(simpy.Environment())
    box.get()
    with pytest.raises(RuntimeError, match="one reader"):
        box.get()
