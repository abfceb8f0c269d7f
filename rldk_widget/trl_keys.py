"""TRL log keys → RLDKMetrics fields, per trainer kind (grpo, rloo, dpo, sft, reward, ppo, orpo, kto, cpo).

Keys logged by TRL 1.16.0 (captured with `tests/capture_trl_logs.py` into `tests/fixtures/trl_logs/`, which
`tests/test_trl_fixtures.py` checks; `tests/test_training.py` checks that real grpo / rloo / dpo / sft / reward runs
log exactly these, so a TRL upgrade that renames a key fails loudly):

- grpo and rloo (the same set): loss grad_norm learning_rate epoch num_tokens step_time reward reward_std
  rewards/<fn>/mean rewards/<fn>/std frac_reward_zero_std kl (only when beta > 0) entropy clip_ratio/low_mean
  clip_ratio/low_min clip_ratio/high_mean clip_ratio/high_max clip_ratio/region_mean completions/mean_length
  completions/min_length completions/max_length completions/clipped_ratio completions/mean_terminated_length
  completions/min_terminated_length completions/max_terminated_length
- dpo: loss grad_norm learning_rate epoch num_tokens entropy mean_token_accuracy rewards/chosen rewards/rejected
  rewards/accuracies rewards/margins logps/chosen logps/rejected logits/chosen logits/rejected
- sft: loss grad_norm learning_rate epoch num_tokens entropy mean_token_accuracy
- reward: loss grad_norm learning_rate epoch num_tokens accuracy margin min_reward mean_reward max_reward
- orpo (`trl.experimental.orpo`): loss grad_norm learning_rate epoch rewards/chosen rewards/rejected
  rewards/accuracies rewards/margins logps/chosen logps/rejected logits/chosen logits/rejected nll_loss
  log_odds_ratio log_odds_chosen
- cpo (`trl.experimental.cpo`): the ORPO keys without log_odds_ratio and log_odds_chosen
- kto (`trl.KTOTrainer`): loss grad_norm learning_rate epoch num_tokens kl entropy rewards/chosen rewards/rejected
  rewards/margins logps/chosen logps/rejected logits/chosen logits/rejected (no rewards/accuracies; a window
  with only desirable or only undesirable examples lacks the other side's keys and rewards/margins)
- evaluation: the trainer's own keys prefixed `eval_`, plus eval_runtime eval_samples_per_second
  eval_steps_per_second (kept under those names, never mapped onto the training fields; GRPO evaluates too)
- end of training: train_runtime train_samples_per_second train_steps_per_second total_flos train_loss epoch

Early-2025 TRL, as Unsloth-based training still logs it (captured with TRL 0.14.0, 0.15.2 and 0.16.1):

- grpo 0.14-0.16: loss grad_norm learning_rate epoch reward reward_std rewards/<fn> (one slash, no /mean or /std)
  completion_length kl, and in 0.16 also num_tokens clip_ratio; no entropy, frac_reward_zero_std or
  completions/*. `completion_length` is also recorded as `completions/mean_length` (the name the charts and the
  completion-length rule use) and `clip_ratio` fills clip_frac. GRPO evaluates from 0.15 on (eval_ + the same
  keys; 0.14's evaluation fails). With evaluation on, 0.16.1's training log of an eval step has only loss
  grad_norm learning_rate epoch (that step's metrics go into the next training log, the last one's into the
  end-of-training summary).
- dpo: the TRL 1.16 keys without entropy, mean_token_accuracy and num_tokens (nll_loss with rpo_alpha set)
- orpo, cpo: as in TRL 1.16; kto: as in TRL 1.16 without entropy and num_tokens
- sft: loss grad_norm learning_rate epoch mean_token_accuracy; reward: loss grad_norm learning_rate epoch only
  (so a reward run is not recognisable from its keys; the callback takes the kind from the config class)

LLaMA-Factory's ORPO (not TRL's) logs sft_loss and odds_ratio_loss next to DPO-style rewards/*: read as orpo too.

PPO of `trl.experimental.ppo` (TRL 0.26-1.12; checked on a real TRL 1.12.0 run by `tests/test_ppo.py`): eps
objective/kl objective/entropy objective/non_score_reward objective/rlhf_reward objective/scores
policy/approxkl_avg policy/clipfrac_avg loss/policy_avg loss/value_avg val/clipfrac_avg policy/entropy_avg
val/ratio val/ratio_var val/num_eos_tokens lr episode. Legacy `PPOTrainer.step` stats (TRL <= 0.11) found in old
RLDK logs: objective/kl objective/kl_coef objective/entropy ppo/mean_scores ppo/std_scores
ppo/mean_non_score_reward ppo/loss/{policy,value,total} ppo/policy/{entropy,approxkl,policykl,clipfrac}
ppo/returns/* ppo/val/* ppo/learning_rate time/ppo/* env/reward_mean env/reward_std tokens/*.

A key whose name is a core field (loss, grad_norm, reward_std, ...) fills that field. Any other key is kept in
`extra` under its raw name, mapped or not, so nothing is lost and the raw TRL names can be charted; `lr` fills
learning_rate for every kind. A TRL value of None means every value in the logging window was NaN (TRL writes
None so JSON loggers do not fail); it is recorded as NaN so the gap is visible and the non-finite alerts fire.

Detection from the keys alone (`detect_trainer_kind`, when no trainer or config class says it): DPO with
rpo_alpha in TRL < 1 logs the same keys as CPO and reads as cpo, KTO with loss_type="apo_zero_unpaired" (no kl)
reads as dpo, GRPO and RLOO both read as grpo.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields
from typing import Any, Iterable, Mapping, Sequence

from .metrics import RLDKMetrics, as_number, coerce_step, flat_record

logger = logging.getLogger(__name__)

TRAINER_KINDS: tuple[str, ...] = ("grpo", "rloo", "dpo", "sft", "reward", "ppo", "orpo", "kto", "cpo")

CORE_FIELDS: frozenset[str] = frozenset(f.name for f in fields(RLDKMetrics)) - {"extra", "run_id"}

# (raw key, mapped name) per kind; the first present raw key wins a name. A mapped name that is not a core field
# (`completions/mean_length`) is an `extra` key, set only when the log does not have that key itself.
_LR: tuple[tuple[str, str], ...] = (("lr", "learning_rate"),)

_ONLINE_RL: tuple[tuple[str, str], ...] = (
    ("reward", "reward_mean"),
    ("kl", "kl_mean"),
    ("entropy", "entropy_mean"),
    ("clip_ratio/region_mean", "clip_frac"),
    ("clip_ratio", "clip_frac"),  # TRL 0.16
    ("completion_length", "completions/mean_length"),  # TRL <= 0.16
) + _LR

# DPO's loss is -log sigmoid(margin): `rewards/margins` is the quantity the trainer drives up, and it is what
# rises when preference learning works and collapses when it breaks. `rewards/chosen` alone often falls in
# healthy runs (both implicit rewards drift down), so it would raise false reward-collapse alerts. ORPO and CPO
# log the same DPO-style rewards (beta times the policy's log-probs, no reference model), KTO the same for its
# unpaired examples.
_DPO: tuple[tuple[str, str], ...] = (
    ("rewards/margins", "reward_mean"),
    ("entropy", "entropy_mean"),
) + _LR

# KTO's `kl` is its KL(policy || reference) estimate on mismatched pairs, summed over the completion like PPO's.
_KTO: tuple[tuple[str, str], ...] = _DPO + (("kl", "kl_mean"),)

_SFT: tuple[tuple[str, str], ...] = (("entropy", "entropy_mean"),) + _LR

_REWARD: tuple[tuple[str, str], ...] = (
    ("mean_reward", "reward_mean"),
    ("min_reward", "reward_min"),
    ("max_reward", "reward_max"),
) + _LR

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
    "orpo": _DPO,
    "kto": _KTO,
    "cpo": _DPO,
    None: tuple(dict.fromkeys(_ONLINE_RL + _PPO)),
}
# KEY_MAPS split into (onto core fields, onto extra names), once: the per-log path only loops over them.
_SPLIT_MAPS: dict[str | None, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    kind: (tuple(p for p in pairs if p[1] in CORE_FIELDS), tuple(p for p in pairs if p[1] not in CORE_FIELDS))
    for kind, pairs in KEY_MAPS.items()
}

PPO_KEY_PREFIXES: tuple[str, ...] = ("objective/", "policy/", "loss/", "val/", "ppo/", "time/ppo/", "env/", "tokens/")
PPO_PLAIN_KEYS: frozenset[str] = frozenset({"eps", "lr", "episode"})

# Keys that tell a trainer kind (see detect_trainer_kind); `eval_` prefixes are removed before they are looked up.
_GRPO_KEYS = frozenset(
    {"frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio", "completion_length", "clip_ratio"}
)
_PREFERENCE_KEYS = frozenset({"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                              "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected"})
_ORPO_KEYS = frozenset({"log_odds_ratio", "log_odds_chosen", "odds_ratio_loss"})  # the last: LLaMA-Factory's ORPO
_REWARD_KEYS = frozenset({"mean_reward", "min_reward", "max_reward"})
_PPO_PLAIN_DETECT = frozenset({"eps", "episode"})

_CLASS_PREFIXES: dict[str, str] = {
    "GRPO": "grpo", "RLOO": "rloo", "DPO": "dpo", "SFT": "sft", "Reward": "reward", "PPO": "ppo", "ORPO": "orpo",
    "KTO": "kto", "CPO": "cpo",
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
    # sft_loss and odds_ratio_loss: LLaMA-Factory's ORPO (the view shows only the names a run has)
    "orpo": ("rewards/margins", "rewards/accuracies", "loss", "nll_loss", "log_odds_ratio", "log_odds_chosen",
             "rewards/chosen", "rewards/rejected", "grad_norm", "learning_rate", "sft_loss", "odds_ratio_loss"),
    "kto": ("rewards/margins", "kl_mean", "loss", "rewards/chosen", "rewards/rejected", "logps/chosen",
            "logps/rejected", "entropy_mean", "grad_norm", "learning_rate"),
    "cpo": ("rewards/margins", "rewards/accuracies", "loss", "nll_loss", "rewards/chosen", "rewards/rejected",
            "logps/chosen", "logps/rejected", "grad_norm", "learning_rate"),
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
    """Guess the trainer kind from the keys of one log (training or `eval_`), or None.

    grpo: any of frac_reward_zero_std, completions/mean_length, completions/clipped_ratio, completion_length,
    clip_ratio, both reward and reward_std, or a rewards/<fn>/<stat> or clip_ratio/<stat> key. GRPO and RLOO log
    the same keys, so both give "grpo". With the DPO-style rewards/*, logps/* or logits/* keys: orpo when
    log_odds_ratio, log_odds_chosen or odds_ratio_loss is there; kto when kl is there (KTO without its KL term,
    loss_type="apo_zero_unpaired", reads as dpo); cpo when nll_loss is there; else dpo. Without those, any other
    rewards/<fn> key (per-function rewards of GRPO before TRL 0.17) gives grpo. Then reward (mean/min/max_reward,
    or accuracy with margin), ppo (eps, episode, objective/, policy/, ...), sft (mean_token_accuracy)."""
    keys = {key[5:] if key.startswith("eval_") else key for key in logs_or_keys if isinstance(key, str)}
    if keys & _GRPO_KEYS or ("reward" in keys and "reward_std" in keys):
        return "grpo"
    slashed = [key for key in keys if "/" in key]  # the prefix tests below only need these
    if any(key.startswith(("rewards/", "clip_ratio/")) and key.count("/") == 2 for key in slashed):
        return "grpo"
    if keys & _PREFERENCE_KEYS:
        if keys & _ORPO_KEYS:
            return "orpo"
        if "kl" in keys:
            return "kto"
        return "cpo" if "nll_loss" in keys else "dpo"
    if any(key.startswith("rewards/") for key in slashed):
        return "grpo"
    if keys & _REWARD_KEYS or ("accuracy" in keys and "margin" in keys):
        return "reward"
    if keys & _PPO_PLAIN_DETECT or any(key.startswith(PPO_KEY_PREFIXES) for key in slashed):
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
    """The PPO-specific keys of a log (objective/, policy/, loss/, val/, ppo/ ..., eps, lr, episode); {} when `lr`
    is the only one (other trainers may log the learning rate as `lr` too)."""
    found = {
        key: value
        for key, value in logs.items()
        if isinstance(key, str) and (key in PPO_PLAIN_KEYS or key.startswith(PPO_KEY_PREFIXES))
    }
    return {} if len(found) == 1 and "lr" in found else found


def map_log(logs: Mapping[str, Any], step: int, trainer_kind: str | None = None) -> RLDKMetrics:
    """One TRL log dict (no step in it; a `step` key is ignored) as RLDKMetrics at `step`.

    Keys named like a core field fill it; the trainer's mapping fills the others (first present key wins);
    every other numeric key is kept in `extra` under its raw name, and a mapping onto a name that is not a core
    field adds that name to `extra` too (TRL <= 0.16's `completion_length` as `completions/mean_length`) unless the
    log has it. None becomes NaN; non-numeric values are skipped."""
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
    maps = _SPLIT_MAPS.get(trainer_kind) if type(trainer_kind) is str else None  # a known kind: the common case
    if maps is None:
        maps = _SPLIT_MAPS[normalize_kind(trainer_kind) or detect_trainer_kind(logs)]
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
    core_map, extra_map = maps
    for raw, field_name in core_map:
        if raw in numbers and field_name not in core:
            core[field_name] = numbers[raw]
    extra = {key: value for key, value in numbers.items() if key not in CORE_FIELDS}
    for raw, name in extra_map:
        if raw in numbers and name not in extra:
            extra[name] = numbers[raw]
    return core, extra


def mapped_record(record: Mapping[str, Any], trainer_kind: str | None) -> dict[str, Any]:
    """A flat record as the alert rules read it: the trainer's mapped names (reward_mean, kl_mean, ...) filled from
    raw TRL keys where a file holds those (written without the callback's mapping); raw keys and `step` kept."""
    core, extra = _mapped_fields(record, trainer_kind)
    return {"step": record.get("step"), **extra, **core}


def mapped_record_plan(keys: Sequence[str], trainer_kind: str | None) -> list[tuple[str, str]]:
    """For records whose keys are `keys` ("step" and float values): (name in the mapped record, key it comes from)
    pairs, so that `{name: record[key] for name, key in plan}` is `mapped_record(record, trainer_kind)`."""
    sources = [key for key in keys if key != "step"]
    core, extra = _mapped_fields({key: float(index) for index, key in enumerate(sources)}, trainer_kind)
    plan = [("step", "step")] if "step" in keys else []
    return plan + [(name, sources[int(index)]) for name, index in {**extra, **core}.items()]


def default_charts(trainer_kind: str | None, available: Iterable[str] | None = None) -> list[str]:
    """Metric names to chart first for a trainer kind; with `available`, only those that were logged."""
    charts = list(_DEFAULT_CHARTS[normalize_kind(trainer_kind)])
    if available is None:
        return charts
    logged = set(available)
    return [name for name in charts if name in logged]
