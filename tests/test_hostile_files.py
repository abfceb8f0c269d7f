"""`update_data()` never raises, whatever the files hold (issue 14 §2): each case that used to raise into the
caller, their neighbours (non-regular files, files that vanish or change under the reader, unreadable files),
records without a step and integers beyond 2**53 and 64 bits. Every bad file gets a line in `load_report` and the
status line; every complete record before and after the damage is kept."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import rldk_widget.fs as fs_module
from rldk_widget import RLDKDashboard
from rldk_widget.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def open_dash(folder: Path, run_id: str | None = "r") -> RLDKDashboard:
    return RLDKDashboard(output_dir=folder, run_id=run_id, auto_refresh=False)


def report_text(dash: RLDKDashboard) -> str:
    return " | ".join(p for problems in dash.load_report.values() for p in problems)


def steps_shown(dash: RLDKDashboard, run: str = "r", series: str = "loss") -> list:
    run_series = dash.metrics[run] if run in dash.metrics else {}
    return run_series[series].index.tolist() if series in run_series else []


def write_metrics(folder: Path, steps, run: str = "r") -> None:
    RunStore(folder, run).append_metrics_many({"step": s, "loss": s / 10} for s in steps)


def test_a_csv_cell_longer_than_the_csv_field_limit(tmp_path):
    huge = "x" * 300_000
    (tmp_path / "r_checkpoint_summary.csv").write_text(
        f"step,size_mb,checkpoint_dir\n1,2.5,short\n2,3.5,\"{huge}\"\n3,4.5,{huge}\n4,5.5,end\n"
    )
    dash = open_dash(tmp_path)
    try:
        dash.update_data()
        assert dash.metrics["r"]["ckpt:size_mb"].index.tolist() == [1, 2, 3, 4]
    finally:
        dash.close()
    rows = RunStore(tmp_path, "r").read_all().checkpoint_summary
    assert [row["checkpoint_dir"] for row in rows] == ["short", huge, huge, "end"]


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_json_nested_deeper_than_the_parser_goes(tmp_path, depth):
    deep = "[" * depth + "]" * depth
    (tmp_path / "r_metrics.json").write_text(
        '[\n{"step": 1, "loss": 0.1},\n{"step": 2, "deep": ' + deep + '},\n{"step": 3, "loss": 0.3}\n]\n'
    )
    (tmp_path / "r_alerts.json").write_text('[\n{"type": "t", "message": ' + '{"a": ' * depth + "}\n]\n")
    dash = open_dash(tmp_path)
    try:
        dash.update_data()
        assert steps_shown(dash) == [1, 3]
        assert "r_metrics.json: skipped 1 damaged part" in report_text(dash)
        assert dash.status["level"] == "warning"
    finally:
        dash.close()


def test_a_directory_where_a_run_file_should_be(tmp_path):
    (tmp_path / "r_metrics.json").mkdir()
    (tmp_path / "r_alerts.json").write_text('[\n{"type": "t", "message": "kept", "step": 1}\n]\n')
    dash = open_dash(tmp_path, run_id=None)
    try:
        dash.update_data()
        assert "r_metrics.json: cannot read (is a directory, not a regular file)" in report_text(dash)
        assert [a["message"] for a in dash.alerts] == ["kept"]
        assert "cannot read" in dash.status["message"]
    finally:
        dash.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "socket", "character device", "symlink loop"])
def test_special_files_named_like_run_files_are_refused_without_blocking(tmp_path, kind):
    write_metrics(tmp_path, range(3))
    target = tmp_path / "r_metrics.json"
    target.unlink()
    listener = None
    if kind == "fifo":
        os.mkfifo(target)  # opening it for reading without O_NONBLOCK would block until a writer came
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(target))
    elif kind == "character device":
        target.symlink_to("/dev/zero")  # reading it would never end
    else:
        loop = tmp_path / "loop"
        target.symlink_to(loop)
        loop.symlink_to(target)
    dash = open_dash(tmp_path)
    try:
        dash.update_data()
        assert "r_metrics.json: cannot read" in report_text(dash)
        dash.add_metrics({"step": 9, "loss": 0.9})  # a writer refuses it too, and keeps the record
        assert steps_shown(dash) == [9]
        assert dash.status["level"] == "error" and "cannot write r_metrics.json" in dash.status["message"]
    finally:
        dash.close()
        if listener is not None:
            listener.close()


def test_a_file_that_disappears_between_listing_and_reading(tmp_path, monkeypatch):
    write_metrics(tmp_path, range(3))
    write_metrics(tmp_path, range(2), run="s")
    real_open = os.open

    def vanishing_open(path, flags, *args, **kwargs):
        if str(path).endswith("s_metrics.json") and not flags & os.O_RDWR:
            Path(path).unlink(missing_ok=True)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(fs_module.os, "open", vanishing_open)
    dash = open_dash(tmp_path, run_id=None)
    try:
        dash.update_data()
        assert steps_shown(dash) == [0, 1, 2]
        assert dash.run_ids == ["r", "s"] and steps_shown(dash, "s") == []
    finally:
        dash.close()


def test_a_file_replaced_between_listing_and_reading(tmp_path, monkeypatch):
    write_metrics(tmp_path, range(3))
    dash = open_dash(tmp_path)
    real_open = os.open
    replaced = []

    def replacing_open(path, flags, *args, **kwargs):
        if str(path).endswith("r_metrics.json") and not replaced and not flags & os.O_RDWR:
            replaced.append(path)
            fresh = Path(path).with_suffix(".new")
            fresh.write_text('[\n{"step": 50, "loss": 5.0}\n]\n')
            os.replace(fresh, path)
        return real_open(path, flags, *args, **kwargs)

    try:
        monkeypatch.setattr(fs_module.os, "open", replacing_open)
        dash.update_data()
        assert steps_shown(dash) == [50]
        assert "r_metrics.json was replaced" in report_text(dash)
    finally:
        dash.close()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ENOMEM, errno.ESTALE])
def test_a_read_error_is_reported_and_what_was_read_stays(tmp_path, monkeypatch, code):
    write_metrics(tmp_path, range(3))
    dash = open_dash(tmp_path)
    try:
        real_open = os.open

        def failing_open(path, flags, *args, **kwargs):
            if str(path).endswith("r_metrics.json") and not flags & os.O_RDWR:
                raise OSError(code, os.strerror(code), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(fs_module.os, "open", failing_open)
        dash.update_data()
        assert steps_shown(dash) == [0, 1, 2]
        assert f"r_metrics.json: cannot read ({os.strerror(code)})" in report_text(dash)
        assert os.strerror(code) in dash.status["message"]
        monkeypatch.undo()
        write_metrics(tmp_path, [3])
        dash.update_data()
        assert steps_shown(dash) == [0, 1, 2, 3]
        assert dash.load_report == {} and dash.status["level"] == "ok"  # readable again: no longer said
    finally:
        dash.close()


UNREADABLE_READER = textwrap.dedent(
    """
    import json, os, sys
    from rldk_widget import RLDKDashboard
    import rldk_widget.trl_keys
    if os.geteuid() == 0:  # permissions do not stop root: read as nobody (after the imports: /root is private)
        os.setgid(65534)
        os.setuid(65534)
    dash = RLDKDashboard(output_dir=sys.argv[1], run_id=None, auto_refresh=False)
    dash.update_data()
    shown = {run: series["loss"].index.tolist() for run, series in dash.metrics.items() if "loss" in series}
    print(json.dumps({"report": dash.load_report, "shown": shown, "status": dash.status}))
    dash.close()
    """
)


def test_a_file_this_user_may_not_read_in_a_process_with_dropped_privileges():
    """A real permission error: the reader runs in a subprocess as `nobody` when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="rldk-unreadable-"))
    try:
        folder.chmod(0o755)
        write_metrics(folder, range(3), run="ok")
        write_metrics(folder, range(4), run="secret")
        for path in folder.iterdir():
            path.chmod(0o644)
        (folder / "secret_metrics.json").chmod(0)
        home = Path(tempfile.mkdtemp(prefix="rldk-home-"))
        home.chmod(0o777)
        env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO), "IPYTHONDIR": str(home / "ipython")}
        done = subprocess.run(
            [sys.executable, "-c", UNREADABLE_READER, str(folder)], capture_output=True, text=True, timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["shown"]["ok"] == [0, 1, 2]
        assert "secret_metrics.json: cannot read (Permission denied)" in " ".join(result["report"]["secret"])
        assert "Permission denied" in result["status"]["message"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_records_without_a_step_are_kept_at_the_previous_step_plus_one(tmp_path):
    """Raw `on_log` dicts have no step: shown after the previous record, and the status line says so."""
    logs = [{"loss": 0.9, "learning_rate": 1e-5, "epoch": 0.1}, {"loss": 0.8, "epoch": 0.2},
            {"step": 10, "loss": 0.7}, {"loss": 0.6}, {"step": "eleven", "loss": 0.5}, {"step": -3, "loss": 0.4},
            {"step": 2.5, "loss": 0.3}]
    (tmp_path / "r_metrics.json").write_text("[\n" + ",\n".join(json.dumps(log) for log in logs) + "\n]\n")
    dash = open_dash(tmp_path)
    try:
        assert steps_shown(dash) == [0, 1, 10, 11, 12, 13, 14]
        assert dash.metrics["r"]["loss"].tolist() == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
        message = "r: 6 metrics record(s) without a usable 'step' are shown at the previous record's step + 1"
        assert message in dash.load_report["r"] and message in dash.status["message"]
        with open(tmp_path / "r_metrics.json", "rb+") as handle:  # the count grows in place, not as new lines
            handle.seek(-3, os.SEEK_END)
            handle.write(b',\n{"loss": 0.2}\n]\n')
        dash.update_data()
        assert steps_shown(dash)[-1] == 15
        assert sum("without a usable 'step'" in p for p in dash.load_report["r"]) == 1
        assert "r: 7 metrics record(s)" in dash.status["message"]
    finally:
        dash.close()


def test_integers_beyond_2_53_and_64_bits_as_values_and_steps(tmp_path):
    big, huge = 2**53 + 1, 2**70 + 3
    lines = [
        f'{{"step": 1, "loss": 0.5, "tokens": {huge}, "count": {big}}}',
        f'{{"step": {big}, "loss": 0.4}}',
        f'{{"step": {huge}, "loss": 0.3}}',
        f'{{"step": {10**400}, "loss": 0.2}}',
        '{"step": 5, "loss": 0.1}',
    ]
    (tmp_path / "r_metrics.json").write_text("[\n" + ",\n".join(lines) + "\n]\n")
    (tmp_path / "r_alerts.json").write_text(
        f'[\n{{"type": "t", "message": "m", "step": {huge}, "value": {huge}, "count": {big}}}\n]\n'
    )
    dash = open_dash(tmp_path)
    try:
        records = dash.metrics_data
        assert [r["loss"] for r in records] == [0.5, 0.4, 0.3, 0.2, 0.1]  # every record kept
        assert records[0]["tokens"] == huge and type(records[0]["tokens"]) is int  # exact: orjson would give a float
        assert records[1]["step"] == big and records[2]["step"] == huge
        loss = dash.metrics["r"]["loss"]
        assert loss.index.tolist()[:3] == [1.0, float(big), float(huge)]
        assert loss.index.tolist()[3] == float(huge) + 1  # 10**400 is no usable step: after the previous one
        assert dash.metrics["r"]["tokens"].tolist() == [float(huge)]
        report = report_text(dash)
        assert "r: 2 metrics record(s) have a step beyond 2**53" in report
        assert "r: 1 alerts record(s) have a step beyond 2**53" in report
        (alert,) = dash.alerts
        assert alert["value"] == str(huge) and alert["count"] == big and alert["step"] == float(huge)
        dash.save_html(tmp_path / "report.html")  # no JSON encoder chokes on what the files held
        assert json.dumps(dash.get_state(["alerts"]))
        assert not dash.to_dataframe().empty
    finally:
        dash.close()


def test_every_bad_file_gets_a_line_and_good_runs_are_untouched(tmp_path):
    write_metrics(tmp_path, range(5), run="good")
    (tmp_path / "torn_metrics.json").write_bytes(b'[\n{"step": 1, "loss": 0.1},\n{"step": 2, "lo')
    (tmp_path / "garbage_alerts.json").write_bytes(b"\x00\xff not json \xfe")
    (tmp_path / "dir_ppo_metrics.csv").mkdir()
    (tmp_path / "bom_checkpoint_summary.csv").write_bytes(b"\xef\xbb\xbfstep,size_mb\n1,2.0\n2,x\n")
    dash = open_dash(tmp_path, run_id=None)
    try:
        dash.update_data()
        report = dash.load_report
        assert "good" not in report
        assert any("torn_metrics.json: incomplete last record" in p for p in report["torn"])
        assert any("garbage_alerts.json" in p for p in report["garbage"])
        assert any("dir_ppo_metrics.csv: cannot read" in p for p in report["dir"])
        assert steps_shown(dash, "good") == [0, 1, 2, 3, 4] and steps_shown(dash, "torn") == [1]
        assert dash.metrics["bom"]["ckpt:size_mb"].index.tolist() == [1]
        assert dash.status["level"] == "warning"
    finally:
        dash.close()


def test_update_data_survives_a_reader_bug_and_says_so(tmp_path, monkeypatch):
    """The last net: an unexpected exception in a reader is reported, not raised."""
    write_metrics(tmp_path, range(3))
    dash = open_dash(tmp_path)
    try:
        def broken(*_args, **_kwargs):
            raise RuntimeError("a bug in a reader")

        monkeypatch.setattr(RunStore, "read_new", broken)
        dash.update_data()
        assert "r: reading failed (RuntimeError: a bug in a reader)" in report_text(dash)
        assert steps_shown(dash) == [0, 1, 2]
    finally:
        monkeypatch.undo()
        dash.close()


def test_an_unlistable_output_dir_is_reported(tmp_path, monkeypatch):
    dash = open_dash(tmp_path, run_id=None)
    try:
        def denied(folder):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))

        monkeypatch.setattr(fs_module.LocalFileSystem, "listdir", lambda self, folder: denied(folder))
        dash.update_data()
        assert f"cannot list {tmp_path}: Permission denied" in report_text(dash)
        monkeypatch.undo()
        write_metrics(tmp_path, range(2))
        dash.update_data()  # listable again: the runs appear and the folder's problem goes
        assert dash.run_ids == ["r"] and dash.load_report == {} and dash.status["level"] == "ok"
    finally:
        monkeypatch.undo()
        dash.close()


def test_trainer_state_that_is_damaged_or_special(tmp_path):
    (tmp_path / "trainer_state.json").write_text('{"log_history": ' + "[" * 100_000)
    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").mkdir()
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        dash.update_data()
        assert "trainer_state.json: unreadable" in report_text(dash)
    finally:
        dash.close()


def test_the_stat_module_kinds_are_named(tmp_path):
    os.mkfifo(tmp_path / "f")
    assert fs_module.LOCAL.listdir(tmp_path)["f"].kind == "FIFO"
    with pytest.raises(fs_module.NotARegularFile, match="FIFO"):
        fs_module.LOCAL.read(tmp_path / "f", 0)
    assert stat.S_ISFIFO(os.stat(tmp_path / "f").st_mode)
