"""Test-time adaptation baselines of the CEMA paper (pure torch; reference: cema.md, "Baselines").

Each adapter takes one test batch: it predicts (the returned logits are the PRE-update predictions,
as in the authors' code) and takes its update step on the learner's norm-layer affine tensors.
Where it runs (the edge itself, or the cloud on uploaded samples) is the simulator's business.

  tent  entropy minimisation                                  (Wang et al., ICLR 2021)
  pl    hard pseudo-label cross-entropy                        (Lee, 2013)
  eta   reliability (E < E0) + redundancy filters, exp(E0 - E) weights   (Niu et al., ICML 2022)
  eata  eta + Fisher regulariser anchored at the source weights
  sar   reliable entropy + sharpness-aware step + model reset  (Niu et al., ICLR 2023)
  lame  frozen model, Laplacian-regularised output correction  (Boudiaf et al., CVPR 2022)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cemasim.methods.losses import confidence_weight, entropy
from cemasim.methods.optim import Learner, gradient_step, loss_and_grads, sgd_step
from cemasim.methods.selection import SelectionState, redundancy_mask
from cemasim.models import norm


@dataclass
class Adapter:
    """Base: Tent. Subclasses change the loss (and sometimes the step)."""

    lr: float = 2.5e-4
    momentum: float = 0.9
    stat_mode: str = "batch"

    def loss(self, logits: Tensor, learner: Learner) -> Tensor | None:
        return entropy(logits).mean()

    def adapted_names(self, model: nn.Module, names: list[str]) -> list[str]:
        """The norm tensors this method adapts, of the model's `names` (all, unless the authors freeze some)."""
        return names

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        logits, _ = gradient_step(model, learner, x, self.stat_mode, lambda z: self.loss(z, learner), self.lr,
                                  self.momentum)
        return logits


@dataclass
class PseudoLabel(Adapter):
    lr: float = 1e-3

    def loss(self, logits: Tensor, learner: Learner) -> Tensor | None:
        return F.cross_entropy(logits, logits.detach().argmax(-1))


@dataclass
class ETA(Adapter):
    """EATA's code path without the Fisher term: filter, weight by exp(E0 - E), mean."""

    e_margin: float = 0.4 * math.log(1000)  # nats; EATA's 0.4 ln C
    d_margin: float = 0.05

    def loss(self, logits: Tensor, learner: Learner) -> Tensor | None:
        ent = entropy(logits)
        reliable = (ent < self.e_margin).nonzero().squeeze(1)
        sel: SelectionState = learner.extra.setdefault("redundancy", SelectionState())
        probs = logits[reliable].detach().softmax(-1)
        keep = reliable[redundancy_mask(probs, sel, self.d_margin)] if len(reliable) else reliable
        if len(keep) == 0:
            return None  # EATA skips the step when no sample survives
        ent_kept = ent[keep]
        loss = (confidence_weight(ent_kept, self.e_margin) * ent_kept).mean()
        return loss + self.regulariser(learner)

    def regulariser(self, learner: Learner) -> Tensor | float:
        return 0.0


@dataclass
class EATA(ETA):
    """ETA + fisher_alpha * sum_i F_i (theta_i - theta_i^0)^2; F from clean samples (see fisher_information)."""

    fisher_alpha: float = 2000.0

    def regulariser(self, learner: Learner) -> Tensor | float:
        fisher, anchor = learner.extra.get("fisher"), learner.extra.get("anchor")
        if fisher is None or anchor is None:
            return 0.0
        return self.fisher_alpha * sum((fisher[n] * (learner.extra["live"][n] - anchor[n]) ** 2).sum() for n in fisher)

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        # the regulariser needs the differentiable parameters of this forward pass
        names = learner.affine_names()
        params = {n: learner.state[n].detach().requires_grad_(True) for n in names}
        learner.extra["live"] = params
        logits = norm.forward(model, {**learner.state, **params}, x, self.stat_mode)
        loss = self.loss(logits, learner)
        learner.extra.pop("live")
        if loss is not None:
            grads = torch.autograd.grad(loss, list(params.values()))
            sgd_step(learner.state, dict(zip(names, grads, strict=True)), learner.momentum_bufs, self.lr,
                     self.momentum, loss=loss)
            learner.steps += 1
        return logits.detach()


def fisher_information(model: nn.Module, learner: Learner, clean: Tensor, batch_size: int = 64,
                       stat_mode: str = "batch") -> dict[str, Tensor]:
    """EATA's diagonal Fisher: squared gradients of the pseudo-label CE, summed over batches of clean
    images and divided by the number of batches."""
    total: dict[str, Tensor] = {}
    batches = list(clean.split(batch_size))
    for xb in batches:
        _, _, grads = loss_and_grads(model, learner, xb, stat_mode,
                                     lambda z: F.cross_entropy(z, z.detach().argmax(-1)))
        for n, g in grads.items():
            total[n] = total.get(n, 0) + g.detach() ** 2
    return {n: t / len(batches) for n, t in total.items()}


@dataclass
class SAR(Adapter):
    """Sharpness-aware reliable entropy minimisation with model recovery."""

    e_margin: float = 0.4 * math.log(1000)
    rho: float = 0.05
    reset_constant: float = 0.2

    def adapted_names(self, model: nn.Module, names: list[str]) -> list[str]:
        return [n for n in names if not sar_frozen(n.rpartition(".")[0])]

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        margin = self.e_margin
        logits, loss, grads = loss_and_grads(model, learner, x, self.stat_mode, lambda z: _reliable_entropy(z, margin))
        if loss is None:
            return logits
        keep1 = entropy(logits) < margin
        # SAM first step: climb to the worst point within rho, then take the gradient there
        norm_g = torch.norm(torch.stack([g.norm(2) for g in grads.values()]), 2)
        perturbed = dict(learner.state)
        for n, g in grads.items():
            perturbed[n] = learner.state[n] + self.rho * g / (norm_g + 1e-12)

        def second(z: Tensor) -> Tensor | None:
            ent2 = entropy(z)[keep1]
            ok = ent2 < margin
            return ent2[ok].mean() if ok.any() else None

        _, loss2, grads2 = loss_and_grads(model, learner, x, self.stat_mode, second, state=perturbed)
        if loss2 is not None:
            sgd_step(learner.state, grads2, learner.momentum_bufs, self.lr, self.momentum, loss=loss2)
            learner.steps += 1
            ema = learner.extra.get("ema")
            learner.extra["ema"] = float(loss2) if ema is None else 0.9 * ema + 0.1 * float(loss2)
        if learner.extra.get("ema") is not None and learner.extra["ema"] < self.reset_constant:
            reset(learner)
        return logits


def sar_frozen(module_name: str) -> bool:
    """SAR's collect_params skips the top layers: ResNet's layer4, ViT-Base's blocks 9-11 and its final
    norm (the authors' substring tests, verbatim). The zoo CNNs match none of them: every norm layer adapts."""
    nm = module_name
    return ("layer4" in nm or "blocks.9" in nm or "blocks.10" in nm or "blocks.11" in nm or "norm." in nm
            or nm in ["norm"])


def _reliable_entropy(logits: Tensor, margin: float) -> Tensor | None:
    ent = entropy(logits)
    ok = ent < margin
    return ent[ok].mean() if ok.any() else None


def reset(learner: Learner) -> None:
    """Restore the source norm state and clear the optimizer (SAR's model recovery)."""
    for n, t in learner.extra["source"].items():
        learner.state[n].copy_(t)
    learner.momentum_bufs.clear()
    learner.extra["ema"] = None
    learner.extra["resets"] = learner.extra.get("resets", 0) + 1


# ---- LAME ------------------------------------------------------------------------------------
def knn_affinity(features: Tensor, k: int) -> Tensor:
    """W_ij = 1 if j is among the k nearest neighbours of i (itself excluded)."""
    n = features.shape[0]
    dist = torch.cdist(features, features)
    n_neighbours = min(k + 1, n)
    idx = dist.topk(n_neighbours, -1, largest=False).indices[:, 1:]
    return torch.zeros(n, n, device=features.device).scatter_(-1, idx, 1.0)


def laplacian_optimization(unary: Tensor, kernel: Tensor, bound_lambda: float = 1.0, max_steps: int = 100) -> Tensor:
    """LAME's bound optimisation: Y <- softmax(-unary + lambda * W Y) until the energy settles."""
    y = (-unary).softmax(-1)
    old = math.inf
    for i in range(max_steps):
        pairwise = bound_lambda * kernel.matmul(y)
        y = (-unary + pairwise).softmax(-1)
        energy = float((unary * y - bound_lambda * pairwise * y + y * torch.log(y.clamp_min(1e-20))).sum())
        if i > 1 and abs(energy - old) <= 1e-8 * abs(old):
            break
        old = energy
    return y


def lame_predict(logits: Tensor, features: Tensor, k: int = 5) -> Tensor:
    """Corrected class probabilities of a batch (the model itself is never changed)."""
    unary = -torch.log(logits.softmax(-1) + 1e-10)
    kernel = knn_affinity(F.normalize(features, dim=1), k)
    return laplacian_optimization(unary, kernel)


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier: the model's last Linear layer."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def classifier_features(model: nn.Module, state: norm.NormState, x: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """(logits, input of the last Linear layer) in one forward pass."""
    captured: list[Tensor] = []
    handle = last_linear(model).register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    try:
        logits = norm.forward(model, state, x, mode)
    finally:
        handle.remove()
    return logits, captured[0].flatten(1)


# ---- CoTTA -----------------------------------------------------------------------------------
@dataclass
class CoTTA(Adapter):
    """Continual TTA (Wang et al., CVPR 2022): ALL parameters adapt towards an EMA teacher whose
    prediction is averaged over augmented views when the source anchor is unsure; stochastic
    restore of source weights. Learner.state holds every parameter; extra holds teacher and source."""

    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    ema: float = 0.999
    anchor_threshold: float = 0.92  # CoTTA's CIFAR-10 value; see cotta_anchor
    views: int = 32
    restore_p: float = 0.001
    symmetric: bool = True  # symmetric cross-entropy (ImageNet); False = plain soft CE (CIFAR)

    def step(self, model: nn.Module, learner: Learner, x: Tensor) -> Tensor:
        source, teacher = learner.extra["source"], learner.extra.setdefault(
            "teacher", {n: t.clone() for n, t in learner.state.items()})
        gen = learner.extra.setdefault("generator", torch.Generator().manual_seed(0))  # CPU: augment's draws
        with torch.no_grad():
            anchor_conf = norm.forward(model, source, x, "batch").softmax(1).max(1).values
            z_t = norm.forward(model, teacher, x, "batch")
            if self.views > 0 and anchor_conf.mean() < self.anchor_threshold:
                z_t = torch.stack([norm.forward(model, teacher, augment(x, gen), "batch")
                                   for _ in range(self.views)]).mean(0)

        def loss(z: Tensor) -> Tensor:
            return soft_ce(z, z_t, self.symmetric)

        _logits, value, grads = loss_and_grads(model, learner, x, self.stat_mode, loss)
        sgd_step(learner.state, grads, learner.momentum_bufs, self.lr, self.momentum, nesterov=self.nesterov,
                 loss=value)
        learner.steps += 1
        with torch.no_grad():
            for n in grads:
                teacher[n].mul_(self.ema).add_((1 - self.ema) * learner.state[n])
                if self.restore_p > 0:
                    keep_source = (torch.rand(learner.state[n].shape, generator=gen) < self.restore_p).to(x.device)
                    learner.state[n].copy_(torch.where(keep_source, source[n], learner.state[n]))
        return z_t  # CoTTA predicts with the teacher


def soft_ce(student: Tensor, teacher: Tensor, symmetric: bool) -> Tensor:
    """-sum p_t log p_s (CIFAR), or its symmetric form with -sum p_s log p_t added (ImageNet)."""
    loss = -(teacher.softmax(1) * student.log_softmax(1)).sum(1)
    if symmetric:
        loss = 0.5 * loss - 0.5 * (student.softmax(1) * teacher.log_softmax(1)).sum(1)
    return loss.mean()


def cotta_anchor(num_classes: int) -> float:
    """CoTTA's own anchor threshold for the class count: 0.92 on CIFAR-10, 0.72 on CIFAR-100, 0.1 on
    ImageNet (with 10 classes a mean confidence below 0.1 is impossible: the augmented branch never runs)."""
    return 0.92 if num_classes <= 10 else 0.72 if num_classes <= 100 else 0.1


# CoTTA's get_tta_transforms (qinenergy/cotta, cifar/cotta.py + my_transforms.py), soft=False
JITTER = {"brightness": (0.6, 1.4), "contrast": (0.7, 1.3), "saturation": (0.5, 1.5), "hue": (-0.06, 0.06),
          "gamma": (0.7, 1.3)}
DEGREES, TRANSLATE, SCALE = (-15.0, 15.0), (1 / 16, 1 / 16), (0.9, 1.1)
BLUR_KERNEL, BLUR_SIGMA, NOISE_STD = 5, (0.001, 0.5), 0.005


def augment(x: Tensor, gen: torch.Generator, padding_mode: str = "edge", cotta_augs: bool = True) -> Tensor:
    """One augmented view of a batch, as CoTTA's transform applies to a batch tensor: ONE draw of
    every parameter for the whole batch, from `gen` (a CPU generator) in the order the authors'
    Compose draws from torch's global one. Clip, ColorJitterPro (brightness, contrast, saturation,
    hue, gamma in a random order), edge padding by half the image size, RandomAffine (bilinear),
    GaussianBlur, CenterCrop, horizontal flip (p 0.5), Gaussian noise (std 0.005), Clip.
    `cotta_augs=False` leaves out the blur and the noise (ROID's view, with reflect padding)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    def uniform(lo: float, hi: float) -> float:
        return float(torch.empty(1).uniform_(lo, hi, generator=gen).item())

    img = x.clamp(0.0, 1.0)
    for fn_id in torch.randperm(5, generator=gen).tolist():  # ColorJitterPro.forward
        if fn_id == 0:
            img = TF.adjust_brightness(img, uniform(*JITTER["brightness"]))
        elif fn_id == 1:
            img = TF.adjust_contrast(img, uniform(*JITTER["contrast"]))
        elif fn_id == 2:
            img = TF.adjust_saturation(img, uniform(*JITTER["saturation"]))
        elif fn_id == 3:
            img = TF.adjust_hue(img, uniform(*JITTER["hue"]))
        else:
            img = TF.adjust_gamma(img.clamp(1e-8, 1.0), uniform(*JITTER["gamma"]))
    channels, height, width = img.shape[-3:]
    img = TF.pad(img, [int(height / 2)], padding_mode=padding_mode)  # n_pixels / 2, n_pixels = image height
    angle = uniform(*DEGREES)  # RandomAffine.get_params, img_size = [width, height] of the padded image
    max_dx, max_dy = TRANSLATE[0] * img.shape[-1], TRANSLATE[1] * img.shape[-2]
    tx, ty = int(round(uniform(-max_dx, max_dx))), int(round(uniform(-max_dy, max_dy)))
    scale = uniform(*SCALE)
    img = TF.affine(img, angle, [tx, ty], scale, [0.0, 0.0], interpolation=InterpolationMode.BILINEAR,
                    fill=[0.0] * channels)
    if cotta_augs:
        sigma = uniform(*BLUR_SIGMA)
        img = TF.gaussian_blur(img, [BLUR_KERNEL, BLUR_KERNEL], [sigma, sigma])
    img = TF.center_crop(img, [height, width])
    if torch.rand(1, generator=gen) < 0.5:
        img = TF.hflip(img)
    if cotta_augs:
        img = img + (torch.randn(img.shape, generator=gen) * NOISE_STD).to(img.device)
    return img.clamp(0.0, 1.0)
