"""Energy accounting on hand-built tables: every expected value is worked out by hand below."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cemasim.cli import main
from cemasim.net.radio import RADIOS
from cemasim.results.energy import device_energy, energy_summary, energy_timeline
from cemasim.results.summary import summarize, timeline

NAN = math.nan
MSG = ["device", "size_bytes", "wire_bytes", "enqueued_s", "tx_start_s", "tx_end_s", "received_s", "dropped",
       "attempts"]

# hand-computed per-device energies (J); bin_s = 10
# device 0 (phone, lte, 2 nJ/FLOP): compute 1e9*2e-9 + 3e8*2e-9 = 2.0 + 0.6 (the W model would say 0.6 s * 5 W = 3)
#   tx 8*(1000 + 2000 + 16) bits * 438.39 nJ; rx 8*(4000 + 300) bits * 51.97 nJ
# device 1 (camera, wifi, 10 W): compute 0.25 s*10 + 0.5 s*10 = 2.5 + 5.0
#   tx 8*(1000 + 0 + 16) bits * 283.17 nJ (the lost-for-good upload put 2x its size on the wire)
#   rx 8*(4000 + 1500) bits * 137.01 nJ (a stale refresh and an outage-cut one still cost the receiver)
# device 2 (phone, no radio, 6.4 W): compute 0.5 s * 6.4 = 3.2; its 1000-byte upload costs nothing
COMPUTE = {0: 2.6, 1: 7.5, 2: 3.2}
TX = {0: 8 * 3016 * 438.39e-9, 1: 8 * 1016 * 283.17e-9, 2: 0.0}
RX = {0: 8 * 4300 * 51.97e-9, 1: 8 * 5500 * 137.01e-9, 2: 0.0}
TOTAL = {d: COMPUTE[d] + TX[d] + RX[d] for d in COMPUTE}


def make_tables(answers: bool = True, devices: bool = True) -> dict[str, pd.DataFrame]:
    samples = pd.DataFrame({"device": [0, 0, 1, 1], "predicted_s": [1.0, 11.0, 2.0, 3.0],
                            "correct": [True, False, True, True], "selected": [True, True, True, True],
                            "param_age_s": [0.0, 5.0, 0.0, 1.0], "latency_s": [0.1, 0.1, 0.2, 0.2]})
    uploads = pd.DataFrame([
        (0, 1000, 1000, 1.0, 1.0, 1.1, 1.15, "", 1),
        (0, 1000, 2000, 2.0, 2.0, 11.0, 11.05, "", 2),  # first attempt lost, resent: 2x size on the wire
        (1, 500, 1000, 3.0, 3.0, NAN, NAN, "loss", 2),  # lost twice, given up: no tx_end_s
        (1, 500, 0, 3.0, NAN, NAN, NAN, "queue_full", 0),  # never sent
        (2, 1000, 1000, 4.0, 4.0, 4.5, 4.6, "", 1),
    ], columns=MSG)
    reports = pd.DataFrame([(0, 16, 16, 1.2, 1.2, 1.3, 1.35, "", 1), (1, 16, 16, 3.4, 3.4, 3.5, 3.55, "", 1)],
                           columns=MSG)
    refreshes = pd.DataFrame([
        (0, 4000, 4000, 5.0, 5.0, 5.5, 5.55, "", 1, 4.0, 5.6),
        (1, 4000, 4000, 14.0, 14.0, 14.5, 14.55, "stale", 1, 13.0, NAN),
        (1, 4000, 1500, 18.0, 18.0, NAN, NAN, "link_outage", 1, 17.0, NAN),
    ], columns=[*MSG, "created_s", "applied_s"])
    tables = {"samples": samples, "uploads": uploads, "reports": reports, "refreshes": refreshes,
              "compute": pd.DataFrame([(0, 0.5, 0.6, 1e9), (0, 12.0, 12.5, 3e8), (1, 1.0, 1.25, 7e9),
                                       (1, 15.0, 15.5, 7e9), (2, 0.0, 0.5, 1e9)],
                                      columns=["device", "start_s", "end_s", "flops"]),
              "missed": pd.DataFrame([(1, 20.0, "device_off"), (1, 21.0, "device_off"), (0, 30.0, "churn")],
                                     columns=["device", "arrival_s", "cause"])}
    if answers:
        tables["answers"] = pd.DataFrame([(0, 100, 300, 6.0, 6.0, 6.2, 6.25, "", 3)], columns=MSG)  # 2 lost
    if devices:
        tables["devices"] = pd.DataFrame({
            "device": [0, 1, 2], "device_class": ["phone", "camera", "phone"], "profile": ["rpi4"] * 3,
            "radio": ["lte", "wifi", "none"], "tx_nj_per_bit": [438.39, 283.17, 0.0],
            "rx_nj_per_bit": [51.97, 137.01, 0.0], "compute_w": [5.0, 10.0, 6.4],
            "compute_nj_per_flop": [2.0, NAN, NAN], "available_s": [100.0] * 3})
    return tables


def test_radio_presets_carry_the_paper_numbers():
    expected = {"lte": (438.39, 51.97), "wifi": (283.17, 137.01), "3g": (868.98, 122.12), "none": (0.0, 0.0)}
    for name, (tx, rx) in expected.items():
        radio = RADIOS.get(name)
        assert (radio.name, radio.tx_nj_per_bit, radio.rx_nj_per_bit) == (name, tx, rx)
    assert "MobiSys 2012" in RADIOS.get("lte").source


def test_list_radios(capsys):
    assert main(["list", "radios"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines()} == {"lte", "wifi", "3g", "none"}


def test_device_energy_per_component():
    per = device_energy(make_tables()).set_index("device")
    assert list(per.index) == [0, 1, 2]
    assert per["device_class"].to_dict() == {0: "phone", 1: "camera", 2: "phone"}
    for d, compute_j in COMPUTE.items():
        assert per.loc[d, "compute_j"] == pytest.approx(compute_j, rel=1e-12)
        assert per.loc[d, "tx_j"] == pytest.approx(TX[d], rel=1e-12)
        assert per.loc[d, "rx_j"] == pytest.approx(RX[d], rel=1e-12)
        assert per.loc[d, "energy_j"] == pytest.approx(TOTAL[d], rel=1e-12)


def test_device_energy_without_answers_or_activity():
    tables = make_tables(answers=False)
    del tables["compute"]
    per = device_energy(tables).set_index("device")
    assert per.loc[0, "rx_j"] == pytest.approx(8 * 4000 * 51.97e-9, rel=1e-12)
    assert (per["compute_j"] == 0).all()
    tables["devices"] = tables["devices"].iloc[:0]
    assert device_energy(tables).empty


def test_energy_summary_totals_and_classes():
    s = energy_summary(device_energy(make_tables()), samples=4, cloud_busy_s=20.0, cloud_active_w=300.0)
    total = sum(TOTAL.values())
    assert s["energy_j"] == pytest.approx(total, rel=1e-12)
    assert s["energy_compute_j"] == pytest.approx(13.3, rel=1e-12)
    assert s["energy_tx_j"] == pytest.approx(sum(TX.values()), rel=1e-12)
    assert s["energy_rx_j"] == pytest.approx(sum(RX.values()), rel=1e-12)
    assert s["energy_per_device_mean_j"] == pytest.approx(total / 3, rel=1e-12)
    assert s["energy_mj_per_sample"] == pytest.approx(1e3 * total / 4, rel=1e-12)
    assert s["cloud_energy_j"] == 6000.0
    assert s["energy_j_by_class"] == pytest.approx({"phone": TOTAL[0] + TOTAL[2], "camera": TOTAL[1]}, rel=1e-12)
    assert math.isnan(energy_summary(device_energy(make_tables()), 0, 0.0, 0.0)["energy_mj_per_sample"])


def test_energy_timeline_bins():
    tl = energy_timeline(make_tables(), 10.0).set_index(["device", "bin"])["energy_j"]
    # compute by start_s; radio by tx_end_s, or tx_start_s for the lost upload (3.0) and the cut refresh (18.0)
    expected = {(0, 0): 2.0 + 8 * 1016 * 438.39e-9 + RX[0], (0, 1): 0.6 + 8 * 2000 * 438.39e-9,
                (1, 0): 2.5 + TX[1], (1, 1): 5.0 + RX[1], (2, 0): 3.2}
    assert set(tl.index) == set(expected)
    for key, value in expected.items():
        assert tl[key] == pytest.approx(value, rel=1e-12)
    assert tl.groupby(level="device").sum().to_dict() == pytest.approx(TOTAL, rel=1e-12)


def test_summarize_adds_energy_drops_retransmissions_and_missed():
    s = summarize(make_tables(), sim_time_s=40.0, wall_time_s=1.0, events=10, cloud_busy_s=20.0, gpus=1,
                  cloud_active_w=300.0)
    assert s["energy_j"] == pytest.approx(sum(TOTAL.values()), rel=1e-12)
    assert s["cloud_energy_j"] == 6000.0
    assert s["energy_j_by_class"]["camera"] == pytest.approx(TOTAL[1], rel=1e-12)
    assert s["refresh_drops"] == {"stale": 1, "link_outage": 1}
    # uploads 1 + 1 resends, the answer 2: reports and refreshes went through at once
    assert s["retransmissions"] == 4
    assert s["missed_samples"] == 3 and s["missed"] == {"device_off": 2, "churn": 1}
    assert s["drops"] == {"loss": 1, "queue_full": 1}
    assert (s["drops_loss"], s["drops_queue_full"], s["drops_link_outage"], s["drops_device_off"], s["drops_budget"]) \
        == (1, 1, 0, 0, 0)
    # keys that were there before keep their meaning
    assert s["samples"] == 4 and s["accuracy"] == 0.75 and s["dropped_samples"] == 2
    assert s["uplink_bytes"] == 1000 + 1000 + 500 + 1000 + 32
    assert s["downlink_bytes"] == 3 * 4000 + 100 and s["refreshes"] == 1


def test_summarize_and_timeline_without_the_new_tables():
    tables = make_tables(answers=False, devices=False)
    del tables["missed"], tables["compute"]
    for name in ("uploads", "reports", "refreshes"):
        tables[name] = tables[name].drop(columns=["attempts"])
    s = summarize(tables, 40.0, 1.0, 10, 20.0, 1)
    assert not any(k.startswith(("energy", "cloud_energy")) for k in s)
    assert s["retransmissions"] == 0 and s["missed_samples"] == 0 and s["missed"] == {}
    assert s["refresh_drops"] == {"stale": 1, "link_outage": 1}
    assert "energy_j" not in timeline(tables, 10.0)


def test_timeline_joins_energy():
    tl = timeline(make_tables(), 10.0).set_index(["device", "bin"])
    assert tl["energy_j"].groupby(level="device").sum().to_dict() == pytest.approx(TOTAL, rel=1e-12)
    # bins with energy but no predictions (device 2; device 1's second bin) still appear, with 0 samples
    assert tl.loc[(2, 0), "samples"] == 0 and tl.loc[(1, 1), "samples"] == 0
    # uplink bytes: every uplink message (uploads and reports), binned when it went on the wire, so the
    # bins sum to summary's uplink_bytes: device 0 sent 1000 + 1000 bytes of uploads and a 16-byte report by 10 s
    assert tl.loc[(0, 0), "samples"] == 1 and tl.loc[(0, 0), "uplink_bytes"] == 2016
    s = summarize(make_tables(), 40.0, 1.0, 10, 20.0, 1)
    assert tl["uplink_bytes"].sum() == s["uplink_bytes"] == 1000 + 1000 + 500 + 1000 + 16 + 16
