"""Sweeps: validation of every point up front, resumable results table, failures recorded,
identical tables from the local pool and a real local Ray cluster, figures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cemasim import sweeps as sw
from cemasim.cli import main
from cemasim.errors import ConfigError
from cemasim.results.figures import pareto_front
from tests.conftest import SMALL

FIXED = {item.split("=", 1)[0]: item.split("=", 1)[1] for item in SMALL}
FIXED.update({"duration_s": "20", "fleet.devices": "1"})


def tiny_sweep(grid, seeds=2, name="t") -> sw.Sweep:
    import yaml

    return sw.build_sweep(name, None, {k: yaml.safe_load(v) for k, v in FIXED.items()}, grid, seeds)


def test_every_point_is_validated_before_anything_runs():
    with pytest.raises(ConfigError) as info:
        tiny_sweep({"uplink.bandwidth_mbps": [1, -2], "method.name": ["cema", "cemma"]})
    text = "\n".join(info.value.problems)
    assert "uplink.bandwidth_mbps: must be > 0, got -2" in text
    assert "did you mean 'cema'" in text


def test_grid_expands_cartesian_product_times_seeds():
    s = tiny_sweep({"uplink.bandwidth_mbps": [1, 2, 4], "method.name": ["cema", "source"]}, seeds=3)
    assert len(s.points) == 18 and len({p.point_id for p in s.points}) == 18


def test_local_sweep_records_failures_resumes_and_skips_finished(tmp_path):
    (tmp_path / "empty").mkdir()  # a folder without the dataset's files: valid, but the run fails
    s = tiny_sweep({"data.root": [None, str(tmp_path / "empty")]}, seeds=1)
    table = sw.run_sweep(s, tmp_path, workers=1, progress=False)
    assert sorted(table["status"]) == ["failed", "ok"]
    failed = table[table["status"] == "failed"].iloc[0]
    assert "not found" in failed["error"] and failed["run_folder"]
    ok = table[table["status"] == "ok"].iloc[0]
    folder = Path(ok["run_folder"])
    assert 0 < ok["accuracy"] <= 1 and (folder / "summary.json").is_file()
    # a readable run folder: the grid values and seed, then the point id
    assert folder.parent == tmp_path / "t" / "runs" and folder.name == f"root-None_seed-0_{ok['point_id']}"
    # re-running skips the finished point and retries only the failed one
    ran = []
    again = sw.run_sweep(s, tmp_path, workers=1, progress=False, on_row=ran.append)
    assert len(ran) == 1 and ran[0]["status"] == "failed"
    assert len(again) == 2


def test_interrupted_sweep_keeps_finished_rows(tmp_path):
    s = tiny_sweep({"method.name": ["source", "bn_adapt", "cema"]}, seeds=1)

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(s, tmp_path, workers=1, progress=False, on_row=stop)
    assert len(pd.read_parquet(sw.results_path(tmp_path, s))) == 1
    done = sw.run_sweep(s, tmp_path, workers=1, progress=False)
    assert len(done) == 3 and (done["status"] == "ok").all()


def test_process_pool_and_ray_give_the_same_table(tmp_path):
    pytest.importorskip("ray", reason="the test extra installs ray")
    s = tiny_sweep({"method.name": ["source", "cema"]}, seeds=2)
    local = sw.run_sweep(s, tmp_path / "local", workers=2, progress=False)
    ray = sw.run_sweep(s, tmp_path / "ray", backend="ray", workers=2, progress=False)
    cols = ["point_id", "seed", "method.name", "accuracy", "uplink_bytes", "samples", "refreshes"]
    a = local[cols].sort_values("point_id").reset_index(drop=True)
    b = ray[cols].sort_values("point_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_missing_ray_gives_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    s = tiny_sweep({"method.name": ["source"]}, seeds=1)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        sw.run_sweep(s, tmp_path, backend="ray", progress=False)


def test_ci95_and_summary_by_point():
    assert math.isnan(sw.ci95(pd.Series([1.0])))
    # two values 0 and 2: mean 1, sd sqrt(2), t(0.975, 1) = 12.706 -> 12.706 * sqrt(2)/sqrt(2)
    assert sw.ci95(pd.Series([0.0, 2.0])) == pytest.approx(12.706)
    df = pd.DataFrame({"k": [1, 1, 2, 2], "accuracy": [0.5, 0.7, 0.9, 0.9], "status": ["ok"] * 4})
    out = sw.summarize_sweep(df, ["k"], ["accuracy"])
    assert out["accuracy"].tolist() == pytest.approx([0.6, 0.9]) and out["seeds"].tolist() == [2, 2]
    assert out["accuracy_ci95"].iloc[1] == 0.0


def test_pareto_front_hand_example():
    x = np.array([1.0, 2.0, 3.0, 2.5, 0.5])
    y = np.array([0.6, 0.8, 0.7, 0.9, 0.4])
    assert pareto_front(x, y).tolist() == [4, 0, 1, 3]


def test_sweep_and_plot_commands_write_figures(tmp_path, capsys):
    args = ["sweep", "scenarios/quickstart.yaml", "--grid", "uplink.bandwidth_mbps=0.01,1", "--grid",
            "method.name=source,cema", "--seeds", "2", "--out", str(tmp_path), "--name", "cli", "--quiet"]
    for k, v in FIXED.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    figures = tmp_path / "cli" / "figures"
    for stem in ("accuracy_vs_uplink_bandwidth_mbps", "comm_accuracy_uplink_bytes", "pareto_accuracy_uplink"):
        assert (figures / f"{stem}.png").is_file() and (figures / f"{stem}.pdf").is_file()
    runs = sorted((tmp_path / "cli" / "runs").iterdir())[:2]
    assert main(["plot", *map(str, runs), "--out", str(tmp_path / "cmp"), "--format", "png"]) == 0
    assert (tmp_path / "cmp" / "runs_comm_accuracy.png").is_file()
    assert main(["plot", str(tmp_path / "nothing")]) == 2


def test_a_changed_base_is_not_mistaken_for_a_finished_point(tmp_path):
    a = tiny_sweep({"method.name": ["source"]}, seeds=1)
    sw.run_sweep(a, tmp_path, workers=1, progress=False)
    import yaml

    fixed = {k: yaml.safe_load(v) for k, v in FIXED.items()} | {"duration_s": 10}
    b = sw.build_sweep("t", None, fixed, {"method.name": ["source"]}, 1)
    ran = []
    table = sw.run_sweep(b, tmp_path, workers=1, progress=False, on_row=ran.append)
    assert len(ran) == 1  # same grid values, different scenario: it runs again
    assert len(table) == 1 and len(pd.read_parquet(sw.results_path(tmp_path, b))) == 1  # the stale row is gone
