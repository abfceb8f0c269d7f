"""A file's condition (it cannot be read, or it ends inside a record) is in `load_report` and the status line while it
holds, and goes once a read finds the file whole again. Damage stepped over stays reported: records were lost.

Writers other than ours flush mid-record all the time (a buffered `open(...).write` cuts at 8 KiB, Hugging Face
rewrites `trainer_state.json` in place at each save), so a live run passes through these states; a report that kept
them would warn about a healthy run forever. Checked for each run file kind, a Hugging Face folder's state files, and
the runs of a large sweep that only the runs table reads."""

from __future__ import annotations

import json
import os
import time

import pytest

from rldk_widget.run_readers import LOAD_ALL_RUNS

RUN = "r"
TORN = {  # kind: (file, the bytes of a live file cut inside its last record, the rest of that write and one more)
    "metrics": (
        f"{RUN}_metrics.json",
        b'[\n{"step": 1, "loss": 1.0},\n{"step": 2, "loss": 0.5},\n{"step": 3, "lo',
        b'ss": 0.25},\n{"step": 4, "loss": 0.125}\n]\n',
    ),
    "alerts": (
        f"{RUN}_alerts.json",
        b'[\n{"type": "kl_high", "message": "KL 0.4", "step": 1},\n{"type": "kl_high", "message": "KL 0.5", "step": 2},'
        b'\n{"type": "kl_high", "mess',
        b'age": "KL 0.6", "step": 3},\n{"type": "kl_high", "message": "KL 0.7", "step": 4}\n]\n',
    ),
    "ppo_metrics": (f"{RUN}_ppo_metrics.csv", b"step,objective/kl\n1,0.1\n2,0.2\n3,0.", b"3\n4,0.4\n"),
    "checkpoint_summary": (f"{RUN}_checkpoint_summary.csv", b"step,size_mb\n1,2.5\n2,2.5\n3,2.", b"5\n4,2.5\n"),
}


def report_text(dash) -> str:
    return " ".join(p for problems in dash.load_report.values() for p in problems)


COLUMN = {"metrics": "loss", "ppo_metrics": "ppo:objective/kl", "checkpoint_summary": "ckpt:size_mb"}


def steps(dash, kind: str) -> list[int]:
    """The steps the dashboard shows records of this kind at."""
    if kind == "alerts":
        return sorted(int(alert["step"]) for alert in dash.alerts if not alert.get("computed"))
    frame = dash.to_dataframe(RUN)
    return [int(step) for step in frame.loc[frame[COLUMN[kind]].notna(), "step"]]


@pytest.mark.parametrize("kind", list(TORN))
def test_a_live_file_cut_inside_a_record_is_reported_until_the_write_completes(tmp_path, dashboards, kind):
    name, cut, rest = TORN[kind]
    if kind != "metrics":
        (tmp_path / f"{RUN}_metrics.json").write_bytes(b'[\n{"step": 1, "loss": 1.0}\n]\n')
    (tmp_path / name).write_bytes(cut)
    dash = dashboards.from_dir(tmp_path)
    assert f"{name}: incomplete last" in report_text(dash), dash.load_report
    assert dash.status["level"] == "warning" and "incomplete" in dash.status["message"]
    with open(tmp_path / name, "ab") as file:  # the writer's next flush completes the record and adds one
        file.write(rest)
    dash.update_data()
    assert steps(dash, kind) == [1, 2, 3, 4]
    assert dash.load_report == {} and dash.status == {"level": "ok", "message": ""}


def test_damage_stays_reported_while_the_tail_comes_and_goes(tmp_path, dashboards):
    path = tmp_path / f"{RUN}_metrics.json"
    path.write_bytes(b'[\n{"step": 1, "loss": 1},\n{"step": 2, "loss": },\n{"step": 3, "loss": 1},\n{"step": 4, "lo')
    dash = dashboards.from_dir(tmp_path)
    assert "damaged" in report_text(dash) and "incomplete" in report_text(dash)
    with open(path, "ab") as file:
        file.write(b'ss": 1}\n]\n')
    dash.update_data()
    assert [int(s) for s in dash.to_dataframe(RUN)["step"]] == [1, 3, 4]
    assert "damaged" in report_text(dash) and "incomplete" not in report_text(dash)
    assert dash.status["level"] == "warning" and "damaged" in dash.status["message"]


def test_a_checkpoint_state_file_read_mid_save_is_reported_until_it_is_whole(tmp_path, dashboards):
    """Hugging Face writes `checkpoint-N/trainer_state.json` with a plain `open(path, "w")`: a poll can find it empty
    or cut. It is reported while it is, and read (and the report withdrawn) once it is whole."""
    history = [{"step": step, "loss": 1 / step, "learning_rate": 1e-5} for step in range(1, 5)]
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"log_history": history[:2]}))
    saving = tmp_path / "checkpoint-4" / "trainer_state.json"
    saving.parent.mkdir()
    whole = json.dumps({"log_history": history, "max_steps": 4})
    saving.write_text(whole[: len(whole) // 2])
    dash = dashboards.from_dir(tmp_path)
    (run_id,) = dash.run_ids
    assert "checkpoint-4/trainer_state.json: unreadable" in report_text(dash), dash.load_report
    assert [int(s) for s in dash.to_dataframe(run_id)["step"]] == [1, 2]
    saving.write_text(whole)
    dash.update_data()
    assert [int(s) for s in dash.to_dataframe(run_id)["step"]] == [1, 2, 3, 4]
    assert dash.load_report == {} and dash.status["level"] == "ok"
    saving.write_text("")  # the next save truncates it again, then the checkpoint is deleted (save_total_limit)
    dash.update_data()
    assert "checkpoint-4/trainer_state.json: unreadable" in report_text(dash)
    saving.unlink()
    saving.parent.rmdir()
    dash.update_data()
    assert dash.load_report == {} and dash.status["level"] == "ok"


def test_a_large_sweeps_run_read_by_the_runs_table_only_withdraws_its_condition(tmp_path, dashboards):
    """Past LOAD_ALL_RUNS runs, a run nobody selected is read by the sweep for its table row only; its file's
    condition reaches the report through the sweep, and goes the same way."""
    count = LOAD_ALL_RUNS + 5
    for index in range(count):
        records = ",\n".join(json.dumps({"step": step, "loss": 1 / step}) for step in range(1, 4))
        (tmp_path / f"run{index:03d}_metrics.json").write_text(f"[\n{records}\n]\n")
    last = tmp_path / "run000_metrics.json"
    whole = last.read_bytes()
    last.write_bytes(whole[:-12])  # cut inside the last record
    os.utime(last, (time.time() - 3600,) * 2)  # (a large sweep selects its newest runs)
    dash = dashboards.from_dir(tmp_path)
    last_id = last.name.removesuffix("_metrics.json")
    assert last_id not in dash.selected and last_id not in dash._readers.stores  # the sweep reads it, not a store
    for _ in range(count):  # each still run is looked at once in a few passes
        if last_id in dash.load_report:
            break
        dash.update_data()
    assert any("incomplete" in p for p in dash.load_report[last_id]), dash.load_report
    assert dash.runs().set_index("run_id").loc[last_id, "step"] == 2
    last.write_bytes(whole)
    for _ in range(count):
        if last_id not in dash.load_report:
            break
        dash.update_data()
    assert dash.load_report == {} and dash.status["level"] == "ok"
    assert dash.runs().set_index("run_id").loc[last_id, "step"] == 3  # the completed record counts now


def test_the_samples_files_damage_and_condition_reach_the_report(tmp_path, dashboards):
    """The samples file is indexed on its own worker; what it finds is reported like any run file's."""
    (tmp_path / f"{RUN}_metrics.json").write_bytes(b'[\n{"step": 1, "loss": 1.0}\n]\n')
    path = tmp_path / f"{RUN}_samples.json"
    path.write_bytes(
        b'[\n{"step": 1, "prompt": "p1", "completion": "c1", "reward": 1.0},\n{"step": 2, "prompt": \x00\xff "x"},\n'
        b'{"step": 3, "prompt": "p3", "completion": "c3", "reward": 0.5},\n{"step": 4, "prompt": "p4", "compl'
    )
    dash = dashboards.from_dir(tmp_path)
    assert [int(s) for s in dash.completions()["step"]] == [1, 3]
    said = dash.load_report[RUN]
    assert any(f"{RUN}_samples.json: 1 damaged line" in p for p in said), said
    assert any(f"{RUN}_samples.json: incomplete last record" in p for p in said), said
    assert dash.status["level"] == "warning"
    with open(path, "ab") as file:
        file.write(b'etion": "c4", "reward": 0.0}\n]\n')
    dash.update_data()
    assert [int(s) for s in dash.completions()["step"]] == [1, 3, 4]
    said = dash.load_report[RUN]
    assert any("damaged line" in p for p in said) and not any("incomplete" in p for p in said), said
