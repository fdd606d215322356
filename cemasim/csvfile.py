"""Small CSV input files (arrival traces, outage and availability intervals): text checked before
it is parsed, every problem a DataError naming the file and line, quoting at most a few characters
(a file given by mistake, e.g. /proc/self/environ, must not be echoed).

Blank lines and lines starting with '#' are skipped; the first other line is the header.
"""

from __future__ import annotations

import math
from pathlib import Path

from cemasim.errors import DataError

QUOTE_CHARS = 20  # longest excerpt of a file quoted in a message
MAX_TIME_S = 1e9  # ~32 years: later times are typos (or 1e308) and overflow the clock's arithmetic
MAX_DEVICES = 10**6  # devices per run (fleet.devices): a larger device index names no device


def quote(text: str | bytes) -> str:
    """A short, printable excerpt for messages."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    short = text[:QUOTE_CHARS] + ("..." if len(text) > QUOTE_CHARS else "")
    return repr(short)


def read_text(path: Path, what: str) -> str:
    """The file as text: UTF-8 (a BOM is dropped); a binary file or another encoding names the line."""
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    raw = path.read_bytes()
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not a text file (NUL byte); expected a {what} CSV")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the {what} "
                        "file as UTF-8") from None


def read_table(path: Path, what: str, columns: str) -> tuple[int, str, list[str], list[tuple[int, list[str]]]]:
    """(header line number, header text, lower-cased column names, [(line number, fields)]) of a CSV
    file; every data row has as many fields as the header. `columns` describes the expected header
    for the empty-file message."""
    lines = [(n, line.strip()) for n, line in enumerate(read_text(path, what).splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"{path}: empty {what} file; expected a header row ({columns}) and data rows")
    header_no, header = lines[0]
    names = [name.strip().lower() for name in header.split(",")]
    rows = []
    for line_no, line in lines[1:]:
        fields = line.split(",")
        if len(fields) != len(names):
            raise DataError(f"{path}, line {line_no}: expected {len(names)} fields like the header, got {len(fields)}")
        rows.append((line_no, fields))
    return header_no, header, names, rows


def read_rows(path: str | Path, what: str, required: tuple[str, ...],
              optional: tuple[str, ...] = ()) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: field}) for each data row; the header must name every required column."""
    path = Path(path)
    columns = ", ".join(required + tuple(f"[{c}]" for c in optional))
    header_no, header, names, rows = read_table(path, what, columns)
    missing = [c for c in required if c not in names]
    if missing or len(set(names)) != len(names):
        raise DataError(f"{path}, line {header_no}: the header must name {columns}, each once; got {quote(header)}")
    keep = [c for c in required + optional if c in names]
    return [(line_no, {c: fields[names.index(c)].strip() for c in keep}) for line_no, fields in rows]


def time_value(field: str, name: str, path: str | Path, line_no: int) -> float:
    """A time in seconds: a finite number in [0, MAX_TIME_S]."""
    try:
        value = float(field)
    except ValueError:
        raise DataError(f"{path}, line {line_no}: {name} must be a number of seconds, got {quote(field)}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_TIME_S:
        raise DataError(f"{path}, line {line_no}: {name} must be a finite time in [0, {MAX_TIME_S:g}] s, got "
                        f"{quote(field)}")
    return value


def device_value(field: str, path: str | Path, line_no: int) -> int | None:
    """An optional device index: empty = every device, else a whole number in [0, MAX_DEVICES)."""
    if field == "":
        return None
    try:
        value = int(field)
    except ValueError:
        raise DataError(f"{path}, line {line_no}: device must be a whole number >= 0 (or empty for every device), "
                        f"got {quote(field)}") from None
    if not 0 <= value < MAX_DEVICES:
        raise DataError(f"{path}, line {line_no}: device must be in [0, {MAX_DEVICES - 1:,}] (a device index; "
                        f"fleet.devices is at most {MAX_DEVICES:,}), got {quote(field)}")
    return value
