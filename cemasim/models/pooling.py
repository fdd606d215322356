"""Max pooling over 2x2 windows: the same floats as torch's max_pool2d, in a fraction of its time.

On the 2-core VM's CPU build, torch's NCHW max_pool2d took longer than the convolution before it
for batches of images (`python benchmarks/bench_pool.py`, pool.csv); the maximum
of the window's four strided views is several times faster. A maximum is exact in any order, so
the values are the same, NaN included (both propagate it). Below FOUR_VIEW_MIN_ELEMENTS (one
image's later pools) max_pool2d's own fixed cost is the smaller one, and it is kept. Only the
gradient would differ: max_pool2d sends a tied window's gradient to one element, torch.maximum
splits it, so a pool whose input requires a gradient keeps max_pool2d. Pure torch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

FOUR_VIEW_MIN_ELEMENTS = 15_000  # pool.csv: 64x7x7 maps at batch 4 (12,544) were still faster directly


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d taking the four-view route for 2x2, stride-2 windows without padding when no gradient
    flows to its input (`norm.convert` puts it in place of every nn.MaxPool2d)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # the window the four views compute, told once (forward runs for every pool of every prediction)
        self.two_by_two = not self.return_indices and \
            (_pair(self.kernel_size), _pair(self.stride), _pair(self.padding), _pair(self.dilation)) \
            == ((2, 2), (2, 2), (0, 0), (1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if not self.two_by_two or x.requires_grad or x.dim() != 4 or x.numel() < FOUR_VIEW_MIN_ELEMENTS:
            return super().forward(x)
        return max_pool_2x2(x, self.ceil_mode)

    @classmethod
    def like(cls, pool: nn.MaxPool2d) -> MaxPool2d:
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.return_indices, pool.ceil_mode)


def max_pool_2x2(x: Tensor, ceil_mode: bool = False) -> Tensor:
    """F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode) of a [N, C, H, W] tensor: an odd last row or column is
    dropped, or with ceil_mode padded with -inf (which never wins over the window's real element)."""
    h, w = x.shape[-2:]
    if h < 2 or w < 2:
        return F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode)  # its own error for a window larger than the input
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf")) if ceil_mode else x[..., : h - h % 2, : w - w % 2]
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))
