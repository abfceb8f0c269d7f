"""connect_callback / dash.callback(): what an RLDKCallback records reaches the dashboard live, once."""

import json
import math
import threading
import time

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from rldk_widget import RLDKCallback, RLDKDashboard

from helpers import CommTap


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


GRPO = {"loss": 0.01, "reward": 0.5, "reward_std": 0.2, "kl": 0.001, "entropy": 1.2,
        "completions/mean_length": 30.0, "frac_reward_zero_std": 0.0, "learning_rate": 1e-6}


def test_callback_records_reach_the_dashboard_once_with_mapped_keys(tmp_path, trainer_args):
    dash = RLDKDashboard(output_dir=tmp_path / "logs", run_id="run", auto_refresh=False)
    callback = dash.callback()
    assert isinstance(callback, RLDKCallback) and callback.run_id == "run"
    drive(callback, trainer_args, [GRPO] * 5, max_steps=20)
    frame = dash.to_dataframe()
    assert frame["step"].tolist() == [1, 2, 3, 4, 5]
    assert frame["reward_mean"].tolist() == [0.5] * 5 and frame["kl_mean"].tolist() == [0.001] * 5
    assert dash.info["run"]["max_steps"] == 20 and dash.info["run"]["trainer"] == "grpo"
    assert "reward_mean" in dash.default_charts
    dash.update_data()
    assert len(dash.to_dataframe()) == 5
    on_disk = json.loads((tmp_path / "logs" / "run_metrics.json").read_text())
    assert [r["step"] for r in on_disk] == [1, 2, 3, 4, 5]
    dash.close()


def test_nan_loss_alert_from_the_callback_is_shown(tmp_path, trainer_args):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="run", auto_refresh=False)
    callback = RLDKCallback(output_dir=tmp_path, run_id="run")
    dash.connect_callback(callback)
    drive(callback, trainer_args, [GRPO, GRPO, {**GRPO, "loss": math.nan}, GRPO])
    alerts = dash.alerts_dataframe()
    assert "critical" in alerts["severity"].tolist()
    assert math.isnan(dash.to_dataframe().loc[2, "loss"])
    dash.close()


def test_two_dashboards_on_one_callback_and_disconnect(tmp_path, trainer_args):
    first = RLDKDashboard(output_dir=tmp_path, run_id="run", auto_refresh=False)
    second = RLDKDashboard(output_dir=tmp_path / "elsewhere", run_id="other", auto_refresh=False)
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
    callback.on_log(trainer_args, state, control, logs=dict(GRPO))
    second.close()


def test_callback_rows_are_read_back_in_batches_and_views_update_on_their_own(tmp_path, trainer_args):
    """A burst of steps costs one read-back on the training thread and one on the inbox's worker, not one per
    step; with no reader call at all (no flush, no to_dataframe) a displayed view gets every step."""
    dash = RLDKDashboard(output_dir=tmp_path, run_id="run", auto_refresh=False)
    tap = CommTap(dash, view=True)
    polled_on: list[int] = []
    poll = dash._poll

    def recording_poll(*args, **kwargs):
        polled_on.append(threading.get_ident())
        return poll(*args, **kwargs)

    dash._poll = recording_poll
    dash._inbox._coalesce_s = 1.0  # far longer than the burst below takes, so its passes are deterministic
    callback = dash.callback()
    polled_on.clear()
    drive(callback, trainer_args, [GRPO] * 12)
    assert polled_on == [threading.get_ident()]  # the burst's first step, at once; the others wait
    deadline = time.monotonic() + 5
    while len(tap.view.series("run", "reward_mean")[0]) < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    steps, rewards = tap.view.series("run", "reward_mean")
    assert steps.tolist() == list(range(1, 13)) and rewards.tolist() == [0.5] * 12 and tap.view.gaps == 0
    assert len(polled_on) == 2 and polled_on[1] != threading.get_ident()  # the tail: the worker's one pass
    dash.close()
    assert not any(t.name == "rldk-callback-events" and t.is_alive() for t in threading.enumerate())


def test_connect_callback_rejects_other_objects(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False)
    with pytest.raises(TypeError):
        dash.connect_callback(object())
    dash.close()
