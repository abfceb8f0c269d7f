"""A real tiny TRL 1.16 GRPO sweep (two learning rates, CPU): RLDKCallback records each run's configuration in its
run info, hub tokens never reach the file, and the sweep's runs table shows the runs with their configuration,
the keys that differ, and each Hugging Face output folder as the same training as the run recorded from it."""

from __future__ import annotations

import json
import time

import pytest

from rldk_widget.callback import RLDKCallback
from rldk_widget.run_config import capture_run_config
from rldk_widget.runs import Sweep
from rldk_widget.store import RunStore

pytestmark = pytest.mark.training

SECRET = "hf_" + "Z" * 34


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_WIDGET_CACHE_DIR", str(tmp_path / "user-cache"))


def test_a_grpo_sweep_records_its_configuration(make_trainer, tiny_assets, tmp_path):
    import torch
    import transformers
    import trl

    sweep = tmp_path / "sweep"
    callbacks = {}
    for lr in (1e-3, 1e-4):
        out = sweep / f"lr_{lr:g}_s0"
        cb = RLDKCallback(out / "rldk_logs", run_id="grpo")
        trainer = make_trainer("grpo", out, callbacks=[cb], max_steps=2, learning_rate=lr, hub_token=SECRET,
                               save_strategy="steps", save_steps=2)
        trainer.train()
        callbacks[lr] = cb

    cb = callbacks[1e-3]
    raw = (cb.output_dir / "grpo_run_info.json").read_bytes()
    assert SECRET.encode() not in raw and b"hub_token" not in raw
    config = RunStore(cb.output_dir, "grpo").read_info()["config"]
    assert config["trainer_class"] == "GRPOTrainer" and config["args_class"] == "GRPOConfig"
    assert config["model"] == str(tiny_assets["causal_lm"]) and config["model_type"] == "llama"
    assert config["versions"] == {"trl": trl.__version__, "transformers": transformers.__version__,
                                  "torch": torch.__version__}
    assert config["world_size"] == 1 and config["reward_funcs"] == ["reward_len", "reward_words"]
    assert config["output_path"] == str(sweep / "lr_0.001_s0")
    args = config["args"]
    assert {"learning_rate": 1e-3, "beta": 0.1, "num_generations": 2, "max_completion_length": 8, "max_steps": 2,
            "per_device_train_batch_size": 4, "seed": 0}.items() <= args.items()
    assert "num_train_epochs" not in args and "lr_scheduler_type" not in args  # left at their defaults
    assert "capture_errors" not in config
    json.dumps(config, allow_nan=False)  # plain JSON

    with Sweep(sweep) as runs:
        runs.refresh()
        table = runs.table().set_index("name")
        assert sorted(table.index) == ["lr_0.0001_s0", "lr_0.0001_s0/rldk_logs/grpo", "lr_0.001_s0",
                                       "lr_0.001_s0/rldk_logs/grpo"]
        ours = table.loc[["lr_0.001_s0/rldk_logs/grpo", "lr_0.0001_s0/rldk_logs/grpo"]]
        assert ours["trainer"].tolist() == ["grpo", "grpo"] and ours["status"].tolist() == ["finished"] * 2
        assert ours["step"].tolist() == [2, 2] and ours["max_steps"].tolist() == [2, 2]
        assert ours["args.learning_rate"].tolist() == [1e-3, 1e-4] and (ours["duration_s"] > 0).all()
        assert not ours["last.reward_mean"].isna().any() and not ours["best.loss"].isna().any()
        hf = table.loc["lr_0.001_s0"]
        assert hf["source"] == "hf" and hf["duplicate_of"] == ours.iloc[0]["run_id"] and hf["step"] == 2
        assert hf["name.lr"] == 1e-3 and hf["model_type"] == "llama"
        differing = runs.differing_keys(ours["run_id"].tolist())
        assert "args.learning_rate" in differing
        assert not {"args.output_dir", "output_path", "args.run_name"} & set(differing)

    trainer = make_trainer("grpo", tmp_path / "timing", max_steps=1)
    started = time.perf_counter()
    for _ in range(20):
        capture_run_config(trainer.args, trainer.state, trainer.model, trainer.processing_class, trainer)
    assert (time.perf_counter() - started) / 20 < 0.05  # cheap: well under a training step
