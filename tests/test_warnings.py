"""The warnings a run or a sweep earns (cemasim/results/warnings.py): a saturated cloud, an uplink
that could not carry the selection, too few test batches; printed by `cemasim run` and `cemasim
sweep` beside their tables, and silent on a healthy run."""

from __future__ import annotations

from pathlib import Path

from cemasim.cli import main
from cemasim.results.warnings import run_warnings, sweep_warnings
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = {"cloud_load": 0.7, "gpu_wait_p95_s": 0.1, "uploads_never_used": 0, "in_flight_samples": 3,
           "selected_samples": 5000, "test_batches_per_device": 19.0}


def test_a_healthy_run_earns_no_warning():
    assert run_warnings(HEALTHY) == []
    assert run_warnings({}) == []  # keys a method does not have (no cloud, no uploads) are no problem


def test_a_saturated_cloud_is_named_with_its_numbers():
    [text] = run_warnings({**HEALTHY, "cloud_load": 2.28, "gpu_wait_p95_s": 46.2, "uploads_never_used": 2114})
    assert "saturated" in text and "228 %" in text and "46.2 s" in text and "2114" in text and "cloud.gpus" in text


def test_a_backlog_left_at_the_end_is_named():
    [text] = run_warnings({**HEALTHY, "in_flight_samples": 239, "selected_samples": 1200})
    assert "uplink did not keep up" in text and "239" in text and "20 %" in text


def test_a_run_too_short_to_adapt_is_named():
    [text] = run_warnings({**HEALTHY, "test_batches_per_device": 2.0})
    assert "2.0 test batches" in text and "duration_s" in text


def test_a_sweep_counts_each_kind_once_with_its_worst_run():
    rows = [HEALTHY, {**HEALTHY, "cloud_load": 1.2}, {**HEALTHY, "cloud_load": 2.5}]
    [line] = sweep_warnings(rows)
    assert line.startswith("2 of 3 runs") and "250 %" in line


def test_the_cli_prints_the_warning_and_the_new_columns(tmp_path, capsys):
    args = ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(tmp_path), "--quiet"]
    for item in [*SMALL, "duration_s=10"]:  # about 3 test batches a device
        args += ["--set", item]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "cloud load %" in out and "never trained" in out and "queued at end" in out
    assert "warning: quickstart: each device saw" in err


def test_the_quickstart_runs_without_a_warning(tmp_path, capsys):
    args = ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(tmp_path), "--quiet",
            "--set", "method.name=bn_adapt", "--set", "output.plots=false", "--set", "compute_device=cpu"]
    assert main(args) == 0
    assert "warning" not in capsys.readouterr().err
