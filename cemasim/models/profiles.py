"""Hardware profiles: how fast a device or cloud accelerator runs the cost model's FLOPs.

A profile is a registered name (`cemasim list profiles`), a profile file (*.yaml, written by
`cemasim profile`) or an inline mapping in a scenario; all three are checked by PROFILE. Peak
figures are vendor datasheet numbers for FP32; `utilization` (the fraction of peak small-CNN
kernels reach) is an assumption, stated per profile: measure your own hardware when it matters.
Torch-free, so the scenario schema can use it without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cemasim.registry import Registry
from cemasim.schema import Field as F
from cemasim.schema import Section, between, non_negative, positive

# The keys of a device or cloud profile, given inline in a scenario or as a profile file
# (`cemasim profile` writes them); validated with the scenario's schema tools.
PROFILE = Section(
    "A device or cloud-GPU profile given inline instead of by name (see `cemasim list profiles`).",
    {
        "peak_flops_per_s": F((float,), None, "peak FP32 throughput of the hardware", "FLOP/s", (positive,)),
        "utilization": F((float,), 0.3, "fraction of peak that model kernels reach", "", (between(1e-6, 1),)),
        "overhead_s": F((float,), 0.0, "fixed cost per model call (launch, framework)", "s", (non_negative,)),
        "can_train": F((bool,), False, "whether the device may run backward passes"),
        "active_w": F((float,), 0.0, "power drawn while computing (energy accounting)", "W", (non_negative,)),
    },
)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    peak_flops_per_s: float
    utilization: float
    overhead_s: float
    can_train: bool
    source: str = ""
    active_w: float = 0.0  # power drawn while computing (energy accounting); 0 = not modelled

    @property
    def flops_per_s(self) -> float:
        return self.peak_flops_per_s * self.utilization

    def seconds(self, flops: float) -> float:
        """Time of one model call doing `flops` FLOPs (0 for an infinitely fast profile)."""
        if math.isinf(self.peak_flops_per_s):
            return self.overhead_s
        return flops / self.flops_per_s + self.overhead_s


PROFILES: Registry[DeviceProfile] = Registry("device profile")


def _profile(name: str, peak: float, util: float, overhead_s: float, can_train: bool, active_w: float,
             source: str) -> None:
    PROFILES.add(name, DeviceProfile(name, peak, util, overhead_s, can_train, source, active_w), source)


# active_w: the board's power budget under load (datasheet power mode or TDP), not a measurement
_profile("rpi4", 24e9, 0.2, 0.002, False, 6.4,
         "Raspberry Pi 4B: 4x Cortex-A72 @1.5 GHz, 4 FP32 FLOP/cycle/core (128-bit NEON) = 24 GFLOP/s peak; "
         "6.4 W under full CPU load (Raspberry Pi Foundation's figure)")
_profile("jetson-nano", 236e9, 0.25, 0.004, True, 10.0,
         "NVIDIA Jetson Nano: 128 Maxwell cores @921 MHz, 472 GFLOP/s FP16 (datasheet) = 236 FP32; 10 W mode")
_profile("jetson-orin-nano", 1.28e12, 0.25, 0.003, True, 15.0,
         "NVIDIA Jetson Orin Nano 8GB: 1024 Ampere cores @625 MHz = 1.28 TFLOP/s FP32; 15 W mode")
_profile("t4", 8.1e12, 0.3, 0.002, True, 70.0, "NVIDIA T4: 8.1 TFLOP/s FP32, 70 W TDP (datasheet)")
_profile("a100", 19.5e12, 0.3, 0.001, True, 400.0, "NVIDIA A100 SXM: 19.5 TFLOP/s FP32, 400 W TDP (datasheet)")
_profile("instant", math.inf, 1.0, 0.0, True, 0.0, "infinitely fast: every call takes zero simulated time")


def profile_from(spec: str | dict[str, Any], name: str = "inline") -> DeviceProfile:
    """A named profile, a profile file (*.yaml, from `cemasim profile`) or an inline mapping (validated by
    the scenario schema)."""
    if isinstance(spec, str):
        return load_profile_file(spec) if is_profile_file(spec) else PROFILES.get(spec)
    return DeviceProfile(name, float(spec["peak_flops_per_s"]), float(spec["utilization"]),
                         float(spec["overhead_s"]), bool(spec["can_train"]), "inline", float(spec.get("active_w", 0.0)))


def is_profile_file(spec: str) -> bool:
    """A profile given as a YAML path rather than a registered name."""
    return spec.lower().endswith((".yaml", ".yml"))


def load_profile_file(path: str) -> DeviceProfile:
    """A profile file: the inline-profile keys at top level, checked by the same schema (provenance
    lives in comments). Relative paths are relative to the working directory; a Path works too."""
    from pathlib import Path

    from cemasim.errors import ConfigError
    from cemasim.schema import resolve
    from cemasim.yamlfile import read_yaml

    file = Path(path)
    data = read_yaml(file, "profile")
    if isinstance(data, dict) and "peak_flops_per_s" not in data:
        raise ConfigError("peak_flops_per_s: required", source=str(file))
    problems: list[str] = []
    values = resolve(PROFILE, data, "", problems)
    if problems:
        raise ConfigError(problems, source=str(file))
    return DeviceProfile(file.stem, float(values["peak_flops_per_s"]), float(values["utilization"]),
                         float(values["overhead_s"]), bool(values["can_train"]), f"file {file}",
                         float(values["active_w"]))
