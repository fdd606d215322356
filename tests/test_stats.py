"""Paired statistics of sweeps: hand-computed differences and CIs, physical bounds, common random
numbers across methods and grid values, and the CLI's --baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cemasim.cli import main
from cemasim.results import stats
from cemasim.runner import simulate
from tests.conftest import small
from tests.test_sweep import FIXED


def _table() -> pd.DataFrame:
    # two methods x two bandwidths x three seeds; "b" beats "a" by 0.02 +- noise on every seed
    rows = []
    for seed, noise in enumerate([0.0, 0.005, -0.005]):
        for bw in (1, 10):
            base = 0.5 + 0.1 * seed + 0.01 * bw  # large between-seed spread
            rows.append({"method.name": "a", "uplink.bandwidth_mbps": bw, "seed": seed, "status": "ok",
                         "accuracy": base, "uplink_bytes": 100.0})
            rows.append({"method.name": "b", "uplink.bandwidth_mbps": bw, "seed": seed, "status": "ok",
                         "accuracy": base + 0.02 + noise, "uplink_bytes": 60.0})
    return pd.DataFrame(rows)


def test_paired_differences_by_hand():
    keys = ["method.name", "uplink.bandwidth_mbps"]
    out = stats.paired_differences(_table(), keys, ["accuracy", "uplink_bytes"], ("method.name", "a"))
    assert out["method.name"].tolist() == ["b", "b"] and out["pairs"].tolist() == [3, 3]
    # diffs per seed: 0.02, 0.025, 0.015 -> mean 0.02, sd 0.005, half-width t(2) * 0.005 / sqrt(3)
    assert out["accuracy_diff"].tolist() == pytest.approx([0.02, 0.02])
    assert out["accuracy_diff_ci95"].iloc[0] == pytest.approx(4.303 * 0.005 / math.sqrt(3))
    assert out["accuracy_diff_lo"].iloc[0] > 0  # paired: resolved although seeds spread by 0.2
    assert out["uplink_bytes_diff"].tolist() == [-40.0, -40.0] and out["uplink_bytes_diff_ci95"].iloc[0] == 0
    unpaired = stats.summarize_sweep(_table(), keys, ["accuracy"])
    assert (unpaired["accuracy_ci95"] > 0.2).all()  # the unpaired bands would hide the difference


def test_baseline_errors_name_the_problem():
    keys = ["method.name", "uplink.bandwidth_mbps"]
    with pytest.raises(ValueError, match="not a swept key"):
        stats.paired_differences(_table(), keys, ["accuracy"], ("fleet.devices", 4))
    with pytest.raises(ValueError, match="values: a, b"):
        stats.paired_differences(_table(), keys, ["accuracy"], ("method.name", "c"))
    assert stats.parse_baseline("uplink.bandwidth_mbps=1") == ("uplink.bandwidth_mbps", 1)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        stats.parse_baseline("method.name")


def test_bands_stay_inside_physical_bounds():
    lo, hi = stats.bounded_band(np.array([0.1, 0.98]), np.array([0.5, 0.1]), "upload_delay_p95_s")
    assert lo.tolist() == [0.0, pytest.approx(0.88)] and hi.tolist() == pytest.approx([0.6, 1.08])
    lo, hi = stats.bounded_band(np.array([0.98]), np.array([0.1]), "accuracy")
    assert hi.tolist() == [1.0]
    df = pd.DataFrame({"k": [1, 1, 2, 2], "upload_delay_mean_s": [0.0, 1.0, 0.0, 0.0], "status": ["ok"] * 4})
    out = stats.summarize_sweep(df, ["k"], ["upload_delay_mean_s"])
    assert out["upload_delay_mean_s_lo"].tolist() == [0.0, 0.0]  # 0.5 - 6.35 would be negative


def test_verdicts():
    assert stats.verdict(0.1, 0.3) == "holds"
    assert stats.verdict(-0.3, -0.1) == "does not hold"
    assert stats.verdict(-0.1, 0.3) == "not resolved"
    assert stats.verdict(-0.5, 0.5, margin=-1.0) == "holds"


def test_a_seed_fixes_the_data_for_every_method_and_bandwidth():
    """Common random numbers: same images, labels, domains and arrival times whatever is swept."""
    cols = ["device", "sample_id", "label", "corruption", "severity", "arrival_s"]
    tables = []
    for overrides in (["method.name=source"], ["method.name=cema"], ["method.name=cema", "uplink.bandwidth_mbps=0.05"]):
        samples = simulate(small(*overrides, "duration_s=20", seed=3))[0]["samples"]
        tables.append(samples[[c for c in cols if c in samples]].sort_values(["device", "arrival_s"])
                      .reset_index(drop=True))
    assert len(tables[0].columns) >= 4
    for t in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], t)
    other_seed = simulate(small("method.name=source", "duration_s=20", seed=4))[0]["samples"]
    assert not np.array_equal(other_seed["arrival_s"].to_numpy()[:10], tables[0]["arrival_s"].to_numpy()[:10])


def test_sweep_and_plot_report_paired_differences(tmp_path, capsys):
    args = ["sweep", "scenarios/quickstart.yaml", "--grid", "method.name=source,bn_adapt", "--seeds", "2",
            "--out", str(tmp_path), "--name", "p", "--quiet", "--baseline", "method.name=source"]
    for k, v in FIXED.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "paired differences vs method.name=source" in printed and "bn_adapt" in printed
    figures = tmp_path / "p" / "figures"
    csv = pd.read_csv(figures / "paired_vs_source.csv")
    assert csv["method.name"].tolist() == ["bn_adapt"] and csv["pairs"].tolist() == [2]
    # units: accuracy in points in every CSV, in a column that says so; bytes exact
    table = pd.read_parquet(tmp_path / "p" / "results.parquet").set_index(["method.name", "seed"])["accuracy"]
    points = 100 * (table["bn_adapt"] - table["source"]).mean()
    assert "accuracy_diff" not in csv and csv["accuracy_pct_diff"].iloc[0] == pytest.approx(points)
    by_point = pd.read_csv(figures / "summary_by_point.csv").set_index("method.name")
    assert "accuracy" not in by_point and "upload_ratio" not in by_point
    assert by_point.loc["source", "accuracy_pct"] == pytest.approx(100 * table["source"].mean())
    assert {"accuracy_pct_ci95", "accuracy_pct_lo", "accuracy_pct_hi", "uplink_bytes"} <= set(by_point)
    assert (figures / "paired_vs_source_accuracy.png").is_file()
    assert main(["plot", str(tmp_path / "p"), "--baseline", "method.name=cema", "--format", "png"]) == 2
    assert "no finished run has that value" in capsys.readouterr().err
