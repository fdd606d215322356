"""DeYO (Lee et al., ICLR 2024): entropy minimisation on the samples that pass two filters, on the
device itself or offloaded to the cloud like Tent (every sample uploaded).

  1. entropy:  E(x) < margin (0.5 ln C)
  2. PLPD:     p(yhat | x) - p(yhat | x') > plpd_threshold (0.2), x' = x with its patches shuffled
               (a grid of `patches` x `patches`, one permutation a sample): the object is destroyed,
               its texture kept, so a prediction that survives the shuffle relied on texture
  loss = mean over kept samples of E(x) * (exp(-(E(x) - e0)) + exp(PLPD)), weights detached.

Parameters: the norm affine tensors the authors' collect_params keeps (SAR's: ResNet layer4 and
ViT-Base blocks 9-11 frozen). The shuffled forward uses the batch's own statistics, as theirs (train
mode, no running statistics); the cost model charges it as a second pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.methods.method import Method
from cemasim.methods.optim import Learner, gradient_step
from cemasim.methods.registry import METHODS, OFFLOADABLE, ln_c, preset_lr
from cemasim.methods.tta import Adapter, sar_frozen
from cemasim.methods.tta_methods import TTA
from cemasim.models import norm


def patch_shuffle(x: Tensor, patches: int, gen: torch.Generator) -> Tensor:
    """Each image cut into patches x patches tiles (after a resize to a multiple of `patches`, as the
    authors' code, which takes the width for both sides), tiles permuted per image, resized back."""
    import torchvision.transforms.functional as TF

    b, c, _, width = x.shape
    side = width // patches * patches
    tiles = TF.resize(x, [side, side])
    t = side // patches
    tiles = tiles.reshape(b, c, patches, t, patches, t).permute(0, 2, 4, 1, 3, 5).reshape(b, patches * patches, c, t, t)
    order = torch.argsort(torch.rand(b, patches * patches, generator=gen), dim=-1).to(x.device)
    tiles = tiles[torch.arange(b, device=x.device).unsqueeze(-1), order]
    shuffled = tiles.reshape(b, patches, patches, c, t, t).permute(0, 3, 1, 4, 2, 5).reshape(b, c, side, side)
    return TF.resize(shuffled, [width, width])


@dataclass
class DeYO(Adapter):
    margin: float = 0.5 * math.log(1000)  # nats; entropy filter
    e0: float = 0.4 * math.log(1000)  # nats; entropy weight exp(-(E - e0))
    plpd_threshold: float = 0.2
    patches: int = 4
    reweight_ent: bool = True
    reweight_plpd: bool = True

    def adapted_names(self, model: nn.Module, names: list[str]) -> list[str]:
        return [n for n in names if not sar_frozen(n.rpartition(".")[0])]

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        gen = learner.extra.setdefault("generator", torch.Generator().manual_seed(0))  # CPU: the shuffles
        logits, _ = gradient_step(model, learner, x, self.stat_mode, lambda z: self.loss_of(model, learner, x, z, gen),
                                  self.lr, self.momentum)
        return logits

    def loss_of(self, model: nn.Module, learner: Learner, x: Tensor, logits: Tensor,
                gen: torch.Generator) -> Tensor | None:
        """The weighted entropy of the samples both filters keep; None when none is kept (no step)."""
        ent = entropy(logits)
        reliable = (ent < self.margin).nonzero().squeeze(1)
        if len(reliable) == 0:
            return None
        with torch.no_grad():
            shuffled = norm.forward(model, learner.state, patch_shuffle(x[reliable], self.patches, gen), self.stat_mode)
            probs = logits[reliable].detach().softmax(1)
            yhat = probs.argmax(1, keepdim=True)
            plpd = (probs.gather(1, yhat) - shuffled.softmax(1).gather(1, yhat)).squeeze(1)
        kept = plpd > self.plpd_threshold
        if not kept.any():
            return None
        ent_kept, plpd_kept = ent[reliable][kept], plpd[kept]
        if self.reweight_ent or self.reweight_plpd:
            coeff = (float(self.reweight_ent) * torch.exp(self.e0 - ent_kept.detach())
                     + float(self.reweight_plpd) * torch.exp(plpd_kept))
            ent_kept = ent_kept * coeff
        return ent_kept.mean()


@dataclass
class DeYOMethod(TTA):
    def adapter_passes(self) -> int:
        return 2  # the shuffled forward, charged as a second pass


def _build(sc: Any, num_classes: int) -> Method:
    m = sc.method
    adapter = DeYO(lr=preset_lr(sc, "deyo"), margin=m.deyo_margin * ln_c(num_classes),
                   e0=m.deyo_e0 * ln_c(num_classes), plpd_threshold=m.deyo_plpd, patches=m.deyo_patches)
    return DeYOMethod(name="deyo", norm_mode="batch", deployment=m.deployment, adapter=adapter)


METHODS.add("deyo", _build, "entropy + PLPD (patch-shuffle) filtered, weighted entropy on norm affine; on the edge "
            "or offloaded (method.deployment)", **OFFLOADABLE)
