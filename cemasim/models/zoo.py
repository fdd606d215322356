"""The model zoo: the second stage of the data flow (data -> models -> methods).

Two BatchNorm CNNs for Fashion-MNIST, named in the MODELS registry:

* ``fmnist_edge_cnn``: a small network for the edge devices (cheap to run and adapt).
* ``fmnist_foundation_cnn``: a residual network for the cloud (another architecture family),
  trained with AugMix, whose operations are disjoint from every evaluation corruption
  (models/augment.py), so it stands in for a foundation model that never saw the test shifts.

Both take float images in [0, 1] and normalise internally, so corruptions act in pixel
space. Test-time adaptation touches only the BatchNorm affine parameters; the
normalisation constants are non-persistent buffers outside any BatchNorm, so methods that
collect BN parameters never see them. Weights ship as fp16 state dicts in
``cemasim/models/weights`` and are rebuilt by ``cemasim zoo train``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cemasim.errors import DataError
from cemasim.registry import Registry

FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ZOO_CARD = "zoo.json"
TRAIN_COMMAND = "cemasim zoo train --data /usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the simulator needs to know about a zoo model."""

    name: str
    builder: Callable[[], nn.Module]
    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    weights_file: str = ""
    help: str = ""


MODELS: Registry[ModelSpec] = Registry("model")


class Normalize(nn.Module):
    """(x - mean) / std with fixed dataset statistics, kept out of the state dict."""

    elementwise = True  # each pixel on its own: models/grouped.py may merge devices through it
    mean: Tensor
    std: Tensor

    def __init__(self, mean: float = FMNIST_MEAN, std: float = FMNIST_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (no bias: BN's shift replaces it) + BatchNorm2d + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class EdgeCNN(nn.Module):
    """28 -> 14 -> 7 three-conv network, about 5.4 MFLOPs and 41 k parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.norm = Normalize()
        self.features = nn.Sequential(
            conv_bn(1, 20),
            nn.MaxPool2d(2),  # 14x14
            conv_bn(20, 40),
            nn.MaxPool2d(2),  # 7x7
            conv_bn(40, 64),
            nn.MaxPool2d(2, ceil_mode=True),  # 4x4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.norm(x)))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, identity (or 1x1 conv+BN) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class FoundationResNet(nn.Module):
    """Residual network (another family than the edge's plain CNN): 28 -> 14 -> 7 -> 4, two blocks a stage."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.norm = Normalize()
        self.stem = nn.Sequential(conv_bn(1, w), nn.MaxPool2d(2))  # 14x14
        self.features = nn.Sequential(
            BasicBlock(w, w), BasicBlock(w, w),
            BasicBlock(w, 2 * w, stride=2), BasicBlock(2 * w, 2 * w),  # 7x7
            BasicBlock(2 * w, 4 * w, stride=2), BasicBlock(4 * w, 4 * w),  # 4x4
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(self.norm(x))))


def _register(name: str, builder: Callable[[], nn.Module], help: str) -> None:
    MODELS.add(name, ModelSpec(name=name, builder=builder, weights_file=f"{name}.pt", help=help), help)


_register("fmnist_edge_cnn", EdgeCNN, "small 3-conv BN CNN for edge devices (~5 MFLOPs/image)")
_register("fmnist_foundation_cnn", FoundationResNet,
          "BN ResNet (13 convs) trained with AugMix (disjoint from every corruption), the cloud's foundation model")


def spec(name: str) -> ModelSpec:
    """The ModelSpec of `name` (ConfigError with a suggestion when unknown)."""
    return MODELS.get(name)


def build(
    name: str,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    *,
    weights_dir: str | Path | None = None,
) -> nn.Module:
    """Model `name` in eval mode, with its shipped weights unless pretrained=False."""
    s = spec(name)
    model = s.builder()
    if pretrained:
        try:
            model.load_state_dict(load_weights(name, weights_dir))
        except RuntimeError as exc:  # architecture and weights file disagree
            raise DataError(f"weights for model '{name}' do not fit its architecture ({str(exc).splitlines()[0]}); "
                            f"retrain with: {TRAIN_COMMAND} --model {name}") from None
    return model.to(device).eval()


def load_weights(name: str, weights_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The fp16 state dict on disk, cast back to fp32."""
    path = Path(weights_dir or WEIGHTS_DIR) / spec(name).weights_file
    if not path.is_file():
        raise DataError(f"weights for model '{name}' not found at {path}; "
                        f"create them with: {TRAIN_COMMAND} --model {name}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged install: name the file, never torch's advice to unpickle code
        raise DataError(f"weights for model '{name}' at {path} are unreadable ({type(exc).__name__}); "
                        f"reinstall cemasim or retrain with: {TRAIN_COMMAND} --model {name}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"weights for model '{name}' at {path} hold no state dict; retrain with: {TRAIN_COMMAND}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def save_weights(model: nn.Module, path: Path) -> None:
    """Store floating tensors as fp16: halves the package size, accuracy is unaffected."""
    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> int:
    """Forward FLOPs for one image as FlopCounterMode counts them (a multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())


def zoo_card(weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The contents of zoo.json (training provenance, clean and corruption accuracy)."""
    path = Path(weights_dir or WEIGHTS_DIR) / ZOO_CARD
    if not path.is_file():
        raise DataError(f"model zoo card not found at {path}; create it with: {TRAIN_COMMAND}")
    return json.loads(path.read_text())
