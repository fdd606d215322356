"""Adaptation methods: how an edge device predicts, what it uploads, and what the cloud does.

A method fixes the edge side (statistics mode of its norm layers, an optional local adaptation
step, the upload mask per test batch) and the cloud's role:

    none       forward-only on the edge, nothing uploaded          source, bn_adapt, onda, lame
    cema       foundation step + distillation into the device       cema, upload_all, random_upload
    offload    the cloud runs the device's TTA step on its uploads  tent, pl, eta, eata, sar (deployment: cloud)
    inference  the foundation model answers every uploaded sample   cloud_inference

TTA methods with `method.deployment: edge` adapt on the device itself (profiles with can_train).
Pure torch: nothing here knows about simulated time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cemasim.methods.optim import Learner
from cemasim.methods.selection import SelectionConfig, SelectionState, redundancy_mask, select
from cemasim.methods.tta import (ETA, EATA, SAR, Adapter, CoTTA, PseudoLabel, classifier_features, cotta_anchor,
                                 fisher_information, lame_predict)
from cemasim.methods.losses import entropy
from cemasim.models import norm
from cemasim.registry import Registry
from cemasim.rng import numpy_rng

ADAPTERS = ("tent", "pl", "eta", "eata", "sar", "cotta")  # may run on the edge (method.deployment)


@dataclass
class Method:
    """Base: a forward-only edge with source statistics that uploads nothing."""

    name: str = "source"
    norm_mode: str = "batch"  # how cloud-refreshed devices normalise: batch, running or tbr
    role: str = "none"
    deployment: str = "edge"
    adapter: Adapter | None = None

    @property
    def uses_cloud(self) -> bool:
        return self.role != "none"

    @property
    def adapts_on_edge(self) -> bool:
        return self.adapter is not None and self.deployment == "edge"

    @property
    def carries_stats(self) -> bool:
        """Whether running statistics are part of the device state (and of refreshes)."""
        return self.role == "cema" and self.norm_mode in ("running", "tbr")

    @property
    def sends_stats(self) -> bool:
        """tbr: the device's first batch sets its running statistics, which the cloud's copy needs."""
        return self.role == "cema" and self.norm_mode == "tbr"

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
        if self.role == "cema" and self.norm_mode == "tbr":
            return "tbr", 0.0
        if self.role == "cema" and self.norm_mode == "running":
            return "eval", 0.0
        if self.role in ("cema", "offload"):
            return "batch", 0.0
        return "eval", 0.0

    def edge_passes(self) -> tuple[str, int]:
        """Cost of the edge's per-batch compute: (forward | backward, passes)."""
        return ("backward", 1) if self.adapts_on_edge else ("forward", 1)

    def edge_logits(self, model: nn.Module, state: norm.NormState, x: Tensor) -> Tensor:
        mode, prior = self.edge_stat_mode()
        return norm.forward(model, state, x, mode, prior)

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

    role: str = "cema"

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

    role: str = "cema"
    selection: SelectionConfig | None = None

    def new_selection_state(self, device: int = 0) -> SelectionState:
        return SelectionState()

    def select(self, logits: Tensor, state: SelectionState) -> Tensor:
        return select(logits, state, self.selection)


@dataclass
class TTA(Method):
    """A back-propagating TTA baseline, on the edge or offloaded to the cloud (every sample uploaded)."""

    role: str = "offload"
    clean_samples: int = 0
    _fisher: dict[str, Tensor] | None = None

    def __post_init__(self) -> None:
        if self.deployment == "edge":
            self.role = "none"

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

    role: str = "inference"

    def edge_passes(self) -> tuple[str, int]:
        return ("forward", 0)

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)


METHODS: Registry[Any] = Registry("method")


def _ln_c(num_classes: int) -> float:
    return math.log(num_classes)


def _lr(sc: Any, method: str) -> float:
    from cemasim.methods.presets import method_lr

    return method_lr(sc, method)


def _tta(adapter_fn, filtered: bool = False, clean: bool = False):
    def build(sc: Any, num_classes: int) -> Method:
        cls = FilteredTTA if filtered and sc.method.deployment == "cloud" else TTA
        return cls(name=sc.method.name, norm_mode="batch", deployment=sc.method.deployment,
                   adapter=adapter_fn(sc, num_classes), clean_samples=sc.method.fisher_samples if clean else 0)

    return build


def _cema(sc: Any, num_classes: int) -> Method:
    s, ln_c = sc.selection, _ln_c(num_classes)
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


def _eta_kwargs(sc: Any, num_classes: int) -> dict[str, Any]:
    return {"lr": _lr(sc, sc.method.name), "e_margin": sc.method.e_margin * _ln_c(num_classes),
            "d_margin": sc.method.d_margin}


METHODS.add("source", lambda sc, c: Method(name="source"), "frozen source model, source BN statistics, uploads nothing")
METHODS.add("bn_adapt", lambda sc, c: BNAdapt(name="bn_adapt", prior=sc.method.bn_prior),
            "test-batch BN statistics on the edge (method.bn_prior mixes in the source's), uploads nothing")
METHODS.add("onda", lambda sc, c: Onda(name="onda"), "EMA of BN statistics from the source (momentum 0.1), uploads nothing")
METHODS.add("lame", lambda sc, c: Lame(name="lame", knn=sc.method.lame_knn),
            "frozen model + kNN Laplacian output correction over each batch, uploads nothing")
METHODS.add("tent", _tta(lambda sc, c: Adapter(lr=_lr(sc, "tent"))),
            "entropy minimisation of BN affine; on the edge or offloaded (method.deployment)")
METHODS.add("pl", _tta(lambda sc, c: PseudoLabel(lr=_lr(sc, "pl"))),
            "hard pseudo-label cross-entropy on BN affine; on the edge or offloaded")
METHODS.add("eta", _tta(lambda sc, c: ETA(**_eta_kwargs(sc, c)), filtered=True),
            "reliable + non-redundant samples, weighted entropy; on the edge or offloaded (edge pre-filters)")
METHODS.add("eata", _tta(lambda sc, c: EATA(**_eta_kwargs(sc, c), fisher_alpha=sc.method.fisher_alpha),
                         filtered=True, clean=True),
            "ETA + Fisher regulariser from clean samples; on the edge or offloaded (edge pre-filters)")
METHODS.add("sar", _tta(lambda sc, c: SAR(lr=_lr(sc, "sar"), e_margin=sc.method.e_margin * _ln_c(c),
                                          rho=sc.method.sar_rho, reset_constant=sc.method.sar_reset)),
            "sharpness-aware reliable entropy minimisation with reset; on the edge or offloaded")
METHODS.add("cotta", _tta(lambda sc, c: CoTTA(lr=_lr(sc, "cotta"), anchor_threshold=cotta_anchor(c)
                                              if sc.method.cotta_anchor is None else sc.method.cotta_anchor,
                                              views=sc.method.cotta_views, restore_p=sc.method.cotta_restore)),
            "all parameters towards an EMA teacher (augmentation-averaged when unsure), stochastic restore")
METHODS.add("upload_all", lambda sc, c: UploadAll(name="upload_all", norm_mode=sc.method.norm_mode),
            "every sample uploaded; cloud foundation step + distillation (CEMA's cloud)")
METHODS.add("random_upload", lambda sc, c: RandomUpload(name="random_upload", norm_mode=sc.method.norm_mode,
                                                        rate=sc.selection.random_rate, seed=sc.seed),
            "ablation: uploads a random selection.random_rate of the samples; CEMA's cloud")
METHODS.add("cema", _cema, "entropy-selected uploads (E_min < E < E_max); cloud foundation step + distillation")
METHODS.add("cloud_inference", lambda sc, c: CloudInference(name="cloud_inference"),
            "every sample uploaded; the frozen foundation model's answer is the prediction")


def build_method(sc: Any, num_classes: int) -> Method:
    return METHODS.get(sc.method.name)(sc, num_classes)
