"""Forward passes the simulator's actors need beyond a device's own prediction: the frozen
foundation model answering uploads (cloud_inference), and several devices' edge forwards merged
into one grouped call (fleet.batch_across_devices). Pure torch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cemasim.methods.losses import entropy
from cemasim.models import grouped, norm


def foundation_answers(model: nn.Module, state: norm.NormState, x: Tensor) -> tuple[list[int], list[float]]:
    """(predictions, entropies) of the frozen foundation model (eval statistics) on uploaded images."""
    with torch.no_grad():
        logits = norm.forward(model, state, x, "eval")
    return logits.argmax(1).tolist(), entropy(logits).tolist()


def grouped_edge_logits(model: nn.Module, states: list[norm.NormState], x: Tensor, mode: str) -> Tensor:
    """Logits [devices, n, classes] of several devices' batches (stacked in `x`, one per state) in one
    grouped forward: shared layers once, norm state per device; equal to one forward per device."""
    with torch.no_grad():
        return grouped.grouped_forward(model, states, x, mode)
