"""Learners and their optimizer: a model's adaptable norm state with SGD-momentum buffers.

SGD matches torch.optim.SGD (dampening 0, optional Nesterov, no weight decay):
buf <- m * buf + g (buf = g at the first step); p <- p - lr * buf (Nesterov: p <- p - lr * (g + m * buf)).
Kept as plain functions over dicts so per-device optimizer state is just a few tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from cemasim.models import norm


@dataclass
class Learner:
    """A model's adaptable state (norm tensors), SGD momentum buffers and method-specific extras."""

    state: norm.NormState
    momentum_bufs: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def affine_names(self) -> list[str]:
        return [n for n in self.state if not n.endswith(norm.STAT_SUFFIXES)]

    def copy(self) -> "Learner":
        return Learner({n: t.clone() for n, t in self.state.items()})

    KEPT_EXTRAS = ("source", "anchor", "fisher")  # fixed references a method sets once (TTA's source, EATA's Fisher)

    def reset(self, source: norm.NormState) -> None:
        """Back to `source` (the reset protocol, on the edge and in the cloud): state copied, SGD momentum
        and per-stream extras (SAR's EMA, CoTTA's teacher) cleared, the method's fixed references kept."""
        self.state = {n: t.clone() for n, t in source.items()}
        self.momentum_bufs.clear()
        self.extra = {k: v for k, v in self.extra.items() if k in self.KEPT_EXTRAS}


def sgd_step(params: dict[str, Tensor], grads: dict[str, Tensor], momentum_bufs: dict[str, Tensor], lr: float,
             momentum: float, nesterov: bool = False) -> None:
    """Update `params` and `momentum_bufs` in place."""
    with torch.no_grad():
        for name, grad in grads.items():
            buf = momentum_bufs.get(name)
            if buf is None:
                buf = momentum_bufs[name] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad)
            params[name].sub_(lr * (grad + momentum * buf if nesterov else buf))


LossFn = Callable[[Tensor], "Tensor | None"]


def loss_and_grads(model: nn.Module, learner: Learner, x: Tensor, mode: str, loss_fn: LossFn,
                   state: norm.NormState | None = None) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """(logits, loss, grads w.r.t. the learner's affine tensors); loss None = nothing to learn from."""
    names = learner.affine_names()
    base = learner.state if state is None else state
    params = {n: base[n].detach().requires_grad_(True) for n in names}
    logits = norm.forward(model, {**base, **params}, x, mode)
    loss = loss_fn(logits)
    if loss is None:
        return logits.detach(), None, {}
    grads = torch.autograd.grad(loss, list(params.values()))
    return logits.detach(), loss.detach(), dict(zip(names, grads))


def gradient_step(model: nn.Module, learner: Learner, x: Tensor, mode: str, loss_fn: LossFn, lr: float,
                  momentum: float) -> tuple[Tensor, Tensor | None]:
    """Forward, loss, one SGD step on the learner's affine tensors. Returns the pre-update logits."""
    logits, loss, grads = loss_and_grads(model, learner, x, mode, loss_fn)
    if loss is not None:
        sgd_step(learner.state, grads, learner.momentum_bufs, lr, momentum)
        learner.steps += 1
    return logits, loss
