"""Sample stream: per device, arrival times -> test batches of (image index, label, domain).

Batches are planned up front (cheap index arrays); the images themselves are loaded and, unless
the dataset is pre-corrupted (CIFAR-10-C, ImageNet-C), corrupted only when the device actually
predicts the batch (`Workload.materialize`), with a generator keyed on (device, batch) so the
pixels do not depend on event order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch
from torch import Tensor

from cemasim.data.arrivals import ARRIVALS, batch_arrays
from cemasim.data.datasets import ImageSource, open_dataset
from cemasim.data.shifts import Domain, Schedule, all_domains, build_schedule, image_order, schedule_picks
from cemasim.net.capacity import DownIntervals
from cemasim.rng import numpy_rng, numpy_rngs, torch_seed, torch_seeds
from cemasim.specs import Params


@dataclass(eq=False)
class TestBatch:
    device: int
    seq: int
    ready_s: float  # when the batch closes and can be predicted
    first_sample_id: int  # per-device running sample number of its first sample
    arrival_s: np.ndarray
    image_idx: np.ndarray
    labels: np.ndarray
    domain: np.ndarray  # index into Workload.domains
    segment: int = 0  # schedule segment of the first sample (reset protocol)

    def __len__(self) -> int:
        return len(self.arrival_s)


class DevicePlan(Sequence[TestBatch]):
    """One device's test batches, kept as per-sample arrays and batch bounds; a TestBatch is built when
    it is asked for (a fleet of 50,000 batch-1 devices would otherwise hold 12 million of them).

    The eight arrays live in two buffers, one of int64 (image, label, domain and segment of each sample,
    then each batch's start and stop) and one of float64 (each sample's arrival, then each batch's
    ready time); the fields are views of them. For a device of 8 samples, eight arrays take 1.35 kB
    (numpy headers and allocations, tracemalloc), the plan with its two buffers 0.68 kB."""

    __slots__ = ("_floats", "_ints", "_n_batches", "device", "n_samples")

    def __init__(self, device: int, times: np.ndarray, image_idx: np.ndarray, labels: np.ndarray,
                 domain: np.ndarray, segment: np.ndarray, bounds: tuple[np.ndarray, np.ndarray, np.ndarray]):
        starts, stops, ready_s = bounds
        self.device, self.n_samples, self._n_batches = device, len(times), len(starts)
        ints = (image_idx, labels, domain, segment, starts, stops)
        self._ints = np.concatenate([np.asarray(a, np.int64) for a in ints])
        self._floats = np.concatenate([np.asarray(times, np.float64), np.asarray(ready_s, np.float64)])

    def _sample_field(self, k: int) -> np.ndarray:
        n = self.n_samples
        return self._ints[k * n : (k + 1) * n]

    @property
    def times(self) -> np.ndarray:
        return self._floats[: self.n_samples]

    @property
    def image_idx(self) -> np.ndarray:
        return self._sample_field(0)

    @property
    def labels(self) -> np.ndarray:
        return self._sample_field(1)

    @property
    def domain(self) -> np.ndarray:
        return self._sample_field(2)

    @property
    def segment(self) -> np.ndarray:
        return self._sample_field(3)

    @property
    def starts(self) -> np.ndarray:
        o = 4 * self.n_samples
        return self._ints[o : o + self._n_batches]

    @property
    def stops(self) -> np.ndarray:
        o = 4 * self.n_samples + self._n_batches
        return self._ints[o : o + self._n_batches]

    @property
    def ready_s(self) -> np.ndarray:
        return self._floats[self.n_samples :]

    @property
    def nbytes(self) -> int:
        return self._ints.nbytes + self._floats.nbytes

    def __len__(self) -> int:
        return self._n_batches

    def first_segment(self) -> int:
        """The schedule segment of the first batch (0 without any)."""
        return int(self.segment[0]) if len(self.segment) else 0

    def max_batch_size(self) -> int:
        return int((self.stops - self.starts).max()) if len(self) else 0

    @overload
    def __getitem__(self, seq: int) -> TestBatch: ...

    @overload
    def __getitem__(self, seq: slice) -> list[TestBatch]: ...

    def __getitem__(self, seq: int | slice) -> TestBatch | list[TestBatch]:
        if isinstance(seq, slice):
            return [self[i] for i in range(*seq.indices(len(self)))]
        if seq < 0:
            seq += len(self)
        if not 0 <= seq < len(self):
            raise IndexError(f"batch {seq} of {len(self)}")
        n, ints = self.n_samples, self._ints
        start, stop = int(ints[4 * n + seq]), int(ints[4 * n + self._n_batches + seq])
        return TestBatch(self.device, seq, float(self._floats[n + seq]), start, self._floats[start:stop],
                         ints[start:stop], ints[n + start : n + stop], ints[2 * n + start : 2 * n + stop],
                         int(ints[3 * n + start]))


def open_source(sc) -> ImageSource:
    """The scenario's dataset; pre-corrupted formats load only the domains the shifts use."""
    from cemasim.data.datasets import DATASETS

    d = sc.data
    kwargs = {"split": d.split, "subset": d.subset, "image_size": d.image_size}
    if DATASETS.get(d.dataset).pre_corrupted:
        domains = list(domain_table(sc))
        kwargs["corruptions"] = list(dict.fromkeys(c for c, _ in domains))
        kwargs["severities"] = sorted({s for _, s in domains})
    return open_dataset(d.dataset, d.root, **kwargs)


class Workload:
    """The dataset, the domain table and the corruption of batches."""

    def __init__(self, source: ImageSource, domains: list[Domain], seed: int, labels: np.ndarray | None = None):
        self.source, self.domains, self.seed = source, domains, seed
        self.labels = source.labels if labels is None else labels
        self.pre_corrupted = source.domains is not None
        self._generator = torch.Generator()  # reseeded per (device, batch, domain): torch_generator's streams

    def materialize(self, batch: TestBatch) -> Tensor:
        """Float [n, C, H, W] images in [0, 1] of `batch`, each in its domain."""
        return self.materialize_many([batch])

    def materialize_many(self, batches: Sequence[TestBatch]) -> Tensor:
        """The images of several batches back to back (devices predicting at the same instant): one load
        and one pass of seed derivation for all, then each batch's domains corrupted with their own
        generators; the same pixels as one call each."""
        from cemasim.data.corruptions import corrupt

        idx = batches[0].image_idx if len(batches) == 1 else np.concatenate([b.image_idx for b in batches])
        x = self.source.load(idx).float().div_(255.0)
        if self.pre_corrupted:
            return x
        jobs, start = [], 0
        for batch in batches:
            jobs += self._corruptions(batch, start)
            start += len(batch)
        keys = [("corrupt", batch.device, batch.seq, d) for batch, d, _ in jobs]
        seeds = torch_seeds(self.seed, keys) if len(keys) > 1 else [torch_seed(self.seed, *k) for k in keys]
        for (_, d, rows), seed in zip(jobs, seeds, strict=True):
            name, severity = self.domains[d]
            self._generator.manual_seed(seed)
            x[rows] = corrupt(x[rows], name, severity, generator=self._generator)
        return x

    def _corruptions(self, batch: TestBatch, start: int) -> list[tuple[TestBatch, int, slice | Tensor]]:
        """(batch, domain, rows of the merged images) for each domain of `batch` that is not clean."""
        if not len(batch):
            return []
        first = batch.domain[0]
        if (batch.domain == first).all():  # always at batch 1: a slice, no row lookups
            parts: list[tuple[int, slice | Tensor]] = [(int(first), slice(start, start + len(batch)))]
        else:
            parts = [(int(d), torch.from_numpy(start + np.flatnonzero(batch.domain == d)))
                     for d in np.unique(batch.domain)]
        return [(batch, d, rows) for d, rows in parts if self.domains[d][0] != "clean"]

    def clean_images(self, n: int) -> Tensor:
        """The first n images as floats (EATA's Fisher information)."""
        return self.source.load(np.arange(min(n, len(self.source)))).float().div_(255.0)


def domain_table(sc, classes: list | None = None) -> dict[Domain, int]:
    """Every (corruption, severity) any device class sees, numbered in order of appearance
    (`classes`: the scenario's device classes, if already made)."""
    from cemasim.scenario.classes import device_classes

    table: dict[Domain, int] = {}
    for shift in [sc.shift] + [c.view.shift for c in (device_classes(sc) if classes is None else classes)]:
        for domain in all_domains(shift.segments, shift.protocol):
            table.setdefault(domain, len(table))
    return table


def plan_device(device: int, sc, workload: Workload, domain_ids: dict[Domain, int]) -> DevicePlan:
    """All test batches of one device over the scenario's duration."""
    return plan_available(device, sc, workload, domain_ids)[0]


PLAN_STREAMS = ("arrivals", "shift", "images")  # the numpy streams a device's plan draws from, in order


def plan_streams(seed: int, devices: Sequence[int]) -> Iterator[tuple[np.random.Generator, ...]]:
    """Each device's PLAN_STREAMS (numpy_rng(seed, name, device)), seeded in one pass for all devices."""
    rngs = numpy_rngs(seed, [(name, d) for d in devices for name in PLAN_STREAMS])
    return zip(*[rngs] * len(PLAN_STREAMS), strict=True)


def plan_available(device: int, sc, workload: Workload, domain_ids: dict[Domain, int],
                   off: DownIntervals | None = None) -> tuple[DevicePlan, np.ndarray]:
    """(test batches, arrival times of missed samples) of one device: Planner(...).plan for a single device."""
    return Planner(sc, workload, domain_ids).plan(device, off)


class Planner:
    """Plans the devices of one scenario or device class: what they all share (the arrival process, the
    image pool, each schedule and its domain numbers) is looked up once, not once a device."""

    MAX_SCHEDULES = 1024

    def __init__(self, sc, workload: Workload, domain_ids: dict[Domain, int]):
        # what it reads of the scenario, as plain data: a planner travels into the simulator
        self.seed, self.duration_s = sc.seed, sc.duration_s
        self.arrival_keys, self.shift = Params(sc.arrivals.to_dict()), Params(sc.shift.to_dict())
        self.workload, self.domain_ids = workload, domain_ids
        self.arrivals = ARRIVALS.get(sc.arrivals.process)
        self.pool = np.arange(len(workload.labels))
        self.pool.setflags(write=False)
        self._schedules: dict[tuple[int, ...], tuple[Schedule, np.ndarray]] = {}
        self._domain_pools: dict[int, np.ndarray] = {}

    def plan(self, device: int, off: DownIntervals | None = None,
             streams: tuple[np.random.Generator, ...] | None = None) -> tuple[DevicePlan, np.ndarray]:
        """(test batches, arrival times of missed samples): samples arriving while the device is off are
        missed. Domains and images are drawn for every arrival first, so availability does not change
        what the other samples are. `streams`: the device's PLAN_STREAMS, if already made (plan_streams)."""
        arr, sh = self.arrival_keys, self.shift
        arrivals, rng, images = streams or (numpy_rng(self.seed, name, device) for name in PLAN_STREAMS)
        times = self.arrivals(arr, self.duration_s, arrivals, device)
        schedule, ids = self._schedule(schedule_picks(len(sh.segments), sh.order, rng, device))
        local, segment = schedule.domain_and_segment(times, rng)
        domain = ids[local]
        image_idx = self._images(domain, images)
        labels = self.workload.labels[image_idx]
        missed = np.zeros(0)
        if off is not None and len(off.starts):
            on = ~off.covers(times)
            missed = times[~on]
            times, image_idx, labels, domain, segment = times[on], image_idx[on], labels[on], domain[on], segment[on]
        return DevicePlan(device, times, image_idx, labels, domain, segment,
                          batch_arrays(times, arr.batch_size, arr.max_wait_s)), missed

    def _schedule(self, picks: np.ndarray) -> tuple[Schedule, np.ndarray]:
        """The schedule of these picked segments and its domains' numbers, built once per distinct pick
        (the first MAX_SCHEDULES kept: random orders of many segments rarely repeat)."""
        key = tuple(picks.tolist())
        kept = self._schedules.get(key)
        if kept is None:
            sh = self.shift
            schedule = build_schedule([sh.segments[i] for i in key], sh.loop, sh.protocol)
            kept = schedule, np.array([self.domain_ids[d] for d in schedule.domains], dtype=np.int64)
            if len(self._schedules) < self.MAX_SCHEDULES:
                self._schedules[key] = kept
        return kept

    def _images(self, domain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Image index per sample: from the whole dataset, or (pre-corrupted data) from its domain's images."""
        sh, workload = self.shift, self.workload
        labels = workload.labels
        if not workload.pre_corrupted:
            return image_order(self.pool, labels, len(domain), sh.label_shift, rng, sh.dirichlet_alpha)
        out = np.empty(len(domain), dtype=np.int64)
        for d in np.unique(domain):
            rows = np.flatnonzero(domain == d)
            out[rows] = image_order(self._domain_pool(int(d)), labels, len(rows), sh.label_shift, rng,
                                    sh.dirichlet_alpha)
        return out

    def _domain_pool(self, d: int) -> np.ndarray:
        """The images of domain d in a pre-corrupted dataset (found once, not once a device)."""
        pool = self._domain_pools.get(d)
        if pool is None:
            source = self.workload.source
            ids = {name: i for i, name in enumerate(source.domain_names)}
            pool = np.flatnonzero(source.domains == ids[self.workload.domains[d]])
            pool.setflags(write=False)
            self._domain_pools[d] = pool
        return pool
