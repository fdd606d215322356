"""Normalization-layer state: the only tensors that differ between devices.

One backbone per model lives in memory; each device (and the cloud's copy of it) holds a small
`NormState` (norm-layer affine weights, optionally BatchNorm running statistics). Forward passes
swap that state in (`swapped`: what torch.func.functional_call does), and a statistics mode says
how BatchNorm normalizes:

    eval   running statistics carried in the state (source statistics unless refreshed)
    batch  statistics of the current batch, nothing updated (Tent-style test-time BN)
    train  batch statistics, and the state's running statistics are updated (momentum)
    mixed  prior * running + (1 - prior) * batch statistics, the batch variance unbiased (BN
           adaptation with a source prior, as the authors' BNAdaptation with momentum 1 - prior)
    ema    update the state's running statistics with the batch (momentum), then normalise with
           them (ONDA-style online statistics)
    tbr    test-time batch renormalisation (the released CEMA code's tbr.py): the value is
           normalised by the running statistics, the gradient flows through the batch statistics
    tbr_train  tbr, then the running statistics move towards the batch's (momentum, unbiased
           variance), as tbr.py does in training mode
    rbn    prior * running + (1 - prior) * batch statistics (biased variance), written back to the
           running statistics; the gradient flows through the batch's (RoTTA's RobustBN in training
           mode; prior = 1 - its alpha)

In the tbr modes, running statistics that are NaN are unset: the first batch a layer sees sets
them (tbr.py starts from None, the source statistics dropped), see `unset_stats`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cemasim.models import pooling

NormState = dict[str, Tensor]
STAT_MODES = ("eval", "batch", "train", "mixed", "ema", "tbr", "tbr_train", "rbn")
STAT_SUFFIXES = ("running_mean", "running_var")
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


class StatBatchNorm(nn.Module):
    """Drop-in for nn.BatchNorm1d/2d whose statistics source is chosen per call (see module doc)."""

    running_mean: Tensor
    running_var: Tensor
    weight: Tensor
    bias: Tensor

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        assert bn.running_mean is not None and bn.running_var is not None, "needs track_running_stats"
        self.num_features, self.eps = bn.num_features, bn.eps
        self.momentum = 0.1 if bn.momentum is None else bn.momentum
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.stat_mode, self.prior = "eval", 0.0
        self.groups = 1  # > 1: x holds `groups` devices' batches back to back, tensors are [groups, C]

    def forward(self, x: Tensor) -> Tensor:
        mode = self.stat_mode
        if self.groups > 1:
            return self._grouped(x, mode)
        if mode == "eval":
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        if mode == "batch":
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        if mode == "train":
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True,
                                self.momentum, self.eps)
        dims = [0, *list(range(2, x.dim()))]
        if mode in ("tbr", "tbr_train"):
            return self._tbr(x, dims, update=mode == "tbr_train")
        if mode == "rbn":
            return self._robust(x, dims)
        if mode == "ema":
            with torch.no_grad():
                n = x.numel() / x.shape[1]
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dims))
                self.running_var.mul_(1 - self.momentum).add_(
                    self.momentum * x.var(dims, unbiased=False) * n / max(n - 1, 1))
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        mean = self.prior * self.running_mean + (1 - self.prior) * x.mean(dims)
        var = self.prior * self.running_var + (1 - self.prior) * x.var(dims, unbiased=True)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)

    def _tbr(self, x: Tensor, dims: list[int], update: bool) -> Tensor:
        """tbr_bn_forward_impl of the released code, for any input rank (its variable names)."""
        shape = [1, -1] + [1] * (x.dim() - 2)
        batch_var, batch_mean = torch.var_mean(x, dim=dims, keepdim=True)  # unbiased, as torch.var_mean
        batch_std = torch.sqrt(batch_var + self.eps)
        if bool(torch.isnan(self.running_mean[0])):  # unset: the first batch this layer sees sets them
            with torch.no_grad():
                self.running_mean.copy_(batch_mean.view(-1))
                self.running_var.copy_(batch_var.view(-1))
        running_mean, running_var = self.running_mean.view(shape), self.running_var.view(shape)
        r = batch_std.detach() / torch.sqrt(running_var + self.eps)
        d = (batch_mean.detach() - running_mean) / torch.sqrt(running_var + self.eps)
        y = ((x - batch_mean) / batch_std) * r + d
        if update:  # in place on the state's tensors, after r and d used the old values
            with torch.no_grad():
                self.running_mean.add_(self.momentum * (batch_mean.detach().view(-1) - self.running_mean))
                self.running_var.add_(self.momentum * (batch_var.detach().view(-1) - self.running_var))
        return self.weight.view(shape) * y + self.bias.view(shape)

    def _robust(self, x: Tensor, dims: list[int]) -> Tensor:
        """RoTTA's RobustBN2d.forward in training mode: the mixed statistics normalise (explicitly, so that
        the gradient reaches the batch's) and replace the running ones."""
        shape = [1, -1] + [1] * (x.dim() - 2)
        batch_var, batch_mean = torch.var_mean(x, dim=dims, unbiased=False)
        mean = self.prior * self.running_mean + (1 - self.prior) * batch_mean
        var = self.prior * self.running_var + (1 - self.prior) * batch_var
        with torch.no_grad():
            self.running_mean.copy_(mean)
            self.running_var.copy_(var)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)

    def _grouped(self, x: Tensor, mode: str) -> Tensor:
        """Per-device normalisation of a merged batch: devices become channel groups, so one fused
        batch_norm call computes each device's own statistics and applies its own affine."""
        if mode not in ("batch", "eval"):
            raise ValueError(f"grouped forward supports eval and batch statistics, not {mode!r}")
        g, c, spatial = self.groups, x.shape[1], x.shape[2:]
        n = x.shape[0] // g
        folded = x.view(g, n, c, *spatial).transpose(0, 1).reshape(n, g * c, *spatial)
        mean = var = None
        if mode == "eval":
            mean, var = self.running_mean.expand(g, c).reshape(-1), self.running_var.expand(g, c).reshape(-1)
        y = F.batch_norm(folded, mean, var, self.weight.expand(g, c).reshape(-1), self.bias.expand(g, c).reshape(-1),
                         mode == "batch", 0.0, self.eps)
        return y.view(n, g, c, *spatial).transpose(0, 1).reshape(x.shape)


def convert(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm in `model` by StatBatchNorm and every max pool by pooling.MaxPool2d (the
    same floats, faster; in place); freeze all parameters."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, StatBatchNorm(child))
        elif type(child) is nn.MaxPool2d:
            setattr(model, name, pooling.MaxPool2d.like(child))
        else:
            convert(child)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def adaptable_names(model: nn.Module, with_stats: bool) -> list[str]:
    """Names of norm-layer affine tensors (+ BN running statistics when `with_stats`)."""
    names = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (StatBatchNorm, *_NORM_TYPES)):
            prefix = f"{mod_name}." if mod_name else ""
            names += [prefix + p for p, t in mod.named_parameters(recurse=False) if t is not None]
            if with_stats and isinstance(mod, StatBatchNorm):
                names += [prefix + s for s in STAT_SUFFIXES]
    return names


def initial_state(model: nn.Module, names: list[str]) -> NormState:
    """A detached copy of the model's current (source) values of `names`."""
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {n: tensors[n].detach().clone() for n in names}


def unset_stats(state: NormState) -> NormState:
    """A copy of `state` whose BN running statistics are unset (NaN): in the tbr modes the first
    batch each layer sees sets them, as the released code's TBR does."""
    return {n: torch.full_like(t, float("nan")) if n.endswith(STAT_SUFFIXES) else t.clone() for n, t in state.items()}


def stats_of(state: NormState) -> NormState:
    """The running-statistics tensors of a state (what a device sends once under tbr)."""
    return {n: t for n, t in state.items() if n.endswith(STAT_SUFFIXES)}


def state_bytes(state: NormState) -> int:
    """Payload size of a state: real tensor bytes."""
    return sum(t.numel() * t.element_size() for t in state.values())


def cast_state(state: NormState, dtype: torch.dtype) -> NormState:
    """A detached copy (never aliasing the live state) in `dtype`."""
    return {n: t.detach().to(dtype, copy=True) for n, t in state.items()}


@contextmanager
def stat_mode(model: nn.Module, mode: str, prior: float = 0.0) -> Iterator[None]:
    """Set the statistics mode of every StatBatchNorm for the duration of a forward pass."""
    if mode not in STAT_MODES:
        raise ValueError(f"unknown stat mode {mode!r}")
    layers = _stat_layers(model)
    # plain attributes, written to the instance dict: nn.Module.__setattr__ checks its parameter, buffer
    # and module tables first (1.3 s of a 29 s batch-1 profile)
    for layer in layers:
        layer.__dict__["stat_mode"], layer.__dict__["prior"] = mode, prior
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__["stat_mode"] = "eval"


def forward(model: nn.Module, state: NormState, x: Tensor, mode: str, prior: float = 0.0) -> Tensor:
    """Logits of `model` on `x` with the norm tensors of `state` swapped in.

    In "train" mode the running statistics tensors of `state` are updated in place.
    """
    with stat_mode(model, mode, prior), swapped(model, state):
        return model(x)


@contextmanager
def swapped(model: nn.Module, state: NormState) -> Iterator[None]:
    """The tensors of `state` stand in for the model's parameters and buffers of the same names during
    the block, as in torch.func.functional_call(model, state, strict=False): the module dictionaries
    hold them, so the very same tensors enter the very same operations (autograd and in-place
    statistics updates included), without functional_call's per-call bookkeeping (untying, accessor
    objects), a fixed cost that shows at batch 1. Every name must be one of the model's parameters
    or buffers."""
    slots = _slots(model, tuple(state))
    saved = [table[key] for table, key in slots]
    for (table, key), tensor in zip(slots, state.values(), strict=True):
        table[key] = tensor
    try:
        yield
    finally:
        for (table, key), tensor in zip(slots, saved, strict=True):
            table[key] = tensor


def _slots(model: nn.Module, names: tuple[str, ...]) -> list[tuple[dict, str]]:
    """(the module's _parameters or _buffers, key) per dotted name, cached on the model per name list."""
    cache = getattr(model, "_cemasim_slots", None)
    if cache is None:
        cache = {}
        object.__setattr__(model, "_cemasim_slots", cache)
    if names not in cache:
        slots: list[tuple[dict, str]] = []
        for name in names:
            owner, _, key = name.rpartition(".")
            module = model.get_submodule(owner) if owner else model
            if key in module._parameters:
                slots.append((module._parameters, key))
            elif key in module._buffers:
                slots.append((module._buffers, key))
            else:
                raise KeyError(f"{name!r} is neither a parameter nor a buffer of {type(model).__name__}")
        cache[names] = slots
    return cache[names]


def _stat_layers(model: nn.Module) -> list[StatBatchNorm]:
    cached = getattr(model, "_cemasim_stat_layers", None)
    if cached is None:
        cached = [m for m in model.modules() if isinstance(m, StatBatchNorm)]
        object.__setattr__(model, "_cemasim_stat_layers", cached)
    return cached
