"""Heterogeneous fleets: device classes, each a share of the fleet with its own profile, links,
arrivals, shift, availability and energy (partial overrides merged over the top-level sections).

Devices are assigned to classes in order, in consecutive blocks (class 0 first); devices left over
belong to the class `default`, which uses the top-level settings.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

OVERRIDABLE = ("arrivals", "shift", "uplink", "downlink", "availability", "energy")
DEFAULT_CLASS = "default"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged over `base` (mappings recursively; lists and scalars replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def class_sizes(classes: list[dict[str, Any]], devices: int) -> list[int]:
    """Devices per class: counts as given, fractions of `devices` rounded by largest remainder."""
    sizes = [c["count"] if c.get("count") is not None else 0 for c in classes]
    quotas = {i: c["fraction"] * devices for i, c in enumerate(classes) if c.get("fraction") is not None}
    for i, q in quotas.items():
        sizes[i] = math.floor(q)
    leftover = round(sum(quotas.values())) - sum(sizes[i] for i in quotas)
    for i in sorted(quotas, key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))[:max(leftover, 0)]:
        sizes[i] += 1
    return sizes


def class_view(sc: dict[str, Any], cls: dict[str, Any]) -> dict[str, Any]:
    """The scenario as a device of `cls` sees it (the class's resolved sections swapped in)."""
    view = dict(sc)
    for key in OVERRIDABLE:
        view[key] = cls[key]
    if cls.get("profile") is not None:
        view["fleet"] = {**sc["fleet"], "profile": cls["profile"]}
    return view


@dataclass(frozen=True)
class DeviceClass:
    name: str
    view: Any  # Scenario seen by the class's devices
    devices: range


def device_classes(sc: Any) -> list[DeviceClass]:
    """The fleet split into classes (a resolved Scenario in, views of the same type out: no import of
    the loader, which imports this module through the schema)."""
    data = sc.to_dict()
    classes = data["fleet"]["classes"]
    start, out = 0, []
    for cls, size in zip(classes, class_sizes(classes, data["fleet"]["devices"]), strict=True):
        if size:
            out.append(DeviceClass(cls["name"], type(sc)(class_view(data, cls), sc.source), range(start, start + size)))
        start += size
    if start < data["fleet"]["devices"]:
        out.append(DeviceClass(DEFAULT_CLASS, sc, range(start, data["fleet"]["devices"])))
    return out
