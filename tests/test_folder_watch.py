"""FolderWatch (change notifications) and the sweep passes it gates: a pass reads the runs whose files changed and
nothing else, sees another process's append made just before it, and falls back to polling wherever the watch
cannot tell (no inotify, a network file system, a symbolic link, a queue overflow, the periodic recheck)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rldk_widget import folder_watch
from rldk_widget.folder_watch import FolderWatch, open_watch
from rldk_widget.runs import Sweep
from rldk_widget.store import RunStore

pytestmark = pytest.mark.skipif(open_watch() is None, reason="no inotify on this machine")


def write_run(folder: Path, stem: str, steps: int, start: int = 0) -> None:
    with RunStore(folder, stem) as store:
        store.append_metrics_many([{"step": s, "loss": 1.0 / (s + 1)} for s in range(start, start + steps)])


def append_in_another_process(folder: Path, stem: str, step: int) -> None:
    code = ("import sys; from rldk_widget.store import RunStore; "
            "RunStore(sys.argv[1], sys.argv[2]).append_metrics({'step': int(sys.argv[3]), 'loss': 0.5})")
    subprocess.run([sys.executable, "-c", code, str(folder), stem, str(step)], check=True, timeout=60)


class PollCount:
    """Which runs a Sweep's refresh looked at (its `_poll` calls)."""

    def __init__(self, sweep: Sweep, monkeypatch) -> None:
        self.runs: list[str] = []
        poll = sweep._poll

        def counted(state):
            self.runs.append(state.ref.run_id)
            return poll(state)

        monkeypatch.setattr(sweep, "_poll", counted)

    def take(self) -> list[str]:
        runs, self.runs = self.runs, []
        return runs


def settled_sweep(root: Path) -> Sweep:
    sweep = Sweep(root, cache=False)
    for _ in range(3):  # found, then listed once more under its watches
        sweep.refresh()
    return sweep


def test_events_by_file_and_folder(tmp_path):
    watch = open_watch()
    try:
        assert watch.watch(tmp_path)
        watch.drain()
        seen = watch.seq
        watch.drain()
        assert not watch.changed_since(str(tmp_path), ("a_metrics.json",), seen)
        (tmp_path / "a_metrics.json").write_text("[]")
        watch.drain()
        assert watch.changed_since(str(tmp_path), ("a_metrics.json",), seen)
        assert not watch.changed_since(str(tmp_path), ("b_metrics.json",), seen)
        assert watch.changed_since(str(tmp_path), None, seen) and watch.entries_seq == watch.seq
        assert watch.take_changed_files() == [(str(tmp_path), "a_metrics.json")] and watch.take_changed_files() == []
        seen = watch.seq
        with open(tmp_path / "a_metrics.json", "a") as handle:  # an append: a change, no new name
            handle.write(" ")
        entries = watch.entries_seq
        watch.drain()
        assert watch.changed_since(str(tmp_path), ("a_metrics.json",), seen) and watch.entries_seq == entries
        # a folder not watched, or watched only after `seen`: cannot tell, so changed
        other = tmp_path / "other"
        other.mkdir()
        assert watch.changed_since(str(other), None, watch.seq)
        watch.watch(other)
        assert watch.changed_since(str(other), None, seen)
    finally:
        watch.close()


def test_what_the_watch_cannot_tell_about(tmp_path, monkeypatch):
    watch = open_watch()
    try:
        linked = tmp_path / "linked"
        linked.mkdir()
        (linked / "r_metrics.json").symlink_to(tmp_path / "elsewhere.json")
        assert not watch.watch(linked)  # a change to the target is not this folder's event
        plain = tmp_path / "plain"
        plain.mkdir()
        assert watch.watch(plain)
        watch.drain()
        seen = watch.seq
        (plain / "x_metrics.json").symlink_to(tmp_path / "elsewhere.json")  # a link made later: polled from then on
        watch.drain()
        assert not watch.watched(str(plain)) and watch.changed_since(str(plain), ("y",), seen)
        # a network file system: not watched
        network = tmp_path / "nfs"
        network.mkdir()
        monkeypatch.setattr(folder_watch, "_mount_points", lambda: [(str(network), "nfs4"), ("/", "ext4")])
        fresh = open_watch()
        try:
            assert not fresh.watch(network) and fresh.watch(linked.parent)
        finally:
            fresh.close()
    finally:
        watch.close()


class FakeINotify:
    def __init__(self) -> None:
        self.events: list = []
        self.fail = False

    def add_watch(self, path, mask):
        return 1

    def rm_watch(self, wd):
        pass

    def read(self, timeout=None):
        if self.fail:
            raise OSError(5, "Input/output error")
        events, self.events = self.events, []
        return events

    def close(self):
        pass


def test_overflow_a_read_error_and_the_recheck_take_everything_as_changed(tmp_path):
    from inotify_simple import Event

    fake = FakeINotify()
    watch = FolderWatch(fake, recheck_s=3600)
    assert watch.watch(tmp_path)
    watch.drain()
    seen = watch.seq
    watch.drain()
    assert not watch.changed_since(str(tmp_path), ("a",), seen)
    fake.events = [Event(-1, 0x4000, 0, "")]  # IN_Q_OVERFLOW
    watch.drain()
    assert watch.changed_since(str(tmp_path), ("a",), seen) and watch.lost_seq == watch.seq
    seen = watch.seq
    fake.fail = True
    watch.drain()
    assert watch.changed_since(str(tmp_path), ("a",), seen)
    fake.fail = False
    seen = watch.seq
    watch.drain()
    assert not watch.changed_since(str(tmp_path), ("a",), seen)
    watch.recheck_s = 0.0
    watch.drain()
    assert watch.changed_since(str(tmp_path), ("a",), seen)


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_a_pass_reads_only_the_run_that_changed_and_sees_an_append_made_just_before(tmp_path, monkeypatch, nested):
    for i in range(60):
        write_run(tmp_path / f"run{i:02d}" if nested else tmp_path, "r" if nested else f"run{i:02d}", 5)
    sweep = settled_sweep(tmp_path)
    try:
        assert sweep.watch is not None
        polls = PollCount(sweep, monkeypatch)
        assert sweep.refresh().changed == [] and polls.take() == []  # nothing changed: no run looked at
        run_id = next(rid for rid, ref in sweep.runs.items() if ref.file_stem == "run33" or ref.rel == "run33")
        ref = sweep.runs[run_id]
        append_in_another_process(Path(ref.folder), ref.file_stem, 5)
        update = sweep.refresh()  # right after the other process's write returned
        assert update.changed == [run_id] and polls.take() == [run_id]
        assert sweep.summary(run_id).step == 5
        # a new run, and a deleted one
        write_run(tmp_path / "run60" if nested else tmp_path, "r" if nested else "run60", 2)
        update = sweep.refresh()
        assert len(update.added) == 1 and len(sweep.runs) == 61
        for path in (Path(ref.folder).glob(f"{ref.file_stem}_*")):
            path.unlink()
        update = sweep.refresh()
        assert update.removed == [run_id] and len(sweep.runs) == 60
    finally:
        sweep.close()


def test_runs_the_watch_cannot_tell_about_are_looked_at_in_turns(tmp_path, monkeypatch):
    for i in range(30):
        write_run(tmp_path / f"run{i:02d}", "r", 3)
    target = tmp_path / "elsewhere"
    write_run(target, "r", 3)
    linked = tmp_path / "run_linked"
    linked.mkdir()
    (linked / "r_metrics.json").symlink_to(target / "r_metrics.json")  # its folder cannot be watched
    sweep = settled_sweep(tmp_path)
    try:
        run_id = next(rid for rid, ref in sweep.runs.items() if ref.rel == "run_linked")
        assert sweep.summary(run_id).step == 2
        write_run(target, "r", 2, start=3)  # changes the link's target only
        for _ in range(3):
            sweep.refresh()
        assert sweep.summary(run_id).step == 4
    finally:
        sweep.close()


def test_without_a_watch_a_sweep_polls_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_WIDGET_NO_WATCH", "1")
    for i in range(30):
        write_run(tmp_path / f"run{i:02d}", "r", 3)
    sweep = settled_sweep(tmp_path)
    try:
        assert sweep.watch is None and sweep.finder.watch is None
        polls = PollCount(sweep, monkeypatch)
        sweep.refresh()
        assert 0 < len(polls.take()) <= 30  # still runs, looked at in turns
        write_run(tmp_path / "run05", "r", 1, start=3)
        for _ in range(3):
            sweep.refresh()
        run_id = next(rid for rid, ref in sweep.runs.items() if ref.rel == "run05")
        assert sweep.summary(run_id).step == 3
    finally:
        sweep.close()


def test_a_dashboard_of_a_large_sweep_shows_an_append_at_the_next_update_data(tmp_path, dashboards):
    for i in range(60):
        write_run(tmp_path, f"run{i:02d}", 5)
    dash = dashboards.from_dir(tmp_path)
    for _ in range(3):
        dash.update_data()
    run_id = dash.selected[0]
    other = next(r for r in dash.run_ids if r not in dash.selected)
    append_in_another_process(tmp_path, run_id, 5)
    dash.update_data()
    assert dash.to_dataframe(run_id=run_id)["step"].max() == 5
    # a run selected later is read from then on, and its appends seen at the next pass too
    dash.select([run_id, other])
    dash.update_data()
    append_in_another_process(tmp_path, other, 5)
    dash.update_data()
    assert dash.to_dataframe(run_id=other)["step"].max() == 5


def test_the_recheck_reads_a_change_the_events_missed_and_looks_at_every_run_once(tmp_path, monkeypatch):
    for i in range(60):
        write_run(tmp_path / f"run{i:02d}", "r", 3)
    sweep = settled_sweep(tmp_path)
    try:
        polls = PollCount(sweep, monkeypatch)
        sweep.refresh()
        assert polls.take() == []
        run_id = next(rid for rid, ref in sweep.runs.items() if ref.rel == "run42")
        write_run(tmp_path / "run42", "r", 2, start=3)
        sweep.watch.drain()  # the events are taken by someone else: this sweep never sees them
        sweep.watch.take_changed_files()
        sweep.refresh()
        assert polls.take() == [] and sweep.summary(run_id).step == 2  # missed (what the recheck is for)
        sweep.watch.recheck_s = 0.0
        update = sweep.refresh()
        assert sorted(polls.take()) == sorted(sweep.runs) and update.changed == [run_id]
        assert sweep.summary(run_id).step == 4
        sweep.watch.recheck_s = 3600.0
        sweep.refresh()
        assert polls.take() == []
    finally:
        sweep.close()


def test_a_folder_that_cannot_be_watched_is_asked_again_only_at_the_recheck(tmp_path, monkeypatch):
    scans = []
    holds = folder_watch._holds_symlinks
    monkeypatch.setattr(folder_watch, "_holds_symlinks", lambda path: scans.append(path) or holds(path))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "r_metrics.json").symlink_to(tmp_path / "elsewhere.json")
    watch = FolderWatch(FakeINotify(), recheck_s=3600)
    for _ in range(3):
        watch.drain()
        assert not watch.watch(linked)
    assert len(scans) == 1  # a pass polls the folder's runs, without scanning it again
    (linked / "r_metrics.json").unlink()
    watch.recheck_s = 0.0
    watch.drain()
    assert watch.watch(linked) and len(scans) == 2
