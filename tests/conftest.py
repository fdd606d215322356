"""Shared fixtures: small scenarios that run in a few seconds on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch

from cemasim import scenario

torch.set_num_threads(2)

SMALL = [
    "fleet.devices=2",
    "duration_s=40",
    "drain_s=60",
    "arrivals.rate_hz=8",
    "arrivals.batch_size=32",
    "arrivals.max_wait_s=5",
    "cloud.chunk_size=16",
    "cloud.replay_min=32",
    "cloud.replay_batch=16",
    "cloud.replay_only_batch=32",
    "selection.warm_up_n=64",
    "compute_device=cpu",
    "output.plots=false",
    "shift.segments=[{corruption: gaussian_noise, severity: 4, duration_s: 20}, "
    "{corruption: fog, severity: 3, duration_s: 20}]",
]


def small(*overrides: str, seed: int | None = None) -> scenario.Scenario:
    """A 2-device, 40-simulated-second scenario (about 640 samples)."""
    return scenario.load(None, SMALL + list(overrides), seed)


@pytest.fixture
def small_scenario():
    return small
