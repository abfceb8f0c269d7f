"""A storage failure never raises into the caller or the training loop (issue 14 §3): for every kind of OSError
while writing — the run file is a directory or a FIFO, a path component is a file, EACCES, EROFS, ENOSPC, EIO — the
record is kept in memory and shown, the status line names the problem, and it is written once writing works again.
The same for RLDKCallback and for a dashboard whose output_dir cannot be created. Wrong input still raises."""

from __future__ import annotations

import errno
import math
import os
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from rldk_widget import RLDKDashboard
from rldk_widget.store import RunStore

REAL_OPEN, REAL_PWRITE = os.open, os.pwrite


class Fault:
    """Breaks writing to `folder/r_*` in one way, and repairs it."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text

    def folder(self, tmp_path: Path) -> Path:
        return tmp_path / "runs"

    def brake(self, folder: Path, monkeypatch) -> None:
        raise NotImplementedError

    def repair(self, folder: Path, monkeypatch) -> None:
        monkeypatch.undo()


class RunFileIsADirectory(Fault):
    def brake(self, folder, monkeypatch):
        for kind in ("metrics", "alerts"):
            (folder / f"r_{kind}.json").mkdir(parents=True)

    def repair(self, folder, monkeypatch):
        for kind in ("metrics", "alerts"):
            shutil.rmtree(folder / f"r_{kind}.json")


class RunFileIsAFifo(Fault):
    def brake(self, folder, monkeypatch):
        folder.mkdir(parents=True, exist_ok=True)
        for kind in ("metrics", "alerts"):
            os.mkfifo(folder / f"r_{kind}.json")

    def repair(self, folder, monkeypatch):
        for kind in ("metrics", "alerts"):
            (folder / f"r_{kind}.json").unlink()


class PathComponentIsAFile(Fault):
    def folder(self, tmp_path):
        return tmp_path / "blocker" / "runs"

    def brake(self, folder, monkeypatch):
        folder.parent.parent.mkdir(parents=True, exist_ok=True)
        folder.parent.write_text("a file where a folder should be")

    def repair(self, folder, monkeypatch):
        folder.parent.unlink()


class OpenFails(Fault):
    def __init__(self, name, code):
        super().__init__(name, os.strerror(code))
        self.code = code

    def brake(self, folder, monkeypatch):
        def fake_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise OSError(self.code, os.strerror(self.code), str(path))
            return REAL_OPEN(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", fake_open)


class WriteFails(Fault):
    def __init__(self, name, code):
        super().__init__(name, os.strerror(code))
        self.code = code

    def brake(self, folder, monkeypatch):
        def fake_pwrite(fd, data, offset):
            raise OSError(self.code, os.strerror(self.code))

        monkeypatch.setattr(os, "pwrite", fake_pwrite)


FAULTS = [
    RunFileIsADirectory("run file is a directory", "Is a directory"),
    RunFileIsAFifo("run file is a FIFO", "is a FIFO"),
    PathComponentIsAFile("a path component is a file", "Not a directory"),
    OpenFails("permission denied (EACCES)", errno.EACCES),
    OpenFails("read-only file system (EROFS)", errno.EROFS),
    WriteFails("disk full (ENOSPC)", errno.ENOSPC),
    WriteFails("I/O error (EIO)", errno.EIO),
]


def on_disk(folder: Path) -> tuple[list[int], list[int]]:
    data = RunStore(folder, "r").read_all()
    return [r["step"] for r in data.metrics], [a["step"] for a in data.alerts]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_add_metrics_and_add_alert_keep_showing_and_write_later(tmp_path, monkeypatch, fault):
    folder = fault.folder(tmp_path)
    fault.brake(folder, monkeypatch)
    dash = RLDKDashboard(output_dir=folder, run_id="r", auto_refresh=False)
    try:
        for step in range(20):
            dash.add_metrics({"step": step, "loss": 1.0 / (step + 1)})
            if step % 5 == 0:
                dash.add_alert({"type": "t", "message": f"at {step}", "step": step})
        assert dash.status["level"] == "error", dash.status
        assert fault.text in dash.status["message"] and "kept in memory" in dash.status["message"]
        assert dash.to_dataframe()["step"].tolist() == list(range(20))
        assert [a["step"] for a in dash.alerts] == [0, 5, 10, 15]
        fault.repair(folder, monkeypatch)
        dash.update_data()  # the retry (auto-refresh does the same)
        assert on_disk(folder) == (list(range(20)), [0, 5, 10, 15])
        dash.add_metrics({"step": 20, "loss": 0.01})
        assert on_disk(folder)[0] == list(range(21))
        dash.flush()
        assert dash.status["level"] != "error", dash.status
        assert dash.to_dataframe()["step"].tolist() == list(range(21))
    finally:
        dash.close()


class GRPOConfig(SimpleNamespace):
    """Stands in for trl.GRPOConfig (the callback reads the trainer kind from the class name)."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_the_callback_never_raises_into_training_and_writes_once_it_can(tmp_path, monkeypatch, fault):
    from transformers import TrainerControl, TrainerState

    from rldk_widget.callback import RLDKCallback

    folder = fault.folder(tmp_path)
    fault.brake(folder, monkeypatch)
    callback = RLDKCallback(output_dir=folder, run_id="r", write_interval=0)
    args, control = GRPOConfig(output_dir=str(tmp_path / "trainer")), TrainerControl()
    state = TrainerState(max_steps=30, is_world_process_zero=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_train_begin(args, state, control)
        for step in range(1, 21):
            state.global_step = step
            logs = {"loss": 1.0 / step, "grad_norm": math.nan if step == 10 else 0.5, "reward": 0.5, "kl": 0.01}
            callback.on_log(args, state, control, logs=logs)
        fault.repair(folder, monkeypatch)
        for step in range(21, 31):
            state.global_step = step
            callback.on_log(args, state, control, logs={"loss": 1.0 / step, "reward": 0.5})
        callback.on_train_end(args, state, control)
    assert any(fault.text in str(w.message) for w in caught), [str(w.message) for w in caught]
    metrics, alerts = on_disk(folder)
    assert metrics == list(range(1, 31)), "records lost, duplicated or out of order"
    assert 10 in alerts  # the NaN grad norm alert of the faulty period was kept and written


def test_a_dashboard_whose_output_dir_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    dash = RLDKDashboard(output_dir=tmp_path / "file" / "runs", run_id="r", auto_refresh=False)
    try:
        dash.add_metrics({"step": 1, "loss": 0.5})
        dash.add_alert({"type": "t", "message": "m", "step": 1})
        dash.update_data()
        assert dash.status["level"] == "error" and "Not a directory" in dash.status["message"]
        assert dash.to_dataframe()["step"].tolist() == [1] and len(dash.alerts) == 1
        assert [r["step"] for r in dash.metrics_data] == [1]
    finally:
        dash.close()


@pytest.mark.parametrize(
    ("bad", "error"),
    [("not a mapping", TypeError), ({"step": 1, "run_id": "a/b"}, ValueError), ({"step": math.inf}, ValueError),
     ({"step": math.nan}, ValueError), ({"loss": 1.0}, ValueError)],
)
def test_wrong_input_still_raises_at_once_even_while_storage_fails(tmp_path, monkeypatch, bad, error):
    fault = FAULTS[-1]
    fault.brake(tmp_path, monkeypatch)
    dash = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    try:
        with pytest.raises(error):
            dash.add_metrics(bad)
    finally:
        dash.close()
