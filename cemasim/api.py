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

import pandas as pd

from cemasim import scenario as _scenario
from cemasim.scenario import Scenario


@dataclass(frozen=True)
class RunResult:
    """One simulated run, in memory (the same contents as a run folder, docs/outputs.md)."""

    summary: dict[str, Any]  # flat metrics: accuracy, uplink_bytes, upload_delay_p95_s, ...
    tables: dict[str, pd.DataFrame]  # samples, uploads, reports, refreshes, cloud_jobs, devices, ...
    timeline: pd.DataFrame  # per device and output.timeline_bin_s bin
    accuracy_by_domain: pd.DataFrame  # per (corruption, severity)
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
    listing every problem with its YAML path."""
    sc = _scenario.load(path, [], seed)
    return sc.with_overrides(overrides) if overrides else sc


def simulate(sc: Scenario, progress: bool = False) -> RunResult:
    """Run `sc` in memory; nothing is written."""
    from cemasim import runner
    from cemasim.results.summary import accuracy_by_domain, timeline

    tables, summary, result = runner.simulate(sc, progress)  # RunError when nothing was predicted
    return RunResult(summary, tables, timeline(tables, sc.output.timeline_bin_s),
                     accuracy_by_domain(tables["samples"]), result.protocol)


def sweep(base: Scenario | str | Path | None, grid: dict[str, list[Any]] | None = None, seeds: int | list[int] = 1, *,
          set: dict[str, Any] | None = None, variants: dict[str, dict[str, Any]] | None = None, name: str = "sweep",
          out: str | Path | None = None, workers: int = 1, backend: str = "local", threads: int | None = None,
          progress: bool = False) -> pd.DataFrame:
    """Run base x grid x seeds (x variants, named override sets) and return the results table (one row per
    run: grid values, seed, status, every summary metric). With `out`, run folders and results.parquet
    go to out/name and a re-run resumes; without it nothing stays on disk. Seeds pair the data:
    compare methods with `paired`."""
    from cemasim import sweeps as sw

    spec = sw.build_sweep(name, base if isinstance(base, Scenario) or base is None else Path(base), dict(set or {}),
                          dict(grid or {}), seeds, source="sweep()", variants=variants)
    if out is not None:
        return sw.run_sweep(spec, Path(out), backend, workers, progress=progress, threads=threads)
    with tempfile.TemporaryDirectory(prefix="cemasim-sweep-") as tmp:
        table = sw.run_sweep(spec, Path(tmp), backend, workers, progress=progress, threads=threads)
    return table.assign(run_folder="")  # the folders are gone


def paired(table: pd.DataFrame, baseline: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per grid point, the mean of the per-seed differences against `baseline` ('KEY=VALUE', a grid value)
    with a paired 95 % t interval: columns <metric>_diff, _diff_ci95, _diff_lo, _diff_hi, pairs."""
    from cemasim.results.stats import paired_differences, parse_baseline

    ok = table[table["status"] == "ok"] if "status" in table else table
    metrics = metrics or [m for m in ("accuracy", "uplink_bytes", "upload_delay_p95_s") if m in ok]
    return paired_differences(ok, _grid_columns(table), metrics, parse_baseline(baseline))


def _grid_columns(table: pd.DataFrame) -> list[str]:
    """The swept keys of a results table: dotted scenario keys and `variant`."""
    return [c for c in table.columns if "." in c or c == "variant"]
