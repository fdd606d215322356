"""ROID (Marsden, Döbler, Yang, WACV 2024; mariodoebler/test-time-adaptation, classification/methods/roid.py):
on the device itself or offloaded to the cloud like Tent (every sample uploaded).

Per test batch, with the batch's own BN statistics:
  weights   diversity (1 - cos(class-prior EMA, p), min-max scaled; below its mean: weight 0) times
            certainty (-E, min-max scaled): w = exp(div * cert / temperature)
  loss      sum of w * SLR(p) + sum of w * SCE(augmented view, original view), both over the kept
            samples, divided by the batch size; SLR = -sum_c p_c log(p_c / (1 - p_c) + 1e-5), p <= 0.99
  step      SGD (momentum 0.9, Nesterov: the authors' ImageNet config) on the norm affine tensors, then
            weight ensembling towards the source: p <- m p + (1 - m) p_source (m = 0.99)
  output    the pre-update logits times the smoothed batch prior (prior correction)

The augmented view is the authors' get_tta_transforms(cotta_augs=False, reflect padding); the cost model
charges its forward-backward as a second pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.methods.method import Method
from cemasim.methods.optim import Learner, sgd_step
from cemasim.methods.registry import METHODS, OFFLOADABLE, preset_lr
from cemasim.methods.tta import Adapter, augment
from cemasim.methods.tta_methods import TTA
from cemasim.models import norm


def soft_likelihood_ratio(logits: Tensor, clip: float = 0.99, eps: float = 1e-5) -> Tensor:
    """-sum_c p_c log(p_c / (1 - p_c) + eps), p clipped at `clip`, one value per row (SoftLikelihoodRatio)."""
    probs = logits.softmax(1).clamp(max=clip)
    return -(probs * torch.log(probs / (1 - probs) + eps)).sum(1)


def _min_max(t: Tensor) -> Tensor:
    return (t - t.min()) / (t.max() - t.min())


def roid_weights(logits: Tensor, class_probs: Tensor, temperature: float) -> tuple[Tensor, Tensor] | None:
    """(weights, kept samples) of a batch; None when they are undefined (every sample equally diverse or
    equally certain, e.g. one sample: the min-max scaling divides by zero)."""
    div = 1 - F.cosine_similarity(class_probs.unsqueeze(0), logits.softmax(1), dim=1)
    cert = -entropy(logits)
    if div.max() == div.min() or cert.max() == cert.min():
        return None
    div = _min_max(div)
    weights = torch.exp(div * _min_max(cert) / temperature)
    keep = ~(div < div.mean())
    return weights * keep, keep


def prior_correction(logits: Tensor) -> Tensor:
    """The logits times the batch's class prior, smoothed towards uniform (ROID's output correction)."""
    prior = logits.softmax(1).mean(0)
    smooth = max(1 / logits.shape[0], 1 / logits.shape[1]) / prior.max()
    return logits * (prior + smooth) / (1 + smooth * logits.shape[1])


@dataclass
class ROID(Adapter):
    """Learner extras: `source` (the ensembling target), `class_probs` (the EMA of the batches' mean
    probabilities), `generator` (the augmentation's draws)."""

    lr: float = 2.5e-4
    nesterov: bool = True
    momentum_src: float = 0.99
    momentum_probs: float = 0.9
    temperature: float = 1 / 3

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        gen = learner.extra.setdefault("generator", torch.Generator().manual_seed(0))  # CPU: augment's draws
        names = learner.affine_names()
        params = {n: learner.state[n].detach().requires_grad_(True) for n in names}
        live = {**learner.state, **params}
        logits = norm.forward(model, live, x, self.stat_mode)
        with torch.no_grad():
            class_probs = learner.extra.get("class_probs")
            if class_probs is None:
                class_probs = torch.full((logits.shape[1],), 1 / logits.shape[1], device=logits.device)
            weighted = roid_weights(logits, class_probs, self.temperature)
            learner.extra["class_probs"] = (self.momentum_probs * class_probs
                                            + (1 - self.momentum_probs) * logits.softmax(1).mean(0))
        if weighted is not None:
            self._update(model, learner, x, logits, params, live, *weighted, gen)
        return prior_correction(logits.detach())

    def _update(self, model: nn.Module, learner: Learner, x: Tensor, logits: Tensor, params: dict[str, Tensor],
                live: norm.NormState, weights: Tensor, keep: Tensor, gen: torch.Generator) -> None:
        """One SGD step on the weighted SLR + consistency loss, then ensembling towards the source."""
        n = x.shape[0]  # the authors divide by the configured batch size: the same on a full batch
        loss = (soft_likelihood_ratio(logits) * weights)[keep].sum() / n
        augmented = norm.forward(model, live, augment(x[keep], gen, padding_mode="reflect", cotta_augs=False),
                                 self.stat_mode)
        # symmetric CE against the original view, not detached (theirs): the gradient flows through both
        loss = loss + (symmetric_ce(augmented, logits[keep]) * weights[keep]).sum() / n
        grads = torch.autograd.grad(loss, list(params.values()))
        sgd_step(learner.state, dict(zip(params, grads, strict=True)), learner.momentum_bufs, self.lr, self.momentum,
                 nesterov=self.nesterov, loss=loss)
        with torch.no_grad():
            source = learner.extra["source"]
            for name in params:
                learner.state[name].mul_(self.momentum_src).add_((1 - self.momentum_src) * source[name])
        learner.steps += 1


def symmetric_ce(x: Tensor, x_ema: Tensor) -> Tensor:
    """0.5 CE(x_ema -> x) + 0.5 CE(x -> x_ema), one value per row (SymmetricCrossEntropy, alpha 0.5)."""
    return -0.5 * (x_ema.softmax(1) * x.log_softmax(1)).sum(1) - 0.5 * (x.softmax(1) * x_ema.log_softmax(1)).sum(1)


@dataclass
class RoidMethod(TTA):
    """Offloaded, the edge applies the prior correction to its own batch's logits (it needs nothing else)."""

    def adapter_passes(self) -> int:
        return 2  # the augmented view's forward-backward, charged as a second pass

    def edge_logits(self, model: nn.Module, state: norm.NormState, x: Tensor) -> Tensor:
        return prior_correction(super().edge_logits(model, state, x))


def _build(sc: Any, num_classes: int) -> Method:
    m = sc.method
    adapter = ROID(lr=preset_lr(sc, "roid"), momentum_src=m.roid_momentum_src, temperature=m.roid_temperature)
    return RoidMethod(name="roid", norm_mode="batch", deployment=m.deployment, adapter=adapter)


METHODS.add("roid", _build, "certainty/diversity-weighted soft likelihood ratio + augmentation consistency on norm "
            "affine, weight ensembling to the source, prior correction; on the edge or offloaded",
            **OFFLOADABLE)
