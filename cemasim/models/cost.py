"""Cost model: simulated compute time = FLOPs of the real model on the real batch / effective FLOP/s
+ per-call overhead.

FLOPs come from torch.utils.flop_counter's formulas on the actual model, counted once per model
and pass kind (per sample; convolution and linear FLOPs are linear in batch size). Durations
therefore do not depend on the host running the simulation, and one seed gives one result.

Hardware is a profile (cemasim.models.profiles): peak FLOP/s x utilization + overhead per call.
Importing this module teaches FlopCounterMode the FLOPs of CPU fused attention, which it otherwise
counts as zero, so a ViT costs the same whether its FLOPs are counted on CPU or GPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

from cemasim.models import norm

# Queries of a tensor's layout that FlopCounterMode lets through uncounted (torch 2.14's list).
_LAYOUT_QUERIES = (
    *(getattr(torch.ops.aten, name).default for name in (
        "sym_is_contiguous", "is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense", "size",
        "sym_size", "stride", "sym_stride", "storage_offset", "sym_storage_offset", "numel", "sym_numel", "dim")),
    torch.ops.aten.is_contiguous.memory_format,
    torch.ops.prim.layout.default,
)


class FlopCount(TorchDispatchMode):
    """FlopCounterMode's total: the same formulas (torch.utils.flop_counter.flop_registry), the same
    decompositions of operators without one, without its per-module breakdown (tests compare both).

    Why not FlopCounterMode itself: a dispatch mode's __torch_dispatch__ is wrapped by default in
    torch._disable_dynamo, whose first call imports torch._dynamo, a large import that every process
    (each CLI run, each sweep worker) would pay once for nothing: nothing is compiled under this mode.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # TorchDispatchMode's hook for that wrapping (a test notices if it goes)
        return False

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Higher-order operators (torch.cond, Triton kernels), which FlopCounterMode bounds, appear in
        # no eager model here: they are refused rather than counted as zero.
        if func in _LAYOUT_QUERIES or isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        registry = flop_counter.flop_registry
        if func not in registry and func is not torch.ops.prim.device.default:
            with self:  # count the parts of an operator that has no formula, as FlopCounterMode does
                r = func.decompose(*args, **kwargs)
                if r is not NotImplemented:
                    return r
        out = func(*args, **kwargs)
        formula = registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


class FlopCounter:
    """FLOPs per sample of a model, counted once per (pass kind, input shape)."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]):
        self.model, self.input_shape = model, tuple(input_shape)
        self._cache: dict[tuple[str, str], float] = {}

    def per_sample(self, kind: str = "forward", stat_mode: str = "batch") -> float:
        """kind: forward, or backward (forward + backward w.r.t. the norm-layer affine tensors)."""
        key = (kind, stat_mode)
        if key not in self._cache:
            self._cache[key] = self._count(kind, stat_mode)
        return self._cache[key]

    def _count(self, kind: str, stat_mode: str, batch: int = 2) -> float:
        device = next(self.model.parameters()).device
        x = torch.rand((batch, *self.input_shape), device=device)
        state = norm.initial_state(self.model, norm.adaptable_names(self.model, with_stats=stat_mode != "batch"))
        counter = FlopCount()
        with counter:
            if kind == "forward":
                with torch.no_grad():
                    norm.forward(self.model, state, x, stat_mode)
            else:
                params = {n: t.requires_grad_(True) for n, t in state.items() if not n.endswith(norm.STAT_SUFFIXES)}
                norm.forward(self.model, {**state, **params}, x, stat_mode).logsumexp(-1).sum().backward()
        return counter.total / batch


def count_cpu_attention_flops() -> None:
    """Register FLOP formulas for CPU fused attention, which FlopCounterMode otherwise counts as 0.

    The formulas are torch's own for the CUDA flash/efficient kernels (same math), so FLOPs
    per sample no longer depend on the device they were counted on. Safe to call twice.
    """
    fc = flop_counter
    aten = torch.ops.aten
    pairs = (("_scaled_dot_product_flash_attention_for_cpu", "sdpa_flop"),
             ("_scaled_dot_product_flash_attention_for_cpu_backward", "sdpa_backward_flop"))
    for op_name, formula_name in pairs:
        op, formula = getattr(aten, op_name, None), getattr(fc, formula_name, None)
        if op is not None and formula is not None and op not in fc.flop_registry:
            fc.flop_registry[op] = formula


count_cpu_attention_flops()
