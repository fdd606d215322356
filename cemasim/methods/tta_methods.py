"""Back-propagating TTA baselines (Tent, PL, ETA, EATA, SAR, CoTTA) as methods: on the device
itself, or offloaded to the cloud (every sample, or ETA/EATA's pre-filtered candidates, uploaded).
Their update rules are in tta.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.methods.method import Method
from cemasim.methods.optim import Learner
from cemasim.methods.registry import METHODS, OFFLOADABLE, ln_c, preset_lr
from cemasim.methods.selection import SelectionState, redundancy_mask
from cemasim.methods.tta import EATA, ETA, SAR, Adapter, CoTTA, PseudoLabel, cotta_anchor, fisher_information


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


def _tta(adapter_fn, filtered: bool = False, clean: bool = False):
    def build(sc: Any, num_classes: int) -> Method:
        cls = FilteredTTA if filtered and sc.method.deployment == "cloud" else TTA
        return cls(name=sc.method.name, norm_mode="batch", deployment=sc.method.deployment,
                   adapter=adapter_fn(sc, num_classes), clean_samples=sc.method.fisher_samples if clean else 0)

    return build


def _eta_kwargs(sc: Any, num_classes: int) -> dict[str, Any]:
    return {"lr": preset_lr(sc, sc.method.name), "e_margin": sc.method.e_margin * ln_c(num_classes),
            "d_margin": sc.method.d_margin}


METHODS.add("tent", _tta(lambda sc, c: Adapter(lr=preset_lr(sc, "tent"))),
            "entropy minimisation of BN affine; on the edge or offloaded (method.deployment)",
            **OFFLOADABLE)
METHODS.add("pl", _tta(lambda sc, c: PseudoLabel(lr=preset_lr(sc, "pl"))),
            "hard pseudo-label cross-entropy on BN affine; on the edge or offloaded", **OFFLOADABLE)
METHODS.add("eta", _tta(lambda sc, c: ETA(**_eta_kwargs(sc, c)), filtered=True),
            "reliable + non-redundant samples, weighted entropy; on the edge or offloaded (edge pre-filters)",
            **OFFLOADABLE)
METHODS.add("eata", _tta(lambda sc, c: EATA(**_eta_kwargs(sc, c), fisher_alpha=sc.method.fisher_alpha),
                         filtered=True, clean=True),
            "ETA + Fisher regulariser from clean samples; on the edge or offloaded (edge pre-filters)",
            **OFFLOADABLE)
METHODS.add("sar", _tta(lambda sc, c: SAR(lr=preset_lr(sc, "sar"), e_margin=sc.method.e_margin * ln_c(c),
                                          rho=sc.method.sar_rho, reset_constant=sc.method.sar_reset)),
            "sharpness-aware reliable entropy minimisation with reset; on the edge or offloaded",
            **OFFLOADABLE)
METHODS.add("cotta", _tta(lambda sc, c: CoTTA(lr=preset_lr(sc, "cotta"), anchor_threshold=cotta_anchor(c)
                                              if sc.method.cotta_anchor is None else sc.method.cotta_anchor,
                                              views=sc.method.cotta_views, restore_p=sc.method.cotta_restore)),
            "all parameters towards an EMA teacher (augmentation-averaged when unsure), stochastic restore",
            **OFFLOADABLE)
