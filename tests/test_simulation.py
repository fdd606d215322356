"""Whole-simulation checks on small scenarios: invariants, determinism, memory sharing."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from cemasim import runner
from cemasim.methods import METHODS
from cemasim.results.summary import upload_status
from tests.conftest import small

ROOT = Path(__file__).resolve().parents[1]


def check_invariants(tables: dict[str, pd.DataFrame], n_expected: int) -> None:
    samples, uploads, refreshes = tables["samples"], tables["uploads"], tables["refreshes"]
    # every sample predicted exactly once, or missed because its device was off
    assert len(samples) + len(tables["missed"]) == n_expected
    assert not samples.duplicated(["device", "sample_id"]).any()
    # predictions happen after arrival
    assert (samples["predicted_s"] >= samples["arrival_s"]).all()
    # uploads = received + dropped + in flight
    status = upload_status(uploads)
    assert len(uploads) == sum((status == s).sum() for s in ("received", "dropped", "in_flight"))
    # only selected samples were uploaded
    sel = samples[samples["selected"]].set_index(["device", "sample_id"]).index
    assert uploads.set_index(["device", "sample_id"]).index.isin(sel).all()
    # parameter versions never decrease on a device (in prediction order)
    for _, dev in samples.sort_values(["device", "predicted_s", "sample_id"]).groupby("device"):
        assert dev["param_version"].is_monotonic_increasing
    if len(refreshes):
        applied = refreshes[refreshes["applied_s"].notna()]
        # a refresh is never applied before the uploads that produced it were sent
        assert (applied["applied_s"] >= applied["uploads_sent_max_s"]).all()
        assert (applied["applied_s"] >= applied["created_s"]).all()
        for _, dev in applied.sort_values("applied_s").groupby("device"):
            assert dev["version"].is_monotonic_increasing


@pytest.mark.parametrize("method", METHODS.names())
def test_invariants_hold_for_every_method(method):
    # CoTTA augments each low-confidence batch 32 times: half the stream keeps its test at a few seconds
    sc = small(f"method.name={method}", *(["duration_s=20"] if method == "cotta" else []))
    tables, summary, _ = runner.simulate(sc)
    n_expected = _planned_samples(sc)
    check_invariants(tables, n_expected)
    assert summary["samples"] == n_expected
    built = METHODS.get(method)(sc, 10)
    if built.uses_cloud:
        assert summary["uploaded_samples"] > 0 and summary["downlink_bytes"] > 0
        assert (summary["refreshes"] > 0) == (built.cloud_worker in ("cema", "offload"))
    else:
        assert summary["uplink_bytes"] == 0 and summary["uploaded_samples"] == 0


def test_invariants_under_congestion_and_budget():
    """A slow uplink with a tiny queue and a byte budget: drops of both causes are counted."""
    sc = small("method.name=upload_all", "uplink.bandwidth_mbps=0.05", "upload.queue_capacity=8",
               "upload.budget_bytes=20000", "upload.budget_window_s=5", "upload.encoding=raw")
    tables, summary, _ = runner.simulate(sc)
    check_invariants(tables, _planned_samples(sc))
    assert summary["drops_queue_full"] > 0 and summary["drops_budget"] > 0
    assert summary["dropped_samples"] == summary["drops_queue_full"] + summary["drops_budget"]
    assert summary["upload_wait_mean_s"] > 0.05


def test_same_seed_identical_tables_different_seed_differs():
    a, _, _ = runner.simulate(small())
    b, _, _ = runner.simulate(small())
    c, _, _ = runner.simulate(small(seed=7))
    for name in ("samples", "uploads", "refreshes"):
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not a["samples"]["pred"].equals(c["samples"]["pred"]) or len(a["samples"]) != len(c["samples"])


def test_devices_share_one_backbone_and_hold_small_state():
    from cemasim.assembly import assemble
    from cemasim.models import norm
    from cemasim.sim.fleet import Fleet

    fleet = Fleet(assemble(small("fleet.devices=3")))
    assert len({id(d.model) for d in fleet.devices}) == 1
    per_device = norm.state_bytes(fleet.devices[0].state)
    backbone = sum(p.numel() * p.element_size() for p in fleet.edge_model.parameters())
    assert per_device < 0.1 * backbone


def test_payload_bytes_are_real_encoder_output():
    """PNG payloads are smaller than raw pixels on average; raw is exactly C*H*W bytes."""
    raw, _, _ = runner.simulate(small("method.name=upload_all", "upload.encoding=raw"))
    png, _, _ = runner.simulate(small("method.name=upload_all", "upload.encoding=png"))
    assert set(raw["uploads"]["size_bytes"]) == {28 * 28}
    assert png["uploads"]["size_bytes"].nunique() > 10


def test_fp16_refresh_halves_downlink_payload():
    f32, _, _ = runner.simulate(small("cloud.refresh_codec=float32"))
    f16, _, _ = runner.simulate(small("cloud.refresh_codec=float16"))
    assert f16["refreshes"]["size_bytes"].iloc[0] * 2 == f32["refreshes"]["size_bytes"].iloc[0]


def test_running_norm_mode_carries_statistics():
    """norm_mode=running sends affine + running statistics: twice the affine-only payload."""
    batch, _, _ = runner.simulate(small("method.norm_mode=batch"))
    running, _, _ = runner.simulate(small("method.norm_mode=running"))
    assert running["refreshes"]["size_bytes"].iloc[0] == 2 * batch["refreshes"]["size_bytes"].iloc[0]


def _planned_samples(sc) -> int:
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    fleet = Fleet(assemble(sc))
    return fleet.n_samples + len(fleet.recorder.missed)  # every arrival (those planned as missed included)


def test_cema_adapts_clearly_above_source():
    """On corrupted streams CEMA's accuracy is clearly above the frozen source model's."""
    source, _, _ = runner.simulate(small("method.name=source"))
    cema, _, _ = runner.simulate(small("method.name=cema"))
    assert cema["samples"]["correct"].mean() > source["samples"]["correct"].mean() + 0.05


# sweep files are not scenarios; scenarios/paper needs the real benchmark data (validated only)
SCENARIO_FILES = [p for p in sorted(ROOT.glob("scenarios/**/*.yaml"))
                  if "grid" not in p.read_text() and p.parent.name != "paper"]


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.name for p in SCENARIO_FILES])
def test_every_scenario_smoke_runs_shortened(path):
    from cemasim import scenario

    sc = scenario.load(path, ["duration_s=20", "drain_s=30", "output.plots=false", "compute_device=cpu"])
    tables, summary, _ = runner.simulate(sc)
    check_invariants(tables, _planned_samples(sc))
    assert summary["samples"] > 0


def test_tta_on_the_edge_adapts_locally_and_uploads_nothing():
    sc = small("method.name=tent", "method.deployment=edge", "fleet.profile=jetson-nano", "method.lr=0.01")
    tables, summary, _ = runner.simulate(sc)
    check_invariants(tables, _planned_samples(sc))
    assert summary["uplink_bytes"] == 0 and summary["refreshes"] == 0
    assert tables["samples"]["param_version"].max() > 0  # local steps advance the version


def test_edge_training_needs_a_capable_profile():
    from cemasim.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot"):
        small("method.name=tent", "method.deployment=edge", "fleet.profile=rpi4")


def test_cloud_inference_answers_arrive_after_the_round_trip():
    sc = small("method.name=cloud_inference", "uplink.latency_ms=500", "downlink.latency_ms=500")
    tables, summary, _ = runner.simulate(sc)
    check_invariants(tables, _planned_samples(sc))
    answered = tables["samples"][tables["samples"]["pred"] >= 0]
    assert (answered["latency_s"] >= 1.0).all()  # at least both one-way latencies
    assert summary["downlink_bytes"] == tables["answers"]["size_bytes"].sum()


def test_foundation_scope_device_gives_each_device_its_own_teacher():
    shared, _, _ = runner.simulate(small("cloud.foundation_scope=shared"))
    per_device, _, _ = runner.simulate(small("cloud.foundation_scope=device"))
    check_invariants(per_device, len(shared["samples"]))
    assert not shared["samples"]["entropy"].equals(per_device["samples"]["entropy"])


@pytest.mark.parametrize("method, batch", [("cema", 1), ("cema", 16), ("source", 1), ("bn_adapt", 1), ("bn_adapt", 16)])
def test_cross_device_batching_gives_the_same_results(method, batch):
    """Merged forward passes (devices predicting at the same instant) reproduce the unbatched run: every
    table equal, float for float."""
    aligned = ["arrivals.process=constant", "arrivals.aligned=true", "fleet.devices=4", f"method.name={method}",
               f"arrivals.batch_size={batch}", "duration_s=8" if batch == 1 else "duration_s=40"]
    plain, _, _ = runner.simulate(small(*aligned))
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    fleet = Fleet(assemble(small(*aligned, "fleet.batch_across_devices=true")))
    result = fleet.run()
    merged = result.recorder.tables()
    assert fleet.batcher.merged > fleet.batcher.calls > 0  # merging really happened
    assert set(plain) == set(merged)
    for name in plain:
        pd.testing.assert_frame_equal(plain[name], merged[name], check_exact=True, obj=name)


@pytest.mark.parametrize("method, extra", [("source", []), ("bn_adapt", []), ("cema", []),
                                           ("cema", ["shift.protocol=reset", "fleet.devices=3"]), ("rotta", [])])
def test_predicting_ahead_gives_the_same_results(method, extra):
    """Batch-1 devices predicting their next samples in one pass (fleet.predict_ahead) record the run
    without it, float for float: refreshes and segment resets in the middle of a window included (a
    refresh restarts the window at one sample: a pass of one device, which crashed RoTTA's offloaded run)."""
    sets = ["arrivals.batch_size=1", "duration_s=12", f"method.name={method}", *extra]
    plain, _, _ = runner.simulate(small(*sets, "fleet.predict_ahead=0"))
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    fleet = Fleet(assemble(small(*sets, "fleet.predict_ahead=32")))
    ahead = fleet.run().recorder.tables()
    windows = [d.ahead for d in fleet.devices if d.ahead is not None]
    assert len(windows) == len(fleet.devices) and sum(w.predicted for w in windows) >= len(plain["samples"])
    # predictions really went together; a CEMA device's refreshes cut many windows short
    assert sum(w.passes for w in windows) < len(plain["samples"]) / (1.5 if method == "cema" else 4)
    if method in ("cema", "rotta"):
        assert len(plain["refreshes"]) and any(w.window < 32 for w in windows)
    for name in plain:
        pd.testing.assert_frame_equal(plain[name], ahead[name], check_exact=True, obj=name)


def test_predicting_ahead_applies_only_where_it_is_exact():
    """Edge adaptation, statistics written by the forward, logits that depend on the batch (LAME) and
    batches of several samples keep their own path."""
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    for sets in (["method.name=tent", "method.deployment=edge", "fleet.profile=jetson-orin-nano"],
                 ["method.name=onda"], ["method.name=lame"], ["method.name=source", "arrivals.batch_size=2"],
                 ["method.name=cotta"]):  # offloaded CoTTA refreshes every weight: no per-device merged pass
        fleet = Fleet(assemble(small("arrivals.batch_size=1", *sets, "fleet.predict_ahead=8",
                                     "fleet.batch_across_devices=true")))
        assert all(d.ahead is None for d in fleet.devices), sets
        if "method.name=cotta" in sets:
            assert all(d.batcher is None for d in fleet.devices)
    fleet = Fleet(assemble(small("arrivals.batch_size=1", "fleet.predict_ahead=8")))
    assert all(d.ahead is not None for d in fleet.devices)


def test_selection_thresholds_do_not_touch_the_clouds_weighting():
    """cloud.e0 is its own key: CEMA selecting everything (E_max huge, no E_min) is upload_all, bit for bit,
    and sweeping selection.e_max leaves the cloud's loss weights alone."""
    from cemasim.assembly import cloud_config
    from cemasim.runner import simulate

    everything = ["selection.e_max=1000", "selection.e_min=null", "selection.dynamic_e_max=false"]
    cema = simulate(small("method.name=cema", *everything, seed=2))[0]
    upload_all = simulate(small("method.name=upload_all", seed=2))[0]
    for name in ("samples", "uploads", "refreshes"):
        a, b = cema[name], upload_all[name]
        cols = [c for c in a.columns if c in b.columns and c not in ("selected", "e_max")]
        pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))
    assert cloud_config(small("selection.e_max=0.9"), 10).e0 == cloud_config(small(), 10).e0
    assert cloud_config(small("cloud.e0=0.5"), 10).e0 == pytest.approx(0.5 * math.log(10))
