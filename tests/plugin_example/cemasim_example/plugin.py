"""Registers, when imported: a selection method with a parameter of its own, and a corruption.

margin_upload: upload the samples whose two most likely classes are close (softmax margin below
method.params.margin), then adapt exactly as CEMA's cloud does (foundation step, distillation,
refreshes). stripes: dark horizontal stripes over the image, more of them at higher severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cemasim.methods.cema import UploadAll, policy_config
from cemasim.methods.registry import DISTILLED
from cemasim.plugins import CORRUPTIONS, METHODS, Field, Section


@dataclass
class MarginUpload(UploadAll):
    """Uploads the samples the edge model is torn between (top-2 softmax margin below `margin`)."""

    margin: float = 0.2

    def select(self, logits: Tensor, state: Any) -> Tensor:
        top2 = logits.softmax(-1).topk(2, dim=-1).values
        return (top2[:, 0] - top2[:, 1]) < self.margin


def build(sc: Any, num_classes: int) -> MarginUpload:
    return MarginUpload(name="margin_upload", norm_mode=sc.method.norm_mode, policy=policy_config(sc),
                        margin=sc.method.params.margin)


def margin_in_range(v: float) -> str | None:
    return None if 0 < v <= 1 else f"must be in (0, 1], got {v!r}"


PARAMS = Section("margin_upload's parameters.", {
    "margin": Field((float,), 0.2, "upload a sample when its two most likely classes' softmax probabilities "
                    "differ by less than this", "", (margin_in_range,)),
})

METHODS.add("margin_upload", build, "uploads samples whose top-2 softmax margin is below method.params.margin; "
            "CEMA's cloud", **DISTILLED, gateable=True, params=PARAMS)


@CORRUPTIONS.register("stripes", help="dark horizontal stripes (example plugin)")
def stripes(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """x: float images [N, C, H, W] in [0, 1]; every (6 - severity)-th row darkened to a third."""
    out = x.clone()
    out[..., :: 6 - severity, :] *= 1 / 3
    return out
