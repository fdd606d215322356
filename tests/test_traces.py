"""Trace files: CSV and Mahimahi parsing, binning, errors with file and line, writing Mahimahi back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cemasim.errors import DataError
from cemasim.net.traces import (
    PACKET_BITS,
    Trace,
    detect_format,
    read_csv_trace,
    read_mahimahi,
    read_trace,
    write_mahimahi,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "traces"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mahimahi(tmp_path: Path, stamps, name: str = "link.mahimahi") -> Path:
    return write(tmp_path, name, "".join(f"{int(t)}\n" for t in stamps))


# -- CSV -------------------------------------------------------------------------------------------------------


def test_csv_pieces_and_last_row_lasts_one_median_spacing(tmp_path):
    trace = read_csv_trace(write(tmp_path, "t.csv", "time_s,mbps\n0,10\n2,20\n3,5\n"))
    np.testing.assert_array_equal(trace.times_s, [0.0, 2.0, 3.0])
    np.testing.assert_array_equal(trace.mbps, [10.0, 20.0, 5.0])
    assert trace.period_s == 4.5  # median of the spacings 2 and 1
    assert trace.latency_ms is None
    assert trace.source.endswith("t.csv")
    assert trace.mean_mbps() == pytest.approx((10 * 2 + 20 * 1 + 5 * 1.5) / 4.5)


def test_csv_single_row_lasts_one_second(tmp_path):
    trace = read_csv_trace(write(tmp_path, "t.csv", "time_s,mbps\n0,7.5\n"))
    assert trace.period_s == 1.0 and trace.mean_mbps() == 7.5


def test_csv_latency_alias_column_order_comments_and_blank_lines(tmp_path):
    text = "# measured on a train\n\nlatency_ms, bandwidth_mbps ,time_s\n20,1.5,0\n\n# tunnel\n35,0,0.5\n"
    trace = read_trace(write(tmp_path, "t.csv", text))
    np.testing.assert_array_equal(trace.times_s, [0.0, 0.5])
    np.testing.assert_array_equal(trace.mbps, [1.5, 0.0])
    np.testing.assert_array_equal(trace.latency_ms, [20.0, 35.0])
    assert trace.period_s == 1.0


@pytest.mark.parametrize("text, line, words", [
    ("time_s,mbps\n0,1\n1,abc\n", 3, "mbps must be a number"),
    ("time_s,mbps\n0,1\n1,nan\n", 3, "finite"),
    ("time_s,mbps\n0,1\n2,1\n1,1\n", 4, "increase strictly"),
    ("time_s,mbps\n0,1\n0,2\n", 3, "increase strictly"),
    ("time_s,mbps\n0,1\n1,-0.5\n", 3, ">= 0"),
    ("time_s,mbps,latency_ms\n0,1,5\n1,1,-1\n", 3, "latency_ms must be >= 0"),
    ("# c\ntime_s,mbps\n0.5,1\n", 3, "first time_s must be 0"),
    ("0,5\n1,5\n", 1, "header must name time_s"),
    ("time_s,rate\n0,5\n", 1, "header must name time_s"),
    ("time_s,mbps,bandwidth_mbps\n0,5,5\n", 1, "header must name time_s"),
    ("time_s,mbps\n0,5\n1,5,7\n", 3, "expected 2 fields"),
    ("time_s,mbps\n0,5\n1e-9,4\n", 3, "at least 1 ms apart"),  # ~10^10 pieces in a few minutes
    ("time_s,mbps\n0,5\n1,4\n1.0009,3\n", 4, "at least 1 ms apart"),
    ("time_s,mbps\n0,0\n1,0.0\n", 3, "0 Mbit/s in every row"),  # as bandwidth_mbps: 0
])
def test_csv_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError) as err:
        read_trace(path)
    assert f"{path}, line {line}:" in str(err.value) and words in str(err.value)


def test_csv_rows_one_ms_apart_and_a_zero_rate_in_some_rows_are_accepted(tmp_path):
    trace = read_csv_trace(write(tmp_path, "t.csv", "time_s,mbps\n0,0\n0.001,2\n0.002,0\n"))
    np.testing.assert_array_equal(trace.mbps, [0.0, 2.0, 0.0])


@pytest.mark.parametrize("text, words", [("", "empty"), ("\n# only comments\n", "empty"),
                                         ("time_s,mbps\n", "no data rows")])
def test_csv_file_level_errors_name_file(tmp_path, text, words):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError, match=words) as err:
        read_trace(path)
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such trace file"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no such trace file"):
        read_mahimahi(tmp_path / "nope.mahimahi")
    path = write(tmp_path, "t.csv", "time_s,mbps\n0,1\n")
    with pytest.raises(DataError, match="unknown trace format 'pcap'"):
        read_trace(path, fmt="pcap")


# -- Mahimahi --------------------------------------------------------------------------------------------------


def test_mahimahi_one_packet_per_ms_is_12_mbps(tmp_path):
    trace = read_trace(mahimahi(tmp_path, range(1, 1001)))
    assert trace.period_s == 1.0 and trace.latency_ms is None
    np.testing.assert_allclose(trace.times_s, np.arange(10) * 0.1)
    np.testing.assert_allclose(trace.mbps, 12.0)


def test_mahimahi_two_packets_per_ms_is_24_mbps(tmp_path):
    trace = read_mahimahi(mahimahi(tmp_path, np.repeat(np.arange(1, 1001), 2)))
    np.testing.assert_allclose(trace.mbps, 24.0)


def test_mahimahi_gap_gives_zero_bins(tmp_path):
    stamps = [*range(1, 301), *range(501, 1001)]  # nothing can leave in ms (300, 500]
    trace = read_mahimahi(mahimahi(tmp_path, stamps))
    np.testing.assert_allclose(trace.mbps, [12, 12, 12, 0, 0, 12, 12, 12, 12, 12])
    assert trace.mean_mbps() == pytest.approx(len(stamps) * PACKET_BITS / 1.0 / 1e6)


def test_mahimahi_bin_edges_and_timestamp_zero(tmp_path):
    # t = 100 leaves in ms (99, 100]: first bin; 101 the second; 0 joins the first bin.
    trace = read_mahimahi(mahimahi(tmp_path, [0, 100, 101, 150, 200]), bin_ms=100)
    np.testing.assert_allclose(trace.mbps, [2 * 0.12, 3 * 0.12])  # one packet per 100 ms = 0.12 Mbit/s


def test_mahimahi_shorter_last_bin(tmp_path):
    trace = read_mahimahi(mahimahi(tmp_path, range(1, 1001)), bin_ms=300)
    np.testing.assert_allclose(trace.times_s, [0.0, 0.3, 0.6, 0.9])
    np.testing.assert_allclose(trace.durations_s, [0.3, 0.3, 0.3, 0.1])
    np.testing.assert_allclose(trace.mbps, 12.0)  # the last bin: 100 packets in 100 ms, not in 300 ms

    trace = read_mahimahi(mahimahi(tmp_path, [100, 250, 700, 700]), bin_ms=300)
    assert trace.period_s == 0.7
    np.testing.assert_allclose(trace.mbps, [2 * PACKET_BITS / 0.3 / 1e6, 0.0, 2 * PACKET_BITS / 0.1 / 1e6])
    # mean = total bits / period, by hand: 4 packets * 12000 bit / 0.7 s
    assert trace.mean_mbps() == pytest.approx(4 * 12000 / 0.7 / 1e6)


def test_mahimahi_comments_and_blank_lines_keep_line_numbers(tmp_path):
    path = write(tmp_path, "t.mahimahi", "# header\n1\n\n2\n2\n4\n")
    trace = read_mahimahi(path, bin_ms=2)
    np.testing.assert_allclose(trace.mbps, [3 * 12000 / 2e-3 / 1e6, 1 * 12000 / 2e-3 / 1e6])
    bad = write(tmp_path, "bad.mahimahi", "# header\n1\n\n2\n2.5\n4\n")
    with pytest.raises(DataError, match=rf"{bad}, line 5: expected an integer .*'2.5'"):
        read_mahimahi(bad)


@pytest.mark.parametrize("text, words", [
    ("1\n2\nfoo\n", "line 3: expected an integer"),
    ("1\n2 3\n", "line 2: expected an integer"),
    ("1\n5\n4\n", "line 3: timestamps must not decrease"),
    ("1\n-2\n", "line 2: timestamps must be >= 0"),
    ("99999999999999999999999\n", "line 1: expected an integer"),
    ("", "empty trace file"),
    ("\n\n", "empty trace file"),
    ("0\n0\n", "period .* must be > 0"),
])
def test_mahimahi_errors(tmp_path, text, words):
    path = write(tmp_path, "bad.mahimahi", text)
    with pytest.raises(DataError, match=words) as err:
        read_mahimahi(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bin_ms", [0.0, -5.0, float("nan")])
def test_mahimahi_bad_bin(tmp_path, bin_ms):
    with pytest.raises(DataError, match="bin_ms"):
        read_mahimahi(mahimahi(tmp_path, [1, 2]), bin_ms=bin_ms)


# -- writing ---------------------------------------------------------------------------------------------------


def test_write_read_round_trip_keeps_bits_per_bin_up_to_one_packet(tmp_path):
    # Pieces not aligned to milliseconds, a zero-rate piece, a non-multiple of the bin as period.
    trace = Trace(np.array([0.0, 0.3504, 1.2, 2.0]), np.array([3.3, 0.0, 17.7, 1.1]), 3.05)
    path = tmp_path / "rt.mahimahi"
    write_mahimahi(path, trace)
    back = read_mahimahi(path, bin_ms=100)
    assert back.period_s == trace.period_s
    # Check: the cumulative bits at every bin edge is the original's rounded down to whole 1500-byte packets
    # (so each bin's bits are within one packet); the last edge may gain one packet put at the period.
    edges = np.append(back.times_s, back.period_s)
    original = np.array([bits_until(trace, t) for t in edges])
    read = np.concatenate([[0.0], np.cumsum(back.mbps * 1e6 * back.durations_s)])
    np.testing.assert_allclose(read[:-1], np.floor(original[:-1] / PACKET_BITS + 1e-9) * PACKET_BITS, atol=1e-3)
    assert -PACKET_BITS < read[-1] - original[-1] <= PACKET_BITS
    per_bin = np.diff(read) - np.diff(original)
    assert np.all(np.abs(per_bin[:-1]) < PACKET_BITS) and abs(per_bin[-1]) < 2 * PACKET_BITS


def test_write_constant_12_mbps_is_one_line_per_ms(tmp_path):
    path = tmp_path / "c.mahimahi"
    write_mahimahi(path, Trace(np.array([0.0]), np.array([12.0]), 0.5))
    assert path.read_text().split() == [str(t) for t in range(1, 501)]


def test_write_adds_a_final_opportunity_so_the_period_survives(tmp_path):
    path = tmp_path / "z.mahimahi"
    write_mahimahi(path, Trace(np.array([0.0, 0.2]), np.array([0.12, 0.0]), 1.0))  # 2 packets, then silence
    assert path.read_text().split() == ["100", "200", "1000"]
    assert read_mahimahi(path).period_s == 1.0
    with pytest.raises(ValueError, match="whole milliseconds"):
        write_mahimahi(path, Trace(np.array([0.0]), np.array([1.0]), 1.0005))


def bits_until(trace: Trace, t: float) -> float:
    ends = np.minimum(np.append(trace.times_s[1:], trace.period_s), t)
    return float(np.sum(trace.mbps * 1e6 * np.clip(ends - trace.times_s, 0, None)))


# -- format detection, the Trace invariants, the shipped examples ----------------------------------------------


def test_detect_format(tmp_path):
    assert detect_format(write(tmp_path, "a.csv", "1\n2\n")) == "csv"  # the suffix wins
    assert detect_format(write(tmp_path, "b.txt", "# x\n\ntime_s,mbps\n0,1\n")) == "csv"
    assert detect_format(write(tmp_path, "c.txt", "time_s\n")) == "csv"
    assert detect_format(write(tmp_path, "d", "# x\n\n12\n13\n")) == "mahimahi"
    assert read_trace(tmp_path / "d").period_s == 0.013
    with pytest.raises(DataError, match=r"d2, line 1: cannot tell the trace format"):
        detect_format(write(tmp_path, "d2", "1.5\n"))
    with pytest.raises(DataError, match="empty trace file"):
        detect_format(write(tmp_path, "e", "\n# nothing\n"))


def test_trace_invariants_and_frozen_arrays():
    with pytest.raises(ValueError):
        Trace(np.array([0.5]), np.array([1.0]), 1.0)
    with pytest.raises(ValueError):
        Trace(np.array([0.0, 1.0]), np.array([1.0, 1.0]), 1.0)
    with pytest.raises(ValueError):
        Trace(np.array([0.0]), np.array([-1.0]), 1.0)
    trace = Trace(np.array([0.0, 1.0]), np.array([1.0, 3.0]), 3.0)
    assert trace.mean_mbps() == pytest.approx((1 + 3 * 2) / 3)
    with pytest.raises(ValueError):
        trace.mbps[0] = 2.0


@pytest.mark.parametrize("name", ["lte_commute_up.mahimahi", "lte_commute_down.mahimahi", "wifi_office.csv"])
def test_shipped_example_traces_load(name):
    trace = read_trace(EXAMPLES / name)
    assert trace.period_s == 600.0 and 0.5 < trace.mean_mbps() < 40.0
    assert (trace.latency_ms is not None) == name.endswith(".csv")


# -- device indices in interval and arrival files ---------------------------------------------------------------


@pytest.mark.parametrize("device", ["1000000", "9223372036854775808", "1" + "0" * 40])
@pytest.mark.parametrize("kind", ["interval", "arrival"])
def test_a_device_index_no_fleet_has_is_refused_with_file_and_line(tmp_path, kind, device):
    """Above fleet.devices' bound a row names no device: the interval reader took it silently and the arrival
    reader overflowed int64 without file or line."""
    from cemasim.data.arrivals import read_arrival_file
    from cemasim.net.intervals import read_interval_file

    text = f"device,start_s,end_s\n0,1,2\n{device},1,2\n" if kind == "interval" else f"device,time_s\n0,1\n{device},2\n"
    path = write(tmp_path, f"{kind}.csv", text)
    with pytest.raises(DataError) as err:
        (read_interval_file if kind == "interval" else read_arrival_file)(str(path))
    assert f"{path}, line 3: device must be in [0, 999,999]" in str(err.value)


def test_the_largest_device_index_is_accepted(tmp_path):
    from cemasim.net.intervals import read_interval_file

    assert read_interval_file(write(tmp_path, "i.csv", "device,start_s,end_s\n999999,1,2\n")) == [(999999, 1.0, 2.0)]
