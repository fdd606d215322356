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
from tests.conftest import small

REPO = Path(__file__).resolve().parents[1]


def test_the_documented_study_runs(monkeypatch, capsys):
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), re.S)[0]
    monkeypatch.chdir(REPO)
    before = set(os.listdir(REPO))
    namespace: dict = {}
    exec(compile(code, "docs/python.md", "exec"), namespace)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "accuracy" in out and "cema" in out
    diffs = namespace["diffs"]
    assert set(diffs["method.name"]) == {"cema"} and (diffs["pairs"] == 2).all()
    assert set(os.listdir(REPO)) == before  # nothing written


def test_simulate_equals_the_runner_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sc = small("duration_s=20", "fleet.devices=1")
    result = cemasim.simulate(sc)
    tables, summary, _ = runner.simulate(sc)
    pd.testing.assert_frame_equal(result.samples, tables["samples"])
    assert result.summary["accuracy"] == summary["accuracy"] and list(tmp_path.iterdir()) == []
    assert len(result.timeline) and len(result.accuracy_by_domain) and result.protocol["metric"]


def test_with_overrides_validates_and_follows_classes():
    sc = cemasim.load_scenario(REPO / "scenarios" / "commuter.yaml")
    changed = sc.with_overrides({"downlink.latency_ms": 7})
    assert changed.downlink.latency_ms == 7 and sc.downlink.latency_ms != 7  # the original is untouched
    same_as_file = cemasim.load_scenario(REPO / "scenarios" / "commuter.yaml", ["downlink.latency_ms=7"])
    assert changed.to_dict() == same_as_file.to_dict()  # classes inherit it exactly as from the file
    with pytest.raises(ConfigError, match="fleet.devices"):
        sc.with_overrides({"fleet.devices": -1})


def test_sweep_with_variants_and_out(tmp_path):
    base = small("duration_s=12", "fleet.devices=1")
    table = cemasim.sweep(base, variants={"near": {"uplink.latency_ms": 1}, "far": {"uplink.latency_ms": 500}},
                          seeds=1, out=tmp_path, name="v")
    assert sorted(table["variant"]) == ["far", "near"] and (table["status"] == "ok").all()
    assert (tmp_path / "v" / "results.parquet").is_file()
    far = table.set_index("variant").loc["far"]
    assert far["upload_delay_mean_s"] > table.set_index("variant").loc["near", "upload_delay_mean_s"]
