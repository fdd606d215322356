"""The unit convention of what a person reads (docs/outputs.md, "Units"): fractions of samples are
percent, in columns whose name says so (`accuracy_pct`, `accuracy_pct_diff`: points), in every CSV
and every DataFrame the Python API returns. The machine records (summary.json, the run's parquet
tables, a sweep's results.parquet) keep fractions under the plain names: cemasim reads them back to
resume sweeps and redraw figures, and folders written by earlier versions stay readable."""

from __future__ import annotations

import pandas as pd

FRACTIONS = ("accuracy", "upload_ratio", "selected_ratio", "cloud_utilization", "cloud_load")
# what stats.summarize_sweep and stats.paired_differences append to a metric's name
SUFFIXES = ("", "_ci95", "_lo", "_hi", "_diff", "_diff_ci95", "_diff_lo", "_diff_hi")


def _renames(columns: pd.Index, to_percent: bool) -> dict[str, str]:
    pairs = {f"{m}{s}": f"{m}_pct{s}" for m in FRACTIONS for s in SUFFIXES}
    if not to_percent:
        pairs = {pct: plain for plain, pct in pairs.items()}
    return {c: pairs[c] for c in columns if c in pairs}


def in_percent(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with each fraction column x 100 and renamed `<name>_pct...` (other columns untouched)."""
    renames = _renames(table.columns, to_percent=True)
    return table.assign(**{c: table[c] * 100 for c in renames}).rename(columns=renames)


def in_fractions(table: pd.DataFrame) -> pd.DataFrame:
    """The inverse of in_percent: a table of the Python API back in the records' units."""
    renames = _renames(table.columns, to_percent=False)
    return table.assign(**{c: table[c] / 100 for c in renames}).rename(columns=renames)


def rate_text(mbps: float) -> str:
    """A link rate as a person writes it: 20 kbit/s below 1 Mbit/s, 5 Mbit/s from there."""
    return f"{mbps * 1e3:g} kbit/s" if mbps < 1 else f"{mbps:g} Mbit/s"
