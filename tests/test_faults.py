"""Faults during a run: the training loop never sees an exception, the view's status line says what went wrong,
nothing shown is lost, and what was kept in memory reaches the file once writing works again.

Write faults are injected in-process (os.pwrite / os.open patched: ENOSPC, a short write that tears the file,
EACCES, EROFS) and, where the machine allows a private mount namespace, for real: a tiny tmpfs that fills up and a
read-only bind mount (root ignores permission bits, not a read-only mount). Then: the output dir deleted mid-run,
the run file replaced by another process mid-run, symlinked run files, and "kernel" processes SIGKILLed mid-run
whose successor dashboards show the full state (started from a forkserver, see killable.py: never os.fork() of this
multi-threaded process).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rldk_widget.store as store_module
from rldk_widget import RLDKDashboard
from rldk_widget.snapshot import SNAPSHOT_POINT_BUDGET
from rldk_widget.store import RunStore

import killable
from helpers import CommTap, wait_until
from killable import alert, record

pytestmark = pytest.mark.timeout(120)
TESTS = Path(__file__).parent
REPO = TESTS.parent


def disk_steps(directory: Path, run: str = "r") -> tuple[list[int], list[int]]:
    data = RunStore(directory, run).read_all()
    return [r["step"] for r in data.metrics], [a["step"] for a in data.alerts]


def live_steps(dash: RLDKDashboard) -> list[int]:
    frame = dash.to_dataframe()
    return [] if frame.empty else frame["step"].tolist()


def assert_live_equals_reload_and_view(dash: RLDKDashboard, directory: Path, tap: CommTap, run: str = "r") -> None:
    """What the live dashboard holds = what a fresh dashboard reads from disk = what its view was sent."""
    dash.flush()
    fresh = RLDKDashboard(output_dir=directory, run_id=run, auto_refresh=False)
    try:
        pd.testing.assert_frame_equal(dash.to_dataframe(), fresh.to_dataframe(), check_like=True)
        pd.testing.assert_frame_equal(dash.alerts_dataframe(), fresh.alerts_dataframe(), check_like=True)
    finally:
        fresh.close()
    xs, ys = tap.view.series(run, "loss")
    metrics, alerts = disk_steps(directory, run)
    assert sorted(xs.tolist()) == sorted(metrics), "the view's points differ from the file"
    assert np.allclose(ys[np.argsort(xs, kind="stable")], [1.0 / (s + 1) for s in sorted(metrics)])
    assert sorted(a["step"] for a in tap.view.alerts) == sorted(alerts), "the view's alerts differ from the file"
    assert not tap.wire_errors, tap.wire_errors


# ---- write faults, injected in-process -----------------------------------------------------------------------
REAL_PWRITE, REAL_OPEN = os.pwrite, os.open


def pwrite_enospc(fd, data, offset):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def pwrite_short(fd, data, offset):
    """A disk that fills up mid-write: half the bytes land (the file is torn), the call reports a short count."""
    return REAL_PWRITE(fd, data[: len(data) // 2], offset)


def open_denied(code):
    def fake_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(code, os.strerror(code), str(path))
        return REAL_OPEN(path, flags, *args, **kwargs)

    return fake_open


# (name, what to patch, replacement, first faulty step, text the status line shows)
FAULTS = [
    ("disk full (ENOSPC)", "pwrite", pwrite_enospc, 100, "No space left on device"),
    ("short write tears the file", "pwrite", pwrite_short, 100, "short write"),
    ("read-only dir from the start (EACCES)", "open", open_denied(errno.EACCES), 0, "Permission denied"),
    ("read-only file system from the start (EROFS)", "open", open_denied(errno.EROFS), 0, "Read-only file system"),
]


@pytest.mark.parametrize(("name", "target", "fake", "start", "text"), FAULTS, ids=[f[0] for f in FAULTS])
def test_write_fault_training_continues_status_shows_it_and_memory_is_flushed_on_recovery(
    tmp_path, monkeypatch, name, target, fake, start, text
):
    end, total = 200, 300
    dash = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    tap = CommTap(dash, view=True, keep=False)
    dash.enable_auto_refresh(0.02)
    try:
        for step in range(total):
            if step == start:
                monkeypatch.setattr(store_module.os, target, fake)
            if step == end:
                # the fault is in place: the loop went on, the view says why, nothing shown was dropped
                dash.disable_auto_refresh()  # its retries write (half of) the kept records, then cut them off again:
                dash.flush()  # a read of the file between the two would see them; the dashboard read its appends back
                assert dash.status["level"] == "error" and text in dash.status["message"], dash.status
                assert "kept in memory" in dash.status["message"]
                assert tap.view.status == dash.status, "the view's status line did not get the error"
                assert live_steps(dash) == list(range(end))
                assert sorted(tap.view.series("r", "loss")[0].tolist()) == list(range(end))
                metrics, alerts = disk_steps(tmp_path)
                assert metrics == list(range(start)), "records of the faulty period on disk (or earlier ones lost)"
                assert alerts == list(range(0, start, 10))
                # writing works again: the auto-refresh retry writes what was kept, without a new add
                monkeypatch.setattr(store_module.os, target, REAL_PWRITE if target == "pwrite" else REAL_OPEN)
                dash.enable_auto_refresh(0.02)
                wait_until(lambda: disk_steps(tmp_path)[0] == list(range(end)), what="the kept records to be written")
                wait_until(lambda: dash.status["level"] != "error", what="the status line to clear")
            dash.add_metrics(record(step))
            if step % 10 == 0:
                dash.add_alert(alert(step))
        dash.flush()
        metrics, alerts = disk_steps(tmp_path)
        assert metrics == list(range(total)), "records lost, duplicated or out of order on disk"
        assert alerts == list(range(0, total, 10))
        assert json.loads((tmp_path / "r_metrics.json").read_text())[-1]["step"] == total - 1, "file not valid JSON"
        assert dash.status == {"level": "ok", "message": ""}, dash.status
        assert tap.view.status == dash.status
        assert_live_equals_reload_and_view(dash, tmp_path, tap)
    finally:
        dash.close()


# ---- real disk full and read-only mounts, in a private mount namespace -------------------------------------
NAMESPACE_SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    sys.path.insert(0, sys.argv[2])
    from helpers import CommTap, wait_until
    from rldk_widget import RLDKDashboard
    from rldk_widget.store import RunStore

    mnt = sys.argv[1]
    sh = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)
    sh("mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", mnt)

    def steps(directory):
        data = RunStore(directory, "r").read_all()
        return [r["step"] for r in data.metrics], [a["step"] for a in data.alerts]

    def wait(pred, timeout=10):
        try:
            return wait_until(pred, timeout)
        except TimeoutError:
            return False

    def run(directory, break_it, repair, faulty, total):
        dash = RLDKDashboard(output_dir=directory, run_id="r", auto_refresh=False)
        tap = CommTap(dash, view=True, keep=False)
        dash.enable_auto_refresh(0.02)
        out = {}
        for step in range(total):
            if step == faulty[0]:
                break_it()
            if step == faulty[1]:
                dash.flush()
                out["status_during"] = dict(dash.status)
                out["view_status_during"] = tap.view.status
                out["live_during"] = dash.to_dataframe()["step"].tolist()
                out["disk_during"] = steps(directory)
                repair()
                out["flushed_without_add"] = wait(lambda: steps(directory)[0] == list(range(faulty[1])))
                wait(lambda: dash.status["level"] != "error", 5)
            dash.add_metrics({"step": step, "loss": 1.0 / (step + 1), "note_padding": float(step)})
            if step % 10 == 0:
                dash.add_alert({"type": "spike", "message": "m" * 200, "step": step})
        dash.flush()
        xs, _ = tap.view.series("r", "loss")
        out.update(disk_after=steps(directory), live_after=dash.to_dataframe()["step"].tolist(),
                   view_after=sorted(xs.tolist()), status_after=dict(dash.status), wire_errors=tap.wire_errors)
        dash.close()
        return out

    filler = os.path.join(mnt, "filler")

    def fill():
        with open(filler, "wb", buffering=0) as handle:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        handle.write(b"x" * size)
                except OSError:
                    pass

    results = {"disk_full": run(os.path.join(mnt, "full"), fill, lambda: os.remove(filler), (60, 400), 500)}
    ro = os.path.join(mnt, "ro")
    os.mkdir(ro)
    sh("mount", "--bind", ro, ro)
    results["read_only"] = run(
        ro, lambda: sh("mount", "-o", "remount,bind,ro", ro), lambda: sh("mount", "-o", "remount,bind,rw", ro),
        (0, 100), 150)
    print("RESULT " + json.dumps(results))
    """
)


def private_mounts_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not private_mounts_available(), reason="needs root and unshare --mount (private mount namespace)")
def test_real_disk_full_and_read_only_mount_training_continues_and_kept_records_are_flushed(tmp_path):
    script = tmp_path / "scenario.py"
    script.write_text(NAMESPACE_SCRIPT)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", sys.executable, str(script), str(mnt), str(TESTS)],
        capture_output=True, text=True, timeout=100, env=env,
    )
    assert proc.returncode == 0, f"the training loop raised:\n{proc.stderr[-3000:]}"
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    results = json.loads(line[len("RESULT "):])

    full = results["disk_full"]
    assert full["status_during"]["level"] == "error", full["status_during"]
    assert "No space left on device" in full["status_during"]["message"] or "short write" in full["status_during"]["message"]
    assert full["view_status_during"] == full["status_during"]
    assert full["live_during"] == list(range(400)), "records shown before the disk filled up were dropped"
    disk_metrics = full["disk_during"][0]
    assert 60 <= len(disk_metrics) < 400 and disk_metrics == list(range(len(disk_metrics))), "file damaged"
    assert full["flushed_without_add"], "records kept in memory were not written once space was freed"
    assert full["disk_after"] == [list(range(500)), list(range(0, 500, 10))]
    assert full["live_after"] == full["view_after"] == list(range(500))
    assert full["status_after"]["level"] == "ok", full["status_after"]
    assert full["wire_errors"] == []

    ro = results["read_only"]
    assert ro["status_during"]["level"] == "error" and "Read-only file system" in ro["status_during"]["message"]
    assert ro["view_status_during"] == ro["status_during"]
    assert ro["live_during"] == list(range(100)) and ro["disk_during"] == [[], []]
    assert ro["flushed_without_add"]
    assert ro["disk_after"] == [list(range(150)), list(range(0, 150, 10))]
    assert ro["live_after"] == ro["view_after"] == list(range(150))
    assert ro["status_after"]["level"] == "ok", ro["status_after"]


# ---- the output dir deleted, the file replaced, symlinks ---------------------------------------------------
def test_output_dir_deleted_mid_run_training_continues_and_view_follows_the_disk(tmp_path):
    out = tmp_path / "runs"
    dash = RLDKDashboard(output_dir=out, run_id="r", auto_refresh=False)
    tap = CommTap(dash, view=True, keep=False)
    dash.enable_auto_refresh(0.01)
    try:
        for step in range(200):
            if step == 100:
                shutil.rmtree(out)
                # the auto-refresh notices the deletion before the next add (the other order: the symlink test)
                wait_until(lambda: "deleted" in dash.status["message"], what="the auto-refresh to see the deletion")
            dash.add_metrics(record(step))
            if step % 10 == 0:
                dash.add_alert(alert(step))
        dash.flush()
        metrics, alerts = disk_steps(out)
        # the directory is re-created and every record added after the deletion is on disk, once, in order
        assert metrics == list(range(100, 200)) and alerts == list(range(100, 200, 10))
        assert dash.status["level"] != "error", dash.status
        wait_until(lambda: live_steps(dash) == list(range(100, 200)), what="the view to follow the re-created file")
        # the history before the deletion left the view with the files; the status line says why
        assert "r_metrics.json was replaced, truncated or deleted" in dash.status["message"], dash.status
        assert_live_equals_reload_and_view(dash, out, tap)
    finally:
        dash.close()


REPLACER = textwrap.dedent(
    """
    import json, os, sys
    path = sys.argv[1]
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump([{"step": 1000 + i, "loss": 1.0 / (1001 + i), "reward_mean": 0.0} for i in range(5)], handle)
    os.replace(tmp, path)
    """
)


@pytest.mark.parametrize("auto_refresh", [False, True], ids=["replaced between adds", "with auto-refresh running"])
def test_file_replaced_by_another_process_mid_run_live_view_equals_disk(tmp_path, auto_refresh):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    tap = CommTap(dash, view=True, keep=False)
    if auto_refresh:
        dash.enable_auto_refresh(0.01)
    try:
        for step in range(150):
            if step == 100:
                subprocess.run([sys.executable, "-c", REPLACER, str(tmp_path / "r_metrics.json")], check=True)
            dash.add_metrics(record(step))
        metrics, _ = disk_steps(tmp_path)
        assert metrics == [1000, 1001, 1002, 1003, 1004, *range(100, 150)]
        # the live dashboard shows the file as it is now, not the replaced records plus the new file
        assert live_steps(dash) == sorted(metrics)
        assert_live_equals_reload_and_view(dash, tmp_path, tap)
    finally:
        dash.close()


def test_symlinked_run_files_outside_output_dir_are_not_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.json").write_text("[]")
    (outside / "alerts.json").write_text("[]")
    out = tmp_path / "runs"
    out.mkdir()
    (out / "r_metrics.json").symlink_to(outside / "target.json")
    (out / "r_alerts.json").symlink_to(outside / "alerts.json")
    dash = RLDKDashboard(output_dir=out, run_id="r", auto_refresh=False)
    tap = CommTap(dash, view=True, keep=False)
    try:
        for step in range(20):
            dash.add_metrics(record(step))
            dash.add_alert(alert(step))
        dash.flush()
        assert (outside / "target.json").read_text() == "[]" and (outside / "alerts.json").read_text() == "[]"
        assert dash.status["level"] == "error" and "r_metrics.json" in dash.status["message"], dash.status
        assert live_steps(dash) == list(range(20)), "records shown while the file could not be written were lost"
        # the links are removed: the kept records go to real files inside output_dir
        (out / "r_metrics.json").unlink()
        (out / "r_alerts.json").unlink()
        dash.update_data()
        assert not (out / "r_metrics.json").is_symlink()
        assert disk_steps(out) == (list(range(20)), list(range(20)))
        # the write error is gone; what remains says the files the view read were replaced
        assert dash.status["level"] == "warning", dash.status
        assert "cannot write" not in dash.status["message"] and "was replaced" in dash.status["message"]
        assert (outside / "target.json").read_text() == "[]"
        assert_live_equals_reload_and_view(dash, out, tap)
    finally:
        dash.close()


# ---- a kernel killed mid-run; its successor shows the full state -------------------------------------------
def test_kernel_killed_mid_run_the_next_kernel_and_a_new_view_show_the_full_state(tmp_path):
    rng = random.Random(8)
    progress = killable.Progress.create(tmp_path / "progress")
    out = tmp_path / "runs"
    kills = 6
    for kill in range(kills):
        progress.set(-1)
        kernel = killable.start(killable.kernel_until_killed, str(out), progress.path)  # see killable.py
        try:
            wait_until(lambda: progress.get() >= 0 or kernel.exitcode is not None, what="the kernel to start adding")
            assert kernel.exitcode is None, f"kill {kill}: the kernel ended by itself with {kernel.exitcode}"
            time.sleep(rng.uniform(0.05, 0.3))  # a random moment to kill at, not a synchronisation
        finally:
            killable.kill(kernel)
        done = progress.get()
        # a restarted kernel: a new dashboard over the same folder, and a view of it displayed now
        dash = RLDKDashboard(output_dir=out, run_id="r", auto_refresh=False)
        try:
            tap = CommTap(dash, view=True, keep=False)
            steps = live_steps(dash)
            assert steps == list(range(len(steps))), f"kill {kill}: records lost, duplicated or out of order"
            assert len(steps) >= done + 1, f"kill {kill}: step {done} had been added but is not shown after the restart"
            xs, _ = tap.view.series("r", "loss")
            if len(steps) <= SNAPSHOT_POINT_BUDGET // 3:  # loss, reward_mean, timestamp share the budget
                assert xs.tolist() == [float(s) for s in steps], f"kill {kill}: the new view's snapshot is incomplete"
            else:  # a long run's snapshot is decimated: first, last, extremes, strictly increasing
                assert xs[0] == 0 and xs[-1] == steps[-1] and np.all(np.diff(xs) > 0) and set(xs) <= set(steps)
            shown = [a["step"] for a in tap.view.alerts]
            assert shown == disk_steps(out)[1] and len(set(shown)) == len(shown), f"kill {kill}: alerts differ"
            # a kernel killed between add_metrics(s) and add_alert(s) never wrote that alert: at most one per kill
            missing = set(range(0, len(steps), 10)) - set(shown)
            assert set(shown) <= set(range(0, len(steps), 10)) and len(missing) <= kill + 1, sorted(missing)
        finally:
            dash.close()
    final = json.loads((out / "r_metrics.json").read_text())
    assert [r["step"] for r in final] == list(range(len(final))) and len(final) > kills
