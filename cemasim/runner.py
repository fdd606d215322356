"""One run end to end: Scenario -> Fleet simulation -> tables, summary, plots in a run folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cemasim.assembly import assemble
from cemasim.errors import RunError
from cemasim.results import plots, writer
from cemasim.results.summary import accuracy_by_domain, summarize, timeline
from cemasim.results.units import in_percent
from cemasim.scenario import Scenario
from cemasim.sim.fleet import Fleet


@dataclass
class RunOutput:
    folder: Path | None
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]


Progress = bool | Callable[[int, int], None]  # a bar on stderr, or a callback(predicted, total)


def simulate(sc: Scenario, progress: Progress = False) -> tuple[dict[str, pd.DataFrame], dict[str, Any], Any]:
    """Run the simulation in memory: (tables, summary, SimResult); RunError when nothing was predicted."""
    fleet = Fleet(assemble(sc))
    bar = _progress_bar(sc, fleet.n_samples) if progress is True else None
    report = None
    if bar is not None:
        report = lambda t, n: bar.update(n - bar.n)  # noqa: E731
    elif callable(progress):
        report = lambda t, n: progress(n, fleet.n_samples)  # noqa: E731
    try:
        result = fleet.run(progress=report)
    finally:
        if bar is not None:
            bar.close()
    tables = result.recorder.tables()
    if not len(tables["samples"]):
        raise RunError(no_predictions_message(sc, fleet, len(tables["missed"])))
    summary = summarize(tables, result.sim_time_s, result.wall_time_s, result.events, result.cloud_busy_s,
                        result.gpus, cloud_active_w=result.cloud_active_w, arrival_period_s=sc.duration_s)
    summary["compute_device"] = result.compute_device
    return tables, summary, result


def run(sc: Scenario, out_parent: Path | None = None, progress: Progress = True,
        folder: Path | None = None) -> RunOutput:
    """Simulate and write the run folder (see cemasim.results.writer for its contents).

    The folder is `folder` if given, else a new `<out_parent or output.dir>/<name>[-k]`, created before
    the simulation so that an unwritable place fails in a second, not after the run. summary.json is
    written last, atomically: a folder without it is incomplete (interrupted or out of space).
    """
    parent = Path(out_parent if out_parent is not None else sc.output.dir)
    created = folder is None
    if folder is None:
        folder = writer.next_run_folder(parent, sc.name)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        tables, summary, result = simulate(sc, progress)
    except BaseException:  # a failed, empty or interrupted run leaves no empty folder behind
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    try:
        _write(sc, folder, tables, summary, result)
    except OSError as exc:
        raise RunError(f"could not write the run folder {folder}: {exc.strerror or exc}; it is incomplete "
                       "(no summary.json) - free space or choose another --out and run again") from None
    return RunOutput(folder, summary, tables)


def _write(sc: Scenario, folder: Path, tables: dict[str, pd.DataFrame], summary: dict[str, Any], result: Any) -> None:
    (folder / "scenario.yaml").write_text(sc.to_yaml())
    manifest = writer.manifest(sc.seed, result.compute_device, result.wall_time_s, writer.write_command_line())
    writer.write_json(folder / "manifest.json", {**manifest, "protocol": result.protocol})
    writer.write_tables(folder, tables)
    tl = timeline(tables, sc.output.timeline_bin_s)
    tl.to_parquet(folder / "timeline.parquet", index=False)
    in_percent(accuracy_by_domain(tables["samples"])).to_csv(folder / "accuracy_by_domain.csv", index=False)
    if sc.output.plots:
        plots.write_run_plots(tables, tl, folder / "plots", f"{sc.name} ({sc.method.name})")
    writer.write_json(folder / writer.COMPLETE, summary, atomic=True)  # last: marks the folder complete


def no_predictions_message(sc: Scenario, fleet: Fleet, missed: int) -> str:
    """Why a run predicted nothing, with the advice for that cause: no arrival, every arrival while its
    device was off, every prediction slower than the run, or every test batch closing after the end."""
    head = "no sample was predicted: "
    if fleet.n_samples == 0 and missed:
        return (f"{head}every device was off whenever a sample arrived ({missed:,} samples missed: availability); "
                "shorten availability.off_s or the off intervals of availability.trace")
    if fleet.n_samples == 0:
        return (f"{head}no sample arrived during the {sc.duration_s:g} s of arrivals (duration_s); check that "
                "arrivals.trace's time_s are seconds below duration_s, or raise arrivals.rate_hz or duration_s")
    horizon = sc.duration_s + sc.drain_s
    first = min(((d, float(d.batches.ready_s[0])) for d in fleet.devices if len(d.batches)),
                key=lambda pair: pair[1], default=None)
    if first is None:  # samples arrived, but no device has a test batch: the last message's cause
        return _no_batch_message(sc, head)
    device, ready_s = first
    size = int(device.batches.stops[0] - device.batches.starts[0])
    compute_s = device.cost.seconds(size)
    if ready_s < horizon <= ready_s + compute_s:
        return (f"{head}the first test batch closed at {ready_s:g} s (device {device.index}) but predicting its "
                f"{size} samples takes {compute_s:.3g} s of simulated compute, past the end at {horizon:g} s "
                "(duration_s + drain_s); check fleet.profile (peak_flops_per_s, utilization, overhead_s) or "
                "lengthen drain_s")
    if ready_s < horizon:
        return (f"{head}the first test batch closed at {ready_s:g} s (device {device.index}) but no prediction was "
                f"recorded by the end at {horizon:g} s (duration_s + drain_s): predictions that travel (method "
                f"{sc.method.name}) wait for the links and the devices' availability; lengthen drain_s")
    return _no_batch_message(sc, head)


def _no_batch_message(sc: Scenario, head: str) -> str:
    return (f"{head}{sc.duration_s:g} s of arrivals (duration_s) and {sc.drain_s:g} s of drain "
            f"(drain_s) end before a test batch closes (a batch closes at arrivals.batch_size = "
            f"{sc.arrivals.batch_size} samples or arrivals.max_wait_s = {sc.arrivals.max_wait_s:g} s after its first "
            "sample); lengthen duration_s or drain_s, or lower max_wait_s")


def _progress_bar(sc: Scenario, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{sc.name} [{sc.method.name}]", unit="sample", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, delay=2.0)
