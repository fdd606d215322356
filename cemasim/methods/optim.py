"""Learners and their optimizer: a model's adaptable norm state with SGD-momentum buffers.

SGD matches torch.optim.SGD (dampening 0, optional Nesterov, no weight decay):
buf <- m * buf + g (buf = g at the first step); p <- p - lr * buf (Nesterov: p <- p - lr * (g + m * buf)).
Kept as plain functions over dicts so per-device optimizer state is just a few tensors.

Finite state: every step checks its loss and the tensors it wrote (check_finite) and raises
NonFiniteError; the simulator names the step, device and time (step_failed). A method that updates
through sgd_step (passing its loss) is checked without doing anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cemasim.errors import NonFiniteError
from cemasim.models import norm


@dataclass(slots=True)
class Learner:
    """A model's adaptable state (norm tensors), SGD momentum buffers and method-specific extras."""

    state: norm.NormState
    momentum_bufs: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def affine_names(self) -> list[str]:
        return [n for n in self.state if not n.endswith(norm.STAT_SUFFIXES)]

    def copy(self) -> Learner:
        return Learner({n: t.clone() for n, t in self.state.items()})

    KEPT_EXTRAS = ("source", "anchor", "fisher")  # fixed references a method sets once (TTA's source, EATA's Fisher)

    def reset(self, source: norm.NormState) -> None:
        """Back to `source` (the reset protocol, on the edge and in the cloud): state copied, SGD momentum
        and per-stream extras (SAR's EMA, CoTTA's teacher) cleared, the method's fixed references kept."""
        self.state = {n: t.clone() for n, t in source.items()}
        self.momentum_bufs.clear()
        self.extra = {k: v for k, v in self.extra.items() if k in self.KEPT_EXTRAS}


def sgd_step(params: dict[str, Tensor], grads: dict[str, Tensor], momentum_bufs: dict[str, Tensor], lr: float,
             momentum: float, nesterov: bool = False, loss: Tensor | None = None) -> None:
    """Update `params` and `momentum_bufs` in place; NonFiniteError if `loss` or an updated tensor is not finite."""
    with torch.no_grad():
        for name, grad in grads.items():
            buf = momentum_bufs.get(name)
            if buf is None:
                buf = momentum_bufs[name] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad)
            params[name].sub_(lr * (grad + momentum * buf if nesterov else buf))
        check_finite(loss, {name: params[name] for name in grads})


def check_finite(loss: Tensor | None, tensors: dict[str, Tensor]) -> None:
    """NonFiniteError unless `loss` and every tensor are finite. Cheap: one isfinite over the loss and the
    tensors' sums, one host sync; only then each tensor alone (a sum of finite values may overflow)."""
    parts = [t.sum(dtype=torch.float32) for t in tensors.values()]
    if loss is not None:
        parts.append(loss.detach().float().sum())
    if not parts or bool(torch.isfinite(torch.stack(parts)).all()):
        return
    if loss is not None and not bool(torch.isfinite(loss).all()):
        raise NonFiniteError(f"a non-finite loss ({float(loss.detach().float().sum())})")
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteError(f"non-finite values in {', '.join(bad[:3])}{more}")


def hyper_parameters(config: Any, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """The numeric fields of a dataclass (an adapter, the cloud's config), or the `names` among them; none
    of anything else (a method without an adapter)."""
    values = {f.name: getattr(config, f.name) for f in fields(config)} if is_dataclass(config) else {}
    return {k: v for k, v in values.items() if (names is None or k in names)
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


def step_failed(exc: NonFiniteError, step: str, device: int, time_s: float, hyper: dict[str, float],
                keys: str) -> NonFiniteError:
    """`exc` again, naming the step, the device, the simulated time, the hyper-parameters and the keys to check."""
    used = f" with {', '.join(f'{k} = {v:g}' for k, v in hyper.items())}" if hyper else ""
    return NonFiniteError(f"the {step} of device {device} at t = {time_s:.6g} s (simulated) gave {exc}{used}; "
                          f"the run stops rather than predict with or send non-finite parameters: check {keys} "
                          "(an extreme value overflows float32)")


def adam_step(params: dict[str, Tensor], grads: dict[str, Tensor], moments: dict[str, Any], lr: float,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """torch.optim.Adam (no weight decay, no amsgrad), in place on `params`; `moments` holds its step count
    and first and second moments per name (RoTTA's optimizer, the authors' Adam config)."""
    step = moments["step"] = moments.get("step", 0) + 1
    with torch.no_grad():
        for name, grad in grads.items():
            m = moments.setdefault(f"m.{name}", torch.zeros_like(grad)).lerp_(grad, 1 - betas[0])
            v = moments.setdefault(f"v.{name}", torch.zeros_like(grad)).mul_(betas[1]).addcmul_(grad, grad,
                                                                                                 value=1 - betas[1])
            denom = (v.sqrt() / math.sqrt(1 - betas[1] ** step)).add_(eps)
            params[name].addcdiv_(m, denom, value=-lr / (1 - betas[0] ** step))
        check_finite(None, {name: params[name] for name in grads})


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
    return logits.detach(), loss.detach(), dict(zip(names, grads, strict=True))


def gradient_step(model: nn.Module, learner: Learner, x: Tensor, mode: str, loss_fn: LossFn, lr: float,
                  momentum: float) -> tuple[Tensor, Tensor | None]:
    """Forward, loss, one SGD step on the learner's affine tensors. Returns the pre-update logits."""
    logits, loss, grads = loss_and_grads(model, learner, x, mode, loss_fn)
    if loss is not None:
        sgd_step(learner.state, grads, learner.momentum_bufs, lr, momentum, loss=loss)
        learner.steps += 1
    return logits, loss
