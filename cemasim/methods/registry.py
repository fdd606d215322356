"""The method registry: name -> builder(scenario, num_classes) -> Method. Each method family's file
registers its names (one line each); cemasim.methods imports them all, in the order of `cemasim
list methods`."""

from __future__ import annotations

import math
from typing import Any

from cemasim.registry import Registry

METHODS: Registry[Any] = Registry("method")


def ln_c(num_classes: int) -> float:
    """ln C: thresholds are given as fractions of it."""
    return math.log(num_classes)


def preset_lr(sc: Any, method: str) -> float:
    from cemasim.methods.presets import method_lr

    return method_lr(sc, method)
