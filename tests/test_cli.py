"""The command line as a user meets it: exit codes, messages without tracebacks, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cemasim.cli import main
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cemasim", *args], capture_output=True, text=True, cwd=ROOT)


def test_bad_scenario_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("uplink: {bandwidth_mbps: -5}\nmethod: {e_mni: 1}\n")
    proc = run_cli("run", str(bad), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "uplink.bandwidth_mbps: must be > 0, got -5" in proc.stderr
    assert "method.e_mni: unknown key; did you mean 'e_min'?" not in proc.stderr  # e_min lives in selection
    assert "method.e_mni: unknown key" in proc.stderr
    assert not any(tmp_path.glob("*/summary.json"))


def test_missing_file_and_unknown_list_kind(capsys):
    assert main(["validate", "no/such.yaml"]) == 2
    assert "no such scenario file" in capsys.readouterr().err
    assert main(["list", "method"]) == 2
    assert "did you mean 'methods'" in capsys.readouterr().err


def test_validate_takes_sweep_files_and_checks_every_point(tmp_path, capsys):
    assert main(["validate", "scenarios/quickstart.yaml", "scenarios/methods.yaml"]) == 0
    out = capsys.readouterr().out
    assert "scenarios/quickstart.yaml: ok" in out and "scenarios/methods.yaml: ok (sweep, 42 runs)" in out
    bad = tmp_path / "bad_sweep.yaml"
    base = Path("scenarios/quickstart.yaml").resolve()
    bad.write_text(f"name: b\nbase: {base}\ngrid: {{uplink.bandwidth_mbps: [1, -2]}}\n")
    assert main(["validate", str(bad)]) == 2
    assert "uplink.bandwidth_mbps: must be > 0, got -2" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["run", "scenarios/quickstart.yaml", "--threads", "100000"], "--threads: must be at most 1024"),
    (["sweep", "scenarios/methods.yaml", "--threads", "1025"], "--threads: must be at most 1024"),
    (["profile", "--model", "fmnist_edge_cnn", "--threads", "100000"], "--threads: must be at most 1024"),
    (["profile", "--model", "fmnist_edge_cnn", "--threads", "0"], "--threads: must be at least 1"),
    (["profile", "--model", "fmnist_edge_cnn", "--batch-sizes", "1,100000000"], "--batch-sizes: at most 65,536"),
])
def test_resource_sized_arguments_are_bounded_before_anything_starts(args, message, tmp_path, capsys):
    """--threads 100000 was a MemoryError, --batch-sizes 1,100000000 an allocation of that many images."""
    try:
        code = main([*args, "--out", str(tmp_path / "p.yaml")])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["methods", "models", "profiles", "corruptions", "arrivals", "datasets"])
def test_list_kinds(kind, capsys):
    assert main(["list", kind]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) >= 2


def test_run_writes_the_output_contract(tmp_path, capsys):
    args = ["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(tmp_path), "--quiet"]
    for item in SMALL:
        args += ["--set", item]
    args += ["--set", "output.plots=true", "--set", "name=contract"]
    assert main(args) == 0
    folder = tmp_path / "contract"
    for name in ("scenario.yaml", "manifest.json", "summary.json", "samples.parquet", "uploads.parquet",
                 "refreshes.parquet", "reports.parquet", "cloud_jobs.parquet", "timeline.parquet",
                 "accuracy_by_domain.csv", "plots/accuracy_over_time.png", "plots/accuracy_vs_uplink.png",
                 "plots/delays.png"):
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "summary.json").read_text())
    by_domain = pd.read_csv(folder / "accuracy_by_domain.csv")  # CSVs in percent, named so
    assert list(by_domain) == ["corruption", "severity", "samples", "accuracy_pct", "selected_ratio_pct"]
    assert (by_domain["accuracy_pct"] * by_domain["samples"]).sum() == pytest.approx(
        100 * summary["accuracy"] * summary["samples"])
    for key in ("accuracy", "samples", "uploaded_samples", "upload_ratio", "uplink_bytes", "downlink_bytes",
                "dropped_samples", "drops", "upload_wait_mean_s", "upload_delay_mean_s", "upload_delay_p95_s",
                "refreshes", "param_age_mean_s", "prediction_latency_mean_s", "cloud_utilization", "sim_time_s",
                "wall_time_s", "events"):
        assert key in summary, key
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["torch"] and manifest["compute_device"] == "cpu"
    assert (manifest["protocol"]["shift_protocol"] == "continual"
            and "higher is better" in manifest["protocol"]["metric"])
    timeline = pd.read_parquet(folder / "timeline.parquet")
    assert timeline["samples"].sum() == summary["samples"]
    assert "contract" in capsys.readouterr().out  # the summary table
    # a second run never overwrites the first
    assert main(args) == 0
    assert (tmp_path / "contract-2" / "summary.json").is_file()
