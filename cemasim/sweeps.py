"""What-if sweeps: a base scenario x a grid over any keys x seeds, run on a local process pool or a
Ray cluster, collected into one results table.

    sweep file / --grid  ->  points (validated all before any runs)  ->  backend  ->  results.parquet

Each point is one ordinary run (one process, its own run folder). The table is rewritten after
every finished run, so an interrupted sweep loses nothing that finished, and re-running the same
sweep skips points already done. A failed point is recorded with its error and the others go on.

Faults: workers die with the sweep (a watchdog on their parent), Ctrl-C / SIGTERM stop them and
record every run that finished; a run folder whose summary.json exists is complete, so a run that
finished but was never recorded (kill -9, a full disk) and a table that cannot be read are rebuilt
from the run folders on the next start. One sweep folder has one writer at a time (a lock).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

import pandas as pd
import yaml

from cemasim import scenario
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
    base: "Path | scenario.Scenario | None"
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    points: list[Point] = field(default_factory=list)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)  # point_id -> resolved scenario


# ---- building a sweep --------------------------------------------------------------------------
def load_sweep_file(path: str | Path) -> Sweep:
    path = Path(path)
    data = scenario.read_yaml(path)
    problems: list[str] = []
    spec = resolve(SWEEP_SCHEMA, data, "", problems)
    if problems:
        raise ConfigError(problems, source=str(path))
    base = (path.parent / spec["base"]).resolve() if spec["base"] else None
    return build_sweep(spec["name"], base, spec["set"], spec["grid"], spec["seeds"], source=str(path))


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
    return parts + [text[start:]]


def build_sweep(name: str, base: "Path | scenario.Scenario | None", fixed: dict[str, Any], grid: dict[str, list[Any]],
                seeds: int | list[int], source: str = "sweep",
                variants: dict[str, dict[str, Any]] | None = None) -> Sweep:
    """Expand and validate every point before anything runs. `base`: a scenario file, a Scenario or
    None (the defaults). `variants`: named sets of overrides swept as one more grid key, `variant`
    (an ablation: each variant switches some keys at once)."""
    problems = []
    name_problem = plain_name(name) if isinstance(name, str) else "must be a string"
    if name_problem:
        problems.append(f"name: {name_problem}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{key}: must be a non-empty list of values")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if isinstance(seeds, int) and seeds <= 0:
        problems.append(f"seeds: must be > 0, got {seeds}")
    if not seed_list or not all(isinstance(x, int) and not isinstance(x, bool) for x in seed_list):
        problems.append(f"seeds: must be a positive count or a list of integers, got {seeds!r}")
    if problems:
        raise ConfigError(problems, source=source)
    sweep = Sweep(name, base, dict(fixed), dict(grid), seed_list)
    keys, dims = list(grid), [grid[k] for k in grid]
    if variants:
        keys, dims = [VARIANT] + keys, [list(variants)] + dims
        sweep.grid = {VARIANT: list(variants), **sweep.grid}
    where: dict[str, list[str]] = {}  # problem -> the points it occurs at
    for combo in itertools.product(*dims):
        point_values: dict[str, Any] = dict(zip(keys, combo))
        chosen = {k: v for k, v in point_values.items() if k != VARIANT}
        if variants:
            chosen.update(variants[point_values[VARIANT]])
        for seed in seed_list:
            try:
                sc = _point_scenario(base, {**fixed, **chosen}, seed)
            except ConfigError as exc:
                label = ", ".join(f"{k}={v}" for k, v in point_values.items()) or "base"
                for p in exc.problems:
                    where.setdefault(p, []).append(f"{label} seed {seed}")
                continue
            point = Point(point_values, seed, digest(sc.to_dict()))
            sweep.points.append(point)
            sweep.scenarios[point.point_id] = sc.to_dict()
    n_points = len(seed_list) * math.prod(len(v) for v in grid.values())
    for problem, points in where.items():
        at = "every point" if len(points) == n_points else \
            f"point {points[0]}" + (f" and {len(points) - 1} more" if len(points) > 1 else "")
        problems.append(f"{problem} ({at})")
    if problems:
        raise ConfigError(problems, source=source)
    return sweep


VARIANT = "variant"  # the grid key of build_sweep's variants


def _point_scenario(base: "Path | scenario.Scenario | None", overrides: dict[str, Any], seed: int) -> scenario.Scenario:
    if isinstance(base, scenario.Scenario):
        return base.with_overrides({**overrides, "seed": seed})
    return scenario.load(base, [f"{k}={_yaml_scalar(v)}" for k, v in overrides.items()], seed)


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


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
        out = runner.run(sc, progress=False, folder=Path(folder))
        return {"ok": True, "summary": out.summary, "folder": str(out.folder)}
    except Exception as exc:  # recorded in the table; the sweep goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "folder": folder}


# ---- backends ----------------------------------------------------------------------------------
Job = tuple[str, dict[str, Any], str, int]  # point_id, scenario, folder, threads
Done = tuple[str, dict[str, Any]]


def local_backend(jobs: list[Job], workers: int) -> Generator[Done, None, None]:
    """A process pool (spawned processes: safe with torch's threads)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if workers == 1:
        for pid, sc, folder, threads in jobs:
            yield pid, run_point(sc, folder, threads)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                               initargs=(os.getpid(),))
    pending = {pool.submit(run_point, sc, folder, threads): pid for pid, sc, folder, threads in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
    finally:  # normal end, Ctrl-C, SIGTERM or an error: no worker outlives the sweep
        _stop_pool(pool)


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
    if started:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False)
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


def read_results(path: Path) -> pd.DataFrame:
    """The results table; an unreadable one (truncated, not parquet) is moved aside with a warning and
    an empty table returned: finished points come back from their run folders (recover_rows)."""
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        aside = _aside(path, "unreadable")
        os.replace(path, aside)
        print(f"warning: {path} is unreadable ({type(exc).__name__}); kept as {aside.name}; finished runs are "
              "recovered from their run folders", file=sys.stderr)
        return pd.DataFrame()


def table_for_reading(folder: Path) -> tuple[pd.DataFrame, str]:
    """For `cemasim plot`: the table, or when it is unreadable the rows rebuilt from the complete run
    folders (nothing is moved or written); the second value says which."""
    path = folder / "results.parquet"
    try:
        return pd.read_parquet(path), ""
    except Exception as exc:
        rows = []
        for run in sorted((folder / "runs").glob("*")) if (folder / "runs").is_dir() else []:
            if writer.is_complete(run):
                summary = json.loads((run / writer.COMPLETE).read_text())
                values = yaml.safe_load((run / "scenario.yaml").read_text())
                rows.append(_row_from_disk(folder.name, run, summary, values, _grid_keys(folder)))
        if not rows:
            raise ConfigError(f"{path}: unreadable ({type(exc).__name__}) and no complete run folder under "
                              f"{folder / 'runs'} to rebuild it from; re-run the sweep", source="plot") from None
        return pd.DataFrame(rows), f"{path} is unreadable; using {len(rows)} rows rebuilt from the run folders"


def _grid_keys(folder: Path) -> list[str]:
    spec = folder / "sweep.yaml"
    return list((yaml.safe_load(spec.read_text()) or {}).get("grid", {})) if spec.is_file() else []


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
    folder = out / sweep.name
    writer.check_writable(out)
    with SweepLock(folder):
        return _run_locked(sweep, folder, backend, workers, address, progress, on_row, threads)


def _run_locked(sweep: Sweep, folder: Path, backend: str, workers: int, address: str | None, progress: bool,
                on_row: Callable[[dict[str, Any]], None] | None, threads: int | None) -> pd.DataFrame:
    (folder / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": sweep.name, "base": _base_label(sweep.base), "set": sweep.fixed,
         "grid": sweep.grid, "seeds": sweep.seeds}, sort_keys=False))
    path = folder / "results.parquet"
    previous = read_results(path)
    current = {p.point_id for p in sweep.points}
    finished = set(previous.loc[previous["status"] == "ok", "point_id"]) & current if len(previous) else set()
    rows = [r for r in previous.to_dict("records") if r["point_id"] in finished]
    old = [r for r in previous.to_dict("records") if r["point_id"] not in current] if len(previous) else []
    if old:  # rows of points no longer in the sweep (an edited base or grid): kept aside, not mixed in
        aside = _aside(path, "superseded")
        write_results(aside, old)
        print(f"note: {len(old)} rows of points not in this sweep (edited grid, set or base) moved to {aside.name}",
              file=sys.stderr)
    by_id = {p.point_id: p for p in sweep.points}
    recovered = _recover_finished(sweep, folder, [p for p in sweep.points if p.point_id not in finished], rows)
    if len(previous) or recovered:
        _record(path, rows)
    todo = [p for p in sweep.points if p.point_id not in finished and p.point_id not in recovered]
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = [(p.point_id, sweep.scenarios[p.point_id], str(folder / "runs" / p.folder_name), threads) for p in todo]
    for p in todo:  # a failed or interrupted earlier attempt leaves a partial folder: start it afresh
        _clear(folder / "runs" / p.folder_name)
    bar = _bar(len(sweep.points), len(sweep.points) - len(todo), sweep.name) if progress else None
    failed, start = 0, time.perf_counter()
    iterator = ray_backend(jobs, workers, address) if backend == "ray" else local_backend(jobs, workers)
    try:
        for point_id, result in iterator:
            row = row_for(sweep, by_id[point_id], result, time.perf_counter() - start)
            rows.append(row)
            _record(path, rows)
            failed += not result["ok"]
            if not result["ok"]:
                print(f"point {point_id} failed: {result['error']}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=failed)
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the workers, then keep every run that finished
        iterator.close()
        done = {r["point_id"] for r in rows}
        if _recover_finished(sweep, folder, [p for p in todo if p.point_id not in done], rows):
            _record(path, rows)
        print(f"interrupted: {len(rows)} of {len(sweep.points)} runs recorded in {path}; run the same command "
              "again to do the rest", file=sys.stderr)
        raise
    finally:
        iterator.close()  # stops the workers before the table is reported
        if bar is not None:
            bar.close()
    return pd.DataFrame(rows)


def _base_label(base: Any) -> str | None:
    if isinstance(base, scenario.Scenario):
        return base.source
    return str(base) if base else None


def _recover_finished(sweep: Sweep, folder: Path, points: list[Point], rows: list[dict[str, Any]]) -> set[str]:
    """Record points whose run folder is complete but whose row is missing (the sweep was killed, or
    its table lost); returns their ids."""
    found = set()
    for p in points:
        run = folder / "runs" / p.folder_name
        if writer.is_complete(run):
            summary = json.loads((run / writer.COMPLETE).read_text())
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

    def __enter__(self) -> "SweepLock":
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


def _bar(total: int, done: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"sweep {name}", unit="run", file=sys.stderr, dynamic_ncols=True)
