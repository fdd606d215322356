"""Registers, when imported: a selection method with a parameter of its own, a corruption, a
capacity model and a GPU scheduling policy.

margin_upload: upload the samples whose two most likely classes are close (softmax margin below
method.params.margin), then adapt exactly as CEMA's cloud does (foundation step, distillation,
refreshes). stripes: dark horizontal stripes over the image, more of them at higher severity.
day_night: the link's bandwidth_mbps by day and a share of it by night (capacity_params).
lifo: the GPU runs the job requested last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cemasim.methods.cema import UploadAll, policy_config
from cemasim.methods.registry import DISTILLED
from cemasim.net.capacity import TraceRate
from cemasim.plugins import CAPACITY_MODELS, CORRUPTIONS, METHODS, SCHEDULERS, Field, Section


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


def positive(v: float) -> str | None:
    return None if v > 0 else f"must be > 0, got {v!r}"


DAY_NIGHT = Section("day_night's parameters.", {
    "day_s": Field((float,), 60.0, "length of a day and of a night", "s", (positive,)),
    "night_share": Field((float,), 0.1, "the night's share of bandwidth_mbps", "", (margin_in_range,)),
})


def day_night(link: Any, rng: np.random.Generator | None) -> tuple[TraceRate, None]:
    """link: the link's spec (cemasim.specs.LinkSpec: bits_per_s, latency_s, params = capacity_params)."""
    day, share = link.params.day_s, link.params.night_share
    return TraceRate(np.array([0.0, day]), np.array([link.bits_per_s, share * link.bits_per_s]), 2 * day), None


CAPACITY_MODELS.add("day_night", day_night, "bandwidth_mbps by day, capacity_params.night_share of it by night",
                    params=DAY_NIGHT)


class Lifo:
    """The job requested last runs first (one stack: jobs are (request number, device, token))."""

    def __init__(self, scores: Any):
        self.jobs: list[tuple[int, int, Any]] = []

    def push(self, job: tuple[int, int, Any]) -> None:
        self.jobs.append(job)

    def pop(self, last: int | None) -> tuple[int, int, Any]:
        return self.jobs.pop()

    def remove(self, device: int, token: Any) -> None:
        self.jobs = [job for job in self.jobs if job[2] is not token]


SCHEDULERS.add("lifo", Lifo, "the job requested last runs first")
