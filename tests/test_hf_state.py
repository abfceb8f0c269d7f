"""Reading a Hugging Face Trainer output folder (trainer_state.json log_history) without our callback."""

import json

from rldk_widget import RLDKDashboard
from rldk_widget.store import RunStore


def write_state(folder, history, max_steps=10):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps({"max_steps": max_steps, "log_history": history}))


GRPO_LOG = {"loss": 0.1, "reward": 0.5, "reward_std": 0.2, "kl": 0.01, "completions/mean_length": 12.0,
            "learning_rate": 1e-5, "epoch": 0.1}


def test_checkpoints_and_final_state_are_read_with_keys_mapped(tmp_path):
    out = tmp_path / "grpo-out"
    write_state(out / "checkpoint-2", [{**GRPO_LOG, "step": 1}, {**GRPO_LOG, "step": 2}])
    dash = RLDKDashboard.from_dir(out, auto_refresh=False)
    assert dash.run_ids == ["hf_grpo-out"]
    frame = dash.to_dataframe()
    assert frame["step"].tolist() == [1, 2]
    assert frame["reward_mean"].tolist() == [0.5, 0.5] and frame["kl_mean"].tolist() == [0.01, 0.01]
    assert frame["completions/mean_length"].tolist() == [12.0, 12.0]
    assert dash.info["hf_grpo-out"]["max_steps"] == 10 and dash.info["hf_grpo-out"]["trainer"] == "grpo"
    write_state(out / "checkpoint-4", [{**GRPO_LOG, "step": s} for s in (1, 2, 3, 4)])
    write_state(out, [{**GRPO_LOG, "step": s} for s in (1, 2, 3, 4)] + [{"train_runtime": 3.0, "step": 4}])
    dash.update_data()
    assert dash.to_dataframe()["step"].tolist() == [1, 2, 3, 4]
    dash.close()


def test_new_shorter_history_replaces_the_old_one(tmp_path):
    write_state(tmp_path, [{**GRPO_LOG, "step": s} for s in range(1, 6)])
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    write_state(tmp_path, [{**GRPO_LOG, "loss": 9.0, "step": 1}])
    dash.update_data()
    assert dash.to_dataframe()[["step", "loss"]].values.tolist() == [[1, 9.0]]
    dash.close()


def test_rldk_run_files_take_precedence_over_trainer_state(tmp_path):
    write_state(tmp_path, [{**GRPO_LOG, "step": 1}])
    RunStore(tmp_path, "mine").append_metrics({"step": 1, "loss": 1.0})
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    assert dash.run_ids == ["mine"]
    dash.close()


def test_unreadable_state_is_reported(tmp_path):
    (tmp_path / "trainer_state.json").write_text("{not json")
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    assert "unreadable" in dash.status["message"]
    dash.close()
