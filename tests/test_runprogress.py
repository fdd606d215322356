"""Progress inside a sweep's runs: each run reports its predicted samples to a file in its folder,
the sweep's bar shows the runs in flight, and a finished run leaves no such file behind."""

from __future__ import annotations

from pathlib import Path

from cemasim import runprogress
from cemasim import sweeps as sw
from tests.conftest import small


class FakeBar:
    def __init__(self):
        self.postfix = ""

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text


def test_the_bar_shows_each_run_in_flight(tmp_path, monkeypatch):
    monkeypatch.setattr(runprogress, "EVERY_S", 0.0)
    runs = tmp_path / "runs"
    for name, done in (("a", 30), ("b", 75)):
        (runs / name).mkdir(parents=True)
        runprogress.reporter(runs / name)(done, 100)
    (runs / "c").mkdir()  # a finished run (or one not started) has no file
    (runs / "d").mkdir()
    (runs / "d" / runprogress.PROGRESS_FILE).write_text("garbage")  # a half-written file is skipped
    folders = [runs / n for n in "abcd"]
    assert runprogress.running(folders) == [0.75, 0.30]
    watch = runprogress.Watch(FakeBar(), {f.name: f for f in folders}, window=3)
    watch.failed = 1
    watch.show()
    assert watch.bar.postfix == "failed=1, running 75% 30%"
    runprogress.clear(runs / "a")
    assert runprogress.running(folders) == [0.75]
    (runs / "e").mkdir()
    runprogress.reporter(runs / "e")(10, 100)
    watch = runprogress.Watch(FakeBar(), {f.name: f for f in [*folders, runs / "e"]}, window=3)  # e is 5th
    watch.show()
    assert watch.bar.postfix == "failed=0, running 75%"
    watch.finished("a")
    watch.finished("b")  # finished runs leave the window: e comes in
    watch.show()
    assert watch.bar.postfix == "failed=0, running 10%"


def test_the_reporter_writes_at_most_every_few_seconds_but_always_the_end(tmp_path):
    report = runprogress.reporter(tmp_path)
    report(1, 10)
    report(5, 10)  # within EVERY_S of the first: not written
    assert (tmp_path / runprogress.PROGRESS_FILE).read_text() == "1 10"
    report(10, 10)
    assert (tmp_path / runprogress.PROGRESS_FILE).read_text() == "10 10"


def test_a_run_of_a_sweep_reports_progress_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(runprogress, "EVERY_S", 0.0)
    seen: list[str] = []
    real = runprogress.reporter

    def spy(folder: Path):
        report = real(folder)

        def wrapped(done: int, total: int) -> None:
            report(done, total)
            seen.append((folder / runprogress.PROGRESS_FILE).read_text())
        return wrapped

    monkeypatch.setattr(runprogress, "reporter", spy)
    sc = small("duration_s=12", "drain_s=20", "fleet.devices=1")
    result = sw.run_point(sc.to_dict(), str(tmp_path / "run"), 1)
    assert result["ok"] and len(seen) > 2
    done, total = map(int, seen[-1].split())
    assert done == total == result["summary"]["samples"]
    assert not any(p.name.startswith(runprogress.PROGRESS_FILE) for p in (tmp_path / "run").iterdir())
