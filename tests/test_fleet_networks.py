"""Heterogeneous fleets, traces, outages, availability, loss, shared links, scheduling and energy in
whole runs (small scenarios; closed forms live in test_network.py and test_scheduler.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cemasim.errors import ConfigError
from cemasim.runner import simulate
from cemasim.scenario.classes import class_sizes, device_classes
from tests.conftest import small


# ---- classes -----------------------------------------------------------------------------------
def test_class_sizes_by_count_and_largest_remainder():
    assert class_sizes([{"count": 3}, {"fraction": 0.5}, {"fraction": 0.25}], 10) == [3, 5, 3]
    assert class_sizes([{"fraction": 1 / 3}, {"fraction": 1 / 3}, {"fraction": 1 / 3}], 10) == [4, 3, 3]
    assert class_sizes([{"fraction": 0.5}], 7) == [4]


def test_classes_split_the_fleet_and_leave_the_rest_to_default():
    sc = small("fleet.devices=5", "fleet.classes=[{name: cams, count: 2, uplink: {bandwidth_mbps: 1}}, "
               "{name: phones, fraction: 0.2, profile: jetson-nano, energy: {radio: lte}}]")
    classes = device_classes(sc)
    assert [(c.name, list(c.devices)) for c in classes] == [("cams", [0, 1]), ("phones", [2]), ("default", [3, 4])]
    cams, phones, default = (c.view for c in classes)
    assert cams.uplink.bandwidth_mbps == 1.0 and cams.uplink.latency_ms == sc.uplink.latency_ms
    assert phones.fleet.profile == "jetson-nano" and phones.energy.radio == "lte"
    assert default.uplink.bandwidth_mbps == sc.uplink.bandwidth_mbps


def test_class_problems_name_their_yaml_path():
    with pytest.raises(ConfigError) as err:
        small("fleet.devices=3", "fleet.classes=[{name: a, count: 2, fraction: 0.5, uplink: {bandwith_mbps: 1}}, "
              "{name: a, count: 2, profile: rpi5, energy: {radio: lora}, availability: {process: trace}}]")
    text = "\n".join(err.value.problems)
    for expected in ("fleet.classes[0]: give exactly one of count or fraction",
                     "fleet.classes[0].uplink.bandwith_mbps: unknown key; did you mean 'bandwidth_mbps'?",
                     "fleet.classes[1].name: 'a' is taken",
                     "fleet.classes[1].profile: device profile 'rpi5' is unknown",
                     "fleet.classes[1].energy.radio:",
                     "fleet.classes[1].availability.trace: required",
                     "fleet.classes: the classes take 4 devices but fleet.devices is 3"):
        assert expected in text, expected


def test_missing_and_malformed_trace_files_are_reported_with_their_path(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,mbps\n0,5\n1,-2\n")
    with pytest.raises(ConfigError) as err:
        small(f"uplink.trace={tmp_path / 'none.csv'}", f"downlink.trace={bad}")
    text = "\n".join(err.value.problems)
    assert "uplink.trace: no such file" in text and "downlink.trace:" in text and "line 3" in text


# ---- runs --------------------------------------------------------------------------------------
def test_constant_trace_file_reproduces_the_constant_link_in_a_whole_run(tmp_path):
    trace = tmp_path / "flat.csv"
    trace.write_text("time_s,mbps\n" + "".join(f"{t},2\n" for t in range(0, 50, 5)))
    base, _, _ = simulate(small("uplink.bandwidth_mbps=2"))
    traced, _, _ = simulate(small(f"uplink.trace={trace}"))
    for name in ("samples", "uploads", "refreshes"):
        a, b = (base[name].drop(columns=["image"], errors="ignore"),
                traced[name].drop(columns=["image"], errors="ignore"))
        assert a.equals(b), name


def test_an_off_device_neither_predicts_nor_receives():
    sc = small("availability.process=onoff", "availability.on_s=15", "availability.off_s=8",
               "availability.in_flight=lost", "downlink.latency_ms=400", "downlink.bandwidth_mbps=0.05")
    tables, summary, _fleet_result = simulate(sc)
    samples, missed = tables["samples"], tables["missed"]
    assert len(missed) > 0 and set(missed["cause"]) == {"device_off"}
    assert summary["missed_samples"] == len(missed)
    devices = tables["devices"]
    assert (devices["available_s"] < sc.duration_s + sc.drain_s).all()
    from cemasim.assembly import down_spec
    from cemasim.net.intervals import AVAILABILITY
    from cemasim.sim.link_factory import off_intervals

    availability = down_spec(sc.availability, AVAILABILITY)
    for d in range(sc.fleet.devices):
        off = off_intervals(availability, sc.seed, d, sc.duration_s + sc.drain_s)
        assert not off.covers(samples.loc[samples["device"] == d, "predicted_s"].to_numpy()).any()
        lost = missed.loc[missed["device"] == d, "arrival_s"].to_numpy()
        # missed: arrived while off, or in a batch that closed (at most max_wait_s later) while off
        later = np.array([off.next_start(t) - t <= sc.arrivals.max_wait_s for t in lost], bool)
        assert (off.covers(lost) | later).all()
        applied = tables["refreshes"].query("device == @d and applied_s == applied_s")["applied_s"].to_numpy()
        assert not off.covers(applied).any()
    assert set(summary["refresh_drops"]) <= {"device_off", "stale"}  # the link-level case: test_network.py


def test_loss_retransmits_and_drops_after_the_retries():
    tables, summary, _ = simulate(small("uplink.loss.model=bernoulli", "uplink.loss.rate=0.3",
                                        "uplink.loss.max_retries=1"))
    uploads = tables["uploads"]
    assert summary["retransmissions"] > 0 and summary["drops"].get("loss", 0) > 0
    lost = uploads[uploads["dropped"] == "loss"]
    assert (lost["attempts"] == 2).all() and (lost["wire_bytes"] == 2 * lost["size_bytes"]).all()
    # about 0.3^2 of the uploads sent are lost for good
    sent = uploads[uploads["attempts"] > 0]
    assert len(lost) / len(sent) == pytest.approx(0.09, abs=0.04)


def test_a_run_whose_lost_attempts_take_no_time_ends_at_the_retry_bound():
    """Loss rate 1 on both links, no retry timeout, no latency, infinite bandwidth: every attempt takes zero
    simulated time, so only the bound on max_retries (validation) ends each message, and so the run."""
    never = [f"{link}.{key}" for link in ("uplink", "downlink") for key in (
        "bandwidth_mbps=null", "latency_ms=0", "loss.retry_timeout_ms=0", "loss.max_retries=100")]
    tables, summary, _ = simulate(small(*never, "uplink.loss.model=bernoulli", "uplink.loss.rate=1",
                                        "downlink.loss.model=gilbert_elliott", "downlink.loss.p_good_to_bad=1",
                                        "downlink.loss.p_bad_to_good=0", "downlink.loss.loss_good=1",
                                        "downlink.loss.loss_bad=1", "duration_s=10", "drain_s=5"))
    uploads = tables["uploads"]
    assert len(uploads) and (uploads["dropped"] == "loss").all() and (uploads["attempts"] == 101).all()
    assert summary["refreshes"] == 0


def test_a_narrow_shared_segment_delays_uploads():
    _, free, _ = simulate(small("uplink.bandwidth_mbps=5"))
    _, shared, _ = simulate(small("uplink.bandwidth_mbps=5", "uplink.shared_mbps=0.6"))
    assert shared["upload_delay_mean_s"] > 2 * free["upload_delay_mean_s"]


def test_packet_headers_and_a_fifo_segment_reach_the_run():
    """uplink.packet_header_bytes puts each segment's headers on the wire (wire_bytes; the payload stays
    size_bytes and uplink_bytes); shared_discipline: fifo changes how a busy segment serves transfers."""
    tables, plain, _ = simulate(small("uplink.bandwidth_mbps=5"))
    tables_h, headers, _ = simulate(small("uplink.bandwidth_mbps=5", "uplink.packet_header_bytes=66",
                                          "uplink.mss_bytes=500"))
    up = tables_h["uploads"]
    segments = -(-up.size_bytes // 500)
    assert (up.wire_bytes == up.size_bytes + 66 * segments).all() and (segments > 1).any()
    assert up.size_bytes.equals(tables["uploads"].size_bytes) and headers["uplink_bytes"] == plain["uplink_bytes"]
    assert headers["upload_delay_mean_s"] > plain["upload_delay_mean_s"]
    busy = ("uplink.bandwidth_mbps=null", "uplink.shared_mbps=0.05")
    _, fair, _ = simulate(small(*busy))
    _, fifo, _ = simulate(small(*busy, "uplink.shared_discipline=fifo"))
    assert fifo["upload_delay_p95_s"] != fair["upload_delay_p95_s"]
    with pytest.raises(ConfigError) as err:
        small("uplink.packet_header_bytes=-1", "uplink.mss_bytes=0", "downlink.shared_discipline=lifo")
    text = "\n".join(err.value.problems)
    for expected in ("uplink.packet_header_bytes: must be >= 0", "uplink.mss_bytes: must be > 0",
                     "downlink.shared_discipline:"):
        assert expected in text, expected


@pytest.mark.parametrize("policy", ["fifo", "round_robin", "staleness", "backlog"])
def test_every_scheduler_keeps_the_invariants(policy):
    tables, summary, _ = simulate(small(f"cloud.scheduler={policy}", "cloud.profile=rpi4", "fleet.devices=3"))
    jobs = tables["cloud_jobs"]
    assert len(jobs) > 0 and (jobs["start_s"] >= jobs["requested_s"]).all()
    # one GPU: jobs never overlap
    order = jobs.sort_values("start_s")
    assert (order["start_s"].to_numpy()[1:] >= order["end_s"].to_numpy()[:-1] - 1e-9).all()
    assert summary["samples"] == len(tables["samples"])


def test_energy_in_summary_matches_the_tables():
    tables, summary, _ = simulate(small("energy.radio=lte", "energy.compute_w=5"))
    uplink_bits = 8 * (tables["uploads"]["wire_bytes"].sum() + tables["reports"]["wire_bytes"].sum())
    busy = (tables["compute"]["end_s"] - tables["compute"]["start_s"]).sum()
    assert summary["energy_tx_j"] == pytest.approx(uplink_bits * 438.39e-9)
    assert summary["energy_compute_j"] == pytest.approx(busy * 5.0)
    assert summary["cloud_energy_j"] > 0
    assert np.isclose(summary["energy_j"], summary["energy_compute_j"] + summary["energy_tx_j"]
                      + summary["energy_rx_j"])


def test_every_network_key_reaches_the_run(tmp_path):
    """Trace format/bin/end/phase, group_size, ingress/egress, trace-driven outages and availability,
    retry timeout and the explicit energy figures, each seen in the built fleet or the run's tables."""
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    mahimahi = tmp_path / "up.trace"  # 0-0.5 s: 2 packets/ms (24 Mbit/s), then 1 packet/ms (12 Mbit/s)
    mahimahi.write_text("".join(f"{t}\n{t}\n" for t in range(1, 501)) + "".join(f"{t}\n" for t in range(501, 1001)))
    outages, offs = tmp_path / "outages.csv", tmp_path / "off.csv"
    outages.write_text("start_s,end_s\n10,15\n")
    offs.write_text("device,start_s,end_s\n0,20,25\n")
    sc = small(f"uplink.trace={mahimahi}", "uplink.trace_format=mahimahi", "uplink.trace_bin_ms=50",
               "uplink.trace_end=hold", "uplink.trace_phase=zero", "uplink.shared_mbps=5", "uplink.group_size=1",
               "cloud.ingress_mbps=1", "cloud.egress_mbps=1", "uplink.outages.process=trace",
               f"uplink.outages.trace={outages}", "availability.process=trace", f"availability.trace={offs}",
               "uplink.loss.model=bernoulli", "uplink.loss.rate=0.2", "uplink.loss.retry_timeout_ms=50",
               "energy.tx_nj_per_bit=100", "energy.rx_nj_per_bit=10", "energy.compute_nj_per_flop=0.5")
    fleet = Fleet(assemble(sc))
    up0, up1 = fleet.devices[0].uplink, fleet.devices[1].uplink
    assert [r.name for r in up0.shared] == ["default/uplink/0", "cloud_ingress"]
    assert [r.name for r in up1.shared] == ["default/uplink/1", "cloud_ingress"]
    trace = up1.access.inner  # gated by the outage file
    assert (trace.rate_at(0.1), trace.rate_at(0.6), trace.rate_at(50.0)) == (24e6, 12e6, 12e6)
    assert up1.access.rate_at(12.0) == 0.0 and up1.retransmission.retry_s == pytest.approx(0.05)

    tables, summary, _ = simulate(sc)
    uploads, missed = tables["uploads"], tables["missed"]
    ends = uploads["tx_end_s"].dropna()
    assert not ((ends > 10) & (ends < 15)).any()  # nothing leaves the device during the outage
    # arrived while off, or earlier in a batch that closed while off
    assert set(missed["device"]) == {0} and missed["arrival_s"].between(20 - sc.arrivals.max_wait_s, 25).all()
    wire = uploads["wire_bytes"].sum() + tables["reports"]["wire_bytes"].sum()
    assert summary["energy_tx_j"] == pytest.approx(8 * wire * 100e-9)
    assert summary["energy_compute_j"] == pytest.approx(tables["compute"]["flops"].sum() * 0.5e-9)
    down = tables["refreshes"]["wire_bytes"].sum()
    assert summary["energy_rx_j"] == pytest.approx(8 * down * 10e-9)


def test_compute_power_defaults_to_the_profile_active_w():
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    def compute_w(*sets: str) -> list[float]:
        return Fleet(assemble(small(*sets))).recorder.tables()["devices"]["compute_w"].tolist()

    assert compute_w("fleet.profile={peak_flops_per_s: 1.0e10, active_w: 3.5}") == [3.5, 3.5]
    assert compute_w("fleet.profile=rpi4", "energy.compute_w=2") == [2.0, 2.0]
