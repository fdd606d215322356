"""models/pooling.py: the four-view 2x2 max pool equals torch's max_pool2d, and only runs without gradients."""

import re

import pytest
import torch
from torch import nn

from cemasim.models import norm, pooling, zoo


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (7, 7), (7, 6), (3, 2), (1, 4)])
def test_four_view_pool_equals_max_pool2d_with_nan_infinities_and_ties(ceil_mode, size, monkeypatch):
    monkeypatch.setattr(pooling, "FOUR_VIEW_MIN_ELEMENTS", 0)  # small tensors would take max_pool2d itself
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, *size, generator=gen)
    x[0, 0, 0, 0], x[1, 1, -1, -1], x[2, 2, 0, -1] = float("nan"), float("-inf"), float("inf")
    x[3] = 0.0  # ties, as after a ReLU
    for torch_pool in (nn.MaxPool2d(2, ceil_mode=ceil_mode), nn.MaxPool2d((2, 2), stride=2, ceil_mode=ceil_mode),
                       nn.MaxPool2d(2, stride=1, ceil_mode=ceil_mode)):  # another window: max_pool2d itself
        ours = pooling.MaxPool2d.like(torch_pool)
        try:
            expected = torch_pool(x)
        except RuntimeError as e:  # a window larger than the input: the same error
            with pytest.raises(RuntimeError, match=re.escape(str(e))):
                ours(x)
            continue
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=0, equal_nan=True)
    if min(size) >= 2:
        torch.testing.assert_close(pooling.max_pool_2x2(x, ceil_mode), nn.MaxPool2d(2, ceil_mode=ceil_mode)(x),
                                   rtol=0, atol=0, equal_nan=True)


def test_a_pool_whose_input_needs_a_gradient_keeps_max_pool2d():
    """Tied windows: max_pool2d gives one element the gradient, torch.maximum would split it."""
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    pooling.MaxPool2d(2)(x).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    nn.MaxPool2d(2)(x).sum().backward()
    assert torch.equal(ours, x.grad) and ours.sum() == 4 and ours.max() == 1


def test_convert_puts_the_exact_pool_in_place_and_the_model_gives_the_same_logits():
    torch.manual_seed(0)
    plain = zoo.build("fmnist_foundation_cnn").eval()
    converted = norm.convert(zoo.build("fmnist_foundation_cnn"))
    converted.load_state_dict(plain.state_dict(), strict=False)
    assert not any(type(m) is nn.MaxPool2d for m in converted.modules())
    assert any(isinstance(m, pooling.MaxPool2d) for m in converted.modules())
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(converted(x), plain(x))
