"""CEMA and its controls on CEMA's cloud (foundation step + distillation, methods/cema_cloud.py):
entropy-selected uploads, every sample uploaded, a random share uploaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from cemasim.methods.method import Method
from cemasim.methods.policies import SELECTION_POLICIES, PolicyConfig, make_gate
from cemasim.methods.registry import DISTILLED, METHODS, ln_c
from cemasim.methods.selection import SelectionConfig, SelectionState, select
from cemasim.rng import numpy_rng


@dataclass
class UploadAll(Method):
    """Every sample is uploaded; the cloud adapts the device exactly as for CEMA."""

    cloud_worker: str | None = "cema"
    policy: PolicyConfig | None = None  # selection.policy: what gates the selected samples
    refreshes_norm_state: ClassVar[bool] = True

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)

    def new_gate(self) -> Any:
        return make_gate(self.policy)


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

    def upload_scores(self, logits: Tensor, state: np.random.Generator) -> Tensor:
        """Random ranks: a gate then keeps a random subset (the control at the same bytes)."""
        return torch.from_numpy(state.random(logits.shape[0]))


@dataclass
class Cema(UploadAll):
    """Entropy-selected uploads (S_high with dynamic E_max, S_low, optional redundancy filter)."""

    selection: SelectionConfig | None = None

    def new_selection_state(self, device: int = 0) -> SelectionState:
        return SelectionState()

    def select(self, logits: Tensor, state: SelectionState) -> Tensor:
        assert self.selection is not None
        return select(logits, state, self.selection)

    def recorded_threshold(self, state: SelectionState) -> float | None:
        return state.e_max


def policy_config(sc: Any) -> PolicyConfig:
    s = sc.selection
    return PolicyConfig(s.policy, s.budget_bytes_per_s, s.link_fraction, s.window_s, s.max_delay_s,
                        s.backlog_target)


def _cema(sc: Any, num_classes: int) -> Method:
    s, scale = sc.selection, ln_c(num_classes)
    cfg = SelectionConfig(
        e0=s.e_max * scale,
        e_min=None if s.e_min is None else s.e_min * scale,
        dynamic_e_max=s.dynamic_e_max and not SELECTION_POLICIES.meta(s.policy).get("fixed_e_max", False),
        lam=s["lambda"],
        warm_up_n=s.warm_up_n,
        redundancy_filter=s.redundancy_filter,
        redundancy_eps=s.redundancy_eps,
    )
    return Cema(name="cema", norm_mode=sc.method.norm_mode, selection=cfg, policy=policy_config(sc))


METHODS.add("upload_all", lambda sc, c: UploadAll(name="upload_all", norm_mode=sc.method.norm_mode,
                                                  policy=policy_config(sc)),
            "every sample uploaded; cloud foundation step + distillation (CEMA's cloud)", **DISTILLED,
            gateable=True)
METHODS.add("random_upload", lambda sc, c: RandomUpload(name="random_upload", norm_mode=sc.method.norm_mode,
                                                        policy=policy_config(sc),
                                                        rate=sc.selection.random_rate, seed=sc.seed),
            "ablation: uploads a random selection.random_rate of the samples; CEMA's cloud", **DISTILLED,
            gateable=True)
METHODS.add("cema", _cema, "entropy-selected uploads (E_min < E < E_max); cloud foundation step + distillation",
            **DISTILLED, gateable=True)  # gateable: selection.policy may gate its uploads
