"""The method hierarchy: how an edge device predicts, what it uploads, and which cloud worker
serves it (`cloud_worker`, wired to a SimPy actor in sim/wiring.py). Pure torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.methods.optim import Learner
from cemasim.methods.selection import SelectionConfig, SelectionState, redundancy_mask, select
from cemasim.methods.tta import EATA, ETA, SAR, Adapter, CoTTA, classifier_features, fisher_information, lame_predict
from cemasim.models import norm
from cemasim.rng import numpy_rng

ADAPTERS = ("tent", "pl", "eta", "eata", "sar", "cotta")  # may run on the edge (method.deployment)


@dataclass
class Method:
    """Base: a forward-only edge with source statistics that uploads nothing."""

    name: str = "source"
    norm_mode: str = "batch"  # how cloud-refreshed devices normalise: batch, running or tbr
    cloud_worker: str | None = None  # None, or the cloud's part: cema, offload, inference (sim/wiring.py)
    deployment: str = "edge"
    adapter: Adapter | None = None

    @property
    def uses_cloud(self) -> bool:
        return self.cloud_worker is not None

    @property
    def adapts_on_edge(self) -> bool:
        return self.adapter is not None and self.deployment == "edge"

    @property
    def carries_stats(self) -> bool:
        """Whether running statistics are part of the device state (and of refreshes)."""
        return self.cloud_worker == "cema" and self.norm_mode in ("running", "tbr")

    @property
    def sends_stats(self) -> bool:
        """tbr: the device's first batch sets its running statistics, which the cloud's copy needs."""
        return self.cloud_worker == "cema" and self.norm_mode == "tbr"

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
        """(statistics mode, source prior) of the edge's forward passes."""
        if self.cloud_worker == "cema" and self.norm_mode == "tbr":
            return "tbr", 0.0
        if self.cloud_worker == "cema" and self.norm_mode == "running":
            return "eval", 0.0
        if self.cloud_worker in ("cema", "offload"):
            return "batch", 0.0
        return "eval", 0.0

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
        with torch.no_grad():
            return self.select(logits, state)

    @property
    def merges_forward(self) -> bool:
        """Whether devices' forward passes may be merged into one grouped call (same results):
        forward-only, the base edge_logits, eval or test-batch statistics."""
        return (not self.adapts_on_edge and type(self).edge_logits is Method.edge_logits
                and self.edge_stat_mode()[0] in ("eval", "batch"))

    def init_learner(self, learner: Learner, model: nn.Module, clean: Any) -> Learner:
        """Method-specific learner state (e.g. EATA's Fisher, SAR's reset point)."""
        return learner

    def new_selection_state(self, device: int = 0) -> Any:
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
class Onda(Method):
    """Running statistics updated online from the source by an EMA of test batches."""

    @property
    def carries_stats(self) -> bool:
        return True

    def edge_stat_mode(self) -> tuple[str, float]:
        return "ema", 0.0


@dataclass
class Lame(Method):
    """Frozen model; kNN-Laplacian correction of the batch's outputs (returned as log-probabilities)."""

    knn: int = 5

    def edge_logits(self, model: nn.Module, state: norm.NormState, x: Tensor) -> Tensor:
        logits, features = classifier_features(model, state, x, "eval")
        return lame_predict(logits, features, self.knn).clamp_min(1e-20).log()


@dataclass
class UploadAll(Method):
    """Every sample is uploaded; the cloud adapts the device exactly as for CEMA."""

    cloud_worker: str | None = "cema"

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)


@dataclass
class RandomUpload(UploadAll):
    """Ablation: each sample uploaded with probability `rate` (set it to CEMA's upload ratio)."""

    rate: float = 0.5
    seed: int = 0

    def new_selection_state(self, device: int = 0) -> np.random.Generator:
        return numpy_rng(self.seed, "random_upload", device)

    def select(self, logits: Tensor, state: np.random.Generator) -> Tensor:
        mask = state.random(logits.shape[0]) < self.rate
        return torch.from_numpy(mask).to(logits.device)


@dataclass
class Cema(Method):
    """Entropy-selected uploads (S_high with dynamic E_max, S_low, optional redundancy filter)."""

    cloud_worker: str | None = "cema"
    selection: SelectionConfig | None = None

    def new_selection_state(self, device: int = 0) -> SelectionState:
        return SelectionState()

    def select(self, logits: Tensor, state: SelectionState) -> Tensor:
        assert self.selection is not None
        return select(logits, state, self.selection)


@dataclass
class TTA(Method):
    """A back-propagating TTA baseline, on the edge or offloaded to the cloud (every sample uploaded)."""

    cloud_worker: str | None = "offload"
    clean_samples: int = 0
    _fisher: dict[str, Tensor] | None = None

    def __post_init__(self) -> None:
        if self.deployment == "edge":
            self.cloud_worker = None

    def edge_stat_mode(self) -> tuple[str, float]:
        return "batch", 0.0

    def edge_passes(self) -> tuple[str, int]:
        return ("backward", self.adapter_passes()) if self.deployment == "edge" else ("forward", 1)

    def adapter_passes(self) -> int:
        """Forward-backward passes charged per adaptation step: SAM needs two; CoTTA's anchor and
        teacher forwards are charged as a second pass (its augmented views are not charged)."""
        return 2 if isinstance(self.adapter, (SAR, CoTTA)) else 1

    def init_learner(self, learner: Learner, model: nn.Module, clean: Any) -> Learner:
        learner.extra["source"] = {n: t.clone() for n, t in learner.state.items()}
        if isinstance(self.adapter, EATA) and self.clean_samples > 0:
            learner.extra["anchor"] = learner.extra["source"]
            if self._fisher is None:  # identical for every device: all start from the source state
                self._fisher = fisher_information(model, learner, clean(self.clean_samples))
            learner.extra["fisher"] = self._fisher
        return learner

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)


@dataclass
class FilteredTTA(TTA):
    """ETA/EATA offloaded: the edge pre-filters with the method's own reliability and redundancy
    criteria on its logits, so only candidate samples travel; the cloud filters again when adapting."""

    def new_selection_state(self, device: int = 0) -> SelectionState:
        return SelectionState()

    def select(self, logits: Tensor, state: SelectionState) -> Tensor:
        adapter: ETA = self.adapter  # type: ignore[assignment]
        ent = entropy(logits)
        reliable = (ent < adapter.e_margin).nonzero().squeeze(1)
        keep = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        if len(reliable):
            keep[reliable[redundancy_mask(logits[reliable].softmax(-1), state, adapter.d_margin)]] = True
        return keep


@dataclass
class CloudInference(Method):
    """Every sample is uploaded and answered by the (frozen) foundation model; the edge computes nothing."""

    cloud_worker: str | None = "inference"

    def edge_passes(self) -> tuple[str, int]:
        return ("forward", 0)

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
