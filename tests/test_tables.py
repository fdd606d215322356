"""The tables `cemasim sweep` and `cemasim plot` print: units in every header, fractions as percent
(differences in points), bytes in kB/MB/GB, and no floating-point noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cemasim.results.stats import paired_differences, summarize_sweep
from cemasim.results.tables import byte_unit, paired_text, sweep_text


def _table(seeds: int = 3) -> pd.DataFrame:
    rows = []
    for method, acc, up in (("cema", 0.8251, 4_874_000.0), ("bn_adapt", 0.7854, 0.0)):
        for seed in range(seeds):
            rows.append({"status": "ok", "method.name": method, "uplink.bandwidth_mbps": 0.005, "seed": seed,
                         "accuracy": acc + 0.001 * seed, "uplink_bytes": up, "cloud_load": 0.5 + 1e-17 * seed,
                         "upload_delay_p95_s": 0.1 + seed})
    return pd.DataFrame(rows)


KEYS = ["method.name", "uplink.bandwidth_mbps"]
METRICS = ["accuracy", "uplink_bytes", "cloud_load", "upload_delay_p95_s"]


def test_the_sweep_table_says_its_units_and_prints_percent_and_megabytes():
    text = sweep_text(summarize_sweep(_table(), KEYS, METRICS), KEYS, METRICS)
    header = text.splitlines()[0]
    assert "acc %" in header and "uplink MB" in header and "cloud load %" in header and "p95 delay s" in header
    assert "82.61 ± 0.25" in text  # 100 x the mean fraction, with its 95 % CI in the same unit
    assert "4.87 ± 0.00" in text  # 4,874,000 bytes
    assert "0.005" in text and "e-" not in text and "e+" not in text  # no noise, no exponents


def test_one_seed_prints_no_interval():
    text = sweep_text(summarize_sweep(_table(seeds=1), KEYS, METRICS), KEYS, METRICS)
    assert "±" not in text and "82.51" in text


def test_paired_differences_print_in_points_with_their_sign():
    table = _table()
    diffs = paired_differences(table, KEYS, ["accuracy", "uplink_bytes"], ("method.name", "bn_adapt"))
    text = paired_text(diffs, KEYS, ["accuracy", "uplink_bytes"])
    assert "Δ acc points" in text and "+3.97 ± 0.00" in text and "Δ uplink MB" in text and "+4.87" in text


def test_bytes_take_the_unit_of_the_largest_value():
    assert byte_unit(np.array([2.1e5, 3e3])) == (1e-3, "kB")
    assert byte_unit(np.array([np.nan, 1.2e9])) == (1e-9, "GB")
    assert byte_unit(np.array([12.0])) == (1.0, "bytes")


def test_the_run_table_uses_the_same_titles_and_units():
    from cemasim.results.tables import run_text

    summary = {"accuracy": 0.8512, "samples": 15355, "uplink_bytes": 4_874_000, "downlink_bytes": 212_000,
               "cloud_load": 2.37, "upload_delay_mean_s": 1e-17, "in_flight_samples": None}
    header, row = run_text([("quickstart", summary)]).splitlines()
    assert header.split()[:6] == ["run", "acc", "%", "samples", "upload", "%"]
    assert "uplink MB" in header and "downlink kB" in header and "cloud load %" in header
    assert row.split()[:3] == ["quickstart", "85.12", "15,355"] and "237.00" in row and "4.87" in row
    assert "e-" not in row and row.split()[-1] == "-"  # no noise; a metric the run lacks prints '-'


def test_fractions_become_percent_columns_that_say_so_and_back():
    from cemasim.results.units import in_fractions, in_percent

    table = pd.DataFrame({"accuracy": [0.5], "accuracy_ci95": [0.01], "accuracy_diff_lo": [-0.02],
                          "uplink_bytes": [7], "accuracy_pass1": [0.4]})
    shown = in_percent(table)
    assert list(shown) == ["accuracy_pct", "accuracy_pct_ci95", "accuracy_pct_diff_lo", "uplink_bytes",
                           "accuracy_pass1"]
    assert shown.iloc[0].tolist() == [50.0, 1.0, -2.0, 7, 0.4]  # other columns untouched
    pd.testing.assert_frame_equal(in_fractions(shown), table)
