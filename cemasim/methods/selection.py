"""CEMA's edge-side sample selection (reference: cema.md, "Edge: which samples are uploaded").

Per test batch, on the EDGE model's logits:
  S_high  keep iff E(x) < E_max(t)   (exclude unreliable samples), E_max dynamic or static
  S_low   keep iff E(x) > E_min      (exclude low-informative samples), optional
  redundancy (optional, EATA): keep iff |cos(m, p(x))| < eps, m an EMA of kept predictions
Thresholds arrive in nats (already multiplied by ln C).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cemasim.methods.losses import entropy


@dataclass(frozen=True)
class SelectionConfig:
    e0: float  # static / initial E_max, nats
    e_min: float | None  # nats; None disables S_low
    dynamic_e_max: bool = True
    lam: float = 1.0
    warm_up_n: int = 512
    redundancy_filter: bool = False
    redundancy_eps: float = 0.05


@dataclass
class SelectionState:
    """What one device remembers between batches: entropy running mean and the EMA m."""

    seen: int = 0
    entropy_sum: float = 0.0
    warm_mean: float | None = None
    m: Tensor | None = None
    e_max: float | None = None  # last threshold used, for the records


def dynamic_e_max(state: SelectionState, batch_entropy: Tensor, cfg: SelectionConfig) -> float:
    """Released-code form: E0 during warm-up, then E0 * lambda * mean_t / mean_warm.

    The running mean covers every sample seen so far, the current batch included.
    """
    state.seen += batch_entropy.numel()
    state.entropy_sum += float(batch_entropy.sum())
    if not cfg.dynamic_e_max or state.seen < cfg.warm_up_n:
        return cfg.e0
    mean = state.entropy_sum / state.seen
    if state.warm_mean is None:
        state.warm_mean = mean
    return cfg.e0 * cfg.lam * mean / state.warm_mean if state.warm_mean > 0 else cfg.e0


def redundancy_mask(probs: Tensor, state: SelectionState, eps: float) -> Tensor:
    """EATA's filter on candidate predictions; updates m with the kept ones."""
    if state.m is None:
        keep = torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
    else:
        keep = F.cosine_similarity(state.m.unsqueeze(0), probs, dim=1).abs() < eps
    kept = probs[keep]
    if kept.shape[0] > 0:
        state.m = kept.mean(0) if state.m is None else 0.9 * state.m + 0.1 * kept.mean(0)
    return keep


def select(logits: Tensor, state: SelectionState, cfg: SelectionConfig) -> Tensor:
    """Boolean mask of the samples of this batch to upload; updates `state`."""
    ent = entropy(logits)
    e_max = dynamic_e_max(state, ent, cfg)
    state.e_max = e_max
    keep = ent < e_max
    if cfg.e_min is not None:
        keep &= ent > cfg.e_min
    if cfg.redundancy_filter and bool(keep.any()):
        candidates = keep.nonzero().squeeze(1)
        sub = redundancy_mask(logits[candidates].softmax(-1), state, cfg.redundancy_eps)
        keep = torch.zeros_like(keep)
        keep[candidates[sub]] = True
    return keep
