"""What-if sweeps: a base scenario x a grid over any keys x seeds, run on a local process pool or a
Ray cluster, collected into one results table.

    sweep file / --grid  ->  points (validated all before any runs)  ->  backend  ->  results.parquet

Each point is one ordinary run (one process, its own run folder). The table is rewritten after
every finished run, so an interrupted sweep loses nothing that finished, and re-running the same
sweep skips points already done. A failed point is recorded with its error and the others go on.

Faults: workers die with the sweep (a watchdog on their parent), Ctrl-C / SIGTERM stop them and
record every run that finished; a run folder whose summary.json exists is complete, so a run that
finished but was never recorded (kill -9, a full disk) and a table that cannot be read or is not this
sweep's are rebuilt from the run folders on the next start, and a recorded run whose folder lost its
summary.json runs again; a table holds one row per point. One sweep folder has one writer at a time (a lock).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cemasim import runprogress, scenario
from cemasim.errors import ConfigError, RunError
from cemasim.results import writer
from cemasim.results.stats import ci95, summarize_sweep  # noqa: F401  (the sweep API's statistics)
from cemasim.schema import Field, Section, plain_name, resolve, show

SWEEP_SCHEMA = Section(
    "A sweep file: a base scenario, fixed overrides, a grid and seeds.",
    {
        "name": Field((str,), "sweep", "sweep name: folder under --out and label in plots", "", (plain_name,)),
        "base": Field((str,), None, "scenario file, relative to the sweep file; null = the defaults", nullable=True),
        "set": Field((dict,), {}, "fixed overrides applied to every point, {key: value}"),
        "grid": Field((dict,), {}, "{key: [values]}: the cartesian product is swept"),
        "seeds": Field((int, list), 1, "number of seeds (0..n-1) or an explicit list"),
    },
)


@dataclass(frozen=True)
class Point:
    """One run of a sweep: grid values + seed, identified by its whole resolved scenario (so a
    changed base or fixed override never reuses an old result)."""

    values: dict[str, Any]
    seed: int
    scenario_digest: str = ""

    @property
    def point_id(self) -> str:
        text = json.dumps({"values": self.values, "seed": self.seed, "scenario": self.scenario_digest},
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def folder_name(self) -> str:
        """A run folder a reader can find: the grid values and seed, then the point id (unique),
        e.g. 'name-cema_bandwidth_mbps-0.05_seed-0_3f2a9c1b0d4e'."""
        parts = [f"{key.split('.')[-1]}-{value}" for key, value in self.values.items()] + [f"seed-{self.seed}"]
        readable = re.sub(r"[^A-Za-z0-9._-]+", "", "_".join(parts).replace(" ", ""))[:80]
        return f"{readable}_{self.point_id}"


def digest(resolved: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Sweep:
    name: str
    base: Path | scenario.Scenario | None
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    points: list[Point] = field(default_factory=list)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)  # point_id -> resolved scenario


# ---- building a sweep --------------------------------------------------------------------------
MAX_RUNS = 100_000  # grid points x seeds of one sweep: each is validated and held (~8 KB) before any runs
PROGRESS_FROM = 200  # validation of a sweep of more runs shows a progress bar
# keys the sweep sets itself for every run: a value given for them would be silently replaced
SWEEP_OWNED = {
    "seed": "a sweep gives each run its seed from `seeds` (a count, or a list such as seeds: [5, 6]; "
            "--seeds 3 or --seeds 5,6 on the command line)",
    "output.dir": "a sweep writes its run folders under <--out>/<name>/runs",
}


def read_sweep_file(path: str | Path) -> dict[str, Any]:
    """A sweep file checked but not expanded: name, base (a path next to the file, or None), fixed, grid, seeds."""
    path = Path(path)
    data = scenario.read_yaml(path)
    problems: list[str] = []
    spec = resolve(SWEEP_SCHEMA, data, "", problems)
    if problems:
        raise ConfigError(problems, source=str(path))
    base = (path.parent / spec["base"]).resolve() if spec["base"] else None
    return {"name": spec["name"], "base": base, "fixed": spec["set"], "grid": spec["grid"], "seeds": spec["seeds"]}


def load_sweep_file(path: str | Path) -> Sweep:
    spec = read_sweep_file(path)
    return build_sweep(spec["name"], spec["base"], spec["fixed"], spec["grid"], spec["seeds"], source=str(path))


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """--grid key=v1,v2,... (values parsed as YAML; commas inside [...] or {...} belong to the value,
    so lists sweep too: --grid 'shift.segments=[{corruption: fog}],[{corruption: snow}]')."""
    grid, problems = {}, []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not text.strip() or not key:
            problems.append(f"--grid {show(item)}: expected KEY=V1,V2,..., e.g. uplink.bandwidth_mbps=0.5,2,8")
            continue
        if key in grid:  # the later one would replace the earlier silently
            problems.append(f"--grid {key}: given twice; give all its values in one --grid {key}=V1,V2,...")
            continue
        values = []
        for i, part in enumerate(split_values(text), 1):
            if not part.strip():
                problems.append(f"--grid {key}: value {i} is empty (write null for no value, e.g. {key}=1,null)")
                continue
            try:
                value = yaml.safe_load(part)
            except yaml.YAMLError as exc:
                problems.append(f"--grid {key}: value {show(part)} is not valid YAML ({getattr(exc, 'problem', exc)})")
                continue
            big = scenario.oversized_paths(value, f"--grid {key}")
            problems += big
            values.append(value)
        grid[key] = values
    if problems:
        raise ConfigError(problems, source="--grid")
    return grid


def split_values(text: str) -> list[str]:
    """Split at commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def build_sweep(name: str, base: Path | scenario.Scenario | None, fixed: dict[str, Any], grid: dict[str, list[Any]],
                seeds: int | list[int], source: str = "sweep",
                variants: dict[str, dict[str, Any]] | None = None, progress: bool = True) -> Sweep:
    """Expand and validate every point before anything runs. `base`: a scenario file, a Scenario or
    None (the defaults). `variants`: named sets of overrides swept as one more grid key, `variant`
    (an ablation: each variant switches some keys at once). Sizes, repeated values and keys the sweep
    sets itself are refused before any point is built; more than PROGRESS_FROM runs show a progress bar."""
    seed_list = _checked_seeds(name, fixed, grid, seeds, variants, source)
    base_data = _base_data(base, source)
    sweep = Sweep(name, base, dict(fixed), dict(grid), seed_list)
    keys, dims = list(grid), [grid[k] for k in grid]
    if variants:
        keys, dims = [VARIANT, *keys], [list(variants), *dims]
        sweep.grid = {VARIANT: list(variants), **sweep.grid}
    n_runs = len(seed_list) * math.prod(len(d) for d in dims)
    bar = _bar(n_runs, 0, f"validating {name}") if progress and n_runs > PROGRESS_FROM else None
    where: dict[str, list[str]] = {}  # problem -> the points it occurs at
    point_source = f"{source} (base {base})" if isinstance(base, Path) else source
    try:
        for combo in itertools.product(*dims):
            point_values: dict[str, Any] = dict(zip(keys, combo, strict=True))
            chosen = {k: v for k, v in point_values.items() if k != VARIANT}
            if variants:
                chosen.update(variants[point_values[VARIANT]])
            for seed in seed_list:
                _add_point(sweep, base_data, point_values, {**fixed, **chosen}, seed, where, point_source)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    problems = []
    for problem, points in where.items():
        at = "every point" if len(points) == n_runs else \
            f"point {points[0]}" + (f" and {len(points) - 1} more" if len(points) > 1 else "")
        problems.append(f"{problem} ({at})")
    if problems:
        raise ConfigError(problems, source=point_source)
    same = _same_scenario(sweep.points)
    if same:
        raise ConfigError(same, source=source)
    return sweep


VARIANT = "variant"  # the grid key of build_sweep's variants


def _checked_seeds(name: Any, fixed: dict[str, Any], grid: dict[str, Any], seeds: Any,
                   variants: dict[str, dict[str, Any]] | None, source: str) -> list[int]:
    """The seed list, once the spec is known to be sound: a plain name, non-empty grid lists without a
    value given twice, no key the sweep sets itself, distinct seeds, at most MAX_RUNS runs (counted
    before anything is expanded: --seeds 1000000000 is refused at once)."""
    problems = []
    name_problem = plain_name(name) if isinstance(name, str) else "must be a string"
    if name_problem:
        problems.append(f"name: {name_problem}")
    problems += _owned_keys(fixed, grid, variants)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{key}: must be a non-empty list of values")
        else:
            problems += _repeated(f"grid.{key}", values)
    is_count = isinstance(seeds, int) and not isinstance(seeds, bool)
    if is_count and seeds <= 0:
        problems.append(f"seeds: must be > 0, got {seeds}")
    elif not is_count and not (isinstance(seeds, list) and seeds and
                               all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)):
        problems.append(f"seeds: must be a positive count or a list of integers, got {show(seeds)}")
    elif not is_count:
        problems += _repeated("seeds", seeds)
    n_seeds = seeds if is_count else len(seeds) if isinstance(seeds, list) else 1
    sizes = ([len(variants)] if variants else []) + [len(v) for v in grid.values() if isinstance(v, list)]
    n_runs = max(n_seeds, 1) * math.prod(sizes)
    if n_runs > MAX_RUNS:
        shape = "".join(f"{n:,} x " for n in sizes) + f"{n_seeds:,} seed{'s' * (n_seeds != 1)}"
        problems.append(f"grid x seeds: {shape} = {n_runs:,} runs, more than the {MAX_RUNS:,} a sweep may have; "
                        "split it into smaller sweeps")
    if problems:
        raise ConfigError(problems, source=source)
    return list(range(seeds)) if is_count else list(seeds)


def _owned_keys(fixed: dict[str, Any], grid: dict[str, Any], variants: dict[str, dict[str, Any]] | None) -> list[str]:
    given = [(f"grid.{k}", k) for k in grid] + [(f"set.{k}", k) for k in fixed] + \
        [(f"variants.{name}.{k}", k) for name, over in (variants or {}).items() for k in over]
    return [f"{where}: {SWEEP_OWNED[str(k).strip()]}, so a value here would be ignored"
            for where, k in given if str(k).strip() in SWEEP_OWNED]


def _repeated(where: str, values: list[Any]) -> list[str]:
    """Values listed twice (1 and 1.0 are one value): each would run one point twice and count it twice."""
    first: dict[str, int] = {}  # canonical text -> index of its first value
    problems = []
    for i, value in enumerate(values):
        j = first.setdefault(_canonical(value), i)
        if j != i:
            again = "" if repr(values[j]) == repr(value) else f" (as {show(values[j])})"
            problems.append(f"{where}: {show(value)} is listed twice{again}; list each value once")
    return problems


def _canonical(value: Any) -> str:
    """One text for equal values, whichever way YAML typed them (1 and 1.0)."""
    def plain(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, list) else v

    return json.dumps(plain(value), sort_keys=True, default=str)


def _base_data(base: Path | scenario.Scenario | None, source: str) -> dict[str, Any] | scenario.Scenario:
    """The base, read once (not once a point); problems of the file itself name it, not the sweep file."""
    if base is None or isinstance(base, scenario.Scenario):
        return base if base is not None else {}
    where = f"{base} (the base of {source})"
    try:
        data = scenario.read_yaml(base)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=where) from None
    if {"grid", "base"} & set(data):
        raise ConfigError("a sweep file (it has grid or base), not a scenario; a sweep's base must be a scenario",
                          source=where)
    scenario.anchor_paths(data, base.parent)
    return data


def _add_point(sweep: Sweep, base: dict[str, Any] | scenario.Scenario, values: dict[str, Any],
               overrides: dict[str, Any], seed: int, where: dict[str, list[str]], source: str) -> None:
    """Validate one point and add it to the sweep, or note its problems under the point's label."""
    try:
        sc = _point_scenario(base, overrides, seed, source)
    except ConfigError as exc:
        for p in exc.problems:
            where.setdefault(p, []).append(f"{_label(values)} seed {seed}")
        return
    point = Point(values, seed, digest(sc.to_dict()))
    sweep.points.append(point)
    sweep.scenarios[point.point_id] = sc.to_dict()


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "base"


def _point_scenario(base: dict[str, Any] | scenario.Scenario, overrides: dict[str, Any], seed: int,
                    source: str) -> scenario.Scenario:
    if isinstance(base, scenario.Scenario):
        return base.with_overrides({**overrides, "seed": seed})
    data = copy.deepcopy(base)
    problems = scenario.set_values(data, overrides)
    if problems:
        raise ConfigError(problems, source=source)
    data["seed"] = seed
    return scenario.validate(data, source)


def _same_scenario(points: list[Point]) -> list[str]:
    """Points with different values but one resolved scenario (two variants with the same overrides, a
    value that equals what another key sets): one run under two labels, counted twice by the statistics."""
    first: dict[str, Point] = {}
    problems: dict[str, None] = {}  # ordered, one message per pair of labels (not per seed)
    for p in points:
        other = first.setdefault(p.scenario_digest, p)
        if other is not p:
            differ = ", ".join(f"grid.{k}" for k in p.values if _canonical(p.values[k]) != _canonical(other.values[k]))
            problems[f"{differ}: {_label(other.values)} and {_label(p.values)} give the same scenario; keep one of "
                     "them"] = None
    return list(problems)


# ---- running one point (in a worker process) ---------------------------------------------------
def _worker_init(parent_pid: int) -> None:
    """In each pool worker: the sweep process handles Ctrl-C (and stops the workers itself), and a
    worker whose sweep died (kill -9) exits within a second instead of finishing runs no one records."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="cemasim-parent-watchdog", daemon=True).start()


def run_point(scenario_dict: dict[str, Any], folder: str, threads: int) -> dict[str, Any]:
    """Run one point in this process; returns {"ok": bool, "summary" | "error": ...}. Never raises."""
    import torch

    torch.set_num_threads(threads)
    try:
        from cemasim import runner

        sc = scenario.validate(scenario_dict, source=folder)
        out = runner.run(sc, progress=runprogress.reporter(Path(folder)), folder=Path(folder))
        return {"ok": True, "summary": out.summary, "folder": str(out.folder)}
    except Exception as exc:  # recorded in the table; the sweep goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "folder": folder}
    finally:
        runprogress.clear(Path(folder))


# ---- backends ----------------------------------------------------------------------------------
Job = tuple[str, dict[str, Any], str, int]  # point_id, scenario, folder, threads
Done = tuple[str, dict[str, Any]]


def local_backend(jobs: list[Job], workers: int) -> Generator[Done, None, None]:
    """A process pool (spawned processes: safe with torch's threads). A worker that dies (the OOM killer's
    SIGKILL) breaks the pool and every run in flight with it, and which run it was is unknowable: those
    runs go to a fresh pool and run again one at a time, so a retried run that breaks a pool again is
    alone and the cause; it is recorded as failed, never a run that only shared the pool with it."""
    if workers == 1:
        for pid, sc, folder, threads in jobs:
            yield pid, run_point(sc, folder, threads)
        return
    todo, retry, retried = deque(jobs), deque[Job](), set[str]()
    while todo or retry:
        pool = _new_pool(workers)
        try:
            yield from _until_broken(pool, workers, todo, retry, retried)
        finally:  # normal end, Ctrl-C, SIGTERM, a dead worker or an error: no worker outlives its pool
            _stop_pool(pool)


def _new_pool(workers: int) -> Any:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                               initargs=(os.getpid(),))


@contextmanager
def _workers_skip_main() -> Iterator[None]:
    """Spawned workers first import the parent's __main__ file; a script that calls cemasim.sweep()
    without an `if __name__ == "__main__":` guard would start its sweep again in every worker, which
    breaks the pool. The workers need nothing of __main__ (they run run_point on plain scenario data),
    so while a worker is started __main__ looks as it does in an interactive session: no file to import."""
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__")
                             if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


def _until_broken(pool: Any, workers: int, todo: deque[Job], retry: deque[Job],
                  retried: set[str]) -> Generator[Done, None, None]:
    """Run jobs from `retry` (alone) and `todo` (at most `workers` at once: each submitted run is on a
    worker, so 'in flight' means running) until both are empty or a worker dies."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pending: dict[Any, Job] = {}
    seen: dict[int, Any] = {}  # the pool's worker processes: a broken pool forgets its dead ones

    def submit(job: Job) -> None:
        with _workers_skip_main():  # the pool spawns its workers inside submit
            pending[pool.submit(run_point, *job[1:])] = job
        seen.update(getattr(pool, "_processes", {}))

    while todo or retry or pending:
        if retry and not pending:
            submit(retry.popleft())
        alone = retry or any(job[0] in retried for job in pending.values())
        while todo and not alone and len(pending) < workers:
            submit(todo.popleft())
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        if any(isinstance(fut.exception(), BrokenProcessPool) for fut in done):
            wait(pending, timeout=30)  # a broken pool fails every future it holds at once
            yield from _after_death(pending, _death(pool, list(seen.values())), retry, retried)
            return
        for fut in done:
            yield pending.pop(fut)[0], fut.result()


def _after_death(pending: dict[Any, Job], cause: str, retry: deque[Job],
                 retried: set[str]) -> Generator[Done, None, None]:
    """The runs of a pool whose worker died: finished ones as they are, a retried one as failed
    (it broke a pool alone), the others queued to run again from a clean folder."""
    again = []
    for fut, job in pending.items():
        if fut.done() and fut.exception() is None:
            yield job[0], fut.result()
        elif job[0] in retried:
            yield job[0], {"ok": False, "folder": job[2],
                           "error": f"worker process died ({cause}), also when run again alone"}
        else:
            retried.add(job[0])
            _clear(Path(job[2]))
            again.append(job)
    retry.extend(again)
    if again:
        print(f"warning: a sweep worker process died ({cause}); {len(again)} runs in flight are run again, "
              "one at a time, in a fresh pool", file=sys.stderr)


def _death(pool: Any, processes: list[Any]) -> str:
    """Why a pool broke: the exit of its first dead worker (the pool then terminates the others)."""
    import signal

    _reaped(pool, processes)
    codes = [p.exitcode for p in processes if p.exitcode is not None]
    first = next((c for c in codes if c != -signal.SIGTERM), codes[0] if codes else None)
    if first is None:
        return "exit status unknown"
    if first >= 0:
        return f"exit code {first}"
    try:
        name = f", {signal.Signals(-first).name}"
    except ValueError:  # a signal without a name (real-time signals)
        name = ""
    return f"killed by signal {-first}{name}" + (" — out of memory?" if first == -signal.SIGKILL else "")


def _reaped(pool: Any, processes: list[Any], timeout: float = 10.0) -> None:
    """Wait until the exit status of each worker is known. The broken pool's manager thread reaps its
    workers itself: joining them here as well races it for each status, and the thread whose waitpid
    loses reads "no such child" and no status (before the winner has stored it), so wait for the
    manager thread, then for every status to be stored, whoever reaped it."""
    import time

    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=timeout)
    deadline = time.monotonic() + timeout
    while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)


def _stop_pool(pool: Any) -> None:
    """Cancel queued runs and stop running ones now (their folders are incomplete and redone on resume);
    waiting would let them finish only to be dropped."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def ray_backend(jobs: list[Job], workers: int, address: str | None) -> Generator[Done, None, None]:
    """Ray tasks, one per run (Ray schedules runs; it never splits one). Starts a local cluster
    unless `address` names an existing one. Run folders must be on storage every node can reach."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray backend needs the 'ray' extra: pip install -e '.[ray]'", source="sweep") from None
    started = not ray.is_initialized()
    if started:  # start-up takes seconds, and each worker then imports torch before its first run
        print(f"ray: connecting to the cluster at {address} ..." if address else
              f"ray: starting a local cluster of {workers} CPUs ...", file=sys.stderr, flush=True)
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"ray: ready ({cpus} CPUs); the first runs wait while each worker imports torch",
              file=sys.stderr, flush=True)
    remote = ray.remote(num_cpus=1)(run_point)
    refs = {remote.remote(sc, folder, threads): pid for pid, sc, folder, threads in jobs}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                yield refs.pop(ref), ray.get(ref)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


# ---- the sweep loop ----------------------------------------------------------------------------
SUMMARY_SKIP = ("drops",)  # nested; its flat drops_<cause> columns are kept


def results_path(out: Path, sweep: Sweep) -> Path:
    return out / sweep.name / "results.parquet"


REQUIRED_COLUMNS = ("point_id", "sweep", "status")  # what resume reads from a results table


def read_results(path: Path, name: str) -> pd.DataFrame:
    """Sweep `name`'s results table. One that is unreadable (truncated, not parquet) or foreign (another
    sweep's rows, or without the columns resume reads) is moved aside with a warning and an empty table
    returned: finished points come back from their run folders (_recover_finished)."""
    if not path.is_file():
        return pd.DataFrame()
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        _set_aside(path, "unreadable", f"is unreadable ({type(exc).__name__})")
        return pd.DataFrame()
    missing = [c for c in REQUIRED_COLUMNS if c not in table]
    others = sorted(set(table["sweep"].astype(str)) - {name}) if not missing else []
    if len(table) and (missing or others):
        why = f"no column {', '.join(missing)}" if missing else f"rows of sweep {show(others[0])}"
        _set_aside(path, "foreign", f"is not this sweep's table ({why})")
        return pd.DataFrame()
    return table


def _set_aside(path: Path, why: str, what: str) -> None:
    aside = _aside(path, why)
    os.replace(path, aside)
    print(f"warning: {path} {what}; kept as {aside.name}; finished runs are recovered from their run folders",
          file=sys.stderr)


def _one_row_per_point(table: pd.DataFrame, path: Path) -> list[dict[str, Any]]:
    """The table's rows, one per point (a table joined or edited by hand may repeat one, and the
    statistics would count it twice): an ok row before a failed one, else the later one."""
    best: dict[str, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        kept = best.get(row["point_id"])
        if kept is None or row["status"] == "ok" or kept["status"] != "ok":
            best[row["point_id"]] = row
    if len(best) < len(table):
        print(f"note: {path} held {len(table) - len(best)} repeated rows of points already in it; kept one row per "
              "point (an ok one where there is one)", file=sys.stderr)
    return list(best.values())


def _finished(rows: list[dict[str, Any]], by_id: dict[str, Point], folder: Path) -> set[str]:
    """Points of this sweep with an ok row, less those whose run folder is there but incomplete (its
    summary.json deleted or never written): those run again. A run folder deleted as a whole keeps
    its row (the table is the result; run folders may be removed to save space)."""
    ok = {r["point_id"] for r in rows if r["status"] == "ok" and r["point_id"] in by_id}
    runs = {pid: folder / "runs" / by_id[pid].folder_name for pid in ok}
    broken = {pid for pid, run in runs.items() if run.is_dir() and not writer.is_complete(run)}
    if broken:
        print(f"note: {len(broken)} recorded runs have an incomplete run folder (no {writer.COMPLETE}); they run "
              "again", file=sys.stderr)
    return ok - broken


def table_for_reading(path: Path, keys: list[str]) -> tuple[pd.DataFrame, str]:
    """For `cemasim plot`: the table at `path`, or when it is unreadable or foreign (without the columns
    of a table of this sweep: REQUIRED_COLUMNS and the grid `keys`) the rows rebuilt from the complete
    run folders beside it (nothing is moved or written); the second value says which."""
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        why = f"unreadable ({type(exc).__name__})"
    else:
        missing = [c for c in (*REQUIRED_COLUMNS, *keys) if c not in table]
        if not missing:
            return table, ""
        why = f"not a results table of this sweep (no column {', '.join(map(show, missing))})"
    rows, skipped = _rows_on_disk(path.parent, keys)
    damaged = f" ({len(skipped)} damaged run folders left out: {'; '.join(skipped[:3])})" if skipped else ""
    if not rows:
        raise ConfigError(f"{path}: {why} and no complete run folder under {path.parent / 'runs'} to rebuild it "
                          f"from{damaged}; re-run the sweep", source="plot")
    return pd.DataFrame(rows), f"{path} is {why}; using {len(rows)} rows rebuilt from the run folders{damaged}"


def _rows_on_disk(folder: Path, keys: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the complete run folders under folder/runs, and why each damaged one was left out."""
    rows, skipped = [], []
    for run in sorted((folder / "runs").glob("*")) if (folder / "runs").is_dir() else []:
        if not writer.is_complete(run):
            continue
        try:
            summary = json.loads((run / writer.COMPLETE).read_bytes())
            values = yaml.safe_load((run / "scenario.yaml").read_bytes())
            rows.append(_row_from_disk(folder.name, run, summary, values, keys))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
            skipped.append(f"{run.name}: {type(exc).__name__}")
    return rows, skipped


PlotSweep = tuple[pd.DataFrame, list[str], Path]  # a sweep's table, its grid keys, its figure folder


def plot_sources(paths: list[Path], out: Path | None, source: str = "plot") -> tuple[list[PlotSweep], list[Any],
                                                                                    list[str]]:
    """What `cemasim plot` and `cemasim.plot` draw from: (sweeps, runs read with read_run, notes to print),
    every path read and checked in order before any figure is drawn; ConfigError names a path that is
    neither, DataError a damaged run."""
    from cemasim.results.figures import read_run
    from cemasim.results.stats import one_row_per_run

    sweeps, runs, notes = [], [], []
    for item in paths:
        table = item if item.suffix == ".parquet" else item / "results.parquet"
        if table.is_file():
            keys = sweep_grid_keys(table.parent)
            df, note = table_for_reading(table, keys)
            notes += [note] if note else []
            try:  # two runs of one point and seed (tables joined by hand): refused before any figure
                one_row_per_run(df[df["status"] == "ok"], keys)
            except ValueError as exc:
                raise ConfigError(f"{table}: {exc}", source=source) from None
            sweeps.append((df, keys, out if out else table.parent / "figures"))
        elif writer.is_complete(item):
            runs.append(read_run(item))
        elif (item / "scenario.yaml").is_file():
            raise ConfigError(f"{item}: an incomplete run folder (no summary.json: the run was interrupted or "
                              "could not be written); run it again", source=source)
        else:
            raise ConfigError(f"{item}: neither a complete run folder (summary.json) nor a sweep "
                              "(results.parquet)", source=source)
    return sweeps, runs, notes


def sweep_grid_keys(folder: Path) -> list[str]:
    """The grid keys of the sweep whose sweep.yaml is in `folder` (none without one); a damaged file
    raises ConfigError naming it."""
    spec = folder / "sweep.yaml"
    if not spec.is_file():
        return []
    grid = scenario.read_yaml(spec, "sweep").get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(k, str) for k in grid):
        raise ConfigError(f"grid: must be a mapping of keys to value lists, got {show(grid)}", source=str(spec))
    return list(grid)


def _row_from_disk(name: str, run: Path, summary: dict[str, Any], sc: dict[str, Any],
                   keys: list[str]) -> dict[str, Any]:
    """A complete run folder's row, its grid values read back from its resolved scenario."""
    values = {}
    for key in keys:
        node: Any = sc
        for step in scenario.path_steps(key):
            found = (isinstance(node, dict) and step in node) or \
                (isinstance(node, list) and isinstance(step, int) and step < len(node))
            node = node[step] if found else None
        values[key] = node
    return _row(name, run.name.rsplit("_", 1)[-1], values, sc.get("seed"), sc,
                {"ok": True, "summary": summary, "folder": str(run)}, math.nan)


def _aside(path: Path, why: str) -> Path:
    """A free name next to `path` for a file kept aside (never overwriting an earlier one)."""
    k = 1
    while (candidate := path.with_name(f"{path.stem}.{why}-{k}{path.suffix}")).exists():
        k += 1
    return candidate


def row_for(sweep: Sweep, point: Point, result: dict[str, Any], wall_s: float) -> dict[str, Any]:
    return _row(sweep.name, point.point_id, point.values, point.seed, sweep.scenarios[point.point_id], result, wall_s)


def _row(name: str, point_id: str, values: dict[str, Any], seed: Any, sc: dict[str, Any], result: dict[str, Any],
         wall_s: float) -> dict[str, Any]:
    """One table row: the point, its status, a few scenario keys every figure needs, the summary."""
    row: dict[str, Any] = {"point_id": point_id, "sweep": name, "seed": seed, **values,
                           "status": "ok" if result["ok"] else "failed", "error": result.get("error", ""),
                           "run_folder": result.get("folder", ""), "sweep_wall_s": wall_s,
                           "method": sc["method"]["name"], "devices": sc["fleet"]["devices"],
                           "uplink_mbps": sc["uplink"]["bandwidth_mbps"]}
    for key, value in result.get("summary", {}).items():
        if key not in SUMMARY_SKIP:
            row[key] = math.nan if value is None else value  # a summary read back from disk has null for NaN
    return row


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic rewrite: a crash mid-write never corrupts the finished rows."""
    df = pd.DataFrame(rows)
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
    tmp = path.with_suffix(".tmp.parquet")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def run_sweep(sweep: Sweep, out: Path, backend: str = "local", workers: int = 1, address: str | None = None,
              progress: bool = True, on_row: Callable[[dict[str, Any]], None] | None = None,
              threads: int | None = None) -> pd.DataFrame:
    """Run every point not already finished; return the whole results table. `threads`: torch CPU
    threads per run (default: the cores shared out among the workers)."""
    check_run_args(backend, workers, threads)
    folder = out / sweep.name
    writer.check_writable(out)
    with SweepLock(folder):
        return _run_locked(sweep, folder, backend, workers, address, progress, on_row, threads)


BACKENDS = ("local", "ray")


def check_run_args(backend: Any, workers: Any, threads: Any) -> None:
    """The Python API passes these unchecked: an unknown backend must not quietly run locally."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    problems = [] if backend in BACKENDS else [f"backend: {show(backend)} is unknown; known: {', '.join(BACKENDS)}"]
    problems += [] if whole(workers) else [f"workers: must be a whole number >= 1, got {show(workers)}"]
    problems += [] if threads is None or whole(threads) else \
        [f"threads: must be null or a whole number >= 1, got {show(threads)}"]
    if problems:
        raise ConfigError(problems, source="sweep")


def _run_locked(sweep: Sweep, folder: Path, backend: str, workers: int, address: str | None, progress: bool,
                on_row: Callable[[dict[str, Any]], None] | None, threads: int | None) -> pd.DataFrame:
    (folder / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": sweep.name, "base": _base_label(sweep.base), "set": sweep.fixed,
         "grid": sweep.grid, "seeds": sweep.seeds}, sort_keys=False))
    path = folder / "results.parquet"
    previous = _one_row_per_point(read_results(path, sweep.name), path)
    by_id = {p.point_id: p for p in sweep.points}
    finished = _finished(previous, by_id, folder)
    rows = [r for r in previous if r["point_id"] in finished]
    old = [r for r in previous if r["point_id"] not in by_id]
    if old:  # rows of points no longer in the sweep (an edited base or grid): kept aside, not mixed in
        aside = _aside(path, "superseded")
        write_results(aside, old)
        print(f"note: {len(old)} rows of points not in this sweep (edited grid, set or base) moved to {aside.name}",
              file=sys.stderr)
    recovered = _recover_finished(sweep, folder, [p for p in sweep.points if p.point_id not in finished], rows)
    if previous or recovered:
        _record(path, rows)
    todo = [p for p in sweep.points if p.point_id not in finished and p.point_id not in recovered]
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = [(p.point_id, sweep.scenarios[p.point_id], str(folder / "runs" / p.folder_name), threads) for p in todo]
    for p in todo:  # a failed or interrupted earlier attempt leaves a partial folder: start it afresh
        _clear(folder / "runs" / p.folder_name)
    bar = _bar(len(sweep.points), len(sweep.points) - len(todo), f"sweep {sweep.name}") if progress else None
    start = time.perf_counter()
    iterator = ray_backend(jobs, workers, address) if backend == "ray" else local_backend(jobs, workers)
    # a broken pool's runs go again one at a time, later: a window of twice the workers still holds them
    watch = (runprogress.Watch(bar, {job[0]: Path(job[2]) for job in jobs}, window=max(8, 2 * workers))
             if bar is not None else None)
    if watch is not None:
        watch.start()  # the runs in flight, as they go: "running 64% 12%"
    try:
        for point_id, result in iterator:
            row = row_for(sweep, by_id[point_id], result, time.perf_counter() - start)
            rows.append(row)
            _record(path, rows)
            if not result["ok"]:
                print(f"point {point_id} failed: {result['error']}", file=sys.stderr)
            if watch is not None:
                watch.finished(point_id)
                watch.failed += not result["ok"]
                watch.bar.update(1)
                watch.show()
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the workers, then keep every run that finished
        iterator.close()
        done = {r["point_id"] for r in rows}
        _recover_finished(sweep, folder, [p for p in todo if p.point_id not in done], rows)
        _record(path, rows)  # also the row whose write the signal cut short
        print(f"interrupted: {len(rows)} of {len(sweep.points)} runs recorded in {path}; run the same command "
              "again to do the rest", file=sys.stderr)
        raise
    finally:
        iterator.close()  # stops the workers before the table is reported
        if watch is not None:
            watch.stop()
        if bar is not None:
            bar.close()
    return pd.DataFrame(rows)


def _base_label(base: Any) -> str | None:
    if isinstance(base, scenario.Scenario):
        return base.source
    return str(base) if base else None


def _recover_finished(sweep: Sweep, folder: Path, points: list[Point], rows: list[dict[str, Any]]) -> set[str]:
    """Record points whose run folder is complete but whose row is missing (the sweep was killed, or
    its table lost); returns their ids. A folder whose summary.json is damaged (not a JSON object) is
    not recovered: the point runs again, from a cleared folder."""
    found = set()
    for p in points:
        run = folder / "runs" / p.folder_name
        if writer.is_complete(run):
            try:
                summary = json.loads((run / writer.COMPLETE).read_bytes())
            except (OSError, ValueError):
                continue
            if not isinstance(summary, dict):
                continue
            rows.append(row_for(sweep, p, {"ok": True, "summary": summary, "folder": str(run)}, math.nan))
            found.add(p.point_id)
    if found:
        print(f"note: {len(found)} finished runs recovered from their run folders", file=sys.stderr)
    return found


def _record(path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        write_results(path, rows)
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror or exc}. The table on disk keeps the runs recorded "
                       "before; runs that finished since are complete in their run folders and are recovered "
                       "when you run the same command again") from None


class SweepLock:
    """One writer per sweep folder: a second sweep with the same name and --out refuses instead of
    silently replacing the first one's rows. flock is released by the kernel when the holder dies,
    so a killed sweep never leaves a stale lock."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file: Any = None

    def __enter__(self) -> SweepLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = open(self.folder / ".lock", "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(f"{self.folder} is in use by another sweep ({holder}); wait for it to finish, or "
                              "give this one another --name or --out", source="sweep") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()  # releases the lock


def _clear(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder)


def _bar(total: int, done: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True)
