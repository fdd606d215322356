"""Predicting ahead (fleet.predict_ahead): a batch-1 device's next predictions in one merged pass.

A device that only runs forward passes predicts each sample from its norm state at that moment, and
that state changes only when a refresh is applied or a segment resets it. So when the device reaches
a sample, the host may predict its next few samples too, in one pass of models/grouped.py (each
image its own group: the floats of a lone image's pass), with one image load and one seed pass
(`Workload.materialize_many`). The results wait in a cache; a later sample takes its own if the
state the device holds then is the one they were computed with (the same tensors, none written
since), and otherwise the cache is dropped and filled again. Nothing the simulation sees moves:
each prediction is recorded, selected and uploaded at its own simulated time, with the same floats.

The first window is the limit; after a change the window starts again at one sample and doubles
while the state holds, so a device refreshed often wastes little. A device that uploads keeps the
images of its window (up to `limit` a device) for its uploads; one that never does keeps none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cemasim.methods.inference import grouped_edge_logits
from cemasim.models import norm
from cemasim.workload import TestBatch

if TYPE_CHECKING:
    from cemasim.sim.edge import EdgeDevice


class PredictAhead:
    def __init__(self, limit: int):
        self.limit, self.window = limit, limit
        self.cache: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}  # batch seq -> (images, logits)
        self.held: list[torch.Tensor] = []  # the state the cache was computed with (kept: ids stay unique)
        self.versions: list[int] = []
        self.passes = self.predicted = 0

    def take(self, device: EdgeDevice, batch: TestBatch) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(images, logits) of `batch`, a one-sample batch the device predicts now (images None for a
        device without an uplink)."""
        device.reset_if_due(batch)
        state = device.state
        holds = self._holds(state)
        if batch.seq not in self.cache or not holds:
            if self.held:  # the window doubles while the state holds, and starts again at one when it changes
                self.window = min(self.limit, 2 * self.window) if holds else 1
            self._fill(device, batch, state)
        return self.cache.pop(batch.seq)

    def _holds(self, state: norm.NormState) -> bool:
        """Whether `state` is the one the cache was computed with: the same tensors, none written since."""
        tensors = list(state.values())
        return len(tensors) == len(self.held) and all(a is b for a, b in zip(tensors, self.held, strict=True)) \
            and [t._version for t in tensors] == self.versions

    def _fill(self, device: EdgeDevice, batch: TestBatch, state: norm.NormState) -> None:
        batches = device.batches[batch.seq: batch.seq + self.window]
        x = device.workload.materialize_many(batches)
        mode = device.method.edge_stat_mode()[0]
        logits = grouped_edge_logits(device.model, [state] * len(batches), x.unsqueeze(1).to(device.compute_device),
                                     mode)
        keep = device.uplink is not None  # only uploads read the images again
        self.cache = {b.seq: (x[i:i + 1] if keep else None, logits[i]) for i, b in enumerate(batches)}
        self.held, self.versions = list(state.values()), [t._version for t in state.values()]
        self.passes += 1
        self.predicted += len(batches)
