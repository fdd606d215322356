"""Sweeps and runs under faults: kill -9, Ctrl-C, SIGTERM, a truncated table, two writers, an
unwritable or full output folder. No finished run may be lost or recorded twice."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cemasim import cli, runner
from cemasim import sweeps as sweep
from cemasim.errors import RunError
from tests.conftest import SMALL, small

TINY = [o for o in SMALL if not o.startswith(("fleet.devices", "duration_s", "drain_s"))] + [
    "fleet.devices=1", "duration_s=12", "drain_s=20"]


def _base(tmp_path: Path) -> Path:
    """A scenario file of TINY (one device, 12 s of arrivals: a run takes a few seconds)."""
    data: dict = {}
    from cemasim.scenario import apply_overrides

    assert not apply_overrides(data, TINY)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sweep_cmd(base: Path, out: Path, values: str, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "cemasim", "sweep", str(base), "--grid", f"uplink.latency_ms={values}",
            "--name", "f", "--out", str(out), "--workers", str(workers), "--threads", "1", "--no-plots", "--quiet"]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_gone(pids: list[int], timeout: float = 10) -> None:
    """Every process in `pids` exits within `timeout` (they watch their parent every 0.5 s)."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    left = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in pids if _alive(p)]
    assert not left, f"outlived their sweep: {left}"


def _wait_for_rows(table: Path, proc: subprocess.Popen, n: int = 1, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if table.is_file() and len(pd.read_parquet(table)) >= n:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no {n} rows in {table} (exit {proc.poll()})")


def _complete_runs(folder: Path) -> set[str]:
    return {p.name.rsplit("_", 1)[-1] for p in (folder / "runs").glob("*") if (p / "summary.json").is_file()}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for the worker processes")
def test_kill_9_stops_the_workers_and_resume_loses_and_repeats_nothing(tmp_path):
    base, out = _base(tmp_path), tmp_path / "out"
    cmd = _sweep_cmd(base, out, "1,2,3,4,5,6,7,8")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_rows(out / "f" / "results.parquet", proc)
    workers = [c for c in _children(proc.pid) if _alive(c)]
    assert workers, "the pool has workers"
    proc.kill()
    proc.wait()
    _assert_gone(workers)
    before = pd.read_parquet(out / "f" / "results.parquet")
    finished_before = _complete_runs(out / "f")
    stamps = {p: (out / "f" / "runs").glob(f"*_{p}").__next__().joinpath("summary.json").stat().st_mtime_ns
              for p in finished_before}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_parquet(out / "f" / "results.parquet")
    assert len(table) == 8 and table["point_id"].is_unique and (table["status"] == "ok").all()
    assert set(before["point_id"]) <= set(table["point_id"])
    for p, stamp in stamps.items():  # finished runs, recorded or not, were kept, not run again
        run = next((out / "f" / "runs").glob(f"*_{p}"))
        assert (run / "summary.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_records_every_finished_run_and_stops_the_workers(tmp_path, sig):
    base, out = _base(tmp_path), tmp_path / "out"
    # SIGINT's default disposition in the sweep: a shell starts background jobs (a CI script run with `&`)
    # with SIGINT ignored, and Python then installs no Ctrl-C handler at all
    proc = subprocess.Popen(_sweep_cmd(base, out, "1,2,3,4,5,6,7,8"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_rows(out / "f" / "results.parquet", proc)
    workers = [c for c in _children(proc.pid) if _alive(c)]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    _assert_gone(workers)
    table = pd.read_parquet(out / "f" / "results.parquet")
    assert table["point_id"].is_unique
    assert set(table["point_id"]) == _complete_runs(out / "f")  # every finished run is in the table


def test_truncated_table_is_kept_aside_and_rebuilt_from_the_run_folders(tmp_path, capsys):
    base, out = _base(tmp_path), tmp_path / "out"
    cmd = _sweep_cmd(base, out, "1,2", workers=1)[3:]
    assert cli.main(cmd) == 0
    path = out / "f" / "results.parquet"
    good = pd.read_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cli.main(["plot", str(out / "f"), "--format", "png", "--quiet"]) == 0
    assert "rebuilt from the run folders" in capsys.readouterr().err
    start = time.perf_counter()
    assert cli.main(cmd) == 0
    err = capsys.readouterr().err
    assert "unreadable" in err and "2 finished runs recovered" in err
    assert (out / "f" / "results.unreadable-1.parquet").is_file()
    table = pd.read_parquet(path)
    assert sorted(table["point_id"]) == sorted(good["point_id"])
    assert table.set_index("point_id")["accuracy"].to_dict() == good.set_index("point_id")["accuracy"].to_dict()
    # nothing was run again (a run takes seconds; this is a bound, not a speed test)
    assert time.perf_counter() - start < 60


def test_a_second_writer_refuses_while_the_first_holds_the_folder(tmp_path, capsys):
    import fcntl

    base, out = _base(tmp_path), tmp_path / "out"
    (out / "f").mkdir(parents=True)
    with open(out / "f" / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 12345")
        held.flush()
        assert cli.main(_sweep_cmd(base, out, "1,2", workers=1)[3:]) == 2
    err = capsys.readouterr().err
    assert "in use by another sweep" in err and "pid 12345" in err


def test_a_changed_grid_sets_the_old_rows_aside(tmp_path, capsys):
    base, out = _base(tmp_path), tmp_path / "out"
    assert cli.main(_sweep_cmd(base, out, "1", workers=1)[3:]) == 0
    assert cli.main(_sweep_cmd(base, out, "2", workers=1)[3:]) == 0
    assert "1 rows of points not in this sweep" in capsys.readouterr().err
    assert len(pd.read_parquet(out / "f" / "results.superseded-1.parquet")) == 1
    assert pd.read_parquet(out / "f" / "results.parquet")["uplink.latency_ms"].tolist() == [2]


@pytest.mark.skipif(os.access("/proc", os.W_OK) and not Path("/proc/self").exists(), reason="needs /proc")
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_unwritable_out_fails_before_simulating(tmp_path, capsys, command):
    base = _base(tmp_path)
    argv = [command, str(base), "--out", "/proc/cemasim-cannot-write", "--quiet"]
    if command == "sweep":
        argv += ["--grid", "uplink.latency_ms=0,1"]
    start = time.perf_counter()
    assert cli.main(argv) == 2
    assert "--out /proc/cemasim-cannot-write" in capsys.readouterr().err
    assert time.perf_counter() - start < 30  # it failed before the simulation, not after


def test_a_full_disk_keeps_what_was_recorded(tmp_path, monkeypatch):
    base, out = _base(tmp_path), tmp_path / "out"
    real, calls = sweep.write_results, []

    def full_after_one(path, rows):
        calls.append(len(rows))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, rows)

    monkeypatch.setattr(sweep, "write_results", full_after_one)
    spec = sweep.build_sweep("f", base, {}, {"uplink.latency_ms": [1, 2]}, 1)
    with pytest.raises(RunError, match="No space left on device.*recorded before"):
        sweep.run_sweep(spec, out, progress=False, threads=1)
    assert len(pd.read_parquet(out / "f" / "results.parquet")) == 1
    monkeypatch.setattr(sweep, "write_results", real)
    table = sweep.run_sweep(spec, out, progress=False, threads=1)  # the second run is recovered, not redone
    assert len(table) == 2 and table["point_id"].is_unique


def test_a_run_folder_cut_short_is_unmarked_and_plot_refuses_it(tmp_path, monkeypatch, capsys):
    from cemasim.results import plots

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "write_run_plots", full)
    sc = small("output.plots=true", "duration_s=12", "fleet.devices=1")
    with pytest.raises(RunError, match="incomplete"):
        runner.run(sc, tmp_path, progress=False)
    folder = tmp_path / sc.name
    assert (folder / "samples.parquet").is_file() and not (folder / "summary.json").exists()
    assert cli.main(["plot", str(folder)]) == 2
    assert "incomplete run folder" in capsys.readouterr().err


def _pool_workers(pid: int, besides: tuple[int, ...] = ()) -> list[int]:
    """The sweep's live pool workers (not multiprocessing's resource tracker), other than `besides`."""
    found = []
    for child in _children(pid):
        try:
            spawned = b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if spawned and child not in besides and _alive(child):
            found.append(child)
    return found


def _wait_for_workers(proc: subprocess.Popen, n: int, besides: tuple[int, ...] = ()) -> list[int]:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(found := _pool_workers(proc.pid, besides)) >= n:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no {n} pool workers (exit {proc.poll()})")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for the worker processes")
def test_a_killed_worker_is_retried_in_a_fresh_pool_and_a_run_that_dies_twice_is_failed(tmp_path):
    base, out = _base(tmp_path), tmp_path / "out"
    proc = subprocess.Popen(_sweep_cmd(base, out, "1,2,3"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    first = _wait_for_workers(proc, 2)  # two runs in flight
    os.kill(first[0], signal.SIGKILL)  # one of them, as the OOM killer would
    again = _wait_for_workers(proc, 1, tuple(first))  # a fresh pool runs the first of the two again, alone
    os.kill(again[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-2000:]  # as for any failed run
    assert "Traceback" not in err and "internal error" not in err
    assert err.count("run again, one at a time") == 1  # the second death had one run in flight: the culprit
    table = pd.read_parquet(out / "f" / "results.parquet")
    assert len(table) == 3 and table["point_id"].is_unique
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1 and "worker process died (killed by signal 9" in failed["error"].iloc[0]
    # the run that only shared the pool with it, and the run after, are not lost
    assert set(table.loc[table["status"] == "ok", "point_id"]) == _complete_runs(out / "f")
    assert len(_complete_runs(out / "f")) == 2


def test_a_workers_exit_status_reaped_by_the_pools_own_thread_is_still_named():
    """The race behind an 'exit status unknown': the broken pool's manager thread reaps a dead worker
    (its waitpid wins) and stores the status a moment later; a waitpid here in between finds no child.
    The thread below does exactly that, through the worker's own Process object."""
    import multiprocessing as mp
    import threading
    from types import SimpleNamespace

    worker = mp.get_context("spawn").Process(target=time.sleep, args=(60,))
    worker.start()
    os.kill(worker.pid, signal.SIGKILL)

    def manager() -> None:  # what concurrent.futures' manager thread does, slowed at its worst moment
        _, status = os.waitpid(worker.pid, 0)
        time.sleep(0.5)
        worker._popen.returncode = os.waitstatus_to_exitcode(status)

    thread = threading.Thread(target=manager)
    thread.start()
    time.sleep(0.1)  # the status is taken, not yet stored
    assert sweep._death(SimpleNamespace(_executor_manager_thread=thread), [worker]).startswith(
        "killed by signal 9, SIGKILL")


def _write(folder: Path, files: tuple[tuple[str, bytes], ...]) -> None:
    for name, body in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_plot_on_a_full_disk_names_the_figure_folder(tmp_path, monkeypatch, capsys, kind):
    import matplotlib.figure

    from tests.bad_inputs import _run_folder, _sweep_folder

    _write(tmp_path, _run_folder() if kind == "run" else _sweep_folder())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    assert cli.main(["plot", str(tmp_path / ("r" if kind == "run" else "w")), "--out", str(tmp_path / "fig"),
                     "--format", "png", "--quiet"]) == 1  # a run-time failure, as for run and sweep
    err = capsys.readouterr().err
    assert f"cannot write the figures in {tmp_path / 'fig'}: No space left on device" in err
    assert "internal error" not in err


def test_plot_rebuilds_a_foreign_table_from_the_run_folders_and_names_the_damaged_ones(tmp_path, capsys):
    from tests.bad_inputs import _parquet, _sweep_folder

    _write(tmp_path, _sweep_folder(table=_parquet({"user": ["ann"], "score": [3]})))
    for latency, summary in ((1, b'{"accuracy": 0.5, "uplink_bytes": 1000}'), (2, b'{"accuracy": 0.6, "upl'),
                             (3, b'{"accuracy": 0.7, "uplink_bytes": 3000}')):
        sc = {"seed": 0, "method": {"name": "cema"}, "fleet": {"devices": 1},
              "uplink": {"bandwidth_mbps": 1.0, "latency_ms": latency}}
        _write(tmp_path / "w" / "runs" / f"latency-{latency}_0000000{latency}",
               (("summary.json", summary), ("scenario.yaml", yaml.safe_dump(sc).encode())))
    assert cli.main(["plot", str(tmp_path / "w"), "--format", "png", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "is not a results table of this sweep (no column 'point_id'" in err
    assert "using 2 rows rebuilt" in err and "1 damaged run folders left out: latency-2_00000002" in err
    assert (tmp_path / "w" / "figures" / "accuracy_vs_uplink_latency_ms.png").is_file()


@pytest.mark.parametrize("foreign", ["no point_id column", "another sweep's table"])
def test_a_foreign_table_is_set_aside_and_its_points_recovered(tmp_path, monkeypatch, capsys, foreign):
    """A readable table resume cannot use (another sweep's rows, even of the same points, or one without
    the columns resume reads) is kept aside like an unreadable one; the run folders give the rows back."""
    from tests.test_sweep import fake_run_point

    monkeypatch.setattr(sweep, "run_point", fake_run_point)
    spec = sweep.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 1)
    sweep.run_sweep(spec, tmp_path, progress=False)
    path = sweep.results_path(tmp_path, spec)
    if foreign == "no point_id column":
        pd.DataFrame({"accuracy": [0.1]}).to_parquet(path)
    else:  # the same points, run under another name elsewhere
        other = sweep.build_sweep("other", None, {}, {"uplink.latency_ms": [1, 2]}, 1)
        sweep.run_sweep(other, tmp_path / "elsewhere", progress=False)
        path.write_bytes(sweep.results_path(tmp_path / "elsewhere", other).read_bytes())
    ran: list = []
    table = sweep.run_sweep(spec, tmp_path, progress=False, on_row=ran.append)
    err = capsys.readouterr().err
    assert "is not this sweep's table" in err and "2 finished runs recovered" in err
    assert (tmp_path / "t" / "results.foreign-1.parquet").is_file()
    assert ran == [] and len(table) == 2 and (table["sweep"] == "t").all()
    assert all(Path(f).parent == tmp_path / "t" / "runs" for f in pd.read_parquet(path)["run_folder"])


def test_a_run_folder_whose_summary_was_deleted_is_redone(tmp_path, monkeypatch, capsys):
    """docs/outputs.md: incomplete run folders are redone on resume, also when the table has their row."""
    from tests.test_sweep import fake_run_point

    monkeypatch.setattr(sweep, "run_point", fake_run_point)
    spec = sweep.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 1)
    first = sweep.run_sweep(spec, tmp_path, progress=False)
    lost = Path(first["run_folder"].iloc[1])
    (lost / "summary.json").unlink()
    ran: list = []
    table = sweep.run_sweep(spec, tmp_path, progress=False, on_row=ran.append)
    assert "1 recorded runs have an incomplete run folder" in capsys.readouterr().err
    assert [r["point_id"] for r in ran] == [first["point_id"].iloc[1]] and (lost / "summary.json").is_file()
    assert sorted(table["point_id"]) == sorted(first["point_id"]) and (table["status"] == "ok").all()


@pytest.mark.parametrize("body", [b'{"acc', b"[1, 2]"], ids=["not-json", "not-an-object"])
def test_a_damaged_summary_of_an_unrecorded_run_is_run_again_on_resume(tmp_path, monkeypatch, body):
    """A run folder finished but never recorded is recovered from its summary.json; a damaged one is not
    an internal error: that point runs again."""
    from tests.test_sweep import fake_run_point

    monkeypatch.setattr(sweep, "run_point", fake_run_point)
    spec = sweep.build_sweep("t", None, {}, {"uplink.latency_ms": [1, 2]}, 1)
    first = sweep.run_sweep(spec, tmp_path, progress=False)
    (tmp_path / "t" / "results.parquet").unlink()  # as if the sweep was killed before recording
    damaged = Path(first["run_folder"].iloc[0])
    (damaged / "summary.json").write_bytes(body)
    ran: list = []
    table = sweep.run_sweep(spec, tmp_path, progress=False, on_row=ran.append)
    assert [r["point_id"] for r in ran] == [first["point_id"].iloc[0]]  # the other one was recovered
    assert sorted(table["point_id"]) == sorted(first["point_id"]) and (table["status"] == "ok").all()
