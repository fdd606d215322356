"""One run end to end: Scenario -> Fleet simulation -> tables, summary, plots in a run folder."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cemasim.results import plots, writer
from cemasim.results.summary import accuracy_by_domain, summarize, timeline
from cemasim.scenario import Scenario
from cemasim.sim.fleet import Fleet


@dataclass
class RunOutput:
    folder: Path | None
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]


def simulate(sc: Scenario, progress: bool = False) -> tuple[dict[str, pd.DataFrame], dict[str, Any], Any]:
    """Run the simulation in memory: (tables, summary, SimResult)."""
    fleet = Fleet(sc)
    bar = _progress_bar(sc, fleet.n_samples) if progress else None
    try:
        result = fleet.run(progress=(lambda t, n: bar.update(n - bar.n)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
    tables = result.recorder.tables()
    summary = summarize(tables, result.sim_time_s, result.wall_time_s, result.events, result.cloud_busy_s,
                        result.gpus, cloud_active_w=result.cloud_active_w, arrival_period_s=sc.duration_s)
    summary["compute_device"] = result.compute_device
    return tables, summary, result


def run(sc: Scenario, out_parent: Path | None = None, progress: bool = True, folder: Path | None = None) -> RunOutput:
    """Simulate and write the run folder (see cemasim.results.writer for its contents).

    The folder is `folder` if given, else a new `<out_parent or output.dir>/<name>[-k]`.
    """
    tables, summary, result = simulate(sc, progress)
    if folder is None:
        folder = writer.next_run_folder(Path(out_parent if out_parent is not None else sc.output.dir), sc.name)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.yaml").write_text(sc.to_yaml())
    manifest = writer.manifest(sc.seed, result.compute_device, result.wall_time_s, writer.write_command_line())
    writer.write_json(folder / "manifest.json", {**manifest, "protocol": result.protocol})
    writer.write_json(folder / "summary.json", summary)
    writer.write_tables(folder, tables)
    tl = timeline(tables, sc.output.timeline_bin_s)
    tl.to_parquet(folder / "timeline.parquet", index=False)
    accuracy_by_domain(tables["samples"]).to_csv(folder / "accuracy_by_domain.csv", index=False)
    if sc.output.plots:
        plots.write_run_plots(tables, tl, folder / "plots", f"{sc.name} ({sc.method.name})")
    return RunOutput(folder, summary, tables)


def _progress_bar(sc: Scenario, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{sc.name} [{sc.method.name}]", unit="sample", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, delay=2.0)
