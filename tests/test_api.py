"""The Python API: docs/python.md's study runs as written; load/with_overrides/simulate/sweep/paired
agree with the CLI's modules and write nothing unless asked."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

import cemasim
from cemasim import runner
from cemasim.errors import ConfigError
from cemasim.results.units import in_percent
from tests.conftest import small

REPO = Path(__file__).resolve().parents[1]


def test_the_documented_study_runs(monkeypatch, capsys):
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), re.S)[0]
    monkeypatch.chdir(REPO)
    before = set(os.listdir(REPO))
    namespace: dict = {}
    exec(compile(code, "docs/python.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "% accuracy" in out
    diffs = namespace["diffs"]
    assert set(diffs["method.name"]) == {"cema"} and (diffs["pairs"] == 2).all()
    assert diffs["accuracy_pct_diff_lo"].iloc[0] > 0  # the example shows the methods separate
    assert "CEMA - bn_adapt: +1.76 ± 0.23 points, 2 seeds" in out  # the number the comment quotes
    assert set(os.listdir(REPO)) == before  # nothing written


def test_simulate_equals_the_runner_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sc = small("duration_s=20", "fleet.devices=1")
    result = cemasim.simulate(sc)
    tables, summary, _ = runner.simulate(sc)
    pd.testing.assert_frame_equal(result.samples, tables["samples"])
    assert result.summary["accuracy"] == summary["accuracy"] and list(tmp_path.iterdir()) == []
    assert len(result.timeline) and len(result.accuracy_by_domain) and result.protocol["metric"]
    by_domain = result.accuracy_by_domain  # DataFrames in percent; the summary dict is summary.json
    assert (by_domain["accuracy_pct"] * by_domain["samples"]).sum() == pytest.approx(
        100 * summary["accuracy"] * summary["samples"])
    assert "accuracy" not in result.timeline and result.timeline["accuracy_pct"].max() <= 100


def test_with_overrides_validates_and_follows_classes():
    sc = cemasim.load_scenario(REPO / "scenarios" / "commuter.yaml")
    changed = sc.with_overrides({"downlink.latency_ms": 7})
    assert changed.downlink.latency_ms == 7 and sc.downlink.latency_ms != 7  # the original is untouched
    same_as_file = cemasim.load_scenario(REPO / "scenarios" / "commuter.yaml", ["downlink.latency_ms=7"])
    assert changed.to_dict() == same_as_file.to_dict()  # classes inherit it exactly as from the file
    with pytest.raises(ConfigError, match="fleet.devices"):
        sc.with_overrides({"fleet.devices": -1})


def test_a_scenario_survives_pickle_and_deepcopy():
    """multiprocessing, joblib and Ray pickle what a user hands them; unpickling asked the read-only
    view for _data before it had one and recursed without end."""
    import copy
    import pickle

    sc = cemasim.load_scenario(REPO / "scenarios" / "quickstart.yaml", {"fleet.devices": 3})
    _ = sc.uplink  # a kept view travels too
    for again in (pickle.loads(pickle.dumps(sc)), copy.deepcopy(sc)):
        assert again.to_dict() == sc.to_dict() and again.source == sc.source
        assert again.uplink.bandwidth_mbps == sc.uplink.bandwidth_mbps
        assert again.with_overrides({"fleet.devices": 4}).fleet.devices == 4


def test_sweep_with_variants_and_out(tmp_path):
    base = small("duration_s=12", "fleet.devices=1")
    table = cemasim.sweep(base, variants={"near": {"uplink.latency_ms": 1}, "far": {"uplink.latency_ms": 500}},
                          seeds=1, out=tmp_path, name="v")
    assert sorted(table["variant"]) == ["far", "near"] and (table["status"] == "ok").all()
    assert (tmp_path / "v" / "results.parquet").is_file()
    assert "accuracy" not in table and table["accuracy_pct"].between(50, 100).all()  # percent, as named
    on_disk = pd.read_parquet(tmp_path / "v" / "results.parquet")  # the record keeps fractions
    assert (table["accuracy_pct"].to_numpy() == 100 * on_disk["accuracy"].to_numpy()).all()
    far = table.set_index("variant").loc["far"]
    assert far["upload_delay_mean_s"] > table.set_index("variant").loc["near", "upload_delay_mean_s"]


# ---- misuse and numpy values (issue 27) ---------------------------------------------------------------
MISUSE = {
    "load_scenario path": (lambda: cemasim.load_scenario(5), "path: expected a file path"),
    "load_scenario overrides": (lambda: cemasim.load_scenario(None, ["fleet.devices=2", 3]), "overrides: expected"),
    "simulate a path": (lambda: cemasim.simulate("scenarios/quickstart.yaml"), "sc: expected a Scenario"),
    "sweep base": (lambda: cemasim.sweep(5, {"fleet.devices": [1]}), "base: expected"),
    "sweep grid": (lambda: cemasim.sweep(None, [("fleet.devices", [1])]), "grid: expected"),
    "sweep set": (lambda: cemasim.sweep(None, {"fleet.devices": [1]}, set=["fleet.devices=2"]), "set: expected"),
    "sweep variants": (lambda: cemasim.sweep(None, variants={"a": "fast"}), "variants: expected"),
    "sweep out": (lambda: cemasim.sweep(None, {"fleet.devices": [1]}, out=3), "out: expected"),
    "sweep backend": (lambda: cemasim.sweep(None, {"fleet.devices": [1]}, backend="dask"),
                      "backend: 'dask' is unknown; known: local, ray"),
    "sweep workers": (lambda: cemasim.sweep(None, {"fleet.devices": [1]}, workers=0), "workers: must be"),
    "paired table": (lambda: cemasim.paired("results.parquet", "method.name=cema"), "table: expected a results"),
    "paired baseline": (lambda: cemasim.paired(pd.DataFrame({"seed": [0]}), 3), "baseline: expected 'KEY=VALUE'"),
    "paired metrics": (lambda: cemasim.paired(pd.DataFrame({"seed": [0]}), "a.b=1", "accuracy"), "metrics: expected"),
    "paired not a sweep": (lambda: cemasim.paired(pd.DataFrame({"x": [0]}), "a.b=1"), "table: no column seed"),
    "paired baseline absent": (lambda: cemasim.paired(pd.DataFrame({"seed": [0], "a.b": [1], "status": "ok",
                                                                    "accuracy": [0.5]}), "a.b=9"),
                               "a.b=9: no finished run has that value"),
}


@pytest.mark.parametrize("call", MISUSE, ids=list(MISUSE))
def test_api_misuse_raises_the_documented_error_naming_the_argument(call):
    """A wrong argument is a ConfigError (docs/python.md), never a bare TypeError or AttributeError."""
    fn, message = MISUSE[call]
    with pytest.raises(ConfigError) as info:
        fn()
    assert message in str(info.value)


def test_an_unknown_backend_is_refused_before_any_point_is_validated(monkeypatch):
    from cemasim import sweeps

    def never(*args):
        raise AssertionError("a point was validated")

    monkeypatch.setattr(sweeps, "_point_scenario", never)
    with pytest.raises(ConfigError, match="backend: 'dask' is unknown"):
        cemasim.sweep(None, {"fleet.devices": [1]}, backend="dask")


def test_numpy_values_are_the_numbers_they_hold(tmp_path, monkeypatch):
    """np.int64 seeds, grid values and workers, and a numpy array of values, on a file base."""
    import numpy as np

    from cemasim import sweeps
    from tests.test_sweep import fake_run_point

    monkeypatch.setattr(sweeps, "run_point", fake_run_point)
    sc = cemasim.load_scenario(None, {"fleet.devices": np.int64(3)}, seed=np.int64(4))
    assert sc.fleet.devices == 3 and sc.seed == 4
    base = tmp_path / "base.yaml"
    base.write_text("fleet:\n  devices: 2\n")
    table = cemasim.sweep(base, {"uplink.latency_ms": np.array([1, 2]), "fleet.devices": [np.int64(1)]},
                          seeds=np.int64(2), workers=np.int64(1), threads=np.int64(1))
    assert len(table) == 4 and sorted(set(table["seed"])) == [0, 1] and (table["status"] == "ok").all()
    assert set(table["uplink.latency_ms"]) == {1, 2} and set(table["devices"]) == {1}
    listed = cemasim.sweep(None, {"uplink.latency_ms": [1]}, seeds=[np.int64(7)])
    assert listed["seed"].tolist() == [7]


def test_paired_finds_a_swept_top_level_key():
    """duration_s has no dot: it is still a swept key, so each duration is paired with its own baseline."""
    table = pd.DataFrame({"point_id": list("abcdefgh"), "sweep": "s", "seed": [0, 1] * 4,
                          "duration_s": [10, 10, 20, 20] * 2, "method.name": ["base"] * 4 + ["new"] * 4,
                          "status": "ok", "accuracy": [0.5, 0.6, 0.7, 0.8, 0.55, 0.66, 0.77, 0.88]})
    out = cemasim.paired(table, "method.name=base", ["accuracy"])  # a results.parquet's fractions
    assert out["duration_s"].tolist() == [10, 20] and out["pairs"].tolist() == [2, 2]
    assert out["accuracy_diff"].tolist() == pytest.approx([0.055, 0.075])  # in the table's units
    in_points = cemasim.paired(in_percent(table), "method.name=base", ["accuracy"])  # as cemasim.sweep returns
    assert in_points["accuracy_pct_diff"].tolist() == pytest.approx([5.5, 7.5])


def test_a_script_without_a_main_guard_runs_a_parallel_sweep(tmp_path):
    """Spawned workers do not re-run the user's script (its sweep would start again in every worker)."""
    import subprocess
    import sys

    script = tmp_path / "study.py"  # no `if __name__ == "__main__":`
    script.write_text(
        "import cemasim\n"
        "table = cemasim.sweep('scenarios/quickstart.yaml', {'method.name': ['source', 'bn_adapt']}, workers=2,\n"
        "                      set={'duration_s': 20, 'drain_s': 20, 'fleet.devices': 1, 'output.plots': False,\n"
        "                           'compute_device': 'cpu'})\n"
        "print('STATUS', sorted(table['status']))\n")
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("STATUS") == 1 and "STATUS ['ok', 'ok']" in done.stdout


def test_dir_shows_the_api():
    assert {"load_scenario", "simulate", "sweep", "paired", "Scenario", "RunResult"} <= set(dir(cemasim))


def test_plot_draws_a_sweeps_and_runs_figures_from_python(tmp_path):
    table = cemasim.sweep(REPO / "scenarios" / "quickstart.yaml", {"method.name": ["source", "bn_adapt"]}, seeds=2,
                          set={"duration_s": 20, "drain_s": 20, "fleet.devices": 1, "output.plots": False,
                               "compute_device": "cpu"}, out=tmp_path / "sweeps", name="p")
    from_table = cemasim.plot(table, tmp_path / "a", baseline="method.name=source")
    assert from_table and all(p.is_file() and p.suffix == ".png" for p in from_table)
    assert any(p.name.startswith("paired_vs_source") for p in from_table)
    from_folder = cemasim.plot(tmp_path / "sweeps" / "p", tmp_path / "b")
    assert sorted(p.name for p in from_folder) == sorted(p.name for p in from_table if "paired" not in p.name)
    runs = [Path(f) for f in table["run_folder"][:2]]
    assert (tmp_path / "c" / "runs_comm_accuracy.png") in cemasim.plot(runs, tmp_path / "c")
    with pytest.raises(ConfigError, match="out: a folder"):
        cemasim.plot(table)
    with pytest.raises(ConfigError, match="neither a complete run folder"):
        cemasim.plot(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="formats"):
        cemasim.plot(table, tmp_path / "d", formats="png")
