"""PPO of `trl.experimental.ppo` (TRL 0.26-1.12 only; `make test-ppo` runs it in a venv with trl 1.12): the
callback maps PPO's keys, writes the PPO CSV per step and the checkpoint summary per save."""

from __future__ import annotations

import pytest

from rldk_widget.callback import RLDKCallback
from rldk_widget.store import RunStore

pytestmark = pytest.mark.ppo
ppo = pytest.importorskip("trl.experimental.ppo", reason="PPO lives in trl.experimental.ppo only in TRL 0.26-1.12")

# The keys PPOTrainer logs per step (TRL 1.12), besides `epoch`; see trl_keys' docstring.
PPO_KEYS = {
    "eps", "objective/kl", "objective/entropy", "objective/non_score_reward", "objective/rlhf_reward",
    "objective/scores", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg",
    "val/clipfrac_avg", "policy/entropy_avg", "val/ratio", "val/ratio_var", "val/num_eos_tokens", "lr", "episode",
}
STEPS = 6


def test_ppo_run_is_recorded(tiny_assets, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets["tokenizer"])
    prompts = [f"count {i} {i + 1}" for i in range(32)]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})
    args = ppo.PPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_mini_batches=1, num_ppo_epochs=1,
        total_episodes=4 * STEPS, response_length=8, stop_token="eos", local_rollout_forward_batch_size=4,
        num_sample_generations=0, logging_steps=1, learning_rate=1e-3, report_to=[], use_cpu=True, bf16=False,
        gradient_checkpointing=False, save_strategy="steps", save_steps=3, seed=0, disable_tqdm=True,
    )
    cb = RLDKCallback(tmp_path / "rldk_logs", run_id="ppo-run")
    events: list[tuple[str, dict]] = []
    cb.add_listener(lambda kind, record: events.append((kind, record)))
    trainer = ppo.PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=AutoModelForCausalLM.from_pretrained(tiny_assets["causal_lm"]),
        ref_model=AutoModelForCausalLM.from_pretrained(tiny_assets["causal_lm"]),
        reward_model=AutoModelForSequenceClassification.from_pretrained(tiny_assets["reward_model"], num_labels=1),
        value_model=AutoModelForSequenceClassification.from_pretrained(tiny_assets["reward_model"], num_labels=1),
        train_dataset=dataset,
        eval_dataset=dataset,
        callbacks=[cb],
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "objective/kl" in entry]
    assert len(logs) == STEPS
    assert all(set(entry) - {"step", "epoch"} == PPO_KEYS for entry in logs), "TRL PPO keys changed"

    data = RunStore(cb.output_dir, cb.run_id).read_all()
    assert (cb.trainer_kind, cb.max_steps) == ("ppo", STEPS)
    assert [r["step"] for r in data.metrics] == list(range(1, STEPS + 1))
    for record, entry in zip(data.metrics, logs):
        assert (record["reward_mean"], record["kl_mean"], record["entropy_mean"]) == (
            entry["objective/rlhf_reward"], entry["objective/kl"], entry["objective/entropy"])
        assert (record["value_loss"], record["policy_loss"], record["clip_frac"], record["learning_rate"]) == (
            entry["loss/value_avg"], entry["loss/policy_avg"], entry["policy/clipfrac_avg"], entry["lr"])
    rows = data.ppo_metrics
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert set(rows[0]) == PPO_KEYS | {"step"}
    assert [r["step"] for r in data.checkpoint_summary][:2] == [3, 6]
    assert len([1 for kind, _ in events if kind == "ppo_metrics"]) == STEPS
