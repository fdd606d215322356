"""The cloud's replay buffer: FIFO, fixed capacity, uniform sampling without replacement.

Images are kept as uint8 (as decoded from the uploads) to keep 10,000 samples per device small;
storage grows on demand (a row at a time up to 8, then doubling) so idle devices cost nothing and a
device with a few uploads costs a few images, which is what lets one process hold 100,000 devices.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ReplayBuffer:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data: Tensor | None = None
        self._size = 0
        self._next = 0  # ring position of the next write once full

    def __len__(self) -> int:
        return self._size

    def add(self, images: Tensor) -> None:
        """Append uint8 images [N, C, H, W]; the oldest are evicted beyond capacity."""
        for img in images:
            data = self._ensure_room(img)
            data[self._next] = img
            self._next = (self._next + 1) % self.capacity
            self._size = min(self._size + 1, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n images drawn uniformly without replacement (all of them if fewer are held)."""
        idx = torch.randperm(self._size, generator=generator)[: min(n, self._size)]
        assert self._data is not None, "sample() needs images in the buffer"
        return self._data[self._order()[idx]]

    def _order(self) -> Tensor:
        """Storage indices oldest first (so sampling does not depend on ring position)."""
        if self._size < self.capacity:
            return torch.arange(self._size)
        return (torch.arange(self.capacity) + self._next) % self.capacity

    def _ensure_room(self, img: Tensor) -> Tensor:
        """The storage, grown when full (see the module doc) up to capacity; allocated at the first image."""
        if self._data is None:
            self._data = torch.empty((1, *img.shape), dtype=img.dtype)
        held = self._data.shape[0]
        if self._size == held and held < self.capacity:
            # one row at a time up to 8 (most devices of a large, short run upload a few), then doubling
            grown = torch.empty((min(held + 1 if held < 8 else 2 * held, self.capacity), *img.shape), dtype=img.dtype)
            grown[:held] = self._data
            self._data = grown
            self._next = held
        return self._data
