"""Statistics of sweep tables: per-point means with 95 % CIs, and paired differences against a baseline.

Pure pandas/numpy (no simulator imports): sweeps.py, the CLI and the figures all use it.

Pairing. A seed fixes the data of a run (images, their order, corruption noise, arrivals) for every
method and every value of the other swept keys: common random numbers. So method A minus method B
*on the same seed* removes the between-seed spread of absolute accuracy, which is mostly the data.
`paired_differences` subtracts, per seed and per value of the other keys, the baseline point's
metric, then gives the mean difference and its 95 % t interval over seeds.

Bounds. A mean +- half-width can leave the physical range (a negative delay, a utilisation above
100 %); `bounded_band` clips bands to each metric's range for drawing and for the `_lo`/`_hi`
columns. The half-width itself is reported unclipped.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

# two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (normal beyond)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]

# Metrics stored as fractions (accuracy, ratios, utilisation): their physical range is [0, 1].
FRACTIONS = {"upload_ratio", "cloud_utilization"}


def metric_bounds(metric: str) -> tuple[float, float]:
    """(lower, upper) physical bounds of a summary metric: fractions in [0, 1], every other one >= 0."""
    return (0.0, 1.0) if metric in FRACTIONS or metric.startswith("accuracy") else (0.0, math.inf)


def t975(dof: int) -> float:
    return _T975[dof - 1] if 1 <= dof <= len(_T975) else 1.96


def ci95(values: pd.Series) -> float:
    """Half-width of the 95 % t confidence interval of the mean (NaN for fewer than two values)."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return math.nan
    return float(t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def bounded_band(mean: np.ndarray, half: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """mean -+ half clipped to the metric's physical range (NaN half-widths give a zero-width band)."""
    lo, hi = metric_bounds(metric)
    h = np.nan_to_num(np.asarray(half, dtype=float))
    return np.clip(mean - h, lo, hi), np.clip(mean + h, lo, hi)


def one_row_per_run(ok: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`ok` with each run once, so that no seed counts twice (a twice-counted seed narrows a CI). A run
    repeated under its point_id (a table joined by hand) is kept once, with a warning. Two different
    runs with the same grid values and seed mean a table of several sweeps, or a swept key missing
    from `keys`: no mean over them means anything, so ValueError."""
    repeated = ok["point_id"].duplicated() if "point_id" in ok else pd.Series(False, index=ok.index)
    if repeated.any():
        warnings.warn(f"{int(repeated.sum())} repeated rows of one run (the same point_id) ignored: each run "
                      "counts once", stacklevel=3)
        ok = ok[~repeated]
    if "seed" not in ok:
        return ok
    same = ok[[*keys, "seed"]].astype(str).duplicated(keep=False)  # as text: grid values may be lists
    if same.any():
        first = ok[same].iloc[0]
        at = ", ".join([f"{k}={first[k]}" for k in keys] + [f"seed {first['seed']}"])
        raise ValueError(f"{int(same.sum())} runs share their grid values and seed with another run (e.g. {at}): "
                         f"the table holds several sweeps, or a swept key is not among {keys}; keep one sweep's "
                         "rows")
    return ok


def summarize_sweep(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Per grid point: number of seeds, mean and 95 % CI half-width of each metric, and the band
    `_lo`/`_hi` clipped to the metric's physical range. Each run counts once (one_row_per_run)."""
    ok = one_row_per_run(df[df["status"] == "ok"], keys)
    grouped = ok.groupby(keys, dropna=False) if keys else ok.groupby(lambda _: 0)
    mean = grouped[metrics].mean()
    ci = grouped[metrics].agg(ci95)
    parts = [grouped.size().rename("seeds"), mean, ci.add_suffix("_ci95")]
    for m in metrics:
        lo, hi = bounded_band(mean[m].to_numpy(float), ci[m].to_numpy(float), m)
        parts += [pd.Series(lo, index=mean.index, name=f"{m}_lo"), pd.Series(hi, index=mean.index, name=f"{m}_hi")]
    out = pd.concat(parts, axis=1)
    return out.reset_index() if keys else out.reset_index(drop=True)


def parse_baseline(text: str) -> tuple[str, Any]:
    """'method.name=bn_adapt' -> ('method.name', 'bn_adapt'); the value is read as YAML."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--baseline {text!r}: expected KEY=VALUE, e.g. method.name=bn_adapt")
    return key.strip(), yaml.safe_load(value)


def paired_differences(df: pd.DataFrame, keys: list[str], metrics: list[str],
                       baseline: tuple[str, Any]) -> pd.DataFrame:
    """Per grid point other than the baseline: pairs (seeds), mean of (metric - baseline's metric on
    the same seed and the same values of the other keys), its 95 % t half-width, and the interval.

    Raises ValueError when the baseline key is not swept, its value is not in the table, or two runs
    share grid values and seed (one_row_per_run).
    """
    key, value = baseline
    if key not in keys:
        raise ValueError(f"--baseline {key}={value}: {key} is not a swept key (swept: {', '.join(keys) or 'none'})")
    ok = one_row_per_run(df[df["status"] == "ok"], keys)
    is_base = ok[key] == value
    if not is_base.any():
        known = ", ".join(map(str, sorted(ok[key].dropna().unique(), key=str)))
        raise ValueError(f"--baseline {key}={value}: no finished run has that value (values: {known})")
    match = [k for k in keys if k != key] + ["seed"]
    base = ok[is_base][match + metrics].rename(columns={m: f"{m}__base" for m in metrics})
    pairs = ok[~is_base].merge(base, on=match, how="inner")
    for m in metrics:
        pairs[f"{m}_diff"] = pairs[m] - pairs[f"{m}__base"]
    diffs = [f"{m}_diff" for m in metrics]
    grouped = pairs.groupby(keys, dropna=False)
    mean, ci = grouped[diffs].mean(), grouped[diffs].agg(ci95)
    parts = [grouped.size().rename("pairs"), mean]
    for d in diffs:
        parts += [ci[d].rename(f"{d}_ci95"), (mean[d] - ci[d]).rename(f"{d}_lo"), (mean[d] + ci[d]).rename(f"{d}_hi")]
    out = pd.concat(parts, axis=1).reset_index()
    out.insert(0, "baseline", f"{key}={value}")
    return out


def verdict(lo: float, hi: float, margin: float = 0.0) -> str:
    """'holds' when the whole CI lies above `margin`, 'does not hold' when it lies below it, else
    'not resolved' (the interval includes the margin)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not resolved"
    if lo > margin:
        return "holds"
    if hi < margin:
        return "does not hold"
    return "not resolved"
