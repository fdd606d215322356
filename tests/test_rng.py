"""rng.py: named streams, and torch_seeds / numpy_rngs (SeedSequence run over many keys at once) equal to
torch_seed / numpy_rng."""

import numpy as np
import pytest
import torch

from cemasim.rng import numpy_rng, numpy_rngs, torch_generator, torch_seed, torch_seeds


@pytest.mark.parametrize("seed", [0, 1, 2**31, 2**32 - 1, 2**32, 2**32 + 5, 2**64 + 3, 12345678901234567890123])
def test_seeds_of_many_keys_at_once_equal_one_seed_sequence_each(seed):
    draw = np.random.default_rng(seed % 1000)
    keys = [("corrupt", int(draw.integers(0, 10**6)), int(draw.integers(0, 10**5)), int(draw.integers(0, 20)))
            for _ in range(300)] + [("images", 3), ("a", "b", "c", 1.5)]
    assert torch_seeds(seed, keys) == [torch_seed(seed, *k) for k in keys]
    assert torch_seeds(seed, keys[:1]) == [torch_seed(seed, *keys[0])]


@pytest.mark.parametrize("seed", [0, 3, 2**32 + 5, 12345678901234567890123])
def test_generators_of_many_names_at_once_equal_one_seed_sequence_each(seed):
    names = [(name, d) for d in range(40) for name in ("arrivals", "shift", "images")] + [("link", "uplink", 7)]
    made = list(numpy_rngs(seed, names))
    assert len(made) == len(names)
    for rng, name in zip(made, names, strict=True):
        alone = numpy_rng(seed, *name)
        assert rng.bit_generator.state == alone.bit_generator.state
        assert np.array_equal(rng.permutation(1000), alone.permutation(1000))
        assert np.array_equal(rng.exponential(2.0, 7), alone.exponential(2.0, 7))
    assert list(numpy_rngs(seed, [])) == []


def test_a_batch_made_generator_cannot_spawn():
    rng = next(numpy_rngs(0, [("a",)]))
    with pytest.raises(TypeError):
        rng.spawn(1)


def test_a_reseeded_generator_is_the_named_stream():
    g = torch.Generator().manual_seed(torch_seeds(7, [("corrupt", 1, 2, 0)])[0])
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=torch_generator(7, "corrupt", 1, 2, 0)))


def test_negative_seeds_are_refused_as_by_seed_sequence():
    with pytest.raises(ValueError):
        np.random.SeedSequence(-1)
    with pytest.raises(ValueError, match="non-negative"):
        torch_seeds(-1, [("a",)])
