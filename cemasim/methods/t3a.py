"""T3A (Iwasawa & Matsuo, NeurIPS 2021): forward-only classifier adjustment on the edge, uploads
nothing, no backward pass (runs on a profile that cannot train).

Per device, a support set of penultimate features (the input of the last Linear layer), started
from the classifier's weight rows: each test sample joins it under its pseudo-label (the model's
argmax) with its entropy, each class keeps its `filter_k` lowest-entropy supports, and the batch is
predicted by the prototype classifier z @ normalize(sum of the class's normalised supports). The
features come from the frozen model with source statistics (eval mode, as the authors' DomainBed
evaluation). Memory: up to C x filter_k feature vectors a device; with the zoo edge CNN (1,024
features), 10 classes and filter_k 100: 10 x 100 x 1,024 float32 = 4.1 MB a device. Not charged by
the cost model: the prototype product is C x D multiply-adds a sample, beside a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.methods.method import Method
from cemasim.methods.optim import Learner
from cemasim.methods.registry import METHODS, ON_EDGE
from cemasim.methods.tta import classifier_features, last_linear
from cemasim.models import norm


@dataclass
class Supports:
    """A device's support set: raw features (n x D), pseudo-labels (n) and entropies (n)."""

    features: Tensor
    labels: Tensor
    entropies: Tensor


def warmup_supports(classifier: nn.Linear) -> Supports:
    """The classifier's weight rows as supports, labelled and scored by the classifier itself."""
    with torch.no_grad():
        weights = classifier.weight.detach().clone()
        logits = classifier(weights)
    return Supports(weights, logits.argmax(1), entropy(logits))


def add_and_filter(supports: Supports, features: Tensor, logits: Tensor, filter_k: int | None,
                   num_classes: int) -> Supports:
    """Append a batch under its pseudo-labels, then keep each class's `filter_k` lowest-entropy
    supports (None: all), classes in order, each sorted by entropy."""
    feats = torch.cat([supports.features, features])
    labels = torch.cat([supports.labels, logits.argmax(1)])
    ents = torch.cat([supports.entropies, entropy(logits)])
    keep = []
    for c in range(num_classes):
        rows = (labels == c).nonzero().squeeze(1)
        keep.append(rows[ents[rows].sort(stable=True).indices[:filter_k]])
    idx = torch.cat(keep)
    return Supports(feats[idx], labels[idx], ents[idx])


def prototype_logits(features: Tensor, supports: Supports, num_classes: int) -> Tensor:
    """z @ normalize(S^T Y, dim=0): S the normalised supports, Y their one-hot labels."""
    onehot = F.one_hot(supports.labels, num_classes).to(features.dtype)
    prototypes = F.normalize(F.normalize(supports.features, dim=1).T @ onehot, dim=0)
    return features @ prototypes


@dataclass
class T3A(Method):
    """Forward-only: the support set lives in the device's learner (`extra`), so a reset empties it."""

    filter_k: int | None = 100  # None: every support is kept
    num_classes: int = 0
    _warmup: Supports | None = None  # identical for every device: the classifier never changes

    @property
    def merges_forward(self) -> bool:
        return False  # each device predicts with its own support set

    def predict(self, model: nn.Module, learner: Learner, state: norm.NormState, x: Tensor) -> Tensor:
        with torch.no_grad():
            logits, features = classifier_features(model, state, x, "eval")
            if self._warmup is None:
                self._warmup = warmup_supports(last_linear(model))
            supports = learner.extra.get("t3a", self._warmup)
            supports = add_and_filter(supports, features, logits, self.filter_k, self.num_classes)
            learner.extra["t3a"] = supports
            return prototype_logits(features, supports, self.num_classes)


def _build(sc: Any, num_classes: int) -> T3A:
    k = sc.method.t3a_filter_k
    return T3A(name="t3a", filter_k=None if k in (None, -1) else k, num_classes=num_classes)


METHODS.add("t3a", _build, "forward-only prototype classifier from per-class support sets of test features "
            "(method.t3a_filter_k), uploads nothing; runs on devices that cannot train", deployments=ON_EDGE)
