"""One seed drives everything: named, order-independent child streams for numpy and torch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

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


# numpy's SeedSequence (numpy/random/bit_generator.pyx), its constants and steps, on arrays of keys
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT, _POOL_SIZE, _MASK = 0xCA01F9DD, 0x4973F715, 16, 4, 0xFFFFFFFF


def torch_seeds(seed: int, names: Sequence[tuple]) -> list[int]:
    """[torch_seed(seed, *n) for n in names], the SeedSequence steps run once over all of them: a batch of
    devices predicting at one instant pays one pass instead of a SeedSequence each (tests/test_rng.py)."""
    entropy = [np.full(len(names), w, np.uint32) for w in _words(seed)]
    entropy += list(np.array([_key(*n) for n in names], dtype=np.uint32).reshape(len(names), 4).T)
    hash_const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_const
        value = value ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_A) & _MASK
        value = value * np.uint32(hash_const)
        return value ^ (value >> _XSHIFT)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result: np.ndarray = x * np.uint32(_MIX_MULT_L) - y * np.uint32(_MIX_MULT_R)
        return result ^ (result >> _XSHIFT)

    zero = np.zeros(len(names), np.uint32)
    pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, len(entropy)):
        for dst in range(_POOL_SIZE):
            pool[dst] = mix(pool[dst], hashmix(entropy[src]))
    hash_const, words = _INIT_B, []
    for dst in range(2):  # generate_state(1, np.uint64): two 32-bit words, low first
        value = pool[dst] ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_B) & _MASK
        value = value * np.uint32(hash_const)
        words.append(value ^ (value >> _XSHIFT))
    state = words[0].astype(np.uint64) | (words[1].astype(np.uint64) << np.uint64(32))
    return (state >> np.uint64(1)).tolist()


def _words(seed: int) -> list[int]:
    """A non-negative int as SeedSequence's entropy words: 32 bits at a time, low first ([0] for 0)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    words = []
    while True:
        words.append(seed & _MASK)
        seed >>= 32
        if not seed:
            return words
