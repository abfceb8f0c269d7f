"""Reading a Hugging Face Trainer output folder (trainer_state.json log_history) without our callback."""

import json

from rldk_widget.store import RunStore

from trl_logs import GRPO_LOG


def write_state(folder, history, max_steps=10):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps({"max_steps": max_steps, "log_history": history}))


def test_checkpoints_and_final_state_are_read_with_keys_mapped(tmp_path, dashboards):
    out = tmp_path / "grpo-out"
    write_state(out / "checkpoint-2", [{**GRPO_LOG, "step": 1}, {**GRPO_LOG, "step": 2}])
    dash = dashboards.from_dir(out)
    assert dash.run_ids == ["hf_grpo-out"]
    frame = dash.to_dataframe()
    assert frame["step"].tolist() == [1, 2]
    assert frame["reward_mean"].tolist() == [GRPO_LOG["reward"]] * 2
    assert frame["kl_mean"].tolist() == [GRPO_LOG["kl"]] * 2
    assert frame["completions/mean_length"].tolist() == [GRPO_LOG["completions/mean_length"]] * 2
    assert dash.info["hf_grpo-out"]["max_steps"] == 10 and dash.info["hf_grpo-out"]["trainer"] == "grpo"
    write_state(out / "checkpoint-4", [{**GRPO_LOG, "step": s} for s in (1, 2, 3, 4)])
    write_state(out, [{**GRPO_LOG, "step": s} for s in (1, 2, 3, 4)] + [{"train_runtime": 3.0, "step": 4}])
    dash.update_data()
    assert dash.to_dataframe()["step"].tolist() == [1, 2, 3, 4]


def test_new_shorter_history_replaces_the_old_one(tmp_path, dashboards):
    write_state(tmp_path, [{**GRPO_LOG, "step": s} for s in range(1, 6)])
    dash = dashboards.from_dir(tmp_path)
    write_state(tmp_path, [{**GRPO_LOG, "loss": 9.0, "step": 1}])
    dash.update_data()
    assert dash.to_dataframe()[["step", "loss"]].values.tolist() == [[1, 9.0]]


def test_rldk_run_files_take_precedence_over_trainer_state(tmp_path, dashboards):
    write_state(tmp_path, [{**GRPO_LOG, "step": 1}])
    RunStore(tmp_path, "mine").append_metrics({"step": 1, "loss": 1.0})
    dash = dashboards.from_dir(tmp_path)
    assert dash.run_ids == ["mine"]


def test_unreadable_state_is_reported(tmp_path, dashboards):
    (tmp_path / "trainer_state.json").write_text("{not json")
    dash = dashboards.from_dir(tmp_path)
    assert "unreadable" in dash.status["message"]
