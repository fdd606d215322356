"""The method registry: name -> builder(scenario, num_classes) -> Method. Each method family's file
registers its names (one line each); cemasim.methods imports them all, in the order of `cemasim
list methods`."""

from __future__ import annotations

import math
from typing import Any

from cemasim.registry import Registry

METHODS: Registry[Any] = Registry("method")

# Where a method may run (METHODS.add(..., deployments=...)); the first is its default, what a
# scenario's `method.deployment: null` means. The TTA family defaults to the cloud, as it always has.
ON_EDGE = ("edge",)  # forward-only: predicts on the device, uploads nothing
OFFLOAD_OR_EDGE = ("cloud", "edge")  # back-propagates: offloaded, or on a device that can train
IN_CLOUD = ("cloud",)  # the cloud's model does the learning (CEMA, upload-all, cloud inference)
# What the cloud sends back (the refresh codecs' checks): `refreshes_in` the deployments in which the
# method's cloud sends the device its parameters; `stats_in` the method.norm_mode values whose state
# (and refreshes) carry BatchNorm running statistics.
OFFLOADABLE = {"deployments": OFFLOAD_OR_EDGE, "refreshes_in": ("cloud",)}  # the TTA family
DISTILLED = {"deployments": IN_CLOUD, "refreshes_in": ("cloud",), "stats_in": ("running", "tbr")}  # CEMA's cloud


def deployments(name: str) -> tuple[str, ...]:
    """The deployments `name` supports, its default first ({} for unknown names: reported elsewhere)."""
    return tuple(METHODS.meta(name).get("deployments", ()))


def sends_parameters(name: str, deployment: str | None) -> bool:
    """Whether `name`, deployed so, receives refreshed parameters from the cloud."""
    return deployment in METHODS.meta(name).get("refreshes_in", ())


def refresh_carries_stats(name: str, norm_mode: str) -> bool:
    return norm_mode in METHODS.meta(name).get("stats_in", ())


def default_deployment(name: str) -> str | None:
    allowed = deployments(name)
    return allowed[0] if allowed else None


def ln_c(num_classes: int) -> float:
    """ln C: thresholds are given as fractions of it."""
    return math.log(num_classes)


def preset_lr(sc: Any, method: str) -> float:
    from cemasim.methods.presets import method_lr

    return method_lr(sc, method)
