"""The Python API: a study in a notebook, without the command line or files.

    import cemasim

    sc = cemasim.load_scenario("scenarios/quickstart.yaml", {"fleet.devices": 4})
    result = cemasim.simulate(sc)                 # RunResult: summary, tables, timeline; nothing written
    table = cemasim.sweep(sc, {"method.name": ["cema", "bn_adapt"]}, seeds=3)   # one row per run
    cemasim.paired(table, baseline="method.name=bn_adapt")                      # paired differences

Everything here is a thin layer over the modules the CLI uses (scenario, runner, sweep,
results.stats); results are the same for the same seed whichever way a run is started.
docs/python.md walks through a study.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cemasim import scenario as _scenario
from cemasim.errors import ConfigError
from cemasim.results.units import in_fractions, in_percent
from cemasim.scenario import Scenario
from cemasim.schema import show


@dataclass(frozen=True)
class RunResult:
    """One simulated run, in memory (the same contents as a run folder, docs/outputs.md)."""

    summary: dict[str, Any]  # summary.json's flat metrics (fractions): accuracy, uplink_bytes, ...
    tables: dict[str, pd.DataFrame]  # samples, uploads, reports, refreshes, cloud_jobs, devices, ...
    timeline: pd.DataFrame  # per device and output.timeline_bin_s bin (accuracy_pct)
    accuracy_by_domain: pd.DataFrame  # per (corruption, severity): accuracy_pct, selected_ratio_pct
    protocol: dict[str, Any]  # data, shift protocol, metric, models and weights: what a number must carry

    @property
    def samples(self) -> pd.DataFrame:
        return self.tables["samples"]

    @property
    def uploads(self) -> pd.DataFrame:
        return self.tables["uploads"]


def load_scenario(path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None,
                  seed: int | None = None) -> Scenario:
    """A validated scenario: a file (or the defaults) with overrides, `{"uplink.bandwidth_mbps": 2}`
    (Python values) or `["uplink.bandwidth_mbps=2"]` (YAML text, as `--set`). Raises ConfigError
    listing every problem with its YAML path (or the argument that has the wrong type)."""
    overrides, seed = _plain(overrides), _plain(seed)
    _check("load_scenario", [
        (path is None or isinstance(path, (str, Path)), "path", "a file path (str or Path) or None", path),
        (overrides is None or isinstance(overrides, dict) or _strings(overrides), "overrides",
         "{'key': value}, ['key=value', ...] or None", overrides)])
    sc = _scenario.load(path, [], seed)
    return sc.with_overrides(overrides) if overrides else sc


def _interactive() -> bool:
    """A person is watching: stderr is a terminal, or Python runs a notebook or an interactive prompt."""
    import sys

    return sys.stderr.isatty() or hasattr(sys, "ps1") or "ipykernel" in sys.modules


def simulate(sc: Scenario, progress: bool | None = None) -> RunResult:
    """Run `sc` in memory; nothing is written. `progress`: None shows a bar in interactive use."""
    from cemasim import runner
    from cemasim.results.summary import accuracy_by_domain, timeline

    _check("simulate", [(isinstance(sc, Scenario), "sc", "a Scenario (cemasim.load_scenario(...))", sc)])
    progress = _interactive() if progress is None else progress
    tables, summary, result = runner.simulate(sc, progress)  # RunError when nothing was predicted
    return RunResult(summary, tables, in_percent(timeline(tables, sc.output.timeline_bin_s)),
                     in_percent(accuracy_by_domain(tables["samples"])), result.protocol)


def sweep(base: Scenario | str | Path | None, grid: dict[str, list[Any]] | None = None, seeds: int | list[int] = 1, *,
          set: dict[str, Any] | None = None, variants: dict[str, dict[str, Any]] | None = None, name: str = "sweep",
          out: str | Path | None = None, workers: int = 1, backend: str = "local", threads: int | None = None,
          progress: bool | None = None) -> pd.DataFrame:
    """Run base x grid x seeds (x variants, named override sets) and return the results table (one row per
    run: grid values, seed, status, every summary metric; fractions in percent: accuracy_pct, ...). With
    `out`, run folders and results.parquet (the record, in fractions) go to out/name and a re-run
    resumes; without it nothing stays on disk. Seeds pair the data: compare methods with `paired`.
    numpy numbers and arrays are taken as the Python values they hold.
    `progress`: None shows bars in interactive use (a terminal, a notebook), nothing in a batch job."""
    from cemasim import sweeps as sw

    progress = _interactive() if progress is None else progress
    grid, seeds, fixed, variants, workers, threads = map(_plain, (grid, seeds, set, variants, workers, threads))
    _check("sweep", [
        (base is None or isinstance(base, (Scenario, str, Path)), "base", "a Scenario, a file path or None", base),
        (grid is None or isinstance(grid, dict), "grid", "{'key': [values]} or None", grid),
        (fixed is None or isinstance(fixed, dict), "set", "{'key': value} or None", fixed),
        (variants is None or (isinstance(variants, dict) and all(isinstance(v, dict) for v in variants.values())),
         "variants", "{'name': {'key': value}} or None", variants),
        (out is None or isinstance(out, (str, Path)), "out", "a folder path or None", out)])
    sw.check_run_args(backend, workers, threads)  # before validating every point, which can take a while
    spec = sw.build_sweep(name, base if isinstance(base, Scenario) or base is None else Path(base), dict(fixed or {}),
                          dict(grid or {}), seeds, source="cemasim.sweep()", variants=variants, progress=progress)
    if out is not None:
        return in_percent(sw.run_sweep(spec, Path(out), backend, workers, progress=progress, threads=threads))
    with tempfile.TemporaryDirectory(prefix="cemasim-sweep-") as tmp:
        table = sw.run_sweep(spec, Path(tmp), backend, workers, progress=progress, threads=threads)
    return in_percent(table).assign(run_folder="")  # the folders are gone


def paired(table: pd.DataFrame, baseline: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per grid point, the mean of the per-seed differences against `baseline` ('KEY=VALUE', a grid value)
    with a paired 95 % t interval: columns <metric>_diff, _diff_ci95, _diff_lo, _diff_hi, pairs, in the
    table's units (a table of cemasim.sweep: accuracy_pct_diff, in points; a results.parquet read with
    pandas: accuracy_diff, a fraction). Each run counts once; ConfigError for a table that is not one
    sweep's or a baseline that is not in it."""
    from cemasim.results.stats import paired_differences, parse_baseline

    _check("paired", [
        (isinstance(table, pd.DataFrame), "table", "a results table (DataFrame) of cemasim.sweep", table),
        (isinstance(baseline, str), "baseline", "'KEY=VALUE', e.g. 'method.name=bn_adapt'", baseline),
        (metrics is None or _strings(metrics), "metrics", "a list of metric names or None", metrics)])
    # a fraction named as in the records ('accuracy') means its percent column in a table of cemasim.sweep
    metrics = [f"{m}_pct" if m not in table and f"{m}_pct" in table else m for m in metrics or []] or None
    missing = [c for c in ["seed", *(metrics or [])] if c not in table]
    if missing:
        raise ConfigError(f"table: no column {', '.join(missing)} (a table of cemasim.sweep has seed and the "
                          "summary metrics)", source="cemasim.paired()")
    ok = table[table["status"] == "ok"] if "status" in table else table
    accuracy = "accuracy_pct" if "accuracy_pct" in ok else "accuracy"
    metrics = metrics or [m for m in (accuracy, "uplink_bytes", "upload_delay_p95_s") if m in ok]
    try:
        return paired_differences(ok, _grid_columns(table), metrics, parse_baseline(baseline))
    except ValueError as exc:
        raise ConfigError(str(exc), source="cemasim.paired()") from None


def plot(source: pd.DataFrame | str | Path | list[str | Path], out: str | Path | None = None, *,
         baseline: str | None = None, formats: tuple[str, ...] | list[str] = ("png",)) -> list[Path]:
    """Draw what `cemasim plot` draws and return the files written: a sweep's figures from its results
    table (a DataFrame of cemasim.sweep, with `out`) or its folder, or run folders compared (a list).
    `baseline` ('KEY=VALUE') adds the paired-difference figures of a sweep. Everything is read and
    checked before the first figure is drawn."""
    from cemasim.results.figures import check_formats, paired_figures, run_figures, sweep_figures
    from cemasim.results.stats import parse_baseline

    sources = source if isinstance(source, list) else [source]
    _check("plot", [
        (all(isinstance(s, (pd.DataFrame, str, Path)) for s in sources) and len(sources) > 0, "source",
         "a results table (DataFrame), a sweep or run folder, or a list of run folders", source),
        (out is None or isinstance(out, (str, Path)), "out", "a folder path or None", out),
        (baseline is None or isinstance(baseline, str), "baseline", "'KEY=VALUE' or None", baseline),
        (isinstance(formats, (tuple, list)) and _strings(list(formats)), "formats", "e.g. ('png', 'pdf')", formats)])
    kinds = check_formats(",".join(formats))
    try:
        base = parse_baseline(baseline) if baseline else None
    except ValueError as exc:
        raise ConfigError(str(exc), source="cemasim.plot()") from None
    if isinstance(source, pd.DataFrame):
        if out is None:
            raise ConfigError("out: a folder for the figures is needed with a results table", source="cemasim.plot()")
        tables = [(in_fractions(source), _grid_columns(source), Path(out))]
        runs: list = []
    else:
        from cemasim import sweeps as sw

        tables, runs, _ = sw.plot_sources([Path(s) for s in sources], Path(out) if out else None, "cemasim.plot()")
    written: list[Path] = []
    for table, keys, folder in tables:
        written += sweep_figures(table, keys, folder, kinds)
        if base is not None:
            try:
                written += paired_figures(table, keys, base, folder, kinds)
            except ValueError as exc:
                raise ConfigError(str(exc), source="cemasim.plot()") from None
    if runs:
        written += run_figures(runs, Path(out) if out else Path("figures"), kinds)
    return written


def _grid_columns(table: pd.DataFrame) -> list[str]:
    """The swept keys of a results table: its columns between seed and status (a top-level key such as
    duration_s has no dot), else the dotted scenario keys and `variant`."""
    cols = list(table.columns)
    if "seed" in cols and "status" in cols and cols.index("seed") < cols.index("status"):
        return cols[cols.index("seed") + 1:cols.index("status")]
    return [c for c in cols if "." in c or c == "variant"]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, and tuples, as the plain Python values YAML and the schema know."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, dict) else value


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check(call: str, checks: list[tuple[bool, str, str, Any]]) -> None:
    """Arguments of the wrong type: every one named, as a ConfigError (not a TypeError deep inside)."""
    problems = [f"{arg}: expected {expected}, got {type(value).__name__} {show(value)}"
                for ok, arg, expected, value in checks if not ok]
    if problems:
        raise ConfigError(problems, source=f"cemasim.{call}()")
