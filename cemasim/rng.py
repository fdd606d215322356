"""One seed drives everything: named, order-independent child streams for numpy and torch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from numpy.random.bit_generator import ISeedSequence


def _key(*names: object) -> list[int]:
    """Stable integer words for a stream name (independent of PYTHONHASHSEED)."""
    digest = _digest(names)
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _digest(names: Sequence[object]) -> bytes:
    """The 16 bytes of a stream name its key words are read from (little-endian, 4 at a time)."""
    return hashlib.sha256("/".join(map(str, names)).encode()).digest()[:16]


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
    return (_states(seed, names, 1)[:, 0] >> np.uint64(1)).tolist()


def numpy_rngs(seed: int, names: Sequence[tuple]) -> Iterator[np.random.Generator]:
    """numpy_rng(seed, *n) for each n in names, made one by one as iterated, their SeedSequence steps run
    once over all of them (a fleet build seeds three streams a device, instead of a SeedSequence each).
    The generators' `bit_generator.seed_seq` is the drawn state, not a SeedSequence: they cannot spawn."""
    for state in _states(seed, names, 4):
        # numpy's stubs name SeedSequence; a BitGenerator takes any ISeedSequence (numpy's documented interface)
        yield np.random.Generator(np.random.PCG64(_DrawnState(state.copy())))  # type: ignore[arg-type]


class _DrawnState(ISeedSequence):
    """What SeedSequence(entropy).generate_state(4, np.uint64) returns, computed beforehand: PCG64 seeds
    itself from exactly that."""

    __slots__ = ("state",)

    def __init__(self, state: np.ndarray):
        self.state = state

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        if n_words != len(self.state) or np.dtype(dtype) != np.uint64:
            raise ValueError("a drawn state gives only the words it was drawn as")
        return self.state


def _states(seed: int, names: Sequence[tuple], n_words: int) -> np.ndarray:
    """[SeedSequence([seed, *_key(*n)]).generate_state(n_words, np.uint64) for n in names] as one
    [len(names), n_words] array, each step of numpy's SeedSequence applied to all names at once."""
    entropy = [np.full(len(names), w, np.uint32) for w in _words(seed)]
    entropy += list(_keys(names).T)
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
    hash_const, words = _INIT_B, np.empty((len(names), 2 * n_words), np.uint32)
    for dst in range(2 * n_words):  # generate_state: 32-bit words cycling over the pool, low word first
        value = pool[dst % _POOL_SIZE] ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_B) & _MASK
        value = value * np.uint32(hash_const)
        words[:, dst] = value ^ (value >> _XSHIFT)
    return words.astype("<u4").view("<u8").astype(np.uint64)


def _keys(names: Sequence[tuple]) -> np.ndarray:
    """[_key(*n) for n in names] as a [len(names), 4] uint32 array."""
    return np.frombuffer(b"".join(map(_digest, names)), dtype="<u4").reshape(len(names), 4).astype(np.uint32)


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
