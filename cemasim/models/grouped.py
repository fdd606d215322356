"""Several devices' edge forwards merged into one pass, bit for bit equal to one pass per device.

Devices share the backbone and differ only in their norm state, so G devices' batches can go through
the model together: BatchNorm layers normalise each device's rows with its own tensors (devices become
channel groups, `StatBatchNorm._grouped`), and every other layer must give each sample the floats
it gives when the device's batch goes alone. Elementwise layers and pooling do by construction; two
kinds of layer would not if merged naively:

- a convolution takes another kernel for another batch size: one image goes through torch's generic
  im2col kernel (`Slow2d`), a batch through oneDNN, and the floats differ in the last bits. The merged
  call asks torch which kernel a device's own batch would take and, for `Slow2d`, runs that kernel
  on the merged batch (it loops over the images); otherwise it runs one call per device;
- a linear layer's matrix product accumulates differently for one row than for many: one call per
  device (a [n, features] product per device is a small share of the forward).

A model with a leaf layer of another kind (attention, LayerNorm, ...) is not merged (`mergeable`).
Pure torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cemasim.models import norm

# leaf layers that compute each sample from that sample alone with the same floats at any batch size
PER_SAMPLE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.SiLU, nn.Identity,
              nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout,
              nn.Sequential)  # an empty Sequential (a ResNet block's identity shortcut) is a leaf
SLOW_CHUNK = 16  # images per call of the im2col kernel: its column buffer stays in cache


def mergeable(model: nn.Module) -> bool:
    """Whether `grouped_forward` reproduces per-device forwards of `model` exactly: every leaf layer is a
    convolution, a linear layer, a StatBatchNorm, elementwise (`elementwise = True`) or in PER_SAMPLE."""
    cached = getattr(model, "_cemasim_mergeable", None)
    if cached is None:
        leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        cached = all(isinstance(m, (nn.Conv2d, nn.Linear, norm.StatBatchNorm, *PER_SAMPLE))
                     or getattr(m, "elementwise", False) for m in leaves)
        object.__setattr__(model, "_cemasim_mergeable", cached)
    return cached


def holds_norm_tensors_only(model: nn.Module, state: norm.NormState) -> bool:
    """Whether every tensor of `state` is a StatBatchNorm's (weight, bias or statistics): the tensors the
    merged pass stacks per device. A state with other parameters (CoTTA refreshes every weight) is not."""
    names = getattr(model, "_cemasim_norm_tensors", None)
    if names is None:
        names = frozenset(norm.adaptable_names(model, with_stats=True))
        object.__setattr__(model, "_cemasim_norm_tensors", names)
    return all(k in names for k in state)


def grouped_forward(model: nn.Module, states: list[norm.NormState], x: Tensor, mode: str) -> Tensor:
    """Logits [G, n, classes] of G devices' batches x [G, n, C, H, W] in one merged pass, each device
    normalised with its own norm state (and its own batch statistics in "batch" mode); equal to G calls
    of `norm.forward` (tests/test_grouped.py compares them bit for bit)."""
    g, n = x.shape[:2]
    # one device (a window of one sample, an instant with one device): its own tensors and layers' plain path
    stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]} if g > 1 else states[0]
    with _per_device(model, g), norm.stat_mode(model, mode), norm.swapped(model, stacked):
        out = model(x.flatten(0, 1))
    return out.view(g, n, -1)


@contextmanager
def _per_device(model: nn.Module, groups: int) -> Iterator[None]:
    """BatchNorm layers see `groups` devices; convolutions and linear layers compute per device."""
    patched = _layers(model)
    for layer in patched:
        if isinstance(layer, norm.StatBatchNorm):
            layer.groups = groups
        elif isinstance(layer, nn.Conv2d):  # an instance attribute shadows the class's forward for this pass
            layer.__dict__["forward"] = partial(_conv, layer, groups)
        elif isinstance(layer, nn.Linear):
            layer.__dict__["forward"] = partial(_linear, layer, groups)
    try:
        yield
    finally:
        for layer in patched:
            if isinstance(layer, norm.StatBatchNorm):
                layer.groups = 1
            else:
                del layer.__dict__["forward"]


def _layers(model: nn.Module) -> list[nn.Module]:
    """The model's StatBatchNorm, Conv2d and Linear layers (cached on the model)."""
    cached = getattr(model, "_cemasim_grouped_layers", None)
    if cached is None:
        cached = [m for m in model.modules() if isinstance(m, (norm.StatBatchNorm, nn.Conv2d, nn.Linear))]
        object.__setattr__(model, "_cemasim_grouped_layers", cached)
    return cached


def _split(x: Tensor, groups: int) -> list[Tensor]:
    return list(x.split(x.shape[0] // groups))


def _linear(layer: nn.Linear, groups: int, x: Tensor) -> Tensor:
    return torch.cat([F.linear(part, layer.weight, layer.bias) for part in _split(x, groups)])


def _conv(layer: nn.Conv2d, groups: int, x: Tensor) -> Tensor:
    own = x[: x.shape[0] // groups]  # one device's batch: the kernel torch picks for it
    if layer.padding_mode == "zeros" and not isinstance(layer.padding, str) and layer.groups == 1 \
            and x.device.type == "cpu" and _backend(layer, own) == "Slow2d":
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        height, width = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
        out = x.new_empty((x.shape[0], layer.out_channels, height, width))
        # a chunk's images each take one thread for their matrix product, a lone image's product may be
        # split over threads, and MKL then sums in another order (seen on AVX-512): chunks only on one thread
        chunk = SLOW_CHUNK if torch.get_num_threads() == 1 else 1
        for start in range(0, x.shape[0], chunk):  # written in place: a torch.cat of the parts cost as
            _slow_conv(layer, x[start:start + chunk], out[start:start + chunk])  # much as a layer
        return out
    return torch.cat([layer._conv_forward(part, layer.weight, layer.bias) for part in _split(x, groups)])


def _slow_conv(layer: nn.Conv2d, x: Tensor, out: Tensor) -> None:
    """torch's Slow2d kernel itself (im2col and a matrix product per image), into `out`."""
    torch._C._nn.thnn_conv2d(x, layer.weight, layer.kernel_size, layer.bias,  # type: ignore[attr-defined]
                             layer.stride, layer.padding, out=out)


def _backend(layer: nn.Conv2d, x: Tensor) -> str:
    """The kernel torch's conv2d dispatch chooses for `x` (e.g. Slow2d, Mkldnn)."""
    backend = torch._C._select_conv_backend(x, layer.weight, layer.bias, list(layer.stride), list(layer.padding),
                                            list(layer.dilation), False, [0] * 2, layer.groups, None)
    return backend.name
