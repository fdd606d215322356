"""Loss kernels of CEMA (pure torch, no simulation): entropy, the foundation model's weighted
entropy, and the three-term distillation loss. Entropies are in nats."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (nats) of softmax(logits), one value per row."""
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


def confidence_weight(ent: Tensor, e0: float) -> Tensor:
    """exp(E0 - E), detached: low-entropy (confident) samples weigh more (EATA/CEMA)."""
    return torch.exp(e0 - ent.detach())


def foundation_loss(logits: Tensor, e0: float) -> Tensor:
    """mean_i exp(E0 - E_i) * E_i, the cloud foundation model's entropy objective."""
    ent = entropy(logits)
    return (confidence_weight(ent, e0) * ent).mean()


def distillation_loss(student: Tensor, teacher: Tensor, e0: float, alpha: float, beta: float, gamma: float,
                      temperature: float) -> Tensor:
    """CEMA's distillation loss (reference: cema.md, cloud step 3).

    mean_i [ alpha * w(E(z_e)) * E(z_e)
           + beta  * w(E(z_f)) * T^2 * KL(softmax(z_f/T) || softmax(z_e/T))
           + gamma * w(E(z_f)) * CE(z_e, argmax z_f) ],  w(E) = exp(E0 - E) detached.
    """
    teacher = teacher.detach()
    ent_s, ent_t = entropy(student), entropy(teacher)
    w_s, w_t = confidence_weight(ent_s, e0), confidence_weight(ent_t, e0)
    t = temperature
    kl = F.kl_div((student / t).log_softmax(-1), (teacher / t).log_softmax(-1), reduction="none",
                  log_target=True).sum(-1) * t * t
    ce = F.cross_entropy(student, teacher.argmax(-1), reduction="none")
    return (alpha * w_s * ent_s + beta * w_t * kl + gamma * w_t * ce).mean()
