"""The TRL log dicts the tests feed to RLDKCallback, trl_keys and trainer_state.json readers: one of each trainer as
TRL 1.16 passed it to `on_log` (tiny offline model, captured by tests/capture_trl_logs.py), plus the PPO keys of
`trl.experimental.ppo` and of old RLDK logs. Use these rather than writing another log dict by hand; derive a
variant with `{**GRPO_LOG, "loss": math.nan}`."""

from __future__ import annotations

# One training log of each trainer, as TRL 1.16 passed it to on_log (tiny model, see capture_trl_logs.py).
GRPO_LOG = {
    "loss": 3.558e-06, "grad_norm": 1.068, "learning_rate": 0.0006667, "num_tokens": 88.0,
    "completions/mean_length": 8.0, "completions/min_length": 8.0, "completions/max_length": 8.0,
    "completions/clipped_ratio": 1.0, "completions/mean_terminated_length": 0.0,
    "completions/min_terminated_length": 0.0, "completions/max_terminated_length": 0.0,
    "rewards/reward_len/mean": -0.1875, "rewards/reward_len/std": 0.1049, "rewards/reward_words/mean": 0.0625,
    "rewards/reward_words/std": 0.125, "reward": -0.125, "reward_std": 0.1735, "frac_reward_zero_std": 0.0,
    "kl": 3.516e-05, "entropy": 5.943, "clip_ratio/low_mean": 0.0, "clip_ratio/high_mean": 0.0,
    "clip_ratio/region_mean": 0.0, "clip_ratio/low_min": 0.0, "clip_ratio/high_max": 0.0, "step_time": 0.02961,
    "epoch": 0.0625,
}
DPO_LOG = {
    "loss": 0.665, "grad_norm": 1.436, "learning_rate": 0.0006667, "entropy": 5.944, "num_tokens": 276.0,
    "logits/chosen": 0.0008383, "logits/rejected": 0.003575, "mean_token_accuracy": 0.0, "rewards/chosen": 0.009322,
    "rewards/rejected": -0.0478, "rewards/accuracies": 1.0, "rewards/margins": 0.05712, "logps/chosen": -46.19,
    "logps/rejected": -108.0, "epoch": 0.125,
}
SFT_LOG = {"loss": 5.933, "grad_norm": 1.806, "learning_rate": 0.0006667, "entropy": 5.944,
           "mean_token_accuracy": 0.0, "num_tokens": 126.0, "epoch": 0.125}
SFT_EVAL_LOG = {"eval_loss": 5.866, "eval_runtime": 0.0184, "eval_samples_per_second": 434.6,
                "eval_steps_per_second": 108.7, "eval_entropy": 5.944, "eval_mean_token_accuracy": 0.04952,
                "eval_num_tokens": 126.0, "epoch": 0.125}
REWARD_LOG = {"loss": 0.6052, "grad_norm": 3.059, "learning_rate": 0.0006667, "num_tokens": 215.0,
              "min_reward": -0.1364, "mean_reward": -0.004551, "max_reward": 0.1083, "accuracy": 1.0,
              "margin": 0.1848, "epoch": 0.1667}
SUMMARY_LOG = {"train_runtime": 0.0828, "train_samples_per_second": 144.9, "train_steps_per_second": 36.22,
               "train_loss": 2.484e-09, "epoch": 0.09375}
# trl.experimental.ppo (TRL <= 1.12) keys, from its PPOTrainer.train.
PPO_LOG = {
    "eps": 12, "objective/kl": 0.8, "objective/entropy": 40.0, "objective/non_score_reward": -0.04,
    "objective/rlhf_reward": 1.5, "objective/scores": 1.54, "policy/approxkl_avg": 0.01, "policy/clipfrac_avg": 0.12,
    "loss/policy_avg": -0.02, "loss/value_avg": 0.3, "val/clipfrac_avg": 0.05, "policy/entropy_avg": 2.1,
    "val/ratio": 1.0, "val/ratio_var": 0.001, "val/num_eos_tokens": 3, "lr": 3e-6, "episode": 64, "epoch": 0.5,
}
# PPOTrainer.step stats of TRL <= 0.11, as found in old RLDK logs.
LEGACY_PPO_LOG = {
    "objective/kl": 0.4, "objective/kl_coef": 0.2, "objective/entropy": 30.0, "ppo/mean_non_score_reward": -0.08,
    "ppo/mean_scores": 0.7, "ppo/std_scores": 0.2, "ppo/loss/policy": -0.01, "ppo/loss/value": 0.5,
    "ppo/loss/total": 0.04, "ppo/policy/entropy": 2.5, "ppo/policy/clipfrac": 0.08, "ppo/policy/approxkl": 0.002,
    "ppo/learning_rate": 1.41e-5, "time/ppo/total": 3.2, "env/reward_mean": 0.7,
}
HEALTHY_GRPO_LOG = {**GRPO_LOG, "completions/clipped_ratio": 0.0}
"""GRPO_LOG with no completion clipped (the tiny model's completions all reach max_completion_length, which the
completions_clipped rule reports after three logs): repeated any number of times it raises no alert under the
default rules, so a test that counts alerts sees only the ones it provoked."""
