"""Shared fixtures: small scenarios that run in a few seconds on 2 CPU cores."""

from __future__ import annotations

import sys

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


PLUGIN_MODULES = ("cemasim_example", "more_plugin", "broken_plugin", "nosuch_module")  # what tests import


@pytest.fixture
def registries_restored(monkeypatch):
    """A test that imports plugins registers their names in this process: afterwards the registries hold
    the built-in names again and the plugin modules are forgotten (docs/scenario.md, `cemasim list` and
    the other tests see cemasim alone)."""
    from cemasim import plugins

    for kind in plugins.REGISTRIES:
        registry = plugins.registry(kind)
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    yield
    for name in [m for m in sys.modules if m.startswith(PLUGIN_MODULES)]:
        del sys.modules[name]
