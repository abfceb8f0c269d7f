"""Real TRL 1.16 training on CPU with the tiny offline model: every trainer logs the verified keys, the callback's
store equals the trainer's log_history after mapping, and a NaN reward raises the critical alert."""

from __future__ import annotations

import json
import math

import pandas as pd
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


# ---- a dashboard in the training process ------------------------------------------------------------------
def numeric_series(records: list[dict], prefix: str = "") -> dict[str, tuple[list[float], list[float]]]:
    """What each run-file record gives a chart, worked out from the records alone: per numeric key, (steps, values)
    in file order."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        for key, value in record.items():
            if key in ("step", "run_id") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            xs, ys = series.setdefault(prefix + key, ([], []))
            xs.append(float(record["step"]))
            ys.append(float(value))
    return series


DASHBOARD_KINDS = {"grpo": {"save_strategy": "steps", "save_steps": 3}, "rloo": {}, "dpo": {}}


@pytest.mark.parametrize("kind", list(DASHBOARD_KINDS))
def test_dashboard_connected_in_the_training_process_holds_and_shows_what_is_on_disk(
    kind, make_trainer, tmp_path, dashboards
):
    """`trainer.add_callback(dash.callback())` with a displayed view: the dashboard's frame, alerts, run info and
    default charts, and every point the view received, equal the run files (and a fresh dashboard reading them)."""
    from rldk_widget import trl_keys

    from helpers import CommTap, same_floats, wait_until

    steps = 6
    dash = dashboards(output_dir=tmp_path / "rldk_logs", run_id=f"{kind}-live")
    tap = CommTap(dash, view=True)
    trainer = make_trainer(kind, tmp_path / "out", max_steps=steps, **DASHBOARD_KINDS[kind])
    trainer.add_callback(dash.callback())
    trainer.train()
    run = f"{kind}-live"
    disk = RunStore(tmp_path / "rldk_logs", run).read_all()
    info = RunStore(tmp_path / "rldk_logs", run).read_info()

    # the run files are the trainer's logs, mapped
    assert [comparable(r) for r in disk.metrics] == expected_records(trainer.state.log_history, kind)
    assert [r["step"] for r in disk.metrics] == list(range(1, steps + 1))
    assert (info["max_steps"], info["trainer"]) == (steps, kind) and info["train_runtime"] > 0

    # the dashboard holds the files: its frame, a fresh dashboard's frame, every record's value at its step
    frame = dash.to_dataframe()
    fresh = dashboards(output_dir=tmp_path / "rldk_logs", run_id=run)
    pd.testing.assert_frame_equal(frame, fresh.to_dataframe(), check_like=True)
    pd.testing.assert_frame_equal(dash.alerts_dataframe(), fresh.alerts_dataframe(), check_like=True)
    expected = numeric_series(disk.metrics)
    expected.update(numeric_series(disk.checkpoint_summary, "ckpt:"))
    assert frame["run_id"].eq(run).all() and frame["step"].tolist() == list(range(1, steps + 1))
    by_step = frame.set_index("step")
    for name, (xs, ys) in expected.items():
        assert same_floats(by_step.loc[[int(x) for x in xs], name].to_numpy(), ys), name
    assert dash.load_report == {} and dash.status == {"level": "ok", "message": ""}
    assert [(a["type"], a["step"]) for a in dash.alerts_dataframe().to_dict("records")] == [
        (a["type"], a["step"]) for a in disk.alerts]

    # run info and the trainer's default charts, as a dashboard in another process would get them from the file
    assert dash.info[run] == {"max_steps": steps, "trainer": kind, "started": info["started"]}
    assert fresh.info[run] == dash.info[run]
    assert dash.default_charts == trl_keys.default_charts(kind) == fresh.default_charts
    if kind == "grpo":
        assert [r["step"] for r in disk.checkpoint_summary] == [3, 6] and "ckpt:weight_norm" in expected
    if kind in ("grpo", "rloo"):
        # the tiny model's completions all reach max_completion_length; and reward_words (the share of known words)
        # is ~0 for its random text: the per-function rules may say that it gives no signal (std ~0) or that
        # reward_len makes nearly all of the reward's variance
        assert disk.alerts[0]["type"] == "completions_clipped"
        assert {(a["type"], a["metric"]) for a in disk.alerts[1:]} <= {
            ("reward_fn_variance_collapse", "rewards/reward_words/std"),
            ("reward_fn_dominant", "rewards/reward_len/std")}

    # the view got every point of every series once, in order, and every alert
    dash.flush()
    wait_until(lambda: set(tap.view.names(run)) >= set(expected), what="the view to get every series")
    assert set(tap.view.names(run)) == set(expected)
    for name, (xs, ys) in expected.items():
        got_x, got_y = tap.view.series(run, name)
        assert got_x.tolist() == xs and same_floats(got_y, ys), name
    assert tap.view.gaps == 0 and not tap.wire_errors
    assert [(a["type"], a["step"], a["message"]) for a in tap.view.alerts] == [
        (a["type"], a["step"], a["message"]) for a in disk.alerts]
    assert dash.messages_sent == len(tap.deltas) >= 1
