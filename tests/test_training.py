"""Real TRL 1.16 training on CPU with the tiny offline model: every trainer logs the verified keys, the callback's
store equals the trainer's log_history after mapping, and a NaN reward raises the critical alert."""

from __future__ import annotations

import json
import math

import pytest

from rldk_widget.callback import RLDKCallback
from rldk_widget.store import RunStore
from rldk_widget.trl_keys import map_log

pytestmark = pytest.mark.training

GRPO_KEYS = {
    "loss", "grad_norm", "learning_rate", "epoch", "num_tokens", "step_time", "reward", "reward_std",
    "rewards/reward_len/mean", "rewards/reward_len/std", "rewards/reward_words/mean", "rewards/reward_words/std",
    "frac_reward_zero_std", "kl", "entropy", "clip_ratio/low_mean", "clip_ratio/low_min", "clip_ratio/high_mean",
    "clip_ratio/high_max", "clip_ratio/region_mean", "completions/mean_length", "completions/min_length",
    "completions/max_length", "completions/clipped_ratio", "completions/mean_terminated_length",
    "completions/min_terminated_length", "completions/max_terminated_length",
}
# The exact keys TRL 1.16 logs per training step (tests/capture_trl_logs.py); see trl_keys' docstring.
TRAIN_KEYS = {
    "grpo": GRPO_KEYS,
    "rloo": GRPO_KEYS,
    "dpo": {"loss", "grad_norm", "learning_rate", "epoch", "num_tokens", "entropy", "mean_token_accuracy",
            "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
            "logps/rejected", "logits/chosen", "logits/rejected"},
    "sft": {"loss", "grad_norm", "learning_rate", "epoch", "num_tokens", "entropy", "mean_token_accuracy"},
    "reward": {"loss", "grad_norm", "learning_rate", "epoch", "num_tokens", "accuracy", "margin", "min_reward",
               "mean_reward", "max_reward"},
}
SFT_EVAL_KEYS = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_entropy",
                 "eval_mean_token_accuracy", "eval_num_tokens", "epoch"}
SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "epoch"}
# Core fields each trainer fills at every training step.
MAPPED = {
    "grpo": ("reward_mean", "reward_std", "kl_mean", "entropy_mean", "clip_frac", "loss", "grad_norm", "step_time"),
    "rloo": ("reward_mean", "reward_std", "kl_mean", "entropy_mean", "clip_frac", "loss", "grad_norm", "step_time"),
    "dpo": ("reward_mean", "entropy_mean", "loss", "grad_norm", "learning_rate"),
    "sft": ("entropy_mean", "loss", "grad_norm", "learning_rate"),
    "reward": ("reward_mean", "reward_min", "reward_max", "loss", "grad_norm"),
}
OVERRIDES = {
    "grpo": {"save_strategy": "steps", "save_steps": 4},
    "sft": {"eval_strategy": "steps", "eval_steps": 4, "per_device_eval_batch_size": 4},
}
MAX_STEPS = 8


def comparable(record: dict) -> str:
    """A record without its run_id / timestamp, NaN-safe, for equality checks."""
    kept = {k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()
            if k not in ("run_id", "timestamp")}
    return json.dumps(kept, sort_keys=True)


def expected_records(log_history: list[dict], kind: str) -> list[str]:
    return [
        comparable(map_log({k: v for k, v in entry.items() if k != "step"}, entry["step"], kind).to_dict())
        for entry in log_history
        if "train_runtime" not in entry
    ]


def run(kind: str, make_trainer, tmp_path, max_steps: int = MAX_STEPS, **overrides):
    events: list[tuple[str, dict]] = []
    cb = RLDKCallback(tmp_path / "rldk_logs", run_id=f"{kind}-run")
    cb.add_listener(lambda event, record: events.append((event, record)))
    trainer = make_trainer(kind, tmp_path / "out", callbacks=[cb], max_steps=max_steps, **overrides)
    trainer.train()
    return cb, trainer, events, RunStore(cb.output_dir, cb.run_id).read_all()


@pytest.mark.parametrize("kind", ["grpo", "rloo", "dpo", "sft", "reward"])
def test_trainer_run_is_recorded(kind, make_trainer, tmp_path):
    cb, trainer, events, data = run(kind, make_trainer, tmp_path, **OVERRIDES.get(kind, {}))
    history = trainer.state.log_history

    train_logs = [e for e in history if "train_runtime" not in e and not any(k.startswith("eval_") for k in e)]
    assert len(train_logs) == MAX_STEPS
    for entry in train_logs:
        assert set(entry) - {"step"} == TRAIN_KEYS[kind], f"TRL {kind} keys changed"
    assert set(history[-1]) >= SUMMARY_KEYS

    assert (cb.output_dir / f"{cb.run_id}_metrics.json").is_file()
    assert [comparable(r) for r in data.metrics] == expected_records(history, kind)
    assert [comparable(r) for kind_, r in events if kind_ == "metrics"] == [comparable(r) for r in data.metrics]
    assert all(isinstance(r["timestamp"], float) and r["run_id"] == cb.run_id for r in data.metrics)

    steps = [r for r in data.metrics if not any(k.startswith("eval_") for k in r)]
    for name in MAPPED[kind]:
        assert all(r.get(name) is not None for r in steps), f"{name} missing from {kind} records"

    run_info = [r for kind_, r in events if kind_ == "run_info"]
    assert (run_info[0]["max_steps"], run_info[0]["trainer"]) == (MAX_STEPS, kind)
    assert run_info[-1]["train_runtime"] > 0 and cb.run_info["trainer"] == kind
    assert data.ppo_metrics == []
    assert [comparable(r) for kind_, r in events if kind_ == "alert"] == [comparable(a) for a in data.alerts]

    if kind == "sft":
        evals = [r for r in data.metrics if "eval_loss" in r]
        assert [r["step"] for r in evals] == [4, 8]
        assert set(evals[0]) - {"step", "run_id", "timestamp"} == SFT_EVAL_KEYS
    if kind == "grpo":
        rows = data.checkpoint_summary
        assert [r["step"] for r in rows] == [4, 8]
        params = sum(p.numel() for p in trainer.model.parameters())
        assert all(r["param_count"] == params and r["nonfinite_params"] == 0 for r in rows)
        assert rows[0]["weight_norm"] > 0 and "weight_norm_delta" in rows[1]
        assert rows[1]["checkpoint_dir"].endswith("checkpoint-8")
        assert len([r for kind_, r in events if kind_ == "checkpoint_summary"]) == 2


def nan_at_step_5(completions, trainer_state, **kwargs) -> list[float]:
    """Finite rewards, except NaN for every completion of the 5th optimizer step."""
    if trainer_state.global_step == 4:
        return [math.nan] * len(completions)
    return [len(c) / 32 for c in completions]


def test_grpo_nan_reward_raises_critical_alert(make_trainer, tmp_path):
    cb, trainer, events, data = run("grpo", make_trainer, tmp_path, max_steps=7, reward_funcs=[nan_at_step_5])
    at_5 = next(r for r in data.metrics if r["step"] == 5)
    assert math.isnan(at_5["reward_mean"]) and math.isnan(at_5["rewards/nan_at_step_5/mean"])
    critical = [a for a in data.alerts if a["severity"] == "critical"]
    assert [(a["type"], a["metric"], a["step"]) for a in critical] == [("nonfinite", "reward_mean", 5)]
    assert "reward" in critical[0]["message"] and "at step 5" in critical[0]["message"]
    assert [a["type"] for kind_, a in events if kind_ == "alert" and a["severity"] == "critical"] == ["nonfinite"]
    assert [comparable(r) for r in data.metrics] == expected_records(trainer.state.log_history, "grpo")
