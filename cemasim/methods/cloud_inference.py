"""Cloud inference: every sample uploaded, the frozen foundation model's answer is the prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cemasim.methods.method import Method
from cemasim.methods.registry import IN_CLOUD, METHODS


@dataclass
class CloudInference(Method):
    """Every sample is uploaded and answered by the (frozen) foundation model; the edge computes nothing."""

    cloud_worker: str | None = "inference"

    def edge_passes(self) -> tuple[str, int]:
        return ("forward", 0)

    def select(self, logits: Tensor, state: Any) -> Tensor:
        return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)


METHODS.add("cloud_inference", lambda sc, c: CloudInference(name="cloud_inference"),
            "every sample uploaded; the frozen foundation model's answer is the prediction", deployments=IN_CLOUD)
