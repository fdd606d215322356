"""Model resolution for a scenario: a zoo name or `timm:ARCH` / `torchvision:ARCH`, a weights
choice, and optional output masking (ImageNet-R's 200 of 1000 classes).

    models.edge / models.foundation  ->  (nn.Module taking [0, 1] images, ModelSpec)

Weights: null = the zoo's shipped weights, or the library's local cache for external models;
`random` = random initialisation, only when asked for; otherwise a checkpoint path. Offline and
without weights there is a clear DataError, never a silent random model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cemasim.errors import DataError
from cemasim.models import zoo
from cemasim.models.external import build_external, is_external, read_checkpoint


class OutputMask(nn.Module):
    """Keep only the logits of `classes` (e.g. the 200 ImageNet-R classes of a 1000-way model)."""

    def __init__(self, model: nn.Module, classes: np.ndarray):
        super().__init__()
        self.model = model
        self.register_buffer("classes", torch.as_tensor(classes, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.classes)


def known(name: str) -> bool:
    return is_external(name) or name in zoo.MODELS


def build(name: str, weights: str | None, num_classes: int | None, device: torch.device,
          class_mask: np.ndarray | None = None) -> tuple[nn.Module, zoo.ModelSpec]:
    """The model (eval mode, on `device`) and its spec (input shape, number of outputs)."""
    model: nn.Module
    if is_external(name):
        model, info = build_external(name, "cache" if weights is None else weights, num_classes, device)
        spec = zoo.ModelSpec(name=name, builder=lambda: model, input_shape=info.input_shape,
                             num_classes=info.num_classes, help=info.help)
    else:
        spec = zoo.spec(name)
        model = zoo.build(name, pretrained=weights != "random", device=device)
        if weights not in (None, "random"):
            _load_checkpoint(model, Path(weights), name)
    if class_mask is not None:
        model = OutputMask(model, class_mask).to(device)
        spec = replace(spec, num_classes=len(class_mask))
    return model.eval(), spec


def _load_checkpoint(model: nn.Module, path: Path, name: str) -> None:
    state = read_checkpoint(path)  # names the file; weights_only; accepts the usual wrappers
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise DataError(f"{path} does not fit model '{name}': {str(exc).splitlines()[0]}") from None


def check_checkpoint(name: str, path: Path) -> None:
    """Validation of a zoo model's checkpoint: readable and fitting (zoo models are small, so this
    is cheap; external models' checkpoints are checked when the run builds them)."""
    _load_checkpoint(zoo.spec(name).builder(), path, name)
