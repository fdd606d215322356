"""The base of every method: how an edge device predicts, what it uploads, and which cloud worker
serves it (`cloud_worker`, wired to a SimPy actor in sim/wiring.py). Pure torch. The methods
themselves are one file per family (edge_only, tta_methods, cema, cloud_inference), each with its
registry lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.methods.optim import Learner
from cemasim.methods.tta import Adapter, CoTTA
from cemasim.models import norm

# may run on the edge (method.deployment)
ADAPTERS = ("tent", "pl", "eta", "eata", "sar", "cotta", "deyo", "roid", "rotta")


@dataclass
class Method:
    """Base: a forward-only edge with source statistics that uploads nothing."""

    name: str = "source"
    norm_mode: str = "batch"  # how cloud-refreshed devices normalise: batch, running or tbr
    cloud_worker: str | None = None  # None, or the cloud's part: cema, offload, inference (sim/wiring.py)
    deployment: str = "edge"
    adapter: Adapter | None = None
    # What a method declares to the edge and the checks (the base class never names a method):
    # the cloud distils into the device's norm layers and sends them back (`norm_mode` then applies)
    refreshes_norm_state: ClassVar[bool] = False

    def recorded_threshold(self, state: Any) -> float | None:
        """The selection threshold this batch used (samples.e_max, nats); None: the method has none."""
        return None

    @property
    def uses_cloud(self) -> bool:
        return self.cloud_worker is not None

    @property
    def adapts_on_edge(self) -> bool:
        return self.adapter is not None and self.deployment == "edge"

    @property
    def carries_stats(self) -> bool:
        """Whether running statistics are part of the device state (and of refreshes)."""
        return self.refreshes_norm_state and self.norm_mode in ("running", "tbr")

    @property
    def sends_stats(self) -> bool:
        """tbr: the device's first batch sets its running statistics, which the cloud's copy needs."""
        return self.refreshes_norm_state and self.norm_mode == "tbr"

    @property
    def adapts_all_parameters(self) -> bool:
        """CoTTA adapts every parameter: the device state (and each refresh) is the whole model."""
        return isinstance(self.adapter, CoTTA)

    def state_names(self, model: nn.Module) -> list[str]:
        """The tensors a device holds (and a refresh carries): norm affine (+ statistics), or the
        whole model for CoTTA, or the adapter's own subset (SAR freezes some layers)."""
        if self.adapts_all_parameters:
            return [n for n, _ in model.named_parameters()]
        names = norm.adaptable_names(model, with_stats=self.carries_stats)
        if self.adapter is not None:
            names = self.adapter.adapted_names(model, names)
        return names

    def source_state(self, model: nn.Module) -> norm.NormState:
        """A device's state before any adaptation (under tbr the statistics are unset)."""
        state = norm.initial_state(model, self.state_names(model))
        return norm.unset_stats(state) if self.norm_mode == "tbr" else state

    def edge_stat_mode(self) -> tuple[str, float]:
        """(statistics mode, source prior) of the edge's forward passes: a forward-only method keeps
        the source statistics; one whose norm state the cloud refreshes follows its `norm_mode`
        (methods that adapt by themselves override this)."""
        if not self.refreshes_norm_state:
            return "eval", 0.0
        return {"tbr": ("tbr", 0.0), "running": ("eval", 0.0)}.get(self.norm_mode, ("batch", 0.0))

    def edge_passes(self) -> tuple[str, int]:
        """Cost of the edge's per-batch compute: (forward | backward, passes)."""
        return ("backward", 1) if self.adapts_on_edge else ("forward", 1)

    def edge_logits(self, model: nn.Module, state: norm.NormState, x: Tensor) -> Tensor:
        mode, prior = self.edge_stat_mode()
        return norm.forward(model, state, x, mode, prior)

    def predict(self, model: nn.Module, learner: Learner, state: norm.NormState, x: Tensor) -> Tensor:
        """The logits of a test batch on the device: forward only, or predict-then-update when the
        method adapts on the device itself (the pre-update logits)."""
        if self.adapts_on_edge:
            return self.adapter.step(model, learner, x)  # type: ignore[union-attr]
        with torch.no_grad():
            return self.edge_logits(model, state, x)

    def upload_mask(self, logits: Tensor, state: Any) -> Tensor:
        """Which samples of the batch travel (none when the device adapts by itself)."""
        if self.adapts_on_edge:
            return torch.zeros(logits.shape[0], dtype=torch.bool)
        if type(self).select is Method.select:  # selects nothing: no no_grad block (batch 1 pays it per sample)
            return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        with torch.no_grad():
            return self.select(logits, state)

    @property
    def edge_writes_state(self) -> bool:
        """Whether predicting writes the device's norm tensors in place (an edge adapter's step, or
        statistics updated by the forward: tbr, ema). If not, a device may start from the fleet's
        source tensors instead of its own copy (a refresh replaces them, a reset copies)."""
        return self.adapts_on_edge or self.edge_stat_mode()[0] not in ("eval", "batch")

    @property
    def merges_forward(self) -> bool:
        """Whether devices' forward passes may be merged into one grouped call (same results):
        forward-only, the base edge_logits, eval or test-batch statistics."""
        return not self.edge_writes_state and type(self).edge_logits is Method.edge_logits

    def init_learner(self, learner: Learner, model: nn.Module, clean: Any) -> Learner:
        """Method-specific learner state (e.g. EATA's Fisher, SAR's reset point)."""
        return learner

    def new_selection_state(self, device: int = 0) -> Any:
        return None

    def new_gate(self) -> Any:
        """A device's selection-policy gate (methods/policies.py); None: every selected sample travels."""
        return None

    def upload_scores(self, logits: Tensor, state: Any) -> Tensor:
        """How informative each selected sample is, for a gate that keeps the best: its entropy."""
        return entropy(logits)

    def select(self, logits: Tensor, state: Any) -> Tensor:
        """Mask of samples to upload from this batch."""
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
