"""Child processes that tests SIGKILL mid-run (test_store_processes.py, test_faults.py), and how to start them.

The test process has threads (dashboards' flushers, pytest-timeout, earlier tests' leftovers), and `os.fork()` of a
multi-threaded process copies locks other threads hold (logging, imports, a RunStore's) into a child that may then
deadlock. So children come from multiprocessing's forkserver: a fresh, single-threaded interpreter started once
(spawned, not forked), with rldk_widget already imported, that forks each child on request: safe,
and a child starts in milliseconds instead of the ~0.6 s a spawned interpreter takes to import rldk_widget (the
SIGKILL test starts 50).

A child reports progress through an 8-byte file both sides map: the last step it started (`append_until_killed`) or
whose add returned (`kernel_until_killed`), -1 before that. A test waits for >= 0 before it picks a moment to kill,
so every kill lands while the child writes, however long it took to start.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import random
import signal
import struct
import time
from pathlib import Path
from typing import Any, Callable

import rldk_widget  # imported once by the forkserver (preload), not by every child
from rldk_widget import RLDKDashboard
from rldk_widget.store import RunStore


def record(step: int) -> dict:
    return {"step": step, "loss": 1.0 / (step + 1), "reward_mean": math.sin(step)}


def alert(step: int) -> dict:
    return {"type": "spike", "message": f"alert at {step}", "step": step, "severity": "warning"}


class Progress:
    """The 8-byte progress file, mapped: `Progress.create(path)` in the test, `Progress(path)` in the child."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> "Progress":
        Path(path).write_bytes(struct.pack("q", -1))
        return cls(path)

    def set(self, step: int) -> None:
        self._map[:8] = struct.pack("q", step)

    def get(self) -> int:
        return struct.unpack("q", self._map[:8])[0]

    def close(self) -> None:
        self._map.close()


def start(target: Callable[..., Any], *args: Any) -> multiprocessing.process.BaseProcess:
    """Run `target(*args)` (a function of this module) in a child forked by the forkserver; returns the process."""
    context = multiprocessing.get_context("forkserver")
    # takes effect when the server starts (the first call). Python 3.11's server does not apply the test's
    # sys.path, so it preloads rldk_widget from its own (cwd, PYTHONPATH): `_run` checks it is the same package.
    context.set_forkserver_preload(["rldk_widget", "rldk_widget.store"])
    process = context.Process(target=_run, args=(rldk_widget.__file__, target, *args), daemon=True)
    process.start()
    return process


def _run(package_file: str, target: Callable[..., Any], *args: Any) -> None:
    if rldk_widget.__file__ != package_file:
        raise RuntimeError(f"the child imported {rldk_widget.__file__}, the test {package_file}")
    target(*args)


def kill(process: multiprocessing.process.BaseProcess) -> None:
    """SIGKILL the child (if still running) and reap it."""
    if process.pid is not None and process.exitcode is None:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.join(timeout=30)


def append_until_killed(directory: str, run_id: str, progress_path: str) -> None:
    """A writer appending records of random size to `run_id`, resuming after the last record on disk."""
    progress = Progress(progress_path)
    rng = random.Random(os.getpid())
    store = RunStore(directory, run_id)
    step = len(store.read_all().metrics)
    while True:
        progress.set(step)
        store.append_metrics({"step": step, "payload": "y" * rng.randint(0, 4000)})
        step += 1


def kernel_until_killed(directory: str, progress_path: str) -> None:
    """A notebook kernel: a dashboard with auto-refresh, resuming the run "r" after the last step on disk."""
    progress = Progress(progress_path)
    dash = RLDKDashboard(output_dir=directory, run_id="r", auto_refresh=True, refresh_interval=0.01)
    frame = dash.to_dataframe()
    step = 0 if frame.empty else int(frame["step"].max()) + 1
    while True:
        dash.add_metrics(record(step))
        if step % 10 == 0:
            dash.add_alert(alert(step))
        progress.set(step)  # this step's add_metrics has returned
        step += 1
        time.sleep(0.0002)
