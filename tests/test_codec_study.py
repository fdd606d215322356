"""The codec study's arithmetic (analysis/codecs/study.py) on small made-up tables: the grid it runs,
the Pareto front, differences paired by seed, the figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cemasim import scenario

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("codec_study", ROOT / "analysis" / "codecs" / "study.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_the_grid_is_every_codec_against_the_default_and_valid_for_both_methods():
    pairs = study.variants()
    assert len(pairs) == 12 and study.DEFAULT in pairs and pairs[study.DEFAULT] == {}
    assert {p.split(" + ")[0] for p in pairs} == set(study.DOWN)
    assert {p.split(" + ")[1] for p in pairs} == set(study.UP)
    for overrides in pairs.values():
        for method in study.METHODS:
            sets = [f"{k}={v}" for k, v in overrides.items()] + [f"method.name={method}"]
            scenario.load(study.STUDY, sets)  # validates: every codec acts for these methods
    assert list(study.tbr_variants()) == ["float32 + png", "stats + png", "int8 + png"]
    for overrides in study.tbr_variants().values():
        scenario.load(study.STUDY, [f"{k}={v}" for k, v in overrides.items()] + ["method.norm_mode=tbr"])


def test_pareto_keeps_the_points_nothing_dominates():
    accuracy = np.array([80.0, 79.0, 81.0, 79.0, 80.0])
    cost = np.array([100.0, 50.0, 200.0, 60.0, 100.0])
    # 79 @ 60 is dominated by 79 @ 50; the two 80 @ 100 tie, and neither dominates the other
    assert study.pareto(accuracy, cost).tolist() == [True, True, True, False, True]


def _runs(accuracy: dict[str, list[float]], kb: dict[str, float]) -> pd.DataFrame:
    rows = []
    for pair, values in accuracy.items():
        down, up = pair.split(" + ")
        for seed, acc in enumerate(values):
            rows.append({"method": "cema", "uplink_mbps": 5.0, "pair": pair, "refresh_codec": down,
                         "upload_codec": up, "seed": seed, "accuracy_pct": acc, "upload_pct": 50.0,
                         "uplink_kb_per_device_hour": kb[pair] - 10, "downlink_kb_per_device_hour": 10.0,
                         "total_kb_per_device_hour": kb[pair], "refreshes": 10, "param_age_mean_s": 5.0,
                         "dropped_samples": 0})
    return pd.DataFrame(rows)


def test_frontier_pairs_differences_by_seed(tmp_path, monkeypatch):
    runs = _runs({study.DEFAULT: [80.0, 70.0, 60.0], "int8 + png": [79.5, 69.5, 59.5],
                  "float32 + jpeg 50": [75.0, 71.0, 58.0]},
                 {study.DEFAULT: 1000.0, "int8 + png": 900.0, "float32 + jpeg 50": 1200.0})
    table = study.frontier(runs).set_index("pair")
    assert table.loc["int8 + png", "vs_default_pts"] == pytest.approx(-0.5)
    assert table.loc["int8 + png", "ci95"] == pytest.approx(0.0, abs=1e-9)  # the same difference every seed
    assert table.loc["float32 + jpeg 50", "ci95"] > 1
    assert table["pareto"].to_dict() == {"int8 + png": True, study.DEFAULT: True, "float32 + jpeg 50": False}
    text = study.markdown(table.reset_index(), "cema", 5.0)
    assert "| int8 + png | 69.50 | -0.50 ± 0.00 | 890 / 10.0 | yes |" in text
    monkeypatch.setattr(study, "HERE", tmp_path)
    monkeypatch.setattr(study, "METHODS", ["cema"])
    monkeypatch.setattr(study, "UPLINKS_MBPS", [5.0, 5.0])
    study.figure(table.reset_index())
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_scaled_downlink_multiplies_the_refresh_schedule_by_each_models_refresh():
    runs = _runs({study.DEFAULT: [80.0, 70.0, 60.0]}, {study.DEFAULT: 1000.0})
    runs["refreshes"] = [200, 220, 240]  # 4 devices x 900 s = 1 device-hour: 220 refreshes a device-hour
    sizes = pd.DataFrame([{"model": "m", "norm_mode": "batch", "float32": 1000, "float16": 500, "int8": 255,
                           "topk 0.1": 130, "topk 0.01": 30}])
    table = study.scaled_downlink(runs, sizes).set_index("refresh_codec")
    assert table.loc["float32", "refreshes_per_device_hour"] == 220
    assert table.loc["float32", "downlink_mb_per_device_hour"] == pytest.approx(0.22)
    assert table.loc["float32", "down_over_up"] == pytest.approx(0.22 / 0.99, abs=1e-3)  # uplink 990 kB
    assert table.loc["topk 0.01", "bytes_per_refresh"] == 30
