"""The decision study's and the claims table's arithmetic (analysis/decision/study.py,
analysis/claims/claims.py) on small made-up tables: paired gains, ties within the interval, what the
device may run, and the static E_max at the dynamic one's rate."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study = _load("decision_study", ROOT / "analysis" / "decision" / "study.py")
claims = _load("claims_table", ROOT / "analysis" / "claims" / "claims.py")


def _runs(accuracy: dict[tuple[str, float | None], list[float]]) -> pd.DataFrame:
    """One fast-shift run per (strategy, uplink) and seed 0..n-1; uplink None = runs on the device alone."""
    rows = []
    for (strategy, uplink), values in accuracy.items():
        for seed, acc in enumerate(values):
            rows.append({"shift": "fast", "strategy": strategy, "uplink_mbps": np.nan if uplink is None else uplink,
                         "seed": seed, "accuracy": acc, "deployment": "edge" if uplink is None else "cloud",
                         "must_train": strategy.endswith("@edge"), "upload_ratio": 0.0,
                         "uplink_kb_per_device_hour": 0.0 if uplink is None else 100.0,
                         "downlink_kb_per_device_hour": 0.0 if uplink is None else 10.0,
                         "upload_delay_p95_s": np.nan, "param_age_mean_s": 0.0, "dropped_samples": 0,
                         "device_gflop_per_sample": 0.01, "device_busy_ms_per_sample": 1.0})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def one_uplink(monkeypatch):
    monkeypatch.setattr(study, "UPLINKS_MBPS", [5.0])


def test_gains_are_paired_by_seed_and_device_runs_count_at_every_uplink():
    runs = _runs({("bn_adapt", None): [0.80, 0.70, 0.60], ("cema", 5.0): [0.82, 0.72, 0.62]})
    table = study.strategies(runs).set_index("strategy")
    assert table.loc["cema", "gain_vs_bn"] == pytest.approx(2.0)
    assert table.loc["cema", "ci95"] == pytest.approx(0.0, abs=1e-9)  # the same gain on every seed
    assert table.loc["bn_adapt", "uplink_mbps"] == 5.0  # the device-alone run stands at each uplink


def test_cema_is_compared_with_the_strongest_of_each_kind_on_the_same_seeds():
    runs = _runs({("bn_adapt", None): [0.80, 0.70, 0.60], ("cema", 5.0): [0.83, 0.73, 0.63],
                  ("upload_all", 5.0): [0.84, 0.74, 0.64], ("sar@edge", None): [0.82, 0.72, 0.62],
                  ("tent@edge", None): [0.81, 0.71, 0.61], ("tent@cloud", 5.0): [0.805, 0.71, 0.60]})
    versus = study.cema_versus(runs, study.strategies(runs)).set_index("against")
    assert versus.loc["strongest edge-trained", "strategy"] == "sar@edge"  # the best edge method, not tent
    assert versus.loc["strongest edge-trained", "cema_minus"] == pytest.approx(1.0)
    assert versus.loc["upload everything", "cema_minus"] == pytest.approx(-1.0)
    assert versus.loc["strongest forward-only", "cema_minus"] == pytest.approx(3.0)
    assert versus.loc["strongest offloaded TTA", "strategy"] == "tent@cloud"
    assert versus["resolved"].all()  # the same difference on every seed


def test_the_winner_and_the_ties_within_the_interval():
    runs = _runs({("bn_adapt", None): [0.80, 0.70, 0.60],
                  ("cema", 5.0): [0.83, 0.73, 0.63],  # +3 on every seed
                  ("tent@cloud", 5.0): [0.84, 0.72, 0.62],  # +2.33 mean, noisy: tied with cema
                  ("eta@edge", None): [0.81, 0.71, 0.61],  # +1 on every seed: separated from cema
                  ("t3a", None): [0.75, 0.65, 0.55]})
    table = study.strategies(runs)
    decision = study.decide(runs, table).set_index("device")
    cannot = decision.loc["cannot train"]
    assert cannot["winner"] == "cema" and cannot["gain_vs_bn"] == pytest.approx(3.0)
    assert "tent@cloud" in cannot["tied_within_ci"] and "eta@edge" not in cannot["tied_within_ci"]
    assert "t3a" not in cannot["tied_within_ci"]
    assert decision.loc["can train", "winner"] == "cema"


def test_a_device_that_cannot_train_never_gets_an_edge_trained_winner():
    runs = _runs({("bn_adapt", None): [0.80, 0.70, 0.60], ("eta@edge", None): [0.90, 0.80, 0.70],
                  ("cema", 5.0): [0.81, 0.71, 0.61]})
    decision = study.decide(runs, study.strategies(runs)).set_index("device")
    assert decision.loc["can train", "winner"] == "eta@edge"
    assert decision.loc["cannot train", "winner"] == "cema"


def test_the_static_e_max_at_the_dynamic_rate_selects_that_fraction(tmp_path):
    rng = np.random.default_rng(0)
    entropy = rng.uniform(0, math.log(10), 1000).astype("float32")
    selected = np.zeros(1000, dtype=bool)
    selected[:573] = True  # what the dynamic run selected: 57.3 % of its samples
    pd.DataFrame({"entropy": entropy, "selected": selected}).to_parquet(tmp_path / "samples.parquet")
    e_max = claims.static_e_max_at_rate(tmp_path, 0.02, 10)
    chosen = (entropy > 0.02 * math.log(10)) & (entropy < e_max * math.log(10))
    assert chosen.sum() == 573
