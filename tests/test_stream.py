"""Arrivals, batching and shift schedules: the stream each device sees."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pytest

from cemasim.assembly import build_workload
from cemasim.data.arrivals import batch_arrays, constant, poisson
from cemasim.data.shifts import device_schedule
from cemasim.rng import numpy_rng
from cemasim.workload import DevicePlan, domain_table, plan_device
from tests.conftest import small


def batch_bounds(times: np.ndarray, batch_size: int, max_wait_s: float) -> list[tuple[int, int, float]]:
    starts, stops, ready = batch_arrays(times, batch_size, max_wait_s)
    return list(zip(starts.tolist(), stops.tolist(), ready.tolist(), strict=True))


class Cfg:
    rate_hz, on_s, off_s, trace = 4.0, 10.0, 30.0, None


def test_constant_arrivals_are_evenly_spaced():
    t = constant(Cfg, 10.0, np.random.default_rng(0))
    assert np.allclose(np.diff(t), 0.25) and 0 <= t[0] < 0.25 and t[-1] < 10.0


def test_poisson_rate_and_exponential_gaps():
    cfg = type("C", (), {"rate_hz": 5.0})
    t = poisson(cfg, 20_000.0, np.random.default_rng(0))
    gaps = np.diff(t)
    assert len(t) / 20_000 == pytest.approx(5.0, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)  # exponential: CV = 1


def test_batches_close_when_full_or_after_max_wait():
    times = np.array([0.0, 0.1, 0.2, 0.3, 5.0, 9.0, 20.0])
    # full at 0.2; 0.3 waits alone until 4.3; 5.0 and 9.0 (= its deadline) share one; 20.0 alone
    assert batch_bounds(times, batch_size=3, max_wait_s=4.0) == [(0, 3, 0.2), (3, 4, 4.3), (4, 6, 9.0),
                                                                  (6, 7, 24.0)]


def sequential_bounds(times: np.ndarray, batch_size: int, max_wait_s: float) -> list[tuple[int, int, float]]:
    """The rule, one sample at a time: a batch closes when full or max_wait_s after its first sample."""
    bounds, i, at = [], 0, times.tolist()
    while i < len(at):
        deadline = at[i] + max_wait_s
        stop = min(i + batch_size, bisect_right(at, deadline), len(at))
        bounds.append((i, stop, at[stop - 1] if stop - i == batch_size else deadline))
        i = stop
    return bounds


def test_batch_bounds_equal_the_sequential_rule():
    """The vectorised bounds (every sample's stop at once, then a walk over batches) are the rule's,
    float for float: ties at a deadline, zero and infinite waits, batch size 1, empty streams."""
    rng = np.random.default_rng(0)
    for _ in range(600):
        n = int(rng.integers(0, 50))
        times = np.sort(rng.exponential(1.0, n).cumsum() if rng.random() < 0.5 else rng.integers(0, 20, n) * 0.1)
        batch_size, wait = int(rng.integers(1, 9)), float(rng.choice([0.0, 0.1, 0.3, 1.0, 30.0, np.inf]))
        assert batch_bounds(times, batch_size, wait) == sequential_bounds(times, batch_size, wait)
    starts, stops, ready = batch_arrays(np.zeros(0), 4, 1.0)
    assert len(starts) == len(stops) == len(ready) == 0


def test_device_plan_builds_the_batches_it_is_asked_for():
    times = np.array([0.0, 0.1, 0.2, 0.3, 5.0, 9.0, 20.0])
    n = len(times)
    plan = DevicePlan(7, times, np.arange(n) + 100, np.arange(n) % 3, np.zeros(n, np.int64), np.arange(n) // 4,
                      batch_arrays(times, 3, 4.0))
    assert len(plan) == 4 and plan.n_samples == n and plan.nbytes > 0
    batches = list(plan)
    assert [(b.seq, b.first_sample_id, len(b), b.ready_s, b.segment) for b in batches] == \
        [(0, 0, 3, 0.2, 0), (1, 3, 1, 4.3, 0), (2, 4, 2, 9.0, 1), (3, 6, 1, 24.0, 1)]
    assert batches[2].image_idx.tolist() == [104, 105] and batches[2].labels.tolist() == [1, 2]
    assert plan[-1].seq == 3 and [b.seq for b in plan[1:3]] == [1, 2]
    with pytest.raises(IndexError):
        plan[4]


def test_schedule_same_order_loops():
    segs = [{"corruption": "fog", "severity": 1, "duration_s": 10.0},
            {"corruption": "contrast", "severity": 2, "duration_s": 5.0}]
    sch = device_schedule(segs, "same", True, np.random.default_rng(0))
    idx = sch.domain_index(np.array([0.0, 9.9, 10.0, 14.9, 15.0, 26.0]))
    assert idx.tolist() == [0, 0, 1, 1, 0, 1]
    no_loop = device_schedule(segs, "same", False, np.random.default_rng(0))
    assert no_loop.domain_index(np.array([100.0])).tolist() == [1]  # the last segment persists


def test_domains_and_segments_found_at_once_equal_their_rules():
    """domain_and_segment (one search when every time is in the first lap) equals domain_index and
    segment_index, at segment ends, just below a lap, past it, with and without looping."""
    segs = [{"corruption": "fog", "severity": 1, "duration_s": 0.1},
            {"corruption": "contrast", "severity": 2, "duration_s": 0.2},
            {"corruption": "pixelate", "severity": 3, "duration_s": 0.3}]
    rng = np.random.default_rng(0)
    total = 0.1 + 0.2 + 0.3
    edges = [0.0, 0.1, 0.1 + 0.2, np.nextafter(total, 0), total, 2 * total, np.nextafter(3 * total, 0)]
    for loop in (True, False):
        sch = device_schedule(segs, "same", loop, rng)
        for _ in range(300):
            spread = total * rng.choice([0.5, 1.0, 3.0])
            times = np.sort(np.concatenate([rng.choice(edges, int(rng.integers(0, 4))),
                                            rng.uniform(0, spread, int(rng.integers(0, 9)))]))
            domain, segment = sch.domain_and_segment(times)
            assert domain.tolist() == sch.domain_index(times).tolist()
            assert segment.tolist() == sch.segment_index(times).tolist()


@pytest.mark.parametrize("n", [1, 7, 10, 11, 25])
def test_image_draws_take_the_pools_permutations(n):
    """The images a device draws are the first n of permutations of the pool, cycled (drawn as
    permutations of positions, which numpy's Fisher-Yates swaps exactly as it swaps the pool)."""
    from cemasim.data.shifts import image_order

    pool = np.array([3, 8, 9, 14, 20, 21, 40, 41, 42, 50])
    labels = np.arange(60) % 4
    rng, again = np.random.default_rng(5), np.random.default_rng(5)
    reps = -(-n // len(pool))
    expected = np.concatenate([again.permutation(pool) for _ in range(reps)])[:n]
    assert image_order(pool, labels, n, "none", rng).tolist() == expected.tolist()
    assert rng.random() == again.random()  # the stream is left where the old draw left it


def test_shuffled_order_differs_between_devices_but_is_seeded():
    segs = [{"corruption": c, "severity": 3, "duration_s": 1.0} for c in ("fog", "contrast", "pixelate", "brightness")]
    orders = [device_schedule(segs, "shuffled", True, numpy_rng(0, "shift", d)).domains for d in range(6)]
    assert len({tuple(o) for o in orders}) > 1
    again = device_schedule(segs, "shuffled", True, numpy_rng(0, "shift", 3)).domains
    assert again == orders[3]


def test_planned_device_stream_covers_every_arrival_once():
    sc = small()
    ids = domain_table(sc)
    workload, _ = build_workload(sc)
    batches = plan_device(0, sc, workload, ids)
    arrivals = np.concatenate([b.arrival_s for b in batches])
    assert np.all(np.diff(arrivals) > 0) and arrivals[-1] < sc.duration_s
    assert all(len(b) <= sc.arrivals.batch_size for b in batches)
    assert all(b.ready_s >= b.arrival_s[-1] for b in batches)
    idx = np.concatenate([b.image_idx for b in batches])
    assert len(np.unique(idx)) == len(idx)  # no image repeats before the dataset is exhausted
    assert [b.seq for b in batches] == list(range(len(batches)))


@pytest.mark.parametrize("sets", [[], ["shift.order=shuffled", "shift.protocol=mixed", "shift.label_shift=sorted"],
                                  ["shift.order=random", "arrivals.process=onoff", "shift.protocol=gradual"]])
def test_a_fleets_planner_plans_each_device_as_alone(sets):
    """The fleet's Planner (streams seeded in one pass, schedules shared between devices that pick the same
    segments) gives every device the plan it gets planned alone."""
    from cemasim.workload import Planner, plan_available, plan_streams

    sc = small(*sets)
    ids = domain_table(sc)
    workload, _ = build_workload(sc)
    devices = list(range(6))
    planner = Planner(sc, workload, ids)
    fields = ("times", "image_idx", "labels", "domain", "segment", "starts", "stops", "ready_s")
    for d, streams in zip(devices, plan_streams(sc.seed, devices), strict=True):
        shared, alone = planner.plan(d, None, streams)[0], plan_available(d, sc, workload, ids)[0]
        for name in fields:
            a, b = getattr(shared, name), getattr(alone, name)
            assert a.dtype == b.dtype and a.tolist() == b.tolist(), (sets, d, name)


def test_images_of_several_batches_at_once_are_each_batchs_own_pixels():
    """materialize_many (devices predicting at one instant) and the one-domain shortcut give the pixels of
    the row-by-domain rule (its transcription here) for every batch, domain changes inside a batch too."""
    import torch

    from cemasim.data.corruptions import corrupt
    from cemasim.rng import torch_generator

    sc = small("shift.segments=[{corruption: gaussian_noise, severity: 4, duration_s: 3}, "
               "{corruption: clean, severity: 1, duration_s: 2}, {corruption: fog, severity: 3, duration_s: 3}]")
    ids = domain_table(sc)
    workload, _ = build_workload(sc)
    workload.domains = list(ids)
    batches = [b for d in range(2) for b in plan_device(d, sc, workload, ids)]
    assert any(len(np.unique(b.domain)) > 1 for b in batches) and any(len(np.unique(b.domain)) == 1 for b in batches)

    def by_rows(batch):
        x = workload.source.load(batch.image_idx).float().div_(255.0)
        for d in np.unique(batch.domain):
            name, severity = workload.domains[d]
            if name != "clean":
                rows = torch.from_numpy(np.flatnonzero(batch.domain == d))
                g = torch_generator(sc.seed, "corrupt", batch.device, batch.seq, int(d))
                x[rows] = corrupt(x[rows], name, severity, generator=g)
        return x

    expected = torch.cat([by_rows(b) for b in batches])
    assert torch.equal(workload.materialize_many(batches), expected)
    assert torch.equal(torch.cat([workload.materialize(b) for b in batches]), expected)
