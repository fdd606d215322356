"""The network layer's own cost: the same message load over four kinds of links, side by side.

    constant        ConstantRate per device (the classic pipe)
    trace           a Mahimahi trace per device (exact: one completion event per message, whatever
                    the number of trace steps it spans)
    shared          constant device links behind one shared access point (fluid max-min flows)
    shared+trace    traced device links behind the shared access point (the flows are re-rated at
                    every trace step while they are on the wire)

No ML: a Poisson stream of fixed-size messages per device through `Link`s. Prints host seconds,
SimPy events and the ratio to `constant` measured in the same run, and appends them to
network.csv (with `--label`, e.g. the commit measured).

    python benchmarks/bench_network.py [--devices 100] [--duration-s 300] [--rate-hz 10] [--label L]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import simpy
from csvlog import append_rows  # beside this script

from cemasim.net.capacity import ConstantRate, TraceRate
from cemasim.net.traces import read_trace
from cemasim.sim.link import Link
from cemasim.sim.messages import Message
from cemasim.sim.network import FluidNetwork, Resource

TRACE = Path(__file__).resolve().parent.parent / "scenarios" / "traces" / "lte_commute_up.mahimahi"


def run(kind: str, devices: int, duration_s: float, rate_hz: float, size: int) -> tuple[float, int, float]:
    """(host seconds, events, mean delay s)."""
    env = simpy.Environment()
    inbox = simpy.Store(env)
    trace = read_trace(TRACE, bin_ms=100.0)
    rng = np.random.default_rng(0)
    network = FluidNetwork(env) if kind.startswith("shared") else None
    ap = Resource("ap", ConstantRate(devices * 0.5e6)) if network else None
    links = []
    for _ in range(devices):
        if kind.endswith("trace"):
            access = TraceRate(trace.times_s, trace.mbps * 1e6, trace.period_s, "loop", rng.uniform(0, trace.period_s))
        else:
            access = ConstantRate(2.2e6)
        links.append(Link(env, access, 20e-3, inbox, shared=[ap] if ap else None, network=network))
    sent: list[Message] = []

    def source(link: Link, seed: int):
        r = np.random.default_rng(seed)
        while True:
            yield env.timeout(r.exponential(1 / rate_hz))
            if env.now > duration_s:
                return
            msg = Message(0, size)
            sent.append(msg)
            link.send(msg)

    for i, link in enumerate(links):
        env.process(source(link, i))
    start, events = time.perf_counter(), 0
    while env.peek() <= duration_s * 2:
        env.step()
        events += 1
    wall = time.perf_counter() - start
    delays = [m.received_s - m.enqueued_s for m in sent if m.received_s == m.received_s]
    return wall, events, float(np.mean(delays))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--duration-s", type=float, default=300.0)
    ap.add_argument("--rate-hz", type=float, default=10.0, help="messages per second per device")
    ap.add_argument("--size-bytes", type=int, default=1500)
    ap.add_argument("--label", default="", help="written to network.csv with each row")
    args = ap.parse_args()
    print(f"{args.devices} devices x {args.rate_hz} msg/s x {args.duration_s:.0f} s of "
          f"{args.size_bytes}-byte messages; "
          f"trace {TRACE.name} (100 ms bins); host {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'links':<14}{'host s':>9}{'events':>11}{'events/s':>11}{'mean delay s':>14}{'x constant':>12}")
    base, rows = None, []
    for kind in ("constant", "trace", "shared", "shared+trace"):
        wall, events, delay = run(kind, args.devices, args.duration_s, args.rate_hz, args.size_bytes)
        base = base or wall
        print(f"{kind:<14}{wall:>9.2f}{events:>11,}{events / wall:>11,.0f}{delay:>14.4f}{wall / base:>12.2f}")
        rows.append({"date": time.strftime("%Y-%m-%d %H:%M"), "label": args.label, "devices": args.devices,
                     "duration_s": args.duration_s, "links": kind, "host_s": round(wall, 2), "events": events,
                     "mean_delay_s": delay, "x_constant": round(wall / base, 2)})
    append_rows(Path(__file__).with_name("network.csv"), rows)


if __name__ == "__main__":
    main()
