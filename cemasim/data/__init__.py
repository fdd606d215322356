"""Data: datasets (embedded and real formats), corruptions, shift schedules, arrival processes.

`corrupt(images, name, severity, generator=None)` and `CORRUPTION_NAMES` are re-exported lazily,
so importing a light submodule (arrivals, shifts) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CORRUPTIONS", "CORRUPTION_NAMES", "VALIDATION_CORRUPTIONS", "corrupt"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cemasim.data import corruptions

        return getattr(corruptions, name)
    raise AttributeError(f"module 'cemasim.data' has no attribute {name!r}")
