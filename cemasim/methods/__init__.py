"""Adaptation methods: how an edge device predicts and which samples it uploads.

A method decides the edge side (statistics mode of its norm layers, the upload mask per test
batch) and whether the cloud adapts the device. The cloud's learning itself is
cemasim.methods.cloud. Pure torch: nothing here knows about simulated time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cemasim.methods.selection import SelectionConfig, SelectionState, select
from cemasim.registry import Registry


@dataclass
class Method:
    """Base: a forward-only edge that uploads nothing."""

    name: str = "source"
    norm_mode: str = "batch"  # how cloud-refreshed devices normalise: batch or running
    uses_cloud: bool = False

    @property
    def carries_stats(self) -> bool:
        """Whether running statistics are part of the device state (and of refreshes)."""
        return self.uses_cloud and self.norm_mode == "running"

    def edge_stat_mode(self) -> tuple[str, float]:
        """(statistics mode, source prior) of the edge's forward passes."""
        if not self.uses_cloud:
            return "eval", 0.0
        return ("eval", 0.0) if self.norm_mode == "running" else ("batch", 0.0)

    def new_selection_state(self) -> Any:
        return None

    def select(self, logits: Tensor, state: Any) -> Tensor:
        """Mask of samples to upload from this batch."""
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)


@dataclass
class BNAdapt(Method):
    """Test-batch BN statistics (optionally mixed with the source's), no gradient, no upload."""

    prior: float = 0.0

    def edge_stat_mode(self) -> tuple[str, float]:
        return ("mixed", self.prior) if self.prior > 0 else ("batch", 0.0)


@dataclass
class UploadAll(Method):
    """Every sample is uploaded; the cloud adapts the device exactly as for CEMA."""

    uses_cloud: bool = True

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)


@dataclass
class Cema(Method):
    """Entropy-selected uploads (S_high with dynamic E_max, S_low, optional redundancy filter)."""

    uses_cloud: bool = True
    selection: SelectionConfig | None = None

    def new_selection_state(self) -> SelectionState:
        return SelectionState()

    def select(self, logits: Tensor, state: SelectionState) -> Tensor:
        return select(logits, state, self.selection)


METHODS: Registry[Any] = Registry("method")


def _from_scenario(cls):
    def build(sc: Any, num_classes: int) -> Method:
        return cls(name=sc.method.name, norm_mode=sc.method.norm_mode)

    return build


def _bn_adapt(sc: Any, num_classes: int) -> Method:
    return BNAdapt(name="bn_adapt", norm_mode=sc.method.norm_mode, prior=sc.method.bn_prior)


def _cema(sc: Any, num_classes: int) -> Method:
    s, ln_c = sc.selection, math.log(num_classes)
    cfg = SelectionConfig(
        e0=s.e_max * ln_c,
        e_min=None if s.e_min is None else s.e_min * ln_c,
        dynamic_e_max=s.dynamic_e_max,
        lam=s["lambda"],
        warm_up_n=s.warm_up_n,
        redundancy_filter=s.redundancy_filter,
        redundancy_eps=s.redundancy_eps,
    )
    return Cema(name="cema", norm_mode=sc.method.norm_mode, selection=cfg)


METHODS.add("source", _from_scenario(Method), "frozen source model, eval-mode BN, uploads nothing")
METHODS.add("bn_adapt", _bn_adapt, "test-batch BN statistics on the edge (method.bn_prior mixes source), uploads nothing")
METHODS.add("upload_all", _from_scenario(UploadAll), "every sample uploaded; cloud foundation step + distillation")
METHODS.add("cema", _cema, "entropy-selected uploads (E_min < E < E_max); cloud foundation step + distillation")


def build_method(sc: Any, num_classes: int) -> Method:
    return METHODS.get(sc.method.name)(sc, num_classes)
