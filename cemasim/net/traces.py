"""Bandwidth (and latency) trace files -> a piecewise-constant rate over one period.

    csv        header row time_s,mbps[,latency_ms] (mbps may be named bandwidth_mbps); each row's values hold
               until the next row's time, the last row for one median row spacing (1 s if it is alone)
    mahimahi   one integer millisecond timestamp per line, each one delivery opportunity for a 1500-byte packet;
               the period is the last timestamp (Mahimahi loops the trace with it); binned into bin_ms pieces

Rates: Mbit/s (10^6 bit/s); times: s; latency: ms, one-way. Problems in a file raise DataError naming file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cemasim.csvfile import MAX_TIME_S, quote, read_table, time_value
from cemasim.errors import DataError

PACKET_BITS = 1500 * 8  # one Mahimahi delivery opportunity
MAX_BINS = 10**7  # pieces of one trace period (80 MB of arrays); more is a unit typo, not a trace
# Shortest CSV row spacing (Mahimahi's resolution): every piece is an event of a shared segment, and a
# nanosecond spacing would make ~10^10 of them in a few minutes of simulated time.
MIN_STEP_S = 1e-3
FORMATS = ("auto", "csv", "mahimahi")


@dataclass(frozen=True, eq=False)  # eq=False: the generated __eq__ cannot compare numpy arrays
class Trace:
    times_s: np.ndarray  # float64, start of each piece, strictly increasing, times_s[0] == 0.0
    mbps: np.ndarray  # float64, rate over [times_s[i], times_s[i+1]); the last piece lasts until period_s
    period_s: float  # end of the last piece; a looping trace repeats with this period
    latency_ms: np.ndarray | None = None  # one-way latency per piece, None when the file gives none
    source: str = ""  # file path, for messages

    def __post_init__(self) -> None:
        # Readers check files and raise DataError first; these are the invariants for traces built in code.
        times = np.array(self.times_s, np.float64)  # copies: the trace freezes its own arrays below
        mbps = np.array(self.mbps, np.float64)
        latency = None if self.latency_ms is None else np.array(self.latency_ms, np.float64)
        if times.ndim != 1 or len(times) == 0 or mbps.shape != times.shape:
            raise ValueError("trace needs 1-d times_s and mbps of the same, non-zero length")
        if latency is not None and latency.shape != times.shape:
            raise ValueError("trace latency_ms must have one value per piece")
        if times[0] != 0.0 or np.any(np.diff(times) <= 0) or not self.period_s > times[-1]:
            raise ValueError("trace times_s must start at 0, increase strictly and end before period_s")
        if not np.all(np.isfinite(mbps)) or np.any(mbps < 0):
            raise ValueError("trace rates must be finite and >= 0")
        for name, value in (("times_s", times), ("mbps", mbps), ("latency_ms", latency)):
            if value is not None:
                value.setflags(write=False)  # shared by every link that reads the trace
            object.__setattr__(self, name, value)
        object.__setattr__(self, "period_s", float(self.period_s))

    @property
    def durations_s(self) -> np.ndarray:
        return np.diff(np.append(self.times_s, self.period_s))

    def mean_mbps(self) -> float:
        """Time-weighted mean rate over one period."""
        return float(np.dot(self.mbps, self.durations_s) / self.period_s)


def read_trace(path: str | Path, fmt: str = "auto", bin_ms: float = 100.0) -> Trace:
    """Read a CSV or Mahimahi trace; fmt 'auto' tells them apart with detect_format."""
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown trace format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
    return read_csv_trace(path) if fmt == "csv" else read_mahimahi(path, bin_ms)


@lru_cache(maxsize=32)
def cached_trace(path: str, fmt: str = "auto", bin_ms: float = 100.0) -> Trace:
    """read_trace, once per process for each (file, format, bin): validation and every device of a
    class share one parse (a Mahimahi file can take a second). Traces are read-only."""
    return read_trace(path, fmt, bin_ms)


def detect_format(path: str | Path) -> str:
    """'csv' for a .csv file or one whose first data line has a comma or letters; 'mahimahi' for integer lines."""
    path = _existing(path)
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        with path.open(encoding="utf-8-sig") as f:  # stops at the first data line: Mahimahi files can be large
            for line_no, line in enumerate(f, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if "," in text or any(c.isalpha() for c in text):
                    return "csv"
                if text.isdigit():
                    return "mahimahi"
                raise DataError(f"{path}, line {line_no}: cannot tell the trace format from {quote(text)}; "
                                "expected a CSV header (time_s,mbps) or Mahimahi integer millisecond timestamps")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; expected a CSV or Mahimahi trace") from None
    raise DataError(f"{path}: empty trace file")


def read_csv_trace(path: str | Path) -> Trace:
    path = _existing(path)
    header_no, header, names, rows = read_table(path, "trace", "time_s,mbps[,latency_ms]")
    rate_names = [n for n in ("mbps", "bandwidth_mbps") if n in names]
    if "time_s" not in names or len(rate_names) != 1 or len(set(names)) != len(names):
        raise DataError(f"{path}, line {header_no}: the header must name time_s and one of mbps / bandwidth_mbps "
                        f"(optionally latency_ms), each once; got {quote(header)}")
    columns = {"time_s": names.index("time_s"), "mbps": names.index(rate_names[0])}
    if "latency_ms" in names:
        columns["latency_ms"] = names.index("latency_ms")
    values: dict[str, list[float]] = {name: [] for name in columns}
    for line_no, fields in rows:
        row = {name: (time_value if name == "time_s" else _number)(fields[i], name, path, line_no)
               for name, i in columns.items()}
        _check_row(row, values["time_s"], path, line_no)
        for name, value in row.items():
            values[name].append(value)
    if not values["time_s"]:
        raise DataError(f"{path}: no data rows after the header")
    if not any(values["mbps"]):
        raise DataError(f"{path}, line {rows[-1][0]}: the rate is 0 Mbit/s in every row, so the link would never "
                        "carry a message (as bandwidth_mbps: 0, which is refused too)")
    times = np.array(values["time_s"])
    last_s = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    latency = np.array(values["latency_ms"]) if "latency_ms" in values else None
    return Trace(times, np.array(values["mbps"]), float(times[-1]) + last_s, latency, str(path))


def read_mahimahi(path: str | Path, bin_ms: float = 100.0) -> Trace:
    """Count delivery opportunities per bin of bin_ms (the last bin ends at the period, so it may be shorter)."""
    path = _existing(path)
    if not (math.isfinite(bin_ms) and bin_ms > 0):
        raise DataError(f"{path}: bin_ms must be a positive number of milliseconds, got {bin_ms}")
    stamps, line_nos = _timestamps(path)
    if np.any(stamps < 0):
        k = int(np.argmax(stamps < 0))
        raise DataError(f"{path}, line {line_nos[k]}: timestamps must be >= 0, got {stamps[k]}")
    if np.any(np.diff(stamps) < 0):
        k = int(np.argmax(np.diff(stamps) < 0)) + 1
        raise DataError(f"{path}, line {line_nos[k]}: timestamps must not decrease ({stamps[k - 1]} then {stamps[k]})")
    period_ms = int(stamps[-1])
    if period_ms <= 0:
        raise DataError(f"{path}: the period (the last timestamp) must be > 0 ms, got {period_ms}")
    if period_ms > MAX_TIME_S * 1e3 or period_ms / bin_ms > MAX_BINS:
        raise DataError(f"{path}, line {line_nos[-1]}: the period {period_ms:,} ms in bins of trace_bin_ms = "
                        f"{bin_ms:g} ms makes {period_ms / bin_ms:.3g} bins; at most {MAX_BINS:.0e} (and a period "
                        f"of at most {MAX_TIME_S:g} s): check the timestamps' unit or raise trace_bin_ms")
    n = max(1, math.ceil(round(period_ms / bin_ms, 9)))
    # A delivery at t ms leaves during millisecond (t-1, t], so it belongs to the bin (k*bin, (k+1)*bin] holding
    # t; timestamp 0 joins the first bin.
    bins = np.clip(np.ceil(stamps / bin_ms).astype(np.int64) - 1, 0, n - 1)
    counts = np.bincount(bins, minlength=n)
    starts_ms = np.arange(n) * bin_ms
    durations_ms = np.diff(np.append(starts_ms, period_ms))
    mbps = counts * (PACKET_BITS / 1e3) / durations_ms  # bits per ms / 1e3 = Mbit/s
    return Trace(starts_ms / 1e3, mbps, period_ms / 1e3, None, str(path))


def write_mahimahi(path: str | Path, trace: Trace) -> None:
    """Write `trace` as Mahimahi delivery opportunities: packet k (k >= 1) at the first whole millisecond by which
    the trace has delivered k * 1500 bytes, so every window of whole milliseconds holds the trace's bits there
    rounded down to whole packets. The period must be whole milliseconds; a final opportunity at the period is
    added if needed, since Mahimahi takes the last timestamp as the period. Latency is not written."""
    period_ms = round(trace.period_s * 1e3)
    if period_ms < 1 or abs(period_ms - trace.period_s * 1e3) > 1e-6:
        raise ValueError(f"a Mahimahi trace needs a period of whole milliseconds, got {trace.period_s} s")
    edges_ms = np.append(trace.times_s, trace.period_s) * 1e3
    bits_per_ms = trace.mbps * 1e3
    cum = np.concatenate([[0.0], np.cumsum(bits_per_ms * np.diff(edges_ms))])
    n = math.floor(cum[-1] / PACKET_BITS + 1e-9)
    goal = PACKET_BITS * np.arange(1, n + 1, dtype=np.float64)
    # Piece i with cum[i] < goal <= cum[i+1] reaches the goal; its rate is > 0 because the cumulative grows there.
    piece = np.clip(np.searchsorted(cum, goal, side="left") - 1, 0, len(trace.mbps) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        reach_ms = edges_ms[piece] + (goal - cum[piece]) / bits_per_ms[piece]
    stamps = np.clip(np.ceil(np.round(reach_ms, 6)), 0, period_ms).astype(np.int64)  # round: 3.0000000001 is 3
    if n == 0 or stamps[-1] != period_ms:
        stamps = np.append(stamps, period_ms)
    Path(path).write_text("\n".join(map(str, stamps.tolist())) + "\n")


# -- helpers -------------------------------------------------------------------------------------------------


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such trace file")
    return path


def _number(field: str, name: str, path: Path, line_no: int) -> float:
    try:
        value = float(field)
    except ValueError:
        raise DataError(f"{path}, line {line_no}: {name} must be a number, got {quote(field)}") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line_no}: {name} must be finite, got {quote(field)}")
    return value


def _check_row(row: dict[str, float], times: list[float], path: Path, line_no: int) -> None:
    t = row["time_s"]
    if not times and t != 0.0:
        raise DataError(f"{path}, line {line_no}: the first time_s must be 0 (a trace starts with the run), got {t}")
    if times and t <= times[-1]:
        raise DataError(f"{path}, line {line_no}: time_s must increase strictly ({times[-1]} then {t})")
    if times and t - times[-1] < MIN_STEP_S:
        raise DataError(f"{path}, line {line_no}: rows must be at least {MIN_STEP_S * 1e3:g} ms apart ({times[-1]} "
                        f"then {t}); check the unit of time_s (seconds)")
    if row["mbps"] < 0:
        raise DataError(f"{path}, line {line_no}: the rate must be >= 0 Mbit/s, got {row['mbps']}")
    if row.get("latency_ms", 0.0) < 0:
        raise DataError(f"{path}, line {line_no}: latency_ms must be >= 0, got {row['latency_ms']}")


def _timestamps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Integer timestamps and their 1-based line numbers; blank and '#' lines are skipped."""
    lines = path.read_bytes().splitlines()
    try:  # fast path: every line one integer (a 1-hour trace has millions of lines)
        stamps = np.array(lines, dtype=np.int64)
        if len(stamps) == 0:
            raise DataError(f"{path}: empty trace file; expected Mahimahi millisecond timestamps, one per line")
        return stamps, np.arange(1, len(stamps) + 1)
    except (ValueError, OverflowError):
        pass
    values, line_nos = [], []
    for line_no, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or abs(value) >= 2**62:
            raise DataError(f"{path}, line {line_no}: expected an integer millisecond timestamp, got {quote(text)}")
        values.append(value)
        line_nos.append(line_no)
    if not values:
        raise DataError(f"{path}: empty trace file; expected Mahimahi millisecond timestamps, one per line")
    return np.array(values, dtype=np.int64), np.array(line_nos)
