"""Finite state, always (issue 27): a learning step whose loss or updated state is not finite stops the run
with an error naming the step, the device, the simulated time and the hyper-parameters it used (a failed
run: exit 1, a failed row in a sweep); what a refresh ships is checked too; the checks only read."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cemasim import sweeps as sw
from cemasim.cli import main
from cemasim.errors import NonFiniteError
from cemasim.methods import cema_cloud, optim
from cemasim.methods.losses import foundation_loss
from cemasim.methods.optim import check_finite, sgd_step
from cemasim.runner import simulate
from cemasim.sim import cloud_workers
from tests.conftest import SMALL, small

SHORT = ["duration_s=8", "drain_s=2", "fleet.devices=1"]  # CEMA distils from t = 4.5 s on
GAMMA = "cloud.gamma=1e300"  # inside every bound, but gamma x CE overflows float32: the distillation loss is inf


def test_check_finite_passes_finite_values_and_names_what_is_not():
    huge = {"a": torch.ones(3), "b": torch.full((4,), 3e38)}  # the sum overflows float32, no value does
    check_finite(torch.tensor(0.5), huge)
    check_finite(None, {})
    with pytest.raises(NonFiniteError, match=r"a non-finite loss \(nan\)"):
        check_finite(torch.tensor(float("nan")), huge)
    with pytest.raises(NonFiniteError, match="non-finite values in b$"):
        check_finite(torch.tensor(0.5), {"a": torch.ones(3), "b": torch.tensor([1.0, float("inf")])})


def test_an_sgd_step_checks_the_tensors_it_wrote():
    params = {"w": torch.ones(2), "untouched": torch.tensor([float("nan")])}  # only stepped tensors are checked
    sgd_step(params, {"w": torch.ones(2)}, {}, lr=0.1, momentum=0.9)
    with pytest.raises(NonFiniteError, match="non-finite values in w"):
        sgd_step(params, {"w": torch.ones(2)}, {}, lr=1e300, momentum=0.9)


def test_a_non_finite_distillation_fails_the_run_naming_step_device_time_and_keys(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("{}\n")
    sets = [a for kv in SMALL + SHORT + [GAMMA] for a in ("--set", kv)]
    code = main(["run", str(tmp_path / "s.yaml"), "--quiet", "--out", str(tmp_path / "out"), *sets])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "run failed: the distillation of device 0 at t = " in err and "s (simulated) gave a non-finite" in err
    assert "gamma = 1e+300" in err and "temperature = 1" in err and "check cloud.distill_lr" in err
    assert "Traceback" not in err and "internal error" not in err
    assert not list((tmp_path / "out").rglob("summary.json"))


def test_a_foundation_step_with_a_nan_loss_is_named(monkeypatch):
    monkeypatch.setattr(cema_cloud, "foundation_loss", lambda z, e0: foundation_loss(z, e0) * float("nan"))
    with pytest.raises(NonFiniteError, match=r"^the foundation step of device 0 at t = [0-9.]+ s \(simulated\) gave "
                       r"a non-finite loss \(nan\) with e0 = .*foundation_lr = .*check cloud.foundation_lr"):
        simulate(small(*SHORT))


@pytest.mark.parametrize("deployment, step", [("edge", "eata edge step"), ("cloud", "offloaded eata step")])
def test_an_adapter_step_that_overflows_names_the_method_and_its_keys(deployment, step):
    with pytest.raises(NonFiniteError, match=rf"^the {step} of device 0 at t = .*fisher_alpha = 1e\+300.*"
                       r"check method.lr and the method.\* keys of eata"):
        simulate(small(*SHORT, "method.name=eata", f"method.deployment={deployment}", "fleet.profile=jetson-orin-nano",
                       "method.fisher_samples=64", "method.fisher_alpha=1e300"))


def test_a_refresh_that_overflows_float16_is_not_sent(monkeypatch):
    real = cloud_workers.distill_step

    def step_then_grow(edge_model, student, *args):  # finite in float32, above float16's 65504
        real(edge_model, student, *args)
        next(iter(student.state.values())).mul_(1e6)

    monkeypatch.setattr(cloud_workers, "distill_step", step_then_grow)
    with pytest.raises(NonFiniteError, match=r"^the refresh \(float16\) of device 0 .*check cloud.refresh_codec"):
        simulate(small(*SHORT, "cloud.refresh_codec=float16"))


def test_a_sweep_records_a_non_finite_run_as_failed_with_its_error(tmp_path):
    import yaml

    fixed = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in SMALL + SHORT)}
    s = sw.build_sweep("nf", None, fixed, {"cloud.gamma": [1e300]}, 1)
    row = sw.run_sweep(s, tmp_path, workers=1, progress=False).iloc[0]
    assert row["status"] == "failed"
    assert row["error"].startswith("NonFiniteError: the distillation of device 0") and "gamma = 1e+300" in row["error"]


def test_the_checks_only_read_a_finite_run_is_identical_without_them(monkeypatch):
    sc = small(*SHORT, "cloud.refresh_codec=float16")  # foundation step, distillation, refreshes
    checked = simulate(sc)[0]
    monkeypatch.setattr(optim, "check_finite", lambda loss, tensors: None)
    monkeypatch.setattr(cloud_workers, "check_finite", lambda loss, tensors: None)
    unchecked = simulate(sc)[0]
    assert len(checked["refreshes"]) and checked.keys() == unchecked.keys()
    for name in checked:
        pd.testing.assert_frame_equal(checked[name], unchecked[name], check_exact=True, obj=name)
