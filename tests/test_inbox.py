"""sim/inbox.py: a cloud worker's inbox schedules the events a simpy.Store read by one process schedules,
in the same order among other events, whether the reader waits or is busy when a message comes."""

from __future__ import annotations

import random

import pytest
import simpy

from cemasim.sim.inbox import Inbox


def _trace(use_inbox: bool, seed: int) -> tuple[list[tuple], int]:
    """What happens, in order: reads (the reader sometimes busy for a while after one), sends, and the
    ticks of a rival process at the same instants; and how many events the run processed."""
    env, log, rng = simpy.Environment(), [], random.Random(seed)
    box = Inbox(env) if use_inbox else simpy.Store(env)

    def reader():
        while True:
            msg = yield box.get()
            log.append(("read", env.now, msg, len(box.items)))
            busy = rng.choice([None, 0, 0.25, 1.0])  # a GPU job: messages arrive while it is busy
            if busy is not None:
                yield env.timeout(busy)

    def sender(name: str):
        for i in range(30):  # bursts at shared instants: several puts before the first is read
            yield env.timeout(rng.choice([0, 0, 0.5, 1.0]))
            box.put((name, i))
            yield env.timeout(0)  # an event scheduled after the put: the hand-over comes after it
            log.append(("sent", env.now, name, i))

    def rival():
        while True:
            yield env.timeout(0.25)
            log.append(("tick", env.now))

    env.process(reader())
    for name in "abc":
        env.process(sender(name))
    env.process(rival())
    events = 0
    while env.peek() <= 60:
        env.step()
        events += 1
    return log, events


@pytest.mark.parametrize("seed", range(6))
def test_inbox_schedules_like_a_store_and_its_reader(seed: int):
    (store_log, store_events), (box_log, box_events) = _trace(False, seed), _trace(True, seed)
    assert box_log == store_log
    assert sum(1 for e in box_log if e[0] == "read") == 90
    assert any(e[0] == "read" and e[3] > 0 for e in box_log)  # messages waited while the reader was busy
    assert box_events == store_events


def test_one_reader_at_a_time():
    box = Inbox(simpy.Environment())
    box.get()
    with pytest.raises(RuntimeError, match="one reader"):
        box.get()
