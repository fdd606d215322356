"""Text tables a person reads (the run table of `cemasim run`, the sweep summary and the paired
differences that `cemasim sweep` and `cemasim plot` print): the unit in every title, fractions as
percent (differences in points), bytes in kB/MB/GB, a sensible number of digits and no floating-point
noise (a CI of 1.874e-16 prints 0.00). Files keep exact values in the units of docs/outputs.md; only
what is printed is rounded."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cemasim.results.units import FRACTIONS

# metric -> the title its column prints under: the one list for the run, sweep and paired tables.
# Fractions print in percent and bytes in kB/MB/GB (the unit joins the title); the rest as named.
TITLES = {"accuracy": "acc %", "samples": "samples", "upload_ratio": "upload %", "uplink_bytes": "uplink",
          "downlink_bytes": "downlink", "uploaded_samples": "uploads", "missed_samples": "missed",
          "dropped_samples": "dropped", "upload_delay_mean_s": "delay s", "upload_delay_p95_s": "p95 delay s",
          "param_age_mean_s": "param age s", "refreshes": "refreshes", "cloud_utilization": "cloud util %",
          "cloud_load": "cloud load %",  # above 100: work arrived faster than the cloud did it
          "gpu_wait_mean_s": "GPU wait s", "gpu_wait_p95_s": "p95 GPU wait s", "uploads_never_used": "never trained",
          "in_flight_samples": "queued at end", "energy_j": "device J", "wall_time_s": "wall s"}
RUN_COLUMNS = ["accuracy", "samples", "upload_ratio", "uplink_bytes", "downlink_bytes", "missed_samples",
               "dropped_samples", "upload_delay_mean_s", "param_age_mean_s", "refreshes", "cloud_utilization",
               "cloud_load", "gpu_wait_mean_s", "uploads_never_used", "in_flight_samples", "energy_j", "wall_time_s"]
BYTES = ("uplink_bytes", "downlink_bytes")


def byte_unit(values: np.ndarray) -> tuple[float, str]:
    """(scale, unit) that shows bytes as kB, MB or GB by the largest value (files keep exact bytes)."""
    values = np.asarray(values, dtype=float)
    top = np.nanmax(np.abs(values)) if len(values) and np.isfinite(values).any() else 0.0
    for scale, unit in ((1e-9, "GB"), (1e-6, "MB"), (1e-3, "kB")):
        if top * scale >= 1:
            return scale, unit
    return 1.0, "bytes"


def _scale(metric: str, column: pd.Series) -> tuple[float, str]:
    title = TITLES.get(metric, metric)
    if metric in FRACTIONS:
        return 100.0, title
    if metric in BYTES:
        scale, unit = byte_unit(column.to_numpy(float))
        return scale, f"{title} {unit}"
    return 1.0, title


def _fixed(v: Any, decimals: int, sign: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{0.0 if abs(v) < 0.5 * 10 ** -decimals else v:{sign},.{decimals}f}"


def _cells(mean: pd.Series, ci: pd.Series | None, scale: float, percent: bool, sign: str = "") -> list[str]:
    """'mean ± ci' with one number of decimals per column (percent: 2; else from the values' size)."""
    m = mean.to_numpy(float) * scale
    finite = np.abs(m[np.isfinite(m)])
    decimals = 2 if percent else (max(0, 2 - math.floor(math.log10(finite.max()))) if finite.size and
                                  finite.max() > 0 else 0)
    decimals = min(decimals, 4)
    c = np.full(len(m), np.nan) if ci is None else ci.to_numpy(float) * scale
    return [_fixed(mi, decimals, sign) + (f" ± {_fixed(ci_, decimals)}" if np.isfinite(ci_) else "")
            for mi, ci_ in zip(m, c, strict=True)]


def run_text(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """The summaries of `cemasim run`, one row per run (its name first), in the sweep table's units."""
    summaries = pd.DataFrame([summary for _, summary in rows])
    shown = pd.DataFrame({"run": [name for name, _ in rows]})
    for m in RUN_COLUMNS:
        column = (pd.to_numeric(summaries[m], errors="coerce") if m in summaries
                  else pd.Series(np.nan, index=shown.index))
        scale, title = _scale(m, column)
        shown[title] = _cells(column, None, scale, m in FRACTIONS)
    return shown.to_string(index=False, justify="right")


def sweep_text(summary: pd.DataFrame, keys: list[str], metrics: list[str]) -> str:
    """The per-point summary of summarize_sweep as text: keys, seeds, then 'mean ± 95 % CI' per metric
    (the CI only where a point has two seeds or more)."""
    shown = pd.DataFrame({k: summary[k].map(_key_text) for k in keys})
    shown["seeds"] = summary["seeds"].astype(int).astype(str)
    many = summary["seeds"] > 1
    for m in metrics:
        if m not in summary:
            continue
        scale, header = _scale(m, summary[m])
        ci = summary[f"{m}_ci95"].where(many) if f"{m}_ci95" in summary else None
        shown[header] = _cells(summary[m], ci, scale, m in FRACTIONS)
    return shown.to_string(index=False)


def paired_text(diffs: pd.DataFrame, keys: list[str], metrics: list[str]) -> str:
    """Paired differences as text: 'mean ± 95 % t half-width' per metric, accuracy in points."""
    shown = pd.DataFrame({k: diffs[k].map(_key_text) for k in keys})
    shown["pairs"] = diffs["pairs"].astype(int).astype(str)
    for m in metrics:
        scale, header = _scale(m, diffs[f"{m}_diff"])
        header = header.replace("%", "points") if m in FRACTIONS else header
        shown[f"Δ {header}"] = _cells(diffs[f"{m}_diff"], diffs[f"{m}_diff_ci95"], scale, m in FRACTIONS, sign="+")
    return shown.to_string(index=False)


def _key_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)  # 0.005, 5: as the grid was written
