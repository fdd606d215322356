"""Issue 13's metrics against hand computations: cloud utilisation over the arrival period, GPU
queue wait, uploads trained on / never used, refresh delay, and the communication-accuracy curve
that ends at summary's uplink bytes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cemasim import runner
from cemasim.results.plots import cumulative_accuracy_vs_uplink
from cemasim.results.summary import cloud_keys, summarize, uplink_sent
from tests.conftest import small

NAN = math.nan


def jobs(*rows):
    return pd.DataFrame(rows, columns=["device", "kind", "requested_s", "start_s", "end_s", "samples"])


def uploads(*rows):
    """received_s, trained_s per upload."""
    return pd.DataFrame(rows, columns=["received_s", "trained_s"])


def test_cloud_keys_by_hand():
    # 2 GPUs, arrivals over [0, 10]: jobs busy 2 + 3 s inside, one runs 9 -> 13 (1 s inside, 3 s after)
    j = jobs((0, "chunk", 1.0, 1.0, 3.0, 32), (1, "chunk", 2.0, 4.0, 7.0, 32), (0, "replay", 8.0, 9.0, 13.0, 96))
    u = uploads((0.5, 3.0), (0.7, 3.0), (1.0, NAN), (NAN, NAN))  # the last one never arrived
    k = cloud_keys(j, u, cloud_busy_s=2 + 3 + 4, gpus=2, arrival_period_s=10.0)
    assert k["cloud_utilization"] == pytest.approx((2 + 3 + 1) / 20)
    assert k["cloud_load"] == pytest.approx(9 / 20)
    assert k["gpu_wait_mean_s"] == pytest.approx((0 + 2 + 1) / 3)
    assert k["gpu_wait_p95_s"] == pytest.approx(np.percentile([0, 2, 1], 95))
    assert (k["uploads_trained"], k["uploads_never_used"]) == (2, 1)
    assert k["upload_to_training_mean_s"] == pytest.approx((2.5 + 2.3) / 2)


def test_utilisation_does_not_depend_on_the_drain():
    """The same GPU-seconds read the same utilisation however long the run drains afterwards."""
    j = jobs((0, "chunk", 1.0, 1.0, 3.0, 32))
    u = uploads()
    short = cloud_keys(j, u, 2.0, 1, arrival_period_s=10.0)
    base = {"samples": pd.DataFrame({"correct": [True], "selected": [False], "param_age_s": [0.0],
                                     "latency_s": [0.0]}),
            "uploads": pd.DataFrame(columns=["tx_start_s", "enqueued_s", "received_s", "dropped", "size_bytes",
                                             "device"]),
            "reports": pd.DataFrame(columns=["tx_start_s", "size_bytes", "device"]),
            "refreshes": pd.DataFrame(columns=["applied_s", "created_s", "dropped", "tx_start_s", "size_bytes"]),
            "cloud_jobs": j}
    for sim_time in (12.0, 500.0):
        s = summarize(base, sim_time, 1.0, 1, 2.0, 1, arrival_period_s=10.0)
        assert s["cloud_utilization"] == short["cloud_utilization"] == 0.2


@pytest.fixture(scope="module")
def run():
    sc = small("method.name=upload_all", "uplink.bandwidth_mbps=0.05", "cloud.gpus=1")
    tables, summary, _ = runner.simulate(sc)
    return sc, tables, summary


def test_summary_metrics_on_a_small_run_by_hand(run):
    sc, tables, summary = run
    j, up = tables["cloud_jobs"], tables["uploads"]
    inside = (j["end_s"].clip(upper=sc.duration_s) - j["start_s"].clip(upper=sc.duration_s)).sum()
    assert summary["cloud_utilization"] == pytest.approx(inside / sc.duration_s)
    assert summary["cloud_load"] == pytest.approx((j["end_s"] - j["start_s"]).sum() / sc.duration_s)
    assert summary["gpu_wait_mean_s"] == pytest.approx((j["start_s"] - j["requested_s"]).mean())
    received = up[up["received_s"].notna()]
    assert summary["uploads_trained"] + summary["uploads_never_used"] == summary["uploaded_samples"] == len(received)
    # every trained upload belongs to a chunk job that ended when it says, after the upload arrived
    trained = received[received["trained_s"].notna()]
    assert set(trained["trained_s"]) <= set(j.loc[j["kind"] == "chunk", "end_s"])
    assert (trained["trained_s"] >= trained["received_s"]).all()
    assert summary["uploads_trained"] == sc.cloud.chunk_size * int((j["kind"] == "chunk").sum())
    refreshes = tables["refreshes"].dropna(subset=["applied_s"])
    assert summary["refresh_delay_p95_s"] == pytest.approx(
        np.percentile(refreshes["applied_s"] - refreshes["created_s"], 95))


def test_comm_accuracy_curve_counts_everything_on_the_wire_and_ends_at_the_summary(run):
    _, tables, summary = run
    mb, acc = cumulative_accuracy_vs_uplink(tables)
    assert mb[-1] * 1e6 == pytest.approx(summary["uplink_bytes"])
    assert acc[-1] == pytest.approx(100 * summary["accuracy"])
    assert np.all(np.diff(mb) >= 0)
    assert uplink_sent(tables)["size_bytes"].sum() == summary["uplink_bytes"]
    reports = tables["reports"]
    assert summary["uplink_bytes"] > tables["uploads"]["size_bytes"][tables["uploads"]["tx_start_s"].notna()].sum()
    assert len(reports) > 0


# ---- figures chosen by the study ---------------------------------------------------------------------
def fake_sweep(key: str, values: list, methods: list[str], seeds: int = 2, delay=lambda v: 1.0) -> pd.DataFrame:
    rows = []
    for m in methods:
        for v in values:
            for seed in range(seeds):
                rows.append({"status": "ok", "method.name": m, key: v, "seed": seed, "accuracy": 0.7 + 0.01 * seed,
                             "uplink_bytes": 1e6 * (1 + v), "uploaded_samples": 100, "upload_delay_mean_s": delay(v),
                             "param_age_mean_s": 1.0, "cloud_utilization": 0.1})
    return pd.DataFrame(rows)


def drawn(monkeypatch):
    """Capture every figure sweep_figures saves: stem -> the figure's axes."""
    from cemasim.results import figures

    saved = {}

    def save(fig, out, stem, formats):
        saved[stem] = fig.axes[0]  # still readable once the figure is closed
        figures._pyplot().close(fig)
        return [out / f"{stem}.png"]

    monkeypatch.setattr(figures, "_save", save)
    return saved


def test_comm_accuracy_and_pareto_only_when_the_swept_keys_change_communication(tmp_path, monkeypatch):
    from cemasim.results.figures import changes_communication, sweep_figures

    saved = drawn(monkeypatch)
    # a table's swept keys are all its keys: one method when only the fleet size is swept
    for keys, methods in ((["fleet.devices"], ["cema"]), (["fleet.devices", "method.name"], ["cema", "upload_all"])):
        sweep_figures(fake_sweep("fleet.devices", [4, 16, 64], methods), keys, tmp_path)
        assert "accuracy_vs_fleet_devices" in saved
        assert not any(s.startswith(("comm_accuracy", "pareto")) for s in saved)  # fleet sizes are not a front
        saved.clear()
    sweep_figures(fake_sweep("uplink.bandwidth_mbps", [0.01, 1.0], ["cema", "upload_all"]),
                  ["uplink.bandwidth_mbps", "method.name"], tmp_path)
    assert {"comm_accuracy_uplink_bytes", "pareto_accuracy_uplink"} <= set(saved)
    assert changes_communication(["selection.e_max"]) and not changes_communication(["cloud.gpus", "seed"])


def test_delays_spanning_decades_get_a_log_axis_and_legends_name_drawn_lines(tmp_path, monkeypatch):
    from cemasim.results.figures import sweep_figures

    saved = drawn(monkeypatch)
    table = fake_sweep("uplink.bandwidth_mbps", [0.01, 0.1, 1.0], ["cema", "source"], delay=lambda v: 0.05 / v)
    table.loc[table["method.name"] == "source", "upload_delay_mean_s"] = np.nan  # uploads nothing
    sweep_figures(table, ["uplink.bandwidth_mbps", "method.name"], tmp_path)
    delay = saved["upload_delay_mean_s_vs_uplink_bandwidth_mbps"]
    assert delay.get_yscale() == "log" and delay.get_xscale() == "log"
    assert [t.get_text() for t in delay.get_legend().get_texts()] == ["cema"]  # no entry for the undrawn line
    assert saved["accuracy_vs_uplink_bandwidth_mbps"].get_yscale() == "linear"
    cema = [line for line in saved["accuracy_vs_uplink_bandwidth_mbps"].get_lines() if line.get_label() == "cema"]
    others = [line for line in saved["accuracy_vs_uplink_bandwidth_mbps"].get_lines() if line.get_label() != "cema"]
    assert cema and all(cema[0].get_zorder() > line.get_zorder() for line in others)  # CEMA drawn on top


def test_a_fleet_sweep_shows_where_the_cloud_saturates(tmp_path, monkeypatch):
    """4/32/128 devices on a small cloud: the load figure draws the 100 % line, the GPU wait and the
    upload-to-training time get figures, and device counts spanning more than a decade a log axis."""
    from cemasim.results.figures import sweep_figures

    saved = drawn(monkeypatch)
    table = fake_sweep("fleet.devices", [4, 32, 128], ["cema"])
    table["cloud_load"] = table["fleet.devices"] * 0.018  # 228 % at 128 devices
    table["gpu_wait_mean_s"] = table["fleet.devices"] * 0.36
    table["upload_to_training_mean_s"] = table["fleet.devices"] * 0.5
    table["uploads_never_used"] = (table["fleet.devices"] - 60).clip(lower=0) * 30
    sweep_figures(table, ["fleet.devices"], tmp_path)
    load = saved["cloud_load_vs_fleet_devices"]
    assert any(list(line.get_ydata()) == [100, 100] for line in load.get_lines())  # the saturation line
    assert load.get_xscale() == "log" and [t.get_text() for t in load.get_xticklabels()] == ["4", "32", "128"]
    assert {"gpu_wait_mean_s_vs_fleet_devices", "upload_to_training_mean_s_vs_fleet_devices",
            "uploads_never_used_vs_fleet_devices"} <= set(saved)
    saved.clear()  # a bandwidth sweep at a few percent load: no saturation figures, the line replaced by a note
    sweep_figures(fake_sweep("uplink.bandwidth_mbps", [0.01, 1.0], ["cema"]), ["uplink.bandwidth_mbps"], tmp_path)
    assert not any(s.startswith(("gpu_wait", "upload_to_training")) for s in saved)
    util = saved["cloud_utilization_vs_uplink_bandwidth_mbps"]
    assert not any(list(line.get_ydata()) == [100, 100] for line in util.get_lines())
    assert any("off the axis" in t.get_text() for t in util.texts)


def test_run_plots_mark_segment_boundaries(run):
    from cemasim.results.plots import segment_changes

    _sc, tables, _ = run
    changes = segment_changes(tables["samples"])
    # small(): gaussian_noise for 20 s, then fog: one boundary, at the first arrival after 20 s
    first = tables["samples"]
    first = first[first["device"] == 0]
    assert len(changes) == 1 and changes[0] == first.loc[first["arrival_s"] >= 20.0, "arrival_s"].min()


def test_backlog_counts_the_uploads_of_a_job_waiting_for_the_gpu():
    """scheduler: backlog ranks devices by uploads waiting at the cloud: inbox, unfilled chunk, and the
    chunk whose job waits for the GPU (before, that chunk vanished from the count while queued)."""
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    sc = small("fleet.devices=4", "method.name=upload_all", "cloud.scheduler=backlog", "cloud.gpus=1",
               "cloud.profile={peak_flops_per_s: 2.0e+10, utilization: 0.5, overhead_s: 0.01, can_train: true}")
    fleet = Fleet(assemble(sc))
    seen = 0
    while fleet.env.peek() <= sc.duration_s and seen < 20:
        fleet.env.step()
        for w in fleet.cloud.workers.values():
            if w.queued:
                inbox = sum(type(m).__name__ == "Upload" for m in w.inbox.items)
                assert w.queued == sc.cloud.chunk_size
                assert w.backlog() == inbox + len(w.pending) + sc.cloud.chunk_size
                seen += 1
    assert seen >= 20, "the cloud must be busy enough that jobs wait"
