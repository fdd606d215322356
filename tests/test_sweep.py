"""Sweeps: validation of every point up front, resumable results table, failures recorded,
identical tables from the local pool and a real local Ray cluster, figures."""

from __future__ import annotations

import math
import os
import shutil
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


def test_process_pool_and_ray_give_the_same_table(tmp_path, monkeypatch, registries_restored):
    """A plugin's method among them, on the plugin's capacity model and GPU scheduler (tests/plugin_example,
    on the workers' PYTHONPATH only, named by the scenario's plugins list): every worker imports it, in the
    pool and on the Ray cluster."""
    pytest.importorskip("ray", reason="the test extra installs ray")
    example = str(Path(__file__).resolve().parent / "plugin_example")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([example, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(example)  # this process validates the points
    monkeypatch.setitem(FIXED, "plugins", "[cemasim_example.plugin]")
    monkeypatch.setitem(FIXED, "uplink.capacity", "day_night")  # the plugin's capacity model and GPU scheduler
    monkeypatch.setitem(FIXED, "cloud.scheduler", "lifo")
    s = tiny_sweep({"method.name": ["source", "cema", "margin_upload"]}, seeds=1)
    local = sw.run_sweep(s, tmp_path / "local", workers=2, progress=False)
    assert (local["status"] == "ok").all()
    assert (local.loc[local["method.name"] == "margin_upload", "upload_ratio"] > 0).all()
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


# ---- points are what they say (issue 27) --------------------------------------------------------------
@pytest.mark.parametrize("where", ["grid", "set", "variants"])
@pytest.mark.parametrize("key", ["seed", "output.dir"])
def test_keys_the_sweep_sets_itself_are_refused(where, key):
    """A grid over seed ran seed 0 under the labels 5 and 6: such keys are refused, pointing to seeds."""
    value = 5 if key == "seed" else "elsewhere"
    grid = {key: [value, value + 1 if key == "seed" else "b"]} if where == "grid" else {"uplink.latency_ms": [1]}
    with pytest.raises(ConfigError) as info:
        sw.build_sweep("t", None, {key: value} if where == "set" else {}, grid, 1,
                       variants={"v": {key: value}} if where == "variants" else None)
    (problem,) = info.value.problems
    assert problem.startswith(f"{where}.{'v.' if where == 'variants' else ''}{key}: a sweep ")
    assert ("seeds: [5, 6]" if key == "seed" else "<--out>/<name>/runs") in problem


def test_repeated_seeds_and_grid_values_are_refused_by_key():
    with pytest.raises(ConfigError) as info:
        sw.build_sweep("t", None, {}, {"uplink.bandwidth_mbps": [1, 2, 1.0], "method.name": ["cema", "cema"]},
                       [3, 0, 3])
    assert info.value.problems == ["grid.uplink.bandwidth_mbps: 1.0 is listed twice (as 1); list each value once",
                                   "grid.method.name: 'cema' is listed twice; list each value once",
                                   "seeds: 3 is listed twice; list each value once"]


def test_values_that_resolve_to_one_scenario_are_refused():
    """null and {process: none} are the same outages; two variants with the same overrides are one run."""
    with pytest.raises(ConfigError, match=r"grid.uplink.outages: uplink.outages=None and uplink.outages=\{'process'"):
        sw.build_sweep("t", None, {}, {"uplink.outages": [None, {"process": "none"}]}, 2)
    with pytest.raises(ConfigError, match="grid.variant: variant=a and variant=b give the same scenario"):
        sw.build_sweep("t", None, {}, {}, 1, variants={"a": {"uplink.latency_ms": 5}, "b": {"uplink.latency_ms": 5.0}})


def test_the_run_count_is_bounded_before_any_point_is_built(monkeypatch):
    def never(*args):
        raise AssertionError("a point was built")

    monkeypatch.setattr(sw, "_point_scenario", never)
    with pytest.raises(ConfigError) as info:
        sw.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2, 3]}, 10**9)  # a list of 10^9 seeds: MemoryError
    assert info.value.problems == [f"grid x seeds: 3 x 1,000,000,000 seeds = 3,000,000,000 runs, more than the "
                                   f"{sw.MAX_RUNS:,} a sweep may have; split it into smaller sweeps"]
    monkeypatch.setattr(sw, "MAX_RUNS", 5)
    with pytest.raises(ConfigError, match=r"3 x 2 x 1 seed = 6 runs, more than the 5"):
        sw.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 1, variants={"a": {}, "b": {}, "c": {}})


def test_validating_a_big_sweep_shows_progress(monkeypatch, capsys):
    monkeypatch.setattr(sw, "PROGRESS_FROM", 3)
    sw.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2, 3]}, 1)
    assert "validating t" not in capsys.readouterr().err  # 3 runs: not more than PROGRESS_FROM
    sw.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 2)
    err = capsys.readouterr().err
    assert "validating t" in err and "4/4" in err
    sw.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 2, progress=False)
    assert capsys.readouterr().err == ""


def test_a_grid_key_given_twice_on_the_command_line_is_refused():
    with pytest.raises(ConfigError, match=r"--grid uplink.latency_ms: given twice"):
        sw.parse_grid(["uplink.latency_ms=1", "fleet.devices=2", "uplink.latency_ms=5"])


@pytest.mark.parametrize("base", [b"grid:\n  uplink.latency_ms: [1]\n", b"- 1\n", None])
def test_a_base_that_is_not_a_scenario_is_named(tmp_path, base):
    if base is not None:
        (tmp_path / "b.yaml").write_bytes(base)
    (tmp_path / "w.yaml").write_text("base: b.yaml\ngrid:\n  uplink.latency_ms: [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        sw.load_sweep_file(tmp_path / "w.yaml")
    assert info.value.source == f"{tmp_path / 'b.yaml'} (the base of {tmp_path / 'w.yaml'})"
    assert "every point" not in str(info.value)  # said once, of the base, not of each point


def fake_run_point(sc: dict, folder: str, threads: int) -> dict:
    """A run in a millisecond: a complete run folder and a summary that depends on the seed."""
    import json

    import yaml

    summary = {"accuracy": 0.5 + sc["seed"] / 100, "samples": 10}
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "scenario.yaml").write_text(yaml.safe_dump(sc))
    (Path(folder) / "summary.json").write_text(json.dumps(summary))
    return {"ok": True, "summary": summary, "folder": folder}


def test_resume_keeps_one_row_per_point_and_prefers_the_ok_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sw, "run_point", fake_run_point)
    s = sw.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 2)
    first = sw.run_sweep(s, tmp_path, progress=False)
    path = sw.results_path(tmp_path, s)
    failed = first.iloc[:1].assign(status="failed", error="an older attempt")
    sw.write_results(path, pd.concat([first, first, failed]).to_dict("records"))  # a table joined by hand
    shutil.rmtree(tmp_path / "t" / "runs")  # the table alone is the result now: nothing to recover from
    ran = []
    table = sw.run_sweep(s, tmp_path, progress=False, on_row=ran.append)
    assert "held 5 repeated rows" in capsys.readouterr().err
    assert ran == [] and len(table) == 4 and table["point_id"].is_unique and (table["status"] == "ok").all()
    assert len(pd.read_parquet(path)) == 4
    assert sw.summarize_sweep(table, ["uplink.latency_ms"], ["accuracy"])["seeds"].tolist() == [2, 2]


def test_statistics_count_each_run_once():
    """A repeated run would narrow the CI as if it were another seed; two runs of one point and seed
    with different ids mean a table of several sweeps, where no mean means anything."""
    df = pd.DataFrame({"point_id": ["a", "a", "b", "c"], "seed": [0, 0, 1, 0], "k": [1, 1, 1, 2],
                       "accuracy": [0.5, 0.5, 0.7, 0.9], "status": ["ok"] * 4})
    with pytest.warns(UserWarning, match="1 repeated rows of one run"):
        out = sw.summarize_sweep(df, ["k"], ["accuracy"])
    assert out["seeds"].tolist() == [2, 1] and out["accuracy"].tolist() == pytest.approx([0.6, 0.9])
    mixed = df.assign(point_id=["a", "x", "b", "c"])
    with pytest.raises(ValueError, match=r"2 runs share their grid values and seed .*k=1, seed 0"):
        sw.summarize_sweep(mixed, ["k"], ["accuracy"])


@pytest.mark.parametrize(("given", "seeds"), [("5,6", [5, 6]), ("3", [0, 1, 2])])
def test_seeds_on_the_command_line_are_a_count_or_a_list_and_each_run_gets_its_label(tmp_path, given, seeds):
    from cemasim.cli import _sweep_from_args, build_parser

    (tmp_path / "s.yaml").write_text("{}\n")
    args = build_parser().parse_args(["sweep", str(tmp_path / "s.yaml"), "--grid", "uplink.latency_ms=1",
                                      "--seeds", given, "--quiet"])
    spec = _sweep_from_args(args)
    assert [p.seed for p in spec.points] == seeds
    assert [spec.scenarios[p.point_id]["seed"] for p in spec.points] == seeds  # the run's seed is its label's


@pytest.mark.parametrize(("baseline", "problem"), [
    ("method.name=bn_adpt", "'bn_adpt' is not one of method.name's values ('source', 'cema')"),
    ("uplink.latency_ms=1", "uplink.latency_ms is not a swept key (swept: method.name)"),
    ("method.name", "expected KEY=VALUE")])
def test_a_wrong_baseline_stops_the_sweep_before_any_run(tmp_path, capsys, baseline, problem):
    (tmp_path / "s.yaml").write_text("{}\n")
    code = main(["sweep", str(tmp_path / "s.yaml"), "--grid", "method.name=source,cema", "--seeds", "2",
                 "--out", str(tmp_path / "out"), "--baseline", baseline, "--quiet"])
    assert code == 2 and problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_a_baseline_value_matches_as_the_grid_reads_it():
    from cemasim.cli import _check_baseline

    spec = tiny_sweep({"uplink.bandwidth_mbps": [1, 5.0], "selection.dynamic_e_max": [True, False]})
    _check_baseline(spec, "uplink.bandwidth_mbps=1.0")  # 1 and 1.0 are one value
    _check_baseline(spec, "selection.dynamic_e_max=false")
    with pytest.raises(ConfigError, match="is not one of"):
        _check_baseline(spec, "selection.dynamic_e_max=0")  # a number is not a switch


def test_run_comparison_labels_name_the_keys_that_differ_not_the_folders():
    from cemasim.results.figures import RunData, run_labels

    def run(folder, **keys):
        return RunData(folder, {}, 1.0, 80.0, {"name": folder, "output.dir": folder, "seed": 0, **keys})

    runs = [run("cema_3f2a", **{"method.name": "cema", "uplink.bandwidth_mbps": 0.01}),
            run("upload_all_9c1b", **{"method.name": "upload_all", "uplink.bandwidth_mbps": 5})]
    assert run_labels(runs) == ["cema, bandwidth_mbps=0.01", "upload_all, bandwidth_mbps=5"]
    same = [run("a", **{"method.name": "cema"}), run("b", **{"method.name": "cema"})]
    assert run_labels(same) == ["a", "b"]  # nothing differs but the folder: its name is the label
    long = [run("a", **{"shift.segments": [{"corruption": "fog"}] * 5}), run("b", **{"shift.segments": []})]
    assert all(len(label) <= 40 for label in run_labels(long))


def test_a_pareto_step_is_drawn_only_when_the_paired_seeds_resolve_it():
    from cemasim.results.figures import pareto_front, resolved_front

    rows = []
    for seed, noise in enumerate([0.0, 0.02, -0.02]):
        rows += [{"m": "a", "seed": seed, "status": "ok", "uplink_bytes": 1e6, "accuracy": 0.70 + noise},
                 {"m": "b", "seed": seed, "status": "ok", "uplink_bytes": 2e6, "accuracy": 0.75 + noise},  # +5 always
                 {"m": "c", "seed": seed, "status": "ok", "uplink_bytes": 3e6,
                  "accuracy": 0.76 + noise + (0.03, -0.03, 0.01)[seed]}]  # +0.3 on average, noisy
    table = pd.DataFrame(rows)
    summary = sw.summarize_sweep(table, ["m"], ["uplink_bytes", "accuracy"])
    front = pareto_front(summary["uplink_bytes"].to_numpy(float), summary["accuracy"].to_numpy(float))
    assert list(summary["m"].iloc[front]) == ["a", "b", "c"]
    assert resolved_front(table, summary, front, ["m"]) == [True, False]
    assert resolved_front(None, summary, front, ["m"]) == [False, False]  # no seeds, nothing resolved


def test_points_that_would_overprint_share_one_label():
    """A link that no longer binds gives (nearly) the same bytes and accuracy at 0.05, 0.1 and 1 Mbit/s:
    one label '0.05, 0.1, 1', not three printed over each other; distinct points keep their own."""
    from cemasim.results.figures import _label_points, _pyplot

    fig, ax = _pyplot().subplots()
    x, y = np.array([1.76, 3.52, 5.40, 5.41, 5.41]), np.array([77.3, 78.0, 81.25, 81.24, 81.25])
    _label_points(ax, x, y, pd.Series([0.005, 0.01, 0.05, 0.1, 1.0]), "k", near=(0.1, 0.1))
    assert [t.get_text() for t in ax.texts] == ["0.005", "0.01", "0.05, 0.1, 1"]
    _pyplot().close(fig)
