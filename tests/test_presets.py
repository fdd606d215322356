"""Learning-rate presets: the zoo's values are the validation selection's, auto picks by model family,
explicit keys win, and every baseline's default step changes predictions (defaults that act)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cemasim import scenario
from cemasim.assembly import cloud_config
from cemasim.methods import presets
from cemasim.runner import simulate
from tests.conftest import small

SELECTED = Path(__file__).resolve().parent.parent / "analysis" / "hparams" / "selected.csv"


def test_fmnist_zoo_preset_is_the_validation_selection():
    chosen = pd.read_csv(SELECTED)
    assert dict(zip(chosen["preset_key"], chosen["value"], strict=True)) == pytest.approx(presets.FMNIST_ZOO)
    assert set(presets.FMNIST_ZOO) == set(presets.IMAGENET)


def test_auto_preset_follows_each_models_family():
    sc = small()
    assert presets.method_lr(scenario.load(None, ["method.name=tent"]), "tent") == presets.FMNIST_ZOO["tent"]
    assert cloud_config(sc, 10).distill_lr == presets.FMNIST_ZOO["distill_lr"]
    paper = scenario.load(None, ["models.edge=torchvision:resnet18", "models.foundation=torchvision:resnet50",
                                 "data.dataset=imagenet_c"])
    assert presets.method_lr(paper, "pl") == 1e-3 and presets.cloud_lrs(paper) == (2.5e-4, 2.5e-3)
    # a grey zoo edge with an RGB foundation does not validate (channels differ); the rule is per model
    data = scenario.default_scenario()
    data["models"]["foundation"] = "torchvision:resnet50"
    mixed = scenario.Scenario(data)
    assert presets.cloud_lrs(mixed) == (2.5e-4, presets.FMNIST_ZOO["distill_lr"])


def test_named_preset_and_explicit_values_win():
    sc = scenario.load(None, ["method.preset=imagenet"])
    assert presets.method_lr(sc, "cotta") == 0.01 and presets.cloud_lrs(sc) == (2.5e-4, 2.5e-3)
    sc = scenario.load(None, ["method.lr=0.5", "cloud.distill_lr=0.7", "cloud.foundation_lr=0.9"])
    assert presets.method_lr(sc, "tent") == 0.5 and presets.cloud_lrs(sc) == (0.9, 0.7)
    with pytest.raises(Exception, match="method.preset"):
        scenario.load(None, ["method.preset=cifar"])


def test_paper_scenarios_keep_the_imagenet_values():
    root = Path(__file__).resolve().parent.parent / "scenarios"
    for path in [*sorted((root / "paper").glob("*.yaml")), root / "cema_released_code.yaml"]:
        assert scenario.load(path).method.preset == "imagenet", path


@pytest.fixture(scope="module")
def bn_predictions():
    return (simulate(small("method.name=bn_adapt", seed=1))[0]["samples"]
            .sort_values(["device", "arrival_s"])["pred"].to_numpy())


@pytest.mark.parametrize("method", ["tent", "pl", "eta", "eata", "sar", "cotta", "deyo", "roid", "rotta", "t3a"])
def test_every_baseline_step_changes_predictions(method, bn_predictions):
    samples = simulate(small(f"method.name={method}", "method.cotta_views=4", seed=1))[0]["samples"]
    pred = samples.sort_values(["device", "arrival_s"])["pred"].to_numpy()
    assert len(pred) == len(bn_predictions)
    assert (pred != bn_predictions).sum() > 0, f"{method}: its default step never changes a prediction"
