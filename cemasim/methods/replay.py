"""The cloud's replay buffer: FIFO, fixed capacity, uniform sampling without replacement.

It keeps references to the uploads' decoded uint8 images, not copies: an image is a row of the
tensor its batch's uploads share, held as (tensor, row). A copy held every image twice until its
chunk ran, a buffer grown a row at a time re-allocated at every upload, and a view a row costs
600 bytes; an idle device's buffer is an empty list. That is what lets one process hold a million
devices.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ReplayBuffer:
    def __init__(self, capacity: int):
        self.capacity = capacity
        # (images, row) in storage order: oldest first until full, then a ring
        self._held: list[tuple[Tensor, int]] = []
        self._next = 0  # ring position of the next write once full

    def __len__(self) -> int:
        return len(self._held)

    def keep(self, images: Tensor, row: int) -> None:
        """Keep image `row` of uint8 `images` [N, C, H, W] (by reference); the oldest goes beyond capacity."""
        if len(self._held) < self.capacity:
            self._held.append((images, row))
        else:
            self._held[self._next] = (images, row)
            self._next = (self._next + 1) % self.capacity

    def add(self, images: Tensor) -> None:
        """Keep every image of uint8 `images` [N, C, H, W], in order."""
        for row in range(len(images)):
            self.keep(images, row)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n images drawn uniformly without replacement (all of them if fewer are held), as one tensor."""
        size = len(self._held)
        assert size, "sample() needs images in the buffer"
        idx = torch.randperm(size, generator=generator)[: min(n, size)]
        # the i-th oldest image sits at storage position (i + _next) % size once the ring is full
        # (_next stays 0 until then), so sampling does not depend on the ring position
        offset = self._next
        return torch.stack([images[row] for images, row in (self._held[(i + offset) % size] for i in idx.tolist())])
