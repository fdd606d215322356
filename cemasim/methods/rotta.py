"""RoTTA (Yuan et al., CVPR 2023; BIT-DA/RoTTA core/adapter/rotta.py, core/utils/memory.py, bn_layers.py):
on the device itself or offloaded to the cloud like Tent (every sample uploaded).

  robust BN   every BN layer normalises by (1 - alpha) * its statistics + alpha * the batch's (alpha
              0.05) and keeps the result, in training-mode forwards; in eval mode by its statistics
  prediction  the EMA teacher in eval mode (its robust statistics, nothing updated)
  memory      category-balanced, by the teacher's pseudo-label (capacity 64); a full class evicts the
              item of the highest lambda_t * sigmoid(age / capacity) + lambda_u * E / ln C if that beats
              the new sample's score; every item ages by one per added sample
  update      every `update_frequency` (64) samples: teacher(memory) as soft targets for
              student(strong augmentation of memory), CE weighted by sigmoid(-age / capacity)
              (timeliness), mean; one Adam step (lr 1e-3, betas 0.9 / 0.999) on the student's norm
              affine; teacher affine <- (1 - nu) teacher + nu student (nu 0.001)

The device state (what predicts, and what a refresh carries) is the teacher: norm affine and robust
statistics. The learner's extras hold the student (affine and statistics), the Adam moments, the memory
bank (images), the count of samples seen and the augmentation's generator. The strong augmentation is
CoTTA's get_tta_transforms (theirs). The cost model charges the teacher's forwards as a second pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cemasim.methods.method import Method
from cemasim.methods.optim import Learner, adam_step, check_finite
from cemasim.methods.registry import METHODS, OFFLOADABLE, preset_lr
from cemasim.methods.tta import Adapter, augment
from cemasim.methods.tta_methods import TTA
from cemasim.models import norm


@dataclass
class MemoryItem:
    data: Tensor
    uncertainty: float
    age: int = 0


class MemoryBank:
    """RoTTA's CSTU: a category-balanced memory ranked by timeliness and uncertainty."""

    def __init__(self, capacity: int, num_classes: int, lambda_t: float = 1.0, lambda_u: float = 1.0):
        self.capacity, self.num_classes, self.lambda_t, self.lambda_u = capacity, num_classes, lambda_t, lambda_u
        self.classes: list[list[MemoryItem]] = [[] for _ in range(num_classes)]

    def score(self, age: int, uncertainty: float) -> float:
        """Higher = first to go: old and uncertain."""
        return (self.lambda_t / (1 + math.exp(-age / self.capacity))
                + self.lambda_u * uncertainty / math.log(self.num_classes))

    def add(self, data: Tensor, label: int, uncertainty: float) -> None:
        if self._make_room(label, self.score(0, uncertainty)):
            self.classes[label].append(MemoryItem(data, uncertainty))
        for items in self.classes:
            for item in items:
                item.age += 1

    def _make_room(self, label: int, score: float) -> bool:
        """Whether the sample enters: a free slot, or an evicted item (from its class when the class holds
        its share, else from the largest classes) that scores above it."""
        sizes = [len(items) for items in self.classes]
        if sizes[label] >= self.capacity / self.num_classes:
            return self._evict([label], score)
        if sum(sizes) < self.capacity:
            return True
        return self._evict([c for c, size in enumerate(sizes) if size == max(sizes)], score)

    def _evict(self, classes: list[int], score: float) -> bool:
        worst: tuple[float, int, int] | None = None
        for c in classes:
            for i, item in enumerate(self.classes[c]):
                s = self.score(item.age, item.uncertainty)
                if worst is None or s >= worst[0]:  # ties: the later item (theirs)
                    worst = (s, c, i)
        if worst is None:
            return True
        if worst[0] > score:
            self.classes[worst[1]].pop(worst[2])
            return True
        return False

    def contents(self) -> tuple[list[Tensor], list[float]]:
        """(images, ages / capacity), class by class."""
        items = [item for items in self.classes for item in items]
        return [item.data for item in items], [item.age / self.capacity for item in items]


@dataclass
class RoTTA(Adapter):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    alpha: float = 0.05
    nu: float = 0.001
    memory_size: int = 64
    update_frequency: int = 64
    lambda_t: float = 1.0
    lambda_u: float = 1.0
    num_classes: int = 10
    stat_mode: str = "eval"

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        """The teacher's logits of the batch; each sample enters the memory, and every `update_frequency`
        samples the student and the teacher update."""
        memory = learner.extra.setdefault("memory", MemoryBank(self.memory_size, self.num_classes, self.lambda_t,
                                                               self.lambda_u))
        with torch.no_grad():
            logits = norm.forward(model, learner.state, x, "eval")
            probs = logits.softmax(1)
            labels = probs.argmax(1).tolist()
            uncertainty = (-probs * torch.log(probs + 1e-6)).sum(1).tolist()
        for i in range(x.shape[0]):
            memory.add(x[i].clone(), labels[i], uncertainty[i])
            learner.extra["seen"] = learner.extra.get("seen", 0) + 1
            if learner.extra["seen"] % self.update_frequency == 0:
                self.update(model, learner, memory)
        return logits

    def update(self, model: nn.Module, learner: Learner, memory: MemoryBank) -> None:
        gen = learner.extra.setdefault("generator", torch.Generator().manual_seed(0))  # CPU: augment's draws
        teacher = learner.state
        student = learner.extra.setdefault("student", {n: t.clone() for n, t in teacher.items()})
        images, ages = memory.contents()
        data = torch.stack(images)
        strong = augment(data, gen)
        prior = 1 - self.alpha
        with torch.no_grad():
            targets = norm.forward(model, teacher, data, "rbn", prior)
        names = learner.affine_names()
        params = {n: student[n].detach().requires_grad_(True) for n in names}
        outputs = norm.forward(model, {**student, **params}, strong, "rbn", prior)
        age = torch.tensor(ages, device=data.device)
        timeliness = torch.exp(-age) / (1 + torch.exp(-age))
        loss = (-(targets.softmax(1) * outputs.log_softmax(1)).sum(1) * timeliness).mean()
        grads = torch.autograd.grad(loss, list(params.values()))
        adam_step(student, dict(zip(names, grads, strict=True)), learner.extra.setdefault("adam", {}), self.lr,
                  self.betas)
        check_finite(loss, {n: student[n] for n in names})
        with torch.no_grad():
            for n in names:
                teacher[n].mul_(1 - self.nu).add_(self.nu * student[n])
        learner.steps += 1


@dataclass
class RottaMethod(TTA):
    """The device predicts with the teacher's robust statistics (eval mode), which it holds and a refresh
    carries."""

    @property
    def carries_stats(self) -> bool:
        return True

    def edge_stat_mode(self) -> tuple[str, float]:
        return "eval", 0.0

    def adapter_passes(self) -> int:
        return 2  # the teacher's forwards (the batch, the memory), charged as a second pass


def _build(sc: Any, num_classes: int) -> Method:
    m = sc.method
    adapter = RoTTA(lr=preset_lr(sc, "rotta"), alpha=m.rotta_alpha, nu=m.rotta_nu, memory_size=m.rotta_memory,
                    update_frequency=m.rotta_update_every, num_classes=num_classes)
    return RottaMethod(name="rotta", norm_mode="batch", deployment=m.deployment, adapter=adapter)


METHODS.add("rotta", _build, "robust BN, category-balanced memory, EMA teacher and timeliness-weighted student "
            "updates every 64 samples; on the edge or offloaded (method.deployment)", **OFFLOADABLE)
