"""sim/mailbox.py: a device's inbox without a process hands messages over at the very moments, and in the
very order among other events, that a simpy.Store read by a process would."""

from __future__ import annotations

import random

import simpy

from cemasim.sim.mailbox import Mailbox


def _trace(use_mailbox: bool, seed: int) -> tuple[list[tuple], int]:
    """What happens, in order: handled messages and the ticks of a rival process at the same instants."""
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

    def sender(name: str):
        for i in range(30):  # bursts at shared instants: several puts before the first is handed over
            yield env.timeout(rng.choice([0, 0, 0.5, 1.0]))
            box.put((name, i))
            yield env.timeout(0)  # an event scheduled after the put: the Store's hand-over comes after it
            log.append(("sent", env.now, name, i))

    def rival():
        while True:
            yield env.timeout(0.5)
            log.append(("tick", env.now))

    for name in "abc":
        env.process(sender(name))
    env.process(rival())
    events = 0
    while env.peek() <= 40:
        env.step()
        events += 1
    return log, events


def test_mailbox_hands_over_like_a_store_and_its_reader():
    for seed in range(5):
        (store_log, store_events), (box_log, box_events) = _trace(False, seed), _trace(True, seed)
        assert box_log == store_log
        assert sum(1 for e in box_log if e[0] == "handled") == 90
        assert store_events - box_events == 1  # the reader process's start: the one event a mailbox saves
