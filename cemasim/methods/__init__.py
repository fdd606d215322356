"""Adaptation methods: how an edge device predicts, what it uploads, and what the cloud does.

A method fixes the edge side (statistics mode of its norm layers, an optional local adaptation
step, the upload mask per test batch) and its cloud worker (`Method.cloud_worker`):

    (none)     forward-only on the edge, nothing uploaded          source, bn_adapt, onda, lame, t3a
    cema       foundation step + distillation into the device       cema, upload_all, random_upload
    offload    the cloud runs the device's TTA step on its uploads  tent, pl, eta, eata, sar, deyo, roid, rotta (cloud)
    inference  the foundation model answers every uploaded sample   cloud_inference

TTA methods with `method.deployment: edge` adapt on the device itself (profiles with can_train).
Pure torch: nothing here knows about simulated time. The base class is method.py; each family is
one file with its classes and registry lines (edge_only.py, t3a.py, tta_methods.py, deyo.py, roid.py, rotta.py,
cema.py, cloud_inference.py); importing this package registers them, in this order.
"""

from __future__ import annotations

from typing import Any

from cemasim.methods.method import ADAPTERS, Method
from cemasim.methods.registry import METHODS

# the import order is the registration order (`cemasim list methods`)
# isort: off
from cemasim.methods import edge_only  # noqa: F401
from cemasim.methods import t3a  # noqa: F401
from cemasim.methods import tta_methods  # noqa: F401
from cemasim.methods import deyo  # noqa: F401
from cemasim.methods import roid  # noqa: F401
from cemasim.methods import rotta  # noqa: F401
from cemasim.methods import cema  # noqa: F401
from cemasim.methods import cloud_inference  # noqa: F401
# isort: on

__all__ = ["ADAPTERS", "METHODS", "Method", "build_method"]


def build_method(sc: Any, num_classes: int) -> Method:
    return METHODS.get(sc.method.name)(sc, num_classes)
