"""The link model against a real network stack (analysis/twin): a small case where network
namespaces and HTB are available, skipped with the reason where they are not."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TWIN = Path(__file__).resolve().parents[1] / "analysis" / "twin"
# by file, under a name of its own: other studies have a measure.py too
_spec = importlib.util.spec_from_file_location("twin_measure", TWIN / "measure.py")
measure = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(measure)
netlab = measure.netlab

REASON = netlab.unavailable()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"the twin cannot run here: {REASON}")


@needs_netns
def test_headers_model_matches_a_real_tcp_uplink():
    """Two rates, one device, tens of uploads replayed over TCP through a shaped link: cemasim with
    uplink.packet_header_bytes = 66 predicts the mean and p95 upload delay within 10 %, and the
    default model (a message's bytes alone) is shorter than the real stack by the headers' share."""
    messages = [measure.measure_case(rate, 1, messages=30) for rate in (0.1, 1.0)]
    table = measure.errors(pd.concat(messages, ignore_index=True))
    assert (table.unmatched == 0).all() and (table.uploads >= 25).all()
    assert (table.headers_mean_err_pct.abs() < 10).all(), table.to_string()
    assert (table.headers_p95_err_pct.abs() < 10).all(), table.to_string()
    # an upload of ~800 bytes carries 66 bytes of headers: the fluid model is short by about 8 %
    assert (table.model_mean_err_pct < -4).all(), table.to_string()
    assert netlab.namespaces() == []


@needs_netns
def test_the_lab_is_removed_when_its_body_fails():
    with pytest.raises(RuntimeError, match="inside"), netlab.Lab(1_000_000) as lab:
        names = lab.names()
        assert all(n in netlab.namespaces() for n in names)
        lab.start("device", ["sleep", "60"])
        raise RuntimeError("a failure inside the lab")
    assert not set(names) & set(netlab.namespaces())
    out = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert lab.ifname["device"] not in out and lab.ifname["cloud"] not in out


@needs_netns
def test_namespaces_of_a_killed_run_are_removed_by_the_next():
    stale = f"{netlab.PREFIX}-dev-{2**22 + 12345}"  # above any pid this machine hands out
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netlab.remove_stale()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    assert stale not in netlab.namespaces()


def test_a_message_is_received_when_the_packet_holding_its_last_byte_has_crossed():
    """The twin's arithmetic on a hand-made capture: two messages (700 and 900 bytes) written at once,
    packed by TCP into a 1,514-byte frame and a 218-byte one at 1 Mbit/s."""
    msgs = pd.DataFrame({"device": [0, 0], "size_bytes": [700, 900]})
    isn, t0 = 1000, 5_000_000_000
    capture = {"ports": {"40000": 0},
               "packets": [[40000, isn, 0, True, t0 - 10**9, 74],                 # SYN
                           [40000, isn + 1, 4, False, t0 - 10**9, 70],            # the hello
                           [40000, isn + 5, 1448, False, t0, 1514],               # bytes 4..1452
                           [40000, isn + 1453, 152, False, t0 + 12_112_000, 218]]}  # 1452..1604 (the rest)
    sends = {"written_ns": {"0": [t0, t0]}}
    delays, packed = measure._delays(msgs, capture, sends, 1_000_000)
    assert packed.tolist() == [True, False]  # message 1's last byte shares a segment with message 2
    # message 1 ends at offset 704, in the first data frame: its release + 1514 x 8 bits at 1 Mbit/s
    assert delays[0] == pytest.approx(1514 * 8 / 1e6)
    assert delays[1] == pytest.approx(0.012112 + 218 * 8 / 1e6)
    assert np.isfinite(delays).all()
