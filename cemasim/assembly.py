"""Scenario -> the objects a run is made of: torch device, workload, models, method, cloud
hyper-parameters, hardware profiles. Shared by the simulator (sim/fleet.py) and the sequential
reference loop (oracle.py); nothing here knows about simulated time.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from cemasim.errors import ConfigError
from cemasim.methods.cema_cloud import NORM_MODES, CloudConfig
from cemasim.models.profiles import DeviceProfile, profile_from
from cemasim.models.resolve import build as resolve_model
from cemasim.scenario import Scenario
from cemasim.workload import Workload, open_source


def pick_device(choice: str, what: str = "compute_device") -> torch.device:
    """The torch device for `auto`, `cpu` or `cuda` (`what` names the key or flag in the error)."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what} cuda: no CUDA device is available to this torch build/machine (use cpu or auto)",
                          source=what)
    return torch.device(choice)


def build_workload(sc: Scenario) -> tuple[Workload, np.ndarray | None]:
    """The dataset as a Workload, and the output class mask (ImageNet-R) when masking applies."""
    source = open_source(sc)
    mask = source.class_mask if sc.data.mask_outputs else None
    labels = source.labels
    if mask is not None:  # the masked model's outputs are positions in the mask
        position = np.full(int(max(mask.max(), labels.max())) + 1, -1)
        position[mask] = np.arange(len(mask))
        labels = position[labels]
    return Workload(source, [], sc.seed, labels), mask


def build_model(sc: Scenario, which: str, device: torch.device, workload: Workload, mask: np.ndarray | None):
    """(model, spec) for models.edge or models.foundation with its weights choice; the spec's input
    shape is the dataset's (FLOPs are counted on the images the model really sees)."""
    weights = sc.models[f"{which}_weights"]
    classes = workload.source.num_classes if weights == "random" else None  # a random head fits the data
    model, spec = resolve_model(sc.models[which], weights, classes, device, mask)
    return model, replace(spec, input_shape=workload.source.image_shape)


def check_outputs(spec, workload: Workload, mask: np.ndarray | None, which: str) -> None:
    expected = len(mask) if mask is not None else workload.source.num_classes
    if spec.num_classes != expected:
        raise ConfigError(f"models.{which}: '{spec.name}' has {spec.num_classes} outputs but "
                          f"{workload.source.name} has {expected} classes")


def cloud_config(sc: Scenario, num_classes: int) -> CloudConfig:
    """The cloud's learning hyper-parameters from the scenario (E0 in nats, from cloud.e0: the loss
    weighting is its own key, so a sweep of selection.e_max changes only which samples travel)."""
    from cemasim.methods.presets import cloud_lrs

    c = sc.cloud
    foundation_lr, distill_lr = cloud_lrs(sc)
    student, foundation, teacher = NORM_MODES[sc.method.norm_mode]
    return CloudConfig(e0=c.e0 * math.log(num_classes), foundation_lr=foundation_lr,
                       distill_lr=distill_lr, momentum=c.momentum, alpha=c.alpha, beta=c.beta, gamma=c.gamma,
                       temperature=c.temperature, student_mode=student, foundation_mode=foundation,
                       teacher_mode=teacher)


def profile_of(spec, name: str) -> DeviceProfile:
    """A profile from a name, a file or an inline mapping (a Scenario view)."""
    return profile_from(spec.to_dict() if isinstance(spec, Scenario) else spec, name)
