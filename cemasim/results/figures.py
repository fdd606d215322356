"""Study figures for papers: sweeps (metric against a swept key with 95 % CI bands over seeds,
communication-accuracy curves, Pareto front) and comparisons of run folders. PNG and PDF."""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from cemasim.errors import ConfigError, DataError, RunError
from cemasim.results.plots import _pyplot, cumulative_accuracy_vs_uplink
from cemasim.results.stats import bounded_band, paired_differences, summarize_sweep
from cemasim.results.tables import byte_unit
from cemasim.results.units import in_percent

LABELS = {
    "accuracy": "accuracy (%)",
    "uplink_bytes": "uplink (MB)",
    "downlink_bytes": "downlink (MB)",
    "uploaded_samples": "uploaded samples",
    "upload_ratio": "upload ratio (%)",
    "upload_delay_mean_s": "mean upload delay (s)",
    "upload_delay_p95_s": "p95 upload delay (s)",
    "param_age_mean_s": "mean parameter age (s)",
    "cloud_utilization": "cloud GPU utilization over the arrivals (%)",
    "cloud_load": "cloud GPU load over the arrivals (%)",
    "gpu_wait_mean_s": "mean GPU queue wait (s)",
    "uploads_never_used": "uploads never trained on",
    "upload_to_training_mean_s": "mean upload-to-training time (s)",
    "prediction_latency_mean_s": "mean prediction latency (s)",
    "dropped_samples": "dropped uploads",
    "uplink.bandwidth_mbps": "uplink bandwidth (Mbit/s)",
    "downlink.bandwidth_mbps": "downlink bandwidth (Mbit/s)",
    "uplink.latency_ms": "uplink latency (ms)",
    "fleet.devices": "devices",
    "cloud.gpus": "cloud GPUs",
    "selection.e_max": "E_max (x ln C)",
    "selection.e_min": "E_min (x ln C)",
    "arrivals.rate_hz": "arrival rate per device (1/s)",
}
SCALE = {"accuracy": 100, "upload_ratio": 100, "cloud_utilization": 100, "cloud_load": 100, "uplink_bytes": 1e-6,
         "downlink_bytes": 1e-6}
SWEEP_METRICS = ["accuracy", "uplink_bytes", "uploaded_samples", "upload_delay_mean_s", "param_age_mean_s",
                 "cloud_utilization", "cloud_load"]
# Where a sweep changes the cloud's load (fleet size, GPUs, arrivals), how the cloud keeps up: time
# uploads wait for a GPU and to be trained on, and uploads it never trained on at all.
LOAD_KEYS = ("fleet.", "cloud.gpus", "cloud.profile", "cloud.batch", "arrivals.")
SATURATION_METRICS = ["gpu_wait_mean_s", "upload_to_training_mean_s", "uploads_never_used"]
SATURATED = {"cloud_load": 100.0, "cloud_utilization": 100.0}  # % of the GPUs' time: above is more work than time
# summary_by_point.csv also carries these (no figure each): what a study's README tabulates.
TABLE_METRICS = ["samples", "upload_ratio", "dropped_samples", "upload_delay_p95_s", "refreshes", "wall_time_s",
                 "gpu_wait_mean_s", "gpu_wait_p95_s", "uploads_trained", "uploads_never_used",
                 "upload_to_training_mean_s", "refresh_delay_mean_s"]


def label(col: str) -> str:
    return LABELS.get(col, col)


def check_formats(text: str) -> tuple[str, ...]:
    """--format's comma-separated list, checked against the formats matplotlib writes before anything is
    drawn (a bad one would otherwise fail after the first figures were written)."""
    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase

    known = FigureCanvasBase.get_supported_filetypes()
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    problem = ""
    if not formats:
        problem = "no format given"
    elif bad := [f for f in formats if f not in known]:
        problem = f"{', '.join(map(repr, bad))} not a figure format"
    elif "pgf" in formats and not shutil.which(tex := matplotlib.rcParams["pgf.texsystem"]):
        problem = f"pgf needs {tex} (LaTeX), not found on PATH"
    if problem:
        raise ConfigError(f"--format {text!r}: {problem}; give one or more of {', '.join(sorted(known))}, "
                          "comma-separated (default png,pdf)", source="--format")
    return formats


Draw = TypeVar("Draw", bound=Callable[..., list[Path]])


def _writes_figures(draw: Draw) -> Draw:
    """A figure or table that cannot be written (a full disk) raises RunError naming the folder, as a run
    or a sweep does: exit 1, not an internal error."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> list[Path]:
        out = inspect.signature(draw).bind(*args, **kwargs).arguments["out"]
        try:
            return draw(*args, **kwargs)
        except OSError as exc:
            raise RunError(f"cannot write the figures in {out}: {exc.strerror or exc}; the figures there may be "
                           "incomplete: free some space and run `cemasim plot` again") from None

    return wrapper  # type: ignore[return-value]


def _save(fig, out: Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    fig.tight_layout()
    paths = [out / f"{stem}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return paths


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and values.nunique() > 1


def _spans_decades(values: np.ndarray, ratio: float = 50) -> bool:
    v = values[np.isfinite(values) & (values > 0)]
    return bool(len(v)) and len(v) == len(values[np.isfinite(values)]) and v.max() / v.min() >= ratio


def _style_x(ax, values: np.ndarray, label_values: bool = False) -> None:
    """A log x axis where the swept values span a decade or more (4, 32, 128 devices; 5 kbit/s to
    5 Mbit/s): on a linear one the small values crowd into one corner."""
    if _spans_decades(values, 10):
        ax.set_xscale("log")
        ticks = np.unique(values[np.isfinite(values)])
        if label_values and len(ticks) <= 8:  # a swept key's values, written out (4, 32, 128), not 10^1, 10^2
            from matplotlib.ticker import NullFormatter

            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())


# Keys whose values change what travels on the uplink (and so trade bytes against accuracy). A sweep of
# anything else (fleet size, GPUs, arrival rate) changes bytes only by scaling the workload, and a
# communication-accuracy curve or Pareto front across it would join unlike runs.
COMM_KEYS = ("method.", "selection.", "upload.", "uplink.", "cloud.refresh", "cloud.e0")


def changes_communication(grid_keys: list[str]) -> bool:
    return any(k.startswith(COMM_KEYS) for k in grid_keys)


def comm_figures_apply(summary: pd.DataFrame, grid_keys: list[str]) -> bool:
    """Communication-accuracy curves and a Pareto front describe a sweep whose swept keys change what
    is uploaded, and only if no other swept *numeric* key (devices, GPUs, arrival rate) varies: a
    curve or a front would join fleets of different sizes."""
    others = [k for k in grid_keys if not changes_communication([k]) and _numeric(summary[k])]
    return changes_communication(grid_keys) and not others


def _emphasis(name: str) -> dict[str, Any]:
    """CEMA's curve on top of the others, a little heavier, so no other line hides it."""
    return {"zorder": 5, "lw": 2.2} if name.split(",")[0].strip() == "cema" else {}


# ---- sweeps -----------------------------------------------------------------------------------
@_writes_figures
def sweep_figures(table: pd.DataFrame, grid_keys: list[str], out: Path, formats: tuple[str, ...] = ("png", "pdf"),
                  progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Every numeric grid key against the standard metrics (one curve per other key combination),
    plus communication-accuracy curves and the Pareto front when the swept keys change what is
    uploaded (see COMM_KEYS). `progress(i, n)` is called as figures are drawn."""
    out.mkdir(parents=True, exist_ok=True)
    ok = table[table["status"] == "ok"]
    if ok.empty:
        return []
    metrics = [m for m in SWEEP_METRICS if m in ok]  # one figure each
    if any(k.startswith(LOAD_KEYS) for k in grid_keys):
        metrics += [m for m in SATURATION_METRICS if m in ok]
    summary = summarize_sweep(ok, grid_keys, metrics + [m for m in TABLE_METRICS if m in ok and m not in metrics])
    paths: list[Path] = []
    jobs = [(key, metric) for key in grid_keys if _numeric(summary[key]) for metric in metrics]
    comm = comm_figures_apply(summary, grid_keys)
    total = len(jobs) + 2 * comm
    for i, (key, metric) in enumerate(jobs, start=1):
        paths += _metric_vs_key(summary, key, metric, [k for k in grid_keys if k != key], out, formats)
        if progress is not None:
            progress(i, total)
    if comm:
        paths += comm_accuracy(summary, grid_keys, out, formats)
        paths += pareto(summary, grid_keys, out, formats, ok)
        if progress is not None:
            progress(total, total)
    in_percent(summary).to_csv(out / "summary_by_point.csv", index=False)
    return paths


MARKERS = "osD^vP*Xh<>p"


def _style(i: int) -> dict[str, Any]:
    """Distinct colour and marker for curve i (13 methods need more than the default 10 colours)."""
    import matplotlib

    colour = matplotlib.colormaps["tab10"](i) if i < 10 else matplotlib.colormaps["tab20"](2 * (i - 10) % 20 + 1)
    return {"color": colour, "marker": MARKERS[i % len(MARKERS)]}


def _legend(ax, n: int) -> None:
    """A legend of the labelled artists actually drawn (none when there is nothing to tell apart)."""
    drawn = len(ax.get_legend_handles_labels()[1])
    if not n or not drawn:
        return
    if drawn > 6:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8)


def _curves(summary: pd.DataFrame, hue: list[str]):
    if not hue:
        yield "", summary
        return
    for values, group in summary.groupby(hue, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield ", ".join(f"{v}" if k in ("method.name",) else f"{k.split('.')[-1]}={v}"
                        for k, v in zip(hue, values, strict=True)), group


def _metric_vs_key(summary, key, metric, hue, out, formats) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    scale = SCALE.get(metric, 1)
    n = 0
    for n, (name, group) in enumerate(_curves(summary, hue), start=1):
        g = group.sort_values(key)
        x, y = g[key].to_numpy(float), g[metric].to_numpy(float) * scale
        if not np.isfinite(y).any():  # nothing to draw: no line, no legend entry
            continue
        ci = g[f"{metric}_ci95"].to_numpy(float)
        style = {**_style(n - 1), "lw": 1.5, **_emphasis(name)}
        ax.plot(x, y, ms=4, label=name or None, **style)
        if np.isfinite(ci).any():  # the band stays inside the metric's physical range
            lo, hi = bounded_band(g[metric].to_numpy(float), ci, metric)
            ax.fill_between(x, lo * scale, hi * scale, alpha=0.2, color=style["color"], zorder=style.get("zorder"))
    _style_x(ax, summary[key].to_numpy(float), label_values=True)
    if metric in SATURATED:
        _saturation_line(ax, SATURATED[metric], np.nanmax(summary[metric].to_numpy(float) * scale, initial=0))
    if metric.endswith("_s") and _spans_decades(summary[metric].to_numpy(float)):
        ax.set_yscale("log")  # delays spanning decades
    ax.set(xlabel=label(key), ylabel=label(metric))
    ax.grid(alpha=0.3)
    _legend(ax, n if hue else 0)
    return _save(fig, out, f"{metric}_vs_{key.replace('.', '_')}", formats)


def _saturation_line(ax, limit: float, top: float) -> None:
    """The 100 % line of a cloud-load figure; where every point is far below it (under half), a note
    instead, so a few-percent curve is not flattened against the axis."""
    if top >= limit / 2:
        ax.axhline(limit, color="0.25", ls="--", lw=1, zorder=1)
        ax.annotate("saturated above", (1, limit), xycoords=("axes fraction", "data"), xytext=(-3, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.25")
    else:
        ax.annotate(f"saturation ({limit:.0f} %) off the axis", (0.99, 0.98), xycoords="axes fraction",
                    ha="right", va="top", fontsize=7, color="0.25")


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else str(value)


def _seeds_caption(summary: pd.DataFrame) -> str:
    seeds = summary["seeds"] if "seeds" in summary else pd.Series([1])
    n = f"{int(seeds.min())}" if seeds.min() == seeds.max() else f"{int(seeds.min())}-{int(seeds.max())}"
    return ("1 seed: no error bars" if seeds.max() < 2
            else f"mean of {n} seeds; bars: ± 1 standard error over seeds")


def _standard_error(g: pd.DataFrame, metric: str, scale: float) -> np.ndarray:
    """± 1 standard error of the mean over seeds (the 95 % half-width over t), light enough to show the line."""
    from cemasim.results.stats import t975

    dof = (g["seeds"].to_numpy(int) - 1) if "seeds" in g else np.zeros(len(g), int)
    half = np.nan_to_num(g[f"{metric}_ci95"].to_numpy(float))
    return np.array([h / t975(d) if d >= 1 else 0.0 for h, d in zip(half, dof, strict=True)]) * scale


def _label_points(ax, x: np.ndarray, y: np.ndarray, values: pd.Series, color: Any,
                  near: tuple[float, float] = (0.0, 0.0)) -> None:
    """Each point's swept value. Points closer than `near` (x, y) to a labelled one (a link that no
    longer binds gives the same bytes and accuracy) share its label, '0.05, 0.1, 1', instead of
    printing their labels over each other."""
    groups: list[tuple[float, float, list[str]]] = []
    for xi, yi, v in zip(x, y, values, strict=True):
        for gx, gy, texts in groups:
            if abs(xi - gx) <= near[0] and abs(yi - gy) <= near[1]:
                texts.append(_value_text(v))
                break
        else:
            groups.append((float(xi), float(yi), [_value_text(v)]))
    for xi, yi, texts in groups:
        ax.annotate(", ".join(texts), (xi, yi), fontsize=6.5, xytext=(3, 3), textcoords="offset points", color=color)


def comm_accuracy(summary: pd.DataFrame, grid_keys: list[str], out: Path, formats) -> list[Path]:
    """Accuracy against the fleet's uplink bytes and uploaded samples: one line per method through its
    points in the order of the swept key, each point labelled with that key's value, the 95 % CI drawn
    lightly (none with one seed, and the caption says so)."""
    plt = _pyplot()
    # one curve per method, or else per value of the other swept keys, each along the first key
    hue = [k for k in grid_keys if k == "method.name"] or grid_keys[1:]
    paths = []
    for xcol in ("uplink_bytes", "uploaded_samples"):
        if xcol not in summary:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        order = [k for k in grid_keys if k not in hue and _numeric(summary[k])][:1] or [xcol]
        scale, unit = byte_unit(summary[xcol].to_numpy(float)) if xcol == "uplink_bytes" else (1.0, "")
        n = 0
        # labels of points nearer than 3 % of the axes' spans would overprint each other: they share one
        spans = [np.ptp(v[np.isfinite(v)]) if np.isfinite(v).any() else 0.0
                 for v in (summary[xcol].to_numpy(float) * scale, summary["accuracy"].to_numpy(float) * 100)]
        near = (0.03 * spans[0], 0.03 * spans[1])
        for n, (name, group) in enumerate(_curves(summary, hue), start=1):
            g = group.sort_values(order)  # follow the swept key, so the curve reads as a what-if path
            x = g[xcol].to_numpy(float) * scale
            y = g["accuracy"].to_numpy(float) * 100
            style = {**_style(n - 1), "lw": 1.4, **_emphasis(name)}
            ax.plot(x, y, ms=5, label=name or None, **style)
            if (g["seeds"] > 1).any():
                ax.errorbar(x, y, yerr=_standard_error(g, "accuracy", 100), fmt="none", lw=0.8, alpha=0.4,
                            color=style["color"], zorder=1)
            if order[0] != xcol:  # each point says where on the swept key it stands
                _label_points(ax, x, y, g[order[0]], style["color"], near)
        _style_x(ax, summary[xcol].to_numpy(float))
        along = f", points labelled by {label(order[0])}" if order[0] != xcol else ""
        xlabel = f"uplink, the whole fleet ({unit})" if xcol == "uplink_bytes" else "uploaded samples, the whole fleet"
        ax.set(xlabel=xlabel, ylabel=label("accuracy"))
        ax.set_title(f"communication vs accuracy{along}\n({_seeds_caption(summary)})", fontsize=9)
        ax.grid(alpha=0.3)
        _legend(ax, n if hue else 0)
        paths += _save(fig, out, f"comm_accuracy_{xcol}", formats)
    return paths


def _bounded_err(g: pd.DataFrame, metric: str, scale: float) -> np.ndarray:
    """Asymmetric error bars (2, n) of the 95 % CI, clipped to the metric's physical range."""
    mean, half = g[metric].to_numpy(float), np.nan_to_num(g[f"{metric}_ci95"].to_numpy(float))
    lo, hi = bounded_band(mean, half, metric)
    return np.nan_to_num(np.stack([mean - lo, hi - mean]) * scale)


PAIRED_METRICS = ["accuracy", "uplink_bytes", "uploaded_samples"]


@_writes_figures
def paired_figures(table: pd.DataFrame, grid_keys: list[str], baseline: tuple[str, Any], out: Path,
                   formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Paired differences against `baseline` (same seed, same other keys) with their 95 % CIs.

    Writes paired_vs_<value>.csv and one figure per metric: a point-range chart when the other
    swept keys are not numeric (e.g. a methods table), else the difference along the first numeric
    other key with a band, one curve per value of the baseline's key.
    """
    out.mkdir(parents=True, exist_ok=True)
    ok = table[table["status"] == "ok"]
    metrics = [m for m in PAIRED_METRICS if m in ok]
    diffs = paired_differences(ok, grid_keys, metrics, baseline)
    key, value = baseline
    stem = f"paired_vs_{str(value).replace('/', '_').replace('.', '_')}"
    in_percent(diffs).to_csv(out / f"{stem}.csv", index=False)
    if diffs.empty:
        return []
    plt = _pyplot()
    others = [k for k in grid_keys if k != key]
    along = [k for k in others if _numeric(diffs[k])][:1]
    paths: list[Path] = []
    for metric in metrics:
        d, scale = f"{metric}_diff", SCALE.get(metric, 1)
        unit = label(metric).replace("(%)", "(points)")
        if not along:
            fig, ax = plt.subplots(figsize=(5.6, max(2.2, 0.8 + 0.32 * len(diffs))))
            ranked = diffs.sort_values(d, ascending=False)  # largest difference on top
            names = [", ".join(str(r[k]) for k in grid_keys) for _, r in ranked.iterrows()]
            y = np.arange(len(ranked))
            ax.errorbar(ranked[d] * scale, y, xerr=np.nan_to_num(ranked[f"{d}_ci95"]) * scale, fmt="o", ms=4,
                        capsize=3, color="C0")
            ax.set_yticks(y, names, fontsize=8)
            ax.invert_yaxis()
            ax.axvline(0, color="k", lw=0.8)
            ax.set(xlabel=f"{unit} minus {value}, same seed")
        else:
            fig, ax = plt.subplots(figsize=(5.2, 3.6))
            x_key = along[0]
            hue = [k for k in grid_keys if k != x_key]
            n = 0
            for n, (name, group) in enumerate(_curves(diffs, hue), start=1):
                g = group.sort_values(x_key)
                x, style = g[x_key].to_numpy(float), _style(n - 1)
                ax.plot(x, g[d] * scale, ms=4, lw=1.5, label=name or None, **style)
                ax.fill_between(x, g[f"{d}_lo"] * scale, g[f"{d}_hi"] * scale, alpha=0.2, color=style["color"])
            ax.axhline(0, color="k", lw=0.8)
            _style_x(ax, diffs[x_key].to_numpy(float), label_values=True)
            ax.set(xlabel=label(x_key), ylabel=f"{unit} minus {value}")
            _legend(ax, n)
        pairs = int(diffs["pairs"].max())
        ax.set_title(f"paired difference vs {key}={value} (95 % CI, {pairs} seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        paths += _save(fig, out, f"{stem}_{metric}", formats)
    return paths


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of points not dominated in (lower x, higher y), sorted by x."""
    order = np.lexsort((-y, x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def resolved_front(table: pd.DataFrame | None, summary: pd.DataFrame, front: np.ndarray,
                   grid_keys: list[str]) -> list[bool]:
    """For each step between consecutive front points (by bytes): does the accuracy gain of the costlier
    point hold on paired seeds (its 95 % interval above 0)? Without a per-run table or with one seed, no."""
    from cemasim.results.stats import ci95

    if table is None or "seed" not in table or not grid_keys:
        return [False] * max(len(front) - 1, 0)
    ok = table[table["status"] == "ok"] if "status" in table else table
    per_point = {tuple(summary.iloc[i][grid_keys]): ok[(ok[grid_keys] == summary.iloc[i][grid_keys]).all(axis=1)]
                 .set_index("seed")["accuracy"] for i in front}
    steps = []
    for a, b in itertools.pairwise(front):
        diff = (per_point[tuple(summary.iloc[b][grid_keys])] - per_point[tuple(summary.iloc[a][grid_keys])]).dropna()
        half = ci95(diff)
        steps.append(bool(len(diff) > 1 and np.isfinite(half) and diff.mean() - half > 0))
    return steps


def pareto(summary: pd.DataFrame, grid_keys: list[str], out: Path, formats,
           table: pd.DataFrame | None = None) -> list[Path]:
    """Every point with its 95 % CI; the Pareto front (fewer bytes, higher accuracy) drawn only along
    the steps whose accuracy gain the paired seeds resolve: a front through noise is not a front."""
    plt = _pyplot()
    scale, unit = byte_unit(summary["uplink_bytes"].to_numpy(float))
    x = summary["uplink_bytes"].to_numpy(float) * scale
    y = summary["accuracy"].to_numpy(float) * 100
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    hue = [k for k in grid_keys if k == "method.name"]
    n = 0
    for n, (name, group) in enumerate(_curves(summary, hue), start=1):
        style = _style(n - 1)
        gx, gy = group["uplink_bytes"].to_numpy(float) * scale, group["accuracy"].to_numpy(float) * 100
        ax.scatter(gx, gy, s=22, label=name or None, **style, zorder=_emphasis(name).get("zorder", 2))
        if (group["seeds"] > 1).any():
            ax.errorbar(gx, gy, yerr=_standard_error(group, "accuracy", 100), fmt="none", lw=0.8, alpha=0.4,
                        color=style["color"])
    front = pareto_front(x, y)
    steps = resolved_front(table, summary, front, grid_keys)
    drawn = False
    for (a, b), ok in zip(itertools.pairwise(front), steps, strict=True):
        if ok:
            ax.plot(x[[a, b]], y[[a, b]], "k--", lw=1, label=None if drawn else "Pareto front (resolved steps)")
            drawn = True
    note = "" if drawn else "; no step of the front is resolved by the paired seeds, none drawn"
    _style_x(ax, x)
    ax.set(xlabel=f"uplink, the whole fleet ({unit})", ylabel=label("accuracy"))
    ax.set_title(f"accuracy vs communication\n({_seeds_caption(summary)}{note})", fontsize=9)
    ax.grid(alpha=0.3)
    _legend(ax, n + drawn)
    front_table = summary.iloc[front].assign(step_resolved=[None, *steps] if len(front) else [])  # vs the previous
    in_percent(front_table).to_csv(out / "pareto_front.csv", index=False)
    return _save(fig, out, "pareto_accuracy_uplink", formats)


# ---- run folders ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """What the run-folder figures need of one run, read (and checked) before anything is drawn."""

    name: str
    tables: dict[str, pd.DataFrame]
    uplink_mb: float
    accuracy_pct: float
    scenario: dict[str, Any] = field(default_factory=dict)  # flattened: 'uplink.bandwidth_mbps' -> 5


def read_run(folder: Path) -> RunData:
    """A complete run folder's tables and totals; a damaged file (not JSON, truncated, missing, without the
    columns a figure needs) raises DataError naming it."""
    columns = ["device", "tx_start_s", "size_bytes"]
    tables = {"samples": _table(folder / "samples.parquet", ["predicted_s", "correct"]),
              "uploads": _table(folder / "uploads.parquet", columns)}
    if (folder / "reports.parquet").is_file():
        tables["reports"] = _table(folder / "reports.parquet", columns)
    summary = _summary(folder / "summary.json")
    name, scenario = _run_label(folder)
    return RunData(name, tables, summary["uplink_bytes"] / 1e6, 100 * summary["accuracy"], scenario)


IGNORED_IN_LABELS = ("name", "output.")  # they differ between runs without changing what was simulated


def run_labels(runs: list[RunData]) -> list[str]:
    """Each run named by the scenario keys whose values differ between the runs ('cema, bandwidth_mbps=0.01'),
    the method first; the folder names when the scenarios differ in nothing else (or only one run)."""
    keys = sorted({k for r in runs for k in r.scenario}, key=lambda k: (k != "method.name", k))
    varied = [k for k in keys if not k.startswith(IGNORED_IN_LABELS)
              and len({json.dumps(r.scenario.get(k), sort_keys=True, default=str) for r in runs}) > 1]
    if len(runs) < 2 or not varied:
        return [r.name for r in runs]

    def show(key: str, value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        text = text if len(text) <= 24 else text[:21] + "..."
        return text if key == "method.name" else f"{key.split('.')[-1]}={text}"

    return [", ".join(show(k, r.scenario.get(k)) for k in varied) for r in runs]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def _damaged(path: Path, why: str) -> DataError:
    return DataError(f"{path}: {why}; the run folder is damaged: run it again (or leave it out of the plot)")


def _table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise _damaged(path, "missing")
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
        raise _damaged(path, f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_bytes())
    except ValueError as exc:  # not JSON, not UTF-8
        raise _damaged(path, f"not JSON ({exc})") from None
    if not isinstance(summary, dict):
        raise _damaged(path, f"not a JSON object (got {json.dumps(summary)[:60]})")
    for key in ("accuracy", "uplink_bytes"):  # a complete run always has both
        value = summary.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _damaged(path, f"{key} must be a number, got {json.dumps(value)}")
    return summary


@_writes_figures
def run_figures(runs: list[RunData], out: Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Communication-accuracy curves over time (one per run) and a final-accuracy/bytes scatter."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    names = run_labels(runs)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        mb, acc = cumulative_accuracy_vs_uplink(run.tables)
        line, = ax.plot(mb, acc, lw=1.4, label=name, color=_style(i)["color"])
        ax.scatter(mb[-1:], acc[-1:], s=16, color=line.get_color(), zorder=3)
    ax.set(xlabel="uplink sent so far, the whole fleet (MB, uploads and reports)", ylabel="accuracy so far (%)",
           title="communication vs accuracy over each run")
    ax.grid(alpha=0.3)
    _legend(ax, len(runs))
    paths = _save(fig, out, "runs_comm_accuracy", formats)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):  # a legend, not labels on the points: they collide
        ax.scatter([run.uplink_mb], [run.accuracy_pct], s=30, label=name, **_style(i))
    ax.set(xlabel="uplink, the whole fleet (MB)", ylabel="accuracy (%)", title="final accuracy vs uplink")
    ax.grid(alpha=0.3)
    _legend(ax, len(runs))
    return paths + _save(fig, out, "runs_accuracy_uplink", formats)


def _run_label(folder: Path) -> tuple[str, dict[str, Any]]:
    from cemasim.yamlfile import read_yaml

    sc = read_yaml(folder / "scenario.yaml", "run's scenario")
    method = sc.get("method") if isinstance(sc, dict) else None
    name = method.get("name") if isinstance(method, dict) else None
    if not isinstance(name, str):
        raise _damaged(folder / "scenario.yaml", "no method.name")
    return (f"{name} ({folder.name})" if name not in folder.name else folder.name), _flatten(sc)
