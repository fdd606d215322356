"""Merged edge forwards (models/grouped.py): several devices in one pass, each sample's logits equal
bit for bit to its device's own pass."""

import pytest
import torch
from torch import nn

from cemasim.models import grouped, norm, zoo


def devices(net: nn.Module, g: int, seed: int = 0) -> list[norm.NormState]:
    """g norm states away from the source and from each other."""
    names = norm.adaptable_names(net, with_stats=True)
    gen = torch.Generator().manual_seed(seed)
    return [{k: v + 0.1 * torch.rand(v.shape, generator=gen) for k, v in norm.initial_state(net, names).items()}
            for _ in range(g)]


def per_device(net: nn.Module, states: list[norm.NormState], x: torch.Tensor, mode: str) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([norm.forward(net, s, xi, mode) for s, xi in zip(states, x, strict=True)])


@pytest.mark.parametrize("model", ["fmnist_edge_cnn", "fmnist_foundation_cnn"])
@pytest.mark.parametrize("mode, n", [("eval", 1), ("batch", 1), ("eval", 5), ("batch", 8)])
def test_merged_forward_equals_each_devices_own_forward_bit_for_bit(model, mode, n):
    torch.manual_seed(0)
    net = norm.convert(zoo.build(model)).eval()
    states = devices(net, 11)  # more than the im2col kernel's chunk, not a multiple of it
    x = torch.rand(11, n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        merged = grouped.grouped_forward(net, states, x, mode)
    assert torch.equal(merged, per_device(net, states, x, mode))
    # the patched layers are restored: a plain forward afterwards is the model's own
    assert all("forward" not in m.__dict__ for m in net.modules())
    assert all(m.groups == 1 for m in net.modules() if isinstance(m, norm.StatBatchNorm))


@pytest.mark.parametrize("n", [1, 3])
def test_merged_forward_is_exact_with_biases_grouped_convolutions_and_strides(n):
    torch.manual_seed(0)
    net = norm.convert(nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, groups=2, padding=1),
        nn.BatchNorm2d(4), nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)))
    net.eval()
    states = devices(net, 5)
    x = torch.rand(5, n, 1, 13, 13, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(grouped.grouped_forward(net, states, x, "eval"), per_device(net, states, x, "eval"))


def test_a_naive_merge_would_not_be_exact():
    """Guard for the test above: one merged call per layer (what the batcher did before) differs in the last
    bits at batch 1, so equality there is the per-device kernel choice at work."""
    torch.manual_seed(0)
    net = norm.convert(zoo.build("fmnist_edge_cnn")).eval()
    state = devices(net, 1)[0]
    x = torch.rand(16, 1, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        naive = norm.forward(net, state, x.flatten(0, 1), "eval")
    assert not torch.equal(naive, per_device(net, [state] * 16, x, "eval").flatten(0, 1))


def test_only_models_of_known_layers_are_merged():
    assert grouped.mergeable(norm.convert(zoo.build("fmnist_edge_cnn")))
    assert grouped.mergeable(norm.convert(zoo.build("fmnist_foundation_cnn")))
    assert not grouped.mergeable(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.LayerNorm(4)))
    assert not grouped.mergeable(nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU()))
