"""TRL log keys → RLDKMetrics fields, per trainer kind (grpo, rloo, dpo, sft, reward, ppo).

Keys logged by TRL 1.16.0 (captured with `tests/capture_trl_logs.py`; `tests/test_training.py` checks that real
runs log exactly these, so a TRL upgrade that renames a key fails loudly):

- grpo and rloo (the same set): loss grad_norm learning_rate epoch num_tokens step_time reward reward_std
  rewards/<fn>/mean rewards/<fn>/std frac_reward_zero_std kl (only when beta > 0) entropy clip_ratio/low_mean
  clip_ratio/low_min clip_ratio/high_mean clip_ratio/high_max clip_ratio/region_mean completions/mean_length
  completions/min_length completions/max_length completions/clipped_ratio completions/mean_terminated_length
  completions/min_terminated_length completions/max_terminated_length
- dpo: loss grad_norm learning_rate epoch num_tokens entropy mean_token_accuracy rewards/chosen rewards/rejected
  rewards/accuracies rewards/margins logps/chosen logps/rejected logits/chosen logits/rejected
- sft: loss grad_norm learning_rate epoch num_tokens entropy mean_token_accuracy
- reward: loss grad_norm learning_rate epoch num_tokens accuracy margin min_reward mean_reward max_reward
- evaluation: the trainer's own keys prefixed `eval_`, plus eval_runtime eval_samples_per_second
  eval_steps_per_second (kept under those names, never mapped onto the training fields)
- end of training: train_runtime train_samples_per_second train_steps_per_second train_loss epoch

PPO of `trl.experimental.ppo` (TRL 0.26-1.12; checked on a real TRL 1.12.0 run by `tests/test_ppo.py`): eps
objective/kl objective/entropy objective/non_score_reward objective/rlhf_reward objective/scores
policy/approxkl_avg policy/clipfrac_avg loss/policy_avg loss/value_avg val/clipfrac_avg policy/entropy_avg
val/ratio val/ratio_var val/num_eos_tokens lr episode. Legacy `PPOTrainer.step` stats (TRL <= 0.11) found in old
RLDK logs: objective/kl objective/kl_coef objective/entropy ppo/mean_scores ppo/std_scores
ppo/mean_non_score_reward ppo/loss/{policy,value,total} ppo/policy/{entropy,approxkl,policykl,clipfrac}
ppo/returns/* ppo/val/* ppo/learning_rate time/ppo/* env/reward_mean env/reward_std tokens/*.

A key whose name is a core field (loss, grad_norm, reward_std, ...) fills that field. Any other key is kept in
`extra` under its raw name, mapped or not, so nothing is lost and the raw TRL names can be charted. A TRL value of
None means every value in the logging window was NaN (TRL writes None so JSON loggers do not fail); it is
recorded as NaN so the gap is visible and the non-finite alerts fire.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields
from typing import Any, Iterable, Mapping

from .metrics import RLDKMetrics, as_number, coerce_step, flat_record

logger = logging.getLogger(__name__)

TRAINER_KINDS: tuple[str, ...] = ("grpo", "rloo", "dpo", "sft", "reward", "ppo")

CORE_FIELDS: frozenset[str] = frozenset(f.name for f in fields(RLDKMetrics)) - {"extra", "run_id"}

_ONLINE_RL: tuple[tuple[str, str], ...] = (
    ("reward", "reward_mean"),
    ("kl", "kl_mean"),
    ("entropy", "entropy_mean"),
    ("clip_ratio/region_mean", "clip_frac"),
)

# DPO's loss is -log sigmoid(margin): `rewards/margins` is the quantity the trainer drives up, and it is what
# rises when preference learning works and collapses when it breaks. `rewards/chosen` alone often falls in
# healthy runs (both implicit rewards drift down), so it would raise false reward-collapse alerts.
_DPO: tuple[tuple[str, str], ...] = (
    ("rewards/margins", "reward_mean"),
    ("entropy", "entropy_mean"),
)

_SFT: tuple[tuple[str, str], ...] = (("entropy", "entropy_mean"),)

_REWARD: tuple[tuple[str, str], ...] = (
    ("mean_reward", "reward_mean"),
    ("min_reward", "reward_min"),
    ("max_reward", "reward_max"),
)

# trl.experimental.ppo first, then the legacy PPOTrainer.step names (first key present wins a field).
_PPO: tuple[tuple[str, str], ...] = (
    ("objective/rlhf_reward", "reward_mean"),
    ("objective/kl", "kl_mean"),
    ("objective/entropy", "entropy_mean"),
    ("policy/clipfrac_avg", "clip_frac"),
    ("loss/policy_avg", "policy_loss"),
    ("loss/value_avg", "value_loss"),
    ("lr", "learning_rate"),
    ("ppo/mean_scores", "reward_mean"),
    ("env/reward_mean", "reward_mean"),
    ("ppo/std_scores", "reward_std"),
    ("env/reward_std", "reward_std"),
    ("ppo/policy/entropy", "entropy_mean"),
    ("ppo/policy/clipfrac", "clip_frac"),
    ("ppo/loss/policy", "policy_loss"),
    ("ppo/loss/value", "value_loss"),
    ("ppo/loss/total", "loss"),
    ("ppo/learning_rate", "learning_rate"),
    ("time/ppo/total", "step_time"),
)

KEY_MAPS: dict[str | None, tuple[tuple[str, str], ...]] = {
    "grpo": _ONLINE_RL,
    "rloo": _ONLINE_RL,
    "dpo": _DPO,
    "sft": _SFT,
    "reward": _REWARD,
    "ppo": _PPO,
    None: _ONLINE_RL + _PPO,
}

PPO_KEY_PREFIXES: tuple[str, ...] = ("objective/", "policy/", "loss/", "val/", "ppo/", "time/ppo/", "env/", "tokens/")
PPO_PLAIN_KEYS: frozenset[str] = frozenset({"eps", "lr", "episode"})

_CLASS_PREFIXES: dict[str, str] = {
    "GRPO": "grpo", "RLOO": "rloo", "DPO": "dpo", "SFT": "sft", "Reward": "reward", "PPO": "ppo"
}

_DEFAULT_CHARTS: dict[str | None, tuple[str, ...]] = {
    "grpo": ("reward_mean", "kl_mean", "entropy_mean", "loss", "completions/mean_length", "grad_norm",
             "reward_std", "frac_reward_zero_std", "clip_frac", "learning_rate"),
    "dpo": ("rewards/margins", "rewards/accuracies", "loss", "rewards/chosen", "rewards/rejected", "logps/chosen",
            "logps/rejected", "entropy_mean", "grad_norm", "learning_rate"),
    "sft": ("loss", "mean_token_accuracy", "entropy_mean", "learning_rate", "grad_norm", "eval_loss"),
    "reward": ("accuracy", "margin", "loss", "reward_mean", "grad_norm", "learning_rate", "eval_accuracy"),
    "ppo": ("reward_mean", "kl_mean", "entropy_mean", "value_loss", "policy_loss", "clip_frac", "objective/scores",
            "learning_rate"),
    None: ("reward_mean", "kl_mean", "entropy_mean", "loss", "grad_norm", "learning_rate"),
}
_DEFAULT_CHARTS["rloo"] = _DEFAULT_CHARTS["grpo"]


def normalize_kind(trainer_kind: str | None) -> str | None:
    """A known trainer kind in lower case, or None."""
    if trainer_kind is None:
        return None
    kind = str(trainer_kind).strip().lower()
    return kind if kind in TRAINER_KINDS else None


def kind_from_class(obj_or_class: Any) -> str | None:
    """Trainer kind from a TRL trainer/config instance or class, through its MRO (so subclasses count)."""
    cls = obj_or_class if isinstance(obj_or_class, type) else type(obj_or_class)
    for base in cls.__mro__:
        for suffix in ("Config", "Trainer"):
            if base.__name__.endswith(suffix) and base.__name__[: -len(suffix)] in _CLASS_PREFIXES:
                return _CLASS_PREFIXES[base.__name__[: -len(suffix)]]
    return None


def detect_trainer_kind(logs_or_keys: Mapping[str, Any] | Iterable[str]) -> str | None:
    """Guess the trainer kind from the keys of one log. GRPO and RLOO log the same keys, so both give "grpo"."""
    keys = {key[5:] if key.startswith("eval_") else key for key in logs_or_keys if isinstance(key, str)}
    if keys & {"frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio"} or any(
        key.startswith(("rewards/", "clip_ratio/")) and key.count("/") == 2 for key in keys
    ):
        return "grpo"
    if keys & {"rewards/margins", "rewards/chosen", "logps/chosen", "logits/chosen"}:
        return "dpo"
    if keys & {"mean_reward", "min_reward", "max_reward"} or {"accuracy", "margin"} <= keys:
        return "reward"
    if keys & {"eps", "episode"} or any(key.startswith(PPO_KEY_PREFIXES) for key in keys):
        return "ppo"
    if "mean_token_accuracy" in keys:
        return "sft"
    return None


def is_eval_log(logs: Mapping[str, Any]) -> bool:
    """An evaluation log: some key starts with `eval_`."""
    return any(isinstance(key, str) and key.startswith("eval_") for key in logs)


def is_summary_log(logs: Mapping[str, Any]) -> bool:
    """The end-of-training summary (`train_runtime`, `train_loss`, ...), run info rather than a step."""
    return "train_runtime" in logs


def ppo_keys(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The PPO-specific keys of a log (objective/, policy/, loss/, val/, ppo/ ..., eps, lr, episode)."""
    return {
        key: value
        for key, value in logs.items()
        if isinstance(key, str) and (key in PPO_PLAIN_KEYS or key.startswith(PPO_KEY_PREFIXES))
    }


def map_log(logs: Mapping[str, Any], step: int, trainer_kind: str | None = None) -> RLDKMetrics:
    """One TRL log dict (no step in it; a `step` key is ignored) as RLDKMetrics at `step`.

    Keys named like a core field fill it; the trainer's mapping fills the others (first present key wins);
    every other numeric key is kept in `extra` under its raw name. None becomes NaN; non-numeric values are
    skipped."""
    core, extra = _mapped_fields(logs, trainer_kind)
    return RLDKMetrics(step=step, extra=extra, **core)


def log_record(
    logs: Mapping[str, Any], step: int, trainer_kind: str | None, run_id: str, timestamp: float
) -> dict[str, Any]:
    """`map_log(logs, step, trainer_kind)` with run_id (a valid run id) and timestamp set, as `.to_dict()` gives
    it, without building the dataclass in between (the callback's path, once per logged step)."""
    core, extra = _mapped_fields(logs, trainer_kind)
    core["timestamp"] = timestamp
    return flat_record(coerce_step(step), run_id, core, extra)


def _mapped_fields(logs: Mapping[str, Any], trainer_kind: str | None) -> tuple[dict[str, float], dict[str, float]]:
    """(core fields, extra keys) of one log, see `map_log`."""
    kind = normalize_kind(trainer_kind) or detect_trainer_kind(logs)
    numbers: dict[str, float] = {}
    for key, value in logs.items():
        if key in ("step", "run_id") or not isinstance(key, str):
            continue
        number = value if type(value) is float else math.nan if value is None else as_number(value)
        if number is None:
            logger.debug("skipping non-numeric log value %r=%r", key, value)
            continue
        numbers[key] = number
    core: dict[str, float] = {key: value for key, value in numbers.items() if key in CORE_FIELDS and key != "step"}
    for raw, field_name in KEY_MAPS.get(kind, KEY_MAPS[None]):
        if raw in numbers and field_name not in core:
            core[field_name] = numbers[raw]
    extra = {key: value for key, value in numbers.items() if key not in CORE_FIELDS}
    return core, extra


def default_charts(trainer_kind: str | None, available: Iterable[str] | None = None) -> list[str]:
    """Metric names to chart first for a trainer kind; with `available`, only those that were logged."""
    charts = list(_DEFAULT_CHARTS[normalize_kind(trainer_kind)])
    if available is None:
        return charts
    logged = set(available)
    return [name for name in charts if name in logged]
