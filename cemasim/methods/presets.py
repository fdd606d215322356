"""Learning-rate presets per model family: which step size each method takes when the scenario
leaves it null (`method.lr`, `cloud.foundation_lr`, `cloud.distill_lr`).

* ``imagenet``: the authors' ImageNet values (Tent, EATA, SAR, DeYO 2.5e-4 at batch 64; PL 1e-3;
  CoTTA 0.01; ROID 2.5e-4 with SGD, RoTTA 1e-3 with Adam; CEMA's foundation 2.5e-4 and
  distillation 2.5e-3). The paper scenarios use them.
* ``fmnist_zoo``: for the shipped Fashion-MNIST zoo (a 41k-parameter edge CNN, a 0.7M-parameter
  foundation ResNet), chosen on the 4 validation corruptions only, never on the 15 test ones, by
  `python analysis/hparams/select_hparams.py` (the rule and the runs are in analysis/hparams/README.md).
  The values below are that script's `selected.csv`; a test fails if they drift apart.

``method.preset: auto`` (the default) takes ``fmnist_zoo`` for models of the zoo and
``imagenet`` for timm:/torchvision: models, per model: the edge model decides the methods'
learning rates and the distillation rate, the foundation model its own rate.
"""

from __future__ import annotations

from typing import Any

IMAGENET: dict[str, float] = {
    "tent": 2.5e-4, "pl": 1e-3, "eta": 2.5e-4, "eata": 2.5e-4, "sar": 2.5e-4, "cotta": 0.01,
    "deyo": 2.5e-4,
    "roid": 2.5e-4, "rotta": 1e-3,  # ROID: SGD (Nesterov); RoTTA: Adam
    "foundation_lr": 2.5e-4, "distill_lr": 2.5e-3,
}  # fmt: skip
FMNIST_ZOO: dict[str, float] = {
    "tent": 0.003, "pl": 0.003, "eta": 0.001, "eata": 0.01, "sar": 0.01, "cotta": 0.001,
    "deyo": 0.001, "roid": 0.00025, "rotta": 0.03,
    "foundation_lr": 0.001, "distill_lr": 0.0025,
}  # fmt: skip
PRESETS: dict[str, dict[str, float]] = {"imagenet": IMAGENET, "fmnist_zoo": FMNIST_ZOO}  # + "auto" (scenario/keys.py)


def family(model_name: str) -> str:
    """The preset a model belongs to under `auto`: the zoo's own models, or ImageNet-style models."""
    from cemasim.models.zoo import MODELS

    return "fmnist_zoo" if model_name in MODELS else "imagenet"


def _preset(sc: Any, which: str) -> dict[str, float]:
    name = sc.method.preset
    return PRESETS[family(sc.models[which]) if name == "auto" else name]


def method_lr(sc: Any, method: str) -> float:
    """`method.lr`, or the preset's rate for `method` (tent, pl, eta, eata, sar, cotta)."""
    return _preset(sc, "edge")[method] if sc.method.lr is None else sc.method.lr


def cloud_lrs(sc: Any) -> tuple[float, float]:
    """(foundation_lr, distill_lr) of CEMA's cloud: the scenario's, or the presets'."""
    c = sc.cloud
    foundation = _preset(sc, "foundation")["foundation_lr"] if c.foundation_lr is None else c.foundation_lr
    distill = _preset(sc, "edge")["distill_lr"] if c.distill_lr is None else c.distill_lr
    return foundation, distill
