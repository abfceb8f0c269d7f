"""connect_callback / dash.callback(): what an RLDKCallback records reaches the dashboard live, once."""

import json
import math
import threading

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

import rldk_widget.inbox
from rldk_widget import RLDKCallback

from helpers import CommTap, FakeClock, wait_until
from trl_logs import HEALTHY_GRPO_LOG as GRPO  # a real TRL 1.16 GRPO log that raises no alert by itself


@pytest.fixture
def trainer_args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to=[])


def drive(callback, args, logs_by_step, max_steps=None):
    state, control = TrainerState(), TrainerControl()
    state.max_steps = max_steps or len(logs_by_step)
    callback.on_train_begin(args, state, control)
    for step, logs in enumerate(logs_by_step, start=1):
        state.global_step = step
        callback.on_log(args, state, control, logs=dict(logs))
    callback.on_train_end(args, state, control)


def test_callback_records_reach_the_dashboard_once_with_mapped_keys(tmp_path, trainer_args, dashboards):
    dash = dashboards(output_dir=tmp_path / "logs", run_id="run")
    callback = dash.callback()
    assert isinstance(callback, RLDKCallback) and callback.run_id == "run"
    drive(callback, trainer_args, [GRPO] * 5, max_steps=20)
    frame = dash.to_dataframe()
    assert frame["step"].tolist() == [1, 2, 3, 4, 5]
    assert frame["reward_mean"].tolist() == [GRPO["reward"]] * 5 and frame["kl_mean"].tolist() == [GRPO["kl"]] * 5
    assert dash.info["run"]["max_steps"] == 20 and dash.info["run"]["trainer"] == "grpo"
    assert "reward_mean" in dash.default_charts
    dash.update_data()
    assert len(dash.to_dataframe()) == 5
    on_disk = json.loads((tmp_path / "logs" / "run_metrics.json").read_text())
    assert [r["step"] for r in on_disk] == [1, 2, 3, 4, 5]


def test_nan_loss_alert_from_the_callback_is_shown(tmp_path, trainer_args, dashboards):
    dash = dashboards(output_dir=tmp_path, run_id="run")
    callback = RLDKCallback(output_dir=tmp_path, run_id="run")
    dash.connect_callback(callback)
    drive(callback, trainer_args, [GRPO, GRPO, {**GRPO, "loss": math.nan}, GRPO])
    alerts = dash.alerts_dataframe()
    assert ("nonfinite", "critical", 3) in zip(alerts["type"], alerts["severity"], alerts["step"])
    assert math.isnan(dash.to_dataframe().loc[2, "loss"])


def test_two_dashboards_on_one_callback_and_disconnect(tmp_path, trainer_args, dashboards):
    first = dashboards(output_dir=tmp_path, run_id="run")
    second = dashboards(output_dir=tmp_path / "elsewhere", run_id="other")
    callback = RLDKCallback(output_dir=tmp_path, run_id="run")
    first.connect_callback(callback)
    second.connect_callback(callback)
    drive(callback, trainer_args, [GRPO] * 3)
    assert len(first.to_dataframe("run")) == 3 and len(second.to_dataframe("run")) == 3
    second.disconnect_callback(callback)
    state, control = TrainerState(), TrainerControl()
    state.global_step = 4
    callback.on_log(trainer_args, state, control, logs=dict(GRPO))
    assert len(first.to_dataframe("run")) == 4 and len(second.to_dataframe("run")) == 3
    first.close()
    callback.on_log(trainer_args, state, control, logs=dict(GRPO))  # a closed dashboard is no listener any more
    callback.flush()


def test_callback_rows_are_read_back_in_batches_and_views_update_on_their_own(
    tmp_path, trainer_args, dashboards, monkeypatch
):
    """A burst of steps costs one read-back on the training thread and one on the inbox's worker, not one per
    step; with no reader call at all (no flush, no to_dataframe) a displayed view gets every step."""
    clock = FakeClock()  # the inboxes' clock: the burst takes no time, however slow this machine is
    monkeypatch.setattr(rldk_widget.inbox, "time", clock)
    dash = dashboards(output_dir=tmp_path, run_id="run")
    tap = CommTap(dash, view=True)
    polled_on: list[int] = []
    poll = dash._readers.poll

    def recording_poll(*args, **kwargs):
        polled_on.append(threading.get_ident())
        return poll(*args, **kwargs)

    dash._readers.poll = recording_poll
    callback = dash.callback()
    polled_on.clear()
    drive(callback, trainer_args, [GRPO] * 12)
    assert polled_on == [threading.get_ident()]  # the burst's first step, at once; the others wait
    clock.advance(1.0)  # the training thread went quiet
    wait_until(lambda: len(tap.view.series("run", "reward_mean")[0]) >= 12, what="the view to get all 12 steps")
    steps, rewards = tap.view.series("run", "reward_mean")
    assert steps.tolist() == list(range(1, 13)) and rewards.tolist() == [GRPO["reward"]] * 12 and tap.view.gaps == 0
    assert len(polled_on) == 2 and polled_on[1] != threading.get_ident()  # the tail: the worker's one pass
    dash.close()
    assert not any(t.name == "rldk-callback-events" and t.is_alive() for t in threading.enumerate())


def test_connect_callback_rejects_other_objects(tmp_path, dashboards):
    dash = dashboards(output_dir=tmp_path)
    with pytest.raises(TypeError):
        dash.connect_callback(object())
