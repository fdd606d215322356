"""One seed drives everything: named, order-independent child streams for numpy and torch."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _key(*names: object) -> list[int]:
    """Stable integer words for a stream name (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(map(str, names)).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def numpy_rng(seed: int, *names: object) -> np.random.Generator:
    """A numpy Generator for the stream `names` under `seed` (e.g. numpy_rng(0, 'arrivals', 3))."""
    return np.random.default_rng(np.random.SeedSequence([seed, *_key(*names)]))


def torch_generator(seed: int, *names: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator for the stream `names` under `seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(torch_seed(seed, *names))
    return g


def torch_seed(seed: int, *names: object) -> int:
    """The seed of torch_generator(seed, *names): reseeding one generator with it gives the same stream
    as a new generator (manual_seed resets the whole state), without allocating one per use."""
    return int(np.random.SeedSequence([seed, *_key(*names)]).generate_state(1, np.uint64)[0] >> 1)
