"""Cost model: simulated compute time = FLOPs of the real model on the real batch / effective FLOP/s
+ per-call overhead.

FLOPs come from torch.utils.flop_counter on the actual model, counted once per model and pass
kind (per sample; convolution and linear FLOPs are linear in batch size). Durations therefore do
not depend on the host running the simulation, and one seed gives one result.

Hardware is a profile (cemasim.models.profiles): peak FLOP/s x utilization + overhead per call.
Importing this module teaches FlopCounterMode the FLOPs of CPU fused attention, which it otherwise
counts as zero, so a ViT costs the same whether its FLOPs are counted on CPU or GPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cemasim.models import norm


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
        counter = FlopCounterMode(display=False)
        with counter:
            if kind == "forward":
                with torch.no_grad():
                    norm.forward(self.model, state, x, stat_mode)
            else:
                params = {n: t.requires_grad_(True) for n, t in state.items() if not n.endswith(norm.STAT_SUFFIXES)}
                norm.forward(self.model, {**state, **params}, x, stat_mode).logsumexp(-1).sum().backward()
        return counter.get_total_flops() / batch


def count_cpu_attention_flops() -> None:
    """Register FLOP formulas for CPU fused attention, which FlopCounterMode otherwise counts as 0.

    The formulas are torch's own for the CUDA flash/efficient kernels (same math), so FLOPs
    per sample no longer depend on the device they were counted on. Safe to call twice.
    """
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    pairs = (("_scaled_dot_product_flash_attention_for_cpu", "sdpa_flop"),
             ("_scaled_dot_product_flash_attention_for_cpu_backward", "sdpa_backward_flop"))
    for op_name, formula_name in pairs:
        op, formula = getattr(aten, op_name, None), getattr(fc, formula_name, None)
        if op is not None and formula is not None and op not in fc.flop_registry:
            fc.flop_registry[op] = formula


count_cpu_attention_flops()
