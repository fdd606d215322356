"""The GPU pool's scheduling policies: exact service orders, accounting, and queueing theory.

Kleinrock's conservation law: in an M/M/c queue the mean wait is the same for every non-preemptive,
work-conserving order that does not look at service times, so every policy must match the FIFO
closed forms (M/M/1: rho / (mu - lambda); M/M/c: Erlang C / (c mu - lambda)) within a stated tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from cemasim.sim.scheduler import GpuPool

POLICIES = ("fifo", "round_robin", "staleness", "backlog")  # the built-in ones (cemasim/scheduling.py)


def served_order(policy: str, jobs: list[int], blocker: int = 99, **scores) -> list[int]:
    """One GPU, held by `blocker` for 1 s while `jobs` (device ids, in request order) queue at t=0;
    each then runs 1 s. Returns the devices in the order their jobs started."""
    env = simpy.Environment()
    pool = GpuPool(env, 1, policy, **scores)
    order: list[int] = []

    def run(d: int):
        _, start, _ = yield from pool.job(d, 1.0)
        order.append(d)
        assert start == len(order) - 1  # back to back: nothing idles

    for d in [blocker, *jobs]:
        env.process(run(d))
    env.run()
    return order[1:]


def test_fifo_is_request_order():
    assert served_order("fifo", [2, 0, 1, 0, 2]) == [2, 0, 1, 0, 2]


def test_round_robin_alternates_devices():
    # the blocker (99) was served last, so the cycle wraps around to device 0
    assert served_order("round_robin", [2, 2, 2, 1, 1, 1, 0, 0, 0]) == [0, 1, 2] * 3
    assert served_order("round_robin", [0, 1, 2, 0, 1, 2], blocker=1) == [2, 0, 1, 2, 0, 1]


def test_round_robin_heavy_device_cannot_starve_light_ones():
    jobs = [0] * 20 + [1, 1] + [2]
    assert served_order("round_robin", jobs) == [0, 1, 2, 0, 1] + [0] * 18
    assert served_order("fifo", jobs)[:20] == [0] * 20  # contrast: fifo serves the heavy burst first

    # a light device arriving mid-burst waits only for the heavy job in service (fifo: for the whole burst)
    for policy, wait in [("round_robin", 0.5), ("fifo", 39.5)]:
        env = simpy.Environment()
        pool = GpuPool(env, 1, policy)
        for _ in range(50):
            env.process(pool.job(0, 1.0))

        def late_light(env: simpy.Environment, pool: GpuPool):
            yield env.timeout(10.5)
            return (yield from pool.job(1, 1.0))

        light = env.process(late_light(env, pool))
        env.run()
        requested, start, _ = light.value
        assert start - requested == pytest.approx(wait)


@pytest.mark.parametrize("policy", ["staleness", "backlog"])
def test_score_policies_pick_the_largest_score_now(policy: str):
    scores = {0: 1.0, 1: 5.0, 2: 3.0}
    assert served_order(policy, [0, 1, 2], **{policy: scores.__getitem__}) == [1, 2, 0]
    # evaluated when the GPU frees, not at request time: device 0 becomes the most urgent once served
    env = simpy.Environment()
    live = {0: 0.0, 1: 2.0, 2: 1.0}
    pool = GpuPool(env, 1, policy, **{policy: live.__getitem__})
    order: list[int] = []

    def run(d: int):
        yield from pool.job(d, 1.0)
        order.append(d)

    def bump():
        yield env.timeout(0.5)
        live[0] = 10.0

    for d in [9, 0, 1, 2]:
        live.setdefault(d, 0.0)
        env.process(run(d))
    env.process(bump())
    env.run()
    assert order == [9, 0, 1, 2]


@pytest.mark.parametrize("policy", ["staleness", "backlog"])
def test_score_ties_go_to_the_earliest_request(policy: str):
    flat = {policy: lambda d: 1.0}
    assert served_order(policy, [1, 0, 2, 1, 0], **flat) == [1, 0, 2, 1, 0]
    # ties only among the top score: 0 and 2 tie above 1; 2 asked first
    top = {policy: {0: 4.0, 1: 1.0, 2: 4.0}.__getitem__}
    assert served_order(policy, [1, 2, 0, 2, 0], **top) == [2, 0, 2, 0, 1]


def test_unknown_policy_and_missing_callback_are_rejected():
    env = simpy.Environment()
    with pytest.raises(ValueError, match="fifo, round_robin, staleness, backlog"):
        GpuPool(env, 1, "lifo")
    with pytest.raises(ValueError, match="staleness"):
        GpuPool(env, 1, "staleness")
    with pytest.raises(RuntimeError):
        GpuPool(env, 1).release()


def workload(n: int, devices: int, lam: float, mu: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson arrivals of total rate lam, each job from a uniformly random device (so each device is a
    Poisson stream of rate lam / devices), with exponential service of rate mu."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1 / lam, n)), rng.integers(0, devices, n), rng.exponential(1 / mu, n)


def simulate(policy: str, gpus: int, arrivals: np.ndarray, devices: np.ndarray, services: np.ndarray,
             check: bool = False) -> np.ndarray:
    """Waits in queue of the jobs, in arrival order. Staleness = time since the device was last served;
    backlog = jobs of that device waiting."""
    env = simpy.Environment()
    last_served = {int(d): 0.0 for d in np.unique(devices)}
    queued = {d: 0 for d in last_served}
    pool = GpuPool(env, gpus, policy, staleness=lambda d: env.now - last_served[d], backlog=queued.__getitem__)
    waits = np.full(len(arrivals), np.nan)

    def run(i: int, d: int):
        queued[d] += 1
        request = pool.request(d)
        if check:
            assert pool.busy <= gpus and (pool.waiting == 0 or pool.busy == gpus)
        yield request
        queued[d] -= 1
        last_served[d] = env.now
        waits[i] = env.now - arrivals[i]
        yield env.timeout(services[i])
        pool.release()

    def source():
        for i, (t, d) in enumerate(zip(arrivals, devices, strict=True)):
            yield env.timeout(t - env.now)
            env.process(run(i, int(d)))

    env.process(source())
    env.run()
    assert pool.busy == 0 and pool.waiting == 0
    return waits


# the sample mean wait at rho = 0.7 is strongly autocorrelated: its spread over seeds is ~3.7% with 50k jobs,
# ~2% with 200k (1.5 s a run), so the 8% tolerance is about 4 standard deviations
N_JOBS = 200_000


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    top = a**c / math.factorial(c) / (1 - a / c)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top) / (c * mu - lam)


@pytest.mark.parametrize("policy", POLICIES)
def test_mm1_mean_wait_matches_conservation_law(policy: str):
    lam, mu = 0.7, 1.0
    waits = simulate(policy, 1, *workload(N_JOBS, 5, lam, mu, seed=7))
    theory = (lam / mu) / (mu - lam)  # 2.333 s
    assert not np.isnan(waits).any()
    assert waits.mean() == pytest.approx(theory, rel=0.08)


@pytest.mark.parametrize("policy", ["fifo", "round_robin"])
def test_mm2_mean_wait_matches_erlang_c(policy: str):
    lam, mu = 1.4, 1.0  # rho = lam / (2 mu) = 0.7
    waits = simulate(policy, 2, *workload(N_JOBS, 5, lam, mu, seed=11))
    assert waits.mean() == pytest.approx(erlang_c_wait(lam, mu, 2), rel=0.08)  # 0.961 s


def test_accounting_and_fifo_matches_simpy_resource():
    """busy <= gpus and nothing waits beside a free GPU; with fifo the pool is a drop-in for simpy.Resource."""
    arrivals, devices, services = workload(3_000, 4, 2.5, 1.0, seed=3)
    for policy in POLICIES:
        simulate(policy, 3, arrivals, devices, services, check=True)

    env = simpy.Environment()
    gpu = simpy.Resource(env, capacity=3)
    reference = np.full(len(arrivals), np.nan)

    def run(i: int):
        with gpu.request() as req:
            yield req
            reference[i] = env.now - arrivals[i]
            yield env.timeout(services[i])

    def source():
        for i, t in enumerate(arrivals):
            yield env.timeout(t - env.now)
            env.process(run(i))

    env.process(source())
    env.run()
    np.testing.assert_array_equal(simulate("fifo", 3, arrivals, devices, services), reference)


def test_interrupted_jobs_give_back_their_gpu_or_place():
    env = simpy.Environment()
    pool = GpuPool(env, 1, "round_robin")

    def job(d: int, duration_s: float):
        try:
            return (yield from pool.job(d, duration_s))
        except simpy.Interrupt:
            return None

    holder, queued, last = env.process(job(0, 10.0)), env.process(job(1, 1.0)), env.process(job(2, 1.0))

    def interrupt():
        yield env.timeout(1.0)
        queued.interrupt()  # leaves the queue without ever holding a GPU
        holder.interrupt()  # gives its GPU to the only job still waiting
        yield env.timeout(0.5)
        assert pool.busy == 1 and pool.waiting == 0

    env.process(interrupt())
    env.run()
    assert (holder.value, queued.value, last.value) == (None, None, (0.0, 1.0, 2.0))
    assert pool.busy == 0 and pool.waiting == 0
