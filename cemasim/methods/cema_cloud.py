"""The cloud's learning steps (pure torch; reference: cema.md, "Cloud"):

  foundation step  one SGD step of f_theta's norm affine on mean_i exp(E0 - E_i) E_i over a chunk
  distillation     one SGD step of a device's edge norm affine on the three-term loss, on
                   the chunk (+ replayed samples) with f_theta's logits as teacher
  replay-only      a distillation step on replayed samples alone

The simulator decides when these run and on which device's state; these functions only compute.
Images arrive as uint8 and are scaled to [0, 1] here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cemasim.methods.losses import distillation_loss, foundation_loss
from cemasim.methods.optim import Learner, gradient_step
from cemasim.models import norm


@dataclass(frozen=True)
class CloudConfig:
    e0: float  # nats
    foundation_lr: float = 2.5e-4
    distill_lr: float = 2.5e-3
    momentum: float = 0.9
    alpha: float = 3.0
    beta: float = 3.0
    gamma: float = 1.0
    temperature: float = 1.0
    student_mode: str = "batch"  # "train" / "tbr_train" also update the student's running statistics
    foundation_mode: str = "batch"  # statistics mode of the foundation's entropy step
    teacher_mode: str = "batch"  # ... and of its teacher forward in distillation

    @property
    def foundation_stats(self) -> bool:
        """Whether the foundation's running statistics are part of its adapted state (tbr)."""
        return self.foundation_mode != "batch"


# method.norm_mode -> (student, foundation step, teacher forward), after set_bn_training_mode in
# the released cema.py: is_tbr false = batch statistics everywhere (running_mean is None);
# is_tbr true = TBR, running statistics updated in the training-mode forwards only.
NORM_MODES = {
    "batch": ("batch", "batch", "batch"),
    "running": ("train", "batch", "batch"),  # cemasim's: no released switch (see docs/methods.md)
    "tbr": ("tbr_train", "tbr_train", "tbr"),
}


# what each step uses, named when it fails (optim.step_failed): CloudConfig fields, and the keys to check
FOUNDATION_USES = (("foundation_lr", "momentum", "e0"), "cloud.foundation_lr, cloud.momentum and cloud.e0")
DISTILL_USES = (("distill_lr", "momentum", "temperature", "e0", "alpha", "beta", "gamma"),
                "cloud.distill_lr, cloud.temperature, cloud.e0 and cloud.alpha/beta/gamma")


def to_float(images: Tensor, device: torch.device) -> Tensor:
    return images.to(device, non_blocking=True).float().div_(255.0)


def foundation_step(model: nn.Module, learner: Learner, x: Tensor, cfg: CloudConfig) -> float:
    """Adapt f_theta on a chunk by confidence-weighted entropy minimisation."""
    _, loss = gradient_step(model, learner, x, cfg.foundation_mode, lambda z: foundation_loss(z, cfg.e0),
                            cfg.foundation_lr, cfg.momentum)
    assert loss is not None  # the weighted entropy is defined on any chunk
    return float(loss)


@torch.no_grad()
def teacher_logits(model: nn.Module, learner: Learner, x: Tensor, mode: str = "batch") -> Tensor:
    return norm.forward(model, learner.state, x, mode)


def distill_step(edge_model: nn.Module, student: Learner, foundation: nn.Module, teacher: Learner, x: Tensor,
                 cfg: CloudConfig) -> float:
    """One distillation step of a device's edge norm state towards the (already updated) foundation."""
    z_f = teacher_logits(foundation, teacher, x, cfg.teacher_mode)

    def loss(z_e: Tensor) -> Tensor:
        return distillation_loss(z_e, z_f, cfg.e0, cfg.alpha, cfg.beta, cfg.gamma, cfg.temperature)

    _, value = gradient_step(edge_model, student, x, cfg.student_mode, loss, cfg.distill_lr, cfg.momentum)
    assert value is not None
    return float(value)
