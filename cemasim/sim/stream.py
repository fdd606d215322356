"""Sample stream: per device, arrival times -> test batches of (image index, label, domain).

Batches are planned up front (cheap index arrays); the images themselves are corrupted only
when the device actually predicts the batch (`Workload.materialize`), with a generator keyed on
(device, batch) so the pixels do not depend on event order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cemasim.data.arrivals import ARRIVALS, batch_bounds
from cemasim.data.shifts import Domain, device_schedule
from cemasim.rng import numpy_rng, torch_generator


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

    def __len__(self) -> int:
        return len(self.arrival_s)


class Workload:
    """The dataset, the domain table and the corruption of batches."""

    def __init__(self, images: Tensor, labels: Tensor, domains: list[Domain], seed: int):
        self.images, self.labels = images, labels
        self.domains, self.seed = domains, seed

    def materialize(self, batch: TestBatch) -> Tensor:
        """Float [n, C, H, W] images in [0, 1] of `batch`, each corrupted by its domain."""
        from cemasim.data.corruptions import corrupt

        x = self.images[torch.from_numpy(batch.image_idx)].float().div_(255.0)
        for d in np.unique(batch.domain):
            name, severity = self.domains[d]
            if name == "clean":
                continue
            rows = torch.from_numpy(np.flatnonzero(batch.domain == d))
            gen = torch_generator(self.seed, "corrupt", batch.device, batch.seq, int(d))
            x[rows] = corrupt(x[rows], name, severity, generator=gen)
        return x


def plan_device(device: int, sc, n_images: int, labels: np.ndarray, domain_ids: dict[Domain, int]) -> list[TestBatch]:
    """All test batches of one device over the scenario's duration."""
    arr = sc.arrivals
    times = ARRIVALS.get(arr.process)(arr.rate_hz, sc.duration_s, numpy_rng(sc.seed, "arrivals", device))
    schedule = device_schedule(sc.shift.segments, sc.shift.order, sc.shift.loop, numpy_rng(sc.seed, "shift", device))
    domain = np.array([domain_ids[d] for d in schedule.domains])[schedule.domain_index(times)]
    img_rng = numpy_rng(sc.seed, "images", device)
    reps = -(-len(times) // n_images) if len(times) else 0
    image_idx = np.concatenate([img_rng.permutation(n_images) for _ in range(reps)])[: len(times)] if reps else \
        np.zeros(0, dtype=np.int64)
    return [
        TestBatch(device, seq, ready, start, times[start:stop], image_idx[start:stop], labels[image_idx[start:stop]],
                  domain[start:stop])
        for seq, (start, stop, ready) in enumerate(batch_bounds(times, arr.batch_size, arr.max_wait_s))
    ]


def domain_table(sc) -> dict[Domain, int]:
    ids: dict[Domain, int] = {}
    for seg in sc.shift.segments:
        ids.setdefault((seg["corruption"], int(seg["severity"])), len(ids))
    return ids
