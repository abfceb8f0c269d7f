"""RL health alerts over the mapped metric history: AlertRules (thresholds) and AlertMonitor (state). Pure, no I/O.

Every rule yields at most one alert when its condition starts (after `patience` observations) and at most one
escalation while it lasts (when it gets `escalation_factor` times worse); it re-arms only after the condition
was clear for `rearm_steps` observations, and a new onset waits `cooldown_steps` steps after the last alert.
Rules on a level (KL, entropy, reward, clip and truncation ratios, variances) hold a condition that alerted while
the value stays within 20% of the threshold, so a value hovering around it is one condition, not an alert per
crossing.

An alert carries its evidence: `metric` (the chart it belongs on), `value`, `threshold` (None when the condition
has no number, e.g. NaN), `window` (how many records, or evaluations, the decision looked at) and `window_start`
(the step of the first of them; the alert's `step` is the last).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping

from .arguments import reject_unknown
from .metrics import as_number

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

RULE_TYPES: tuple[str, ...] = (
    "nonfinite",
    "kl_high",
    "kl_spike",
    "entropy_collapse",
    "reward_collapse",
    "zero_reward_variance",
    "reward_hacking",
    "grad_norm_explosion",
    "clip_frac_high",
    "value_loss_spike",
    "completion_length_blowup",
    "completions_clipped",
    "reward_fn_nonfinite",
    "reward_fn_variance_collapse",
    "reward_fn_saturated",
    "reward_fn_dominant",
    "eval_divergence",
)

_PER_FUNCTION_RULES = frozenset(
    {"reward_fn_nonfinite", "reward_fn_variance_collapse", "reward_fn_saturated", "reward_fn_dominant"}
)
_POLICY_REWARD_RULES = frozenset({"reward_collapse", "zero_reward_variance", "reward_hacking"})


def _reject_unknown_keywords(cls: type) -> type:
    """Make the dataclass's __init__ name an unknown keyword, a close match and the accepted ones."""
    generated = cls.__init__
    accepted = [f.name for f in fields(cls)]

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        reject_unknown(f"{cls.__name__}()", kwargs, accepted)
        generated(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_reject_unknown_keywords
@dataclass(frozen=True)
class AlertRules:
    """Thresholds, floors, windows, cooldowns and de-duplication of the alert rules; override any by keyword,
    e.g. `AlertRules(kl_max=0.3, cooldown_steps=100, disabled={"clip_frac_high"})`.

    KL and entropy are per token for GRPO / RLOO / DPO / SFT; PPO logs them summed over the response (KTO its KL),
    so use `AlertRules.for_trainer("ppo")` or `("kto")` (the callback does when no rules are given).

    Every rule (type: condition; severity). "Median" is over the previous `window` records, once there are
    `min_history`; a relative rule also has an absolute floor where a ratio alone misleads.

    - `nonfinite`: loss, reward, grad norm, KL or value loss (`nonfinite_metrics`) is NaN/±Inf (TRL logs None, read
      as NaN); critical. Preference trainers (DPO, ORPO, CPO, KTO: the record has `logps/*` / `rewards/margins`):
      a NaN in those is about the policy's log-probs (truncation, empty completions, fp16), not a reward function;
      a warning while the loss stays finite, critical when it is NaN too.
    - `kl_high`: KL > `kl_max`; warning.
    - `kl_spike`: KL > max(`kl_spike_factor` x its median, the median + `kl_spike_sigma` robust standard deviations
      of those records, `kl_spike_min`), one step is enough; warning. The scatter term matters for a signed KL
      estimate whose median is near 0 (RLOO logs one); the message names a loss jump at the same step.
    - `entropy_collapse`: entropy < max(`entropy_min`, `entropy_collapse_ratio` x its peak rolling median); warning.
    - `reward_collapse`: the median of the last `reward_recent_window` rewards fell below its best (the best rolling
      median of `reward_window` records) by more than max(`reward_collapse_frac` x the best (or the rise to it),
      `reward_collapse_noise_factor` x the step-to-step noise). A best that is not above the run's start by more
      than that noise is no rise, so a reward that never rose (a sparse one) cannot collapse; nor while the
      zero-variance condition holds; warning.
    - `zero_reward_variance`: the median of the last `zero_variance_window` values of `frac_reward_zero_std` (GRPO /
      RLOO, TRL >= 0.17) is >= `zero_std_frac_max`, or of `reward_std` (TRL <= 0.16) <= `reward_std_min`: no
      learning signal. The message tells a dead reward (it never rose), a saturated one (at its best) and a
      collapsed one (it rose and fell back) apart. It clears only when that median falls below
      `zero_std_frac_clear`, so a sparse reward for a whole run is one alert; warning.
    - `reward_hacking`: over the last `hacking_window` records (medians of its first half against its last quarter)
      the reward rose while KL grew to >= max(start + `hacking_kl_min_rise`, `hacking_kl_ratio` x start); warning.
    - `grad_norm_explosion`: grad norm > `grad_norm_max`; or > `grad_norm_spike_factor` x its median; or >
      `grad_norm_loss_jump_factor` x its median with a loss jump at the same step (the loss above its median by
      `loss_jump_sigma` robust standard deviations and `loss_jump_min_frac` of it). A relative spike counts only
      above `grad_norm_floor`: 1.0 is transformers' default max_grad_norm, below which nothing is clipped, and a
      jump from 1e-3 to 0.1 in a run without advantages is no explosion; warning.
    - `clip_frac_high`: PPO-style clip fraction > `clip_frac_max`; warning.
    - `value_loss_spike`: value loss > max(`value_loss_spike_factor` x its median, `value_loss_min`); warning.
    - `completion_length_blowup`: mean completion length > `length_spike_factor` x its median; warning.
    - `completions_clipped`: `completions/clipped_ratio` > `clipped_ratio_max` for `clipped_ratio_patience` records:
      answers cut at max_completion_length, their rewards judge unfinished text; warning.
    - per reward function of multi-reward GRPO / RLOO (`rewards/<fn>/mean` and `/std`; TRL <= 0.16's `rewards/<fn>`
      for the first): `reward_fn_nonfinite`, its mean is NaN (TRL logs None when it returned None/NaN for the whole
      batch) while the total reward stays finite (TRL's nansum leaves the function out); warning.
      `reward_fn_variance_collapse`, the median of its std over `reward_fn_window` records <= max(`reward_std_min`,
      `reward_fn_std_collapse_ratio` x its peak); warning. `reward_fn_saturated`, the same at its maximum mean after
      a rise: no signal left from it; info. `reward_fn_dominant`, its share of the summed per-function variances
      >= `reward_fn_dominance` while the others keep at least half the std they had at the start; checked when the
      logged reward is the plain sum of the function means (TRL's default weights: with reward_weights the logs do
      not say the weights); warning. The variance rules leave a reward without any variance to
      `zero_reward_variance`.
    - `eval_divergence`: `eval_loss` rose at each of the last `eval_divergence_evals` - 1 evaluations, to more than
      `eval_divergence_min_rise` x its best above the best, while the training loss (the mean of the training
      records between two evaluations) fell or stayed: it rose by less than half as much, give or take two
      standard errors (when both rise, training itself fails and the training rules speak); warning. GRPO / RLOO
      evaluations (with an `eval_reward`) are not a held-out fit and are skipped.

    Every alert comes at a condition's onset, at most once more when it gets `escalation_factor` times worse (one
    severity up), and again only after `rearm_steps` clear records and `cooldown_steps` steps; a level hovering at
    its threshold is held within 20% of it (hysteresis).
    """

    cooldown_steps: int = 50
    rearm_steps: int = 5
    escalation_factor: float = 2.0
    window: int = 20
    min_history: int = 10
    noise_window: int = 100
    nonfinite_metrics: tuple[str, ...] = ("loss", "reward_mean", "grad_norm", "kl_mean", "value_loss")
    kl_max: float = 0.2
    kl_spike_factor: float = 5.0
    kl_spike_min: float = 0.02
    kl_spike_sigma: float = 8.0
    loss_jump_sigma: float = 4.0
    loss_jump_min_frac: float = 0.05
    entropy_min: float = 0.01
    entropy_collapse_ratio: float = 0.1
    reward_window: int = 10
    reward_recent_window: int = 5
    reward_collapse_frac: float = 0.5
    reward_collapse_noise_factor: float = 4.0
    zero_std_frac_max: float = 0.9
    zero_std_frac_clear: float = 0.75
    reward_std_min: float = 1e-6
    zero_variance_window: int = 5
    zero_variance_patience: int = 1
    hacking_window: int = 20
    hacking_kl_ratio: float = 2.0
    hacking_kl_min_rise: float = 0.05
    grad_norm_max: float = 100.0
    grad_norm_spike_factor: float = 10.0
    grad_norm_loss_jump_factor: float = 4.0
    grad_norm_floor: float = 1.0
    clip_frac_max: float = 0.3
    value_loss_spike_factor: float = 5.0
    value_loss_min: float = 1e-3
    length_spike_factor: float = 2.0
    clipped_ratio_max: float = 0.5
    clipped_ratio_patience: int = 3
    reward_fn_window: int = 5
    reward_fn_std_collapse_ratio: float = 0.05
    reward_fn_dominance: float = 0.95
    eval_divergence_evals: int = 3
    eval_divergence_min_rise: float = 0.01
    disabled: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"AlertRules.{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("window", "min_history", "noise_window", "reward_window", "reward_recent_window", "hacking_window",
                     "rearm_steps", "zero_variance_window", "zero_variance_patience", "reward_fn_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"AlertRules.{name} must be >= 1")
        if self.eval_divergence_evals < 2:
            raise ValueError("AlertRules.eval_divergence_evals must be >= 2")
        if self.escalation_factor <= 1:
            raise ValueError("AlertRules.escalation_factor must be > 1")
        for name in ("zero_std_frac_max", "zero_std_frac_clear", "reward_fn_dominance"):
            if getattr(self, name) > 1:
                raise ValueError(f"AlertRules.{name} is a fraction, must be <= 1")
        if self.zero_std_frac_clear > self.zero_std_frac_max:
            raise ValueError("AlertRules.zero_std_frac_clear must be <= zero_std_frac_max")
        disabled = frozenset(self.disabled)
        unknown = disabled - set(RULE_TYPES)
        if unknown:
            raise ValueError(f"unknown alert rules in disabled: {sorted(unknown)}; known: {', '.join(RULE_TYPES)}")
        object.__setattr__(self, "disabled", disabled)
        object.__setattr__(self, "nonfinite_metrics", tuple(self.nonfinite_metrics))

    @classmethod
    def for_trainer(cls, trainer_kind: str | None, **overrides: Any) -> "AlertRules":
        """Defaults suited to a trainer kind: PPO's summed KL scale; no policy-reward rules for reward models; no
        reward-variance or reward-hacking rules for ORPO / CPO / KTO (a margin, not a sampled reward), and KTO's
        summed KL scale. (The per-reward-function rules need `rewards/<fn>/...` keys, which only GRPO / RLOO log, and
        `eval_divergence` skips evaluations with an `eval_reward`, GRPO's, so neither needs turning off.)"""
        tuned: dict[str, Any] = {}
        if trainer_kind == "ppo":
            tuned = {"kl_max": 10.0, "kl_spike_min": 1.0, "hacking_kl_min_rise": 2.0}
        elif trainer_kind in ("reward", "sft"):
            tuned = {"disabled": _POLICY_REWARD_RULES}
        elif trainer_kind in ("orpo", "cpo", "kto"):
            tuned = {"disabled": frozenset({"zero_reward_variance", "reward_hacking"})}
            if trainer_kind == "kto":
                tuned.update(kl_max=10.0, kl_spike_min=1.0)
        return cls(**{**tuned, **overrides})


@dataclass
class _Episode:
    active: bool = False
    streak: int = 0
    clear: int = 0
    onset_badness: float = 0.0
    onset_step: int = 0
    escalated: bool = False
    last_alert_step: int | None = None


class _RewardFn:
    """One reward function's recent means and stds, its start level, its best (rolling median) mean and std, and
    the keys of its records and episodes (made once)."""

    __slots__ = ("name", "mean_key", "std_key", "nonfinite_key", "saturated_key", "collapse_key", "dominant_key",
                 "means", "stds", "steps", "start_mean", "peak_mean", "low_mean", "peak_std", "start_std", "count",
                 "std_window", "collapsed")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.mean_key, self.std_key = f"rewards/{name}/mean", f"rewards/{name}/std"
        self.nonfinite_key = ("reward_fn_nonfinite", self.mean_key)
        self.saturated_key = ("reward_fn_saturated", self.mean_key)
        self.collapse_key = ("reward_fn_variance_collapse", self.std_key)
        self.dominant_key = ("reward_fn_dominant", self.std_key)
        self.means: deque[float] = deque(maxlen=size)
        self.stds: deque[float] = deque(maxlen=size)
        self.steps: deque[int] = deque(maxlen=size)
        self.start_mean: float | None = None
        self.peak_mean = -math.inf
        self.low_mean = math.inf
        self.peak_std = 0.0
        self.start_std: float | None = None
        self.count = 0
        self.std_window: float | None = None  # the median std of its window at this record, once the window is full
        self.collapsed = False


_MIN_PEAK_WINDOW = 3
# Hysteresis: a lasting condition hovering at its threshold is one condition, not an alert per crossing. Once it
# alerted, it is held (neither active nor clear) while its value is within this factor of the threshold.
_HOLD = 0.8
_DOMINANCE_OTHERS_KEEP = 0.5  # a dominated function keeps at least this share of its std at the start
_DOMINANCE_CLEAR_MARGIN = 0.1  # dominance clears only below reward_fn_dominance minus this
_TRACKED: tuple[str, ...] = (
    "reward_mean", "kl_mean", "entropy_mean", "grad_norm", "value_loss", "completions/mean_length", "loss"
)
_RATIOS: tuple[str, ...] = ("clip_frac", "frac_reward_zero_std", "reward_std", "completions/clipped_ratio")
# Preference trainers' policy log-probs and implicit reward margin (DPO, ORPO, CPO, KTO).
_PREFERENCE_NONFINITE: tuple[str, ...] = ("logps/chosen", "logps/rejected", "rewards/margins")
_PREFERENCE_MARKERS = frozenset({"logps/chosen", "logps/rejected", "rewards/margins", "rewards/chosen"})
# DPO-style one-slash keys under rewards/ that are not reward functions.
_PREFERENCE_REWARD_KEYS = frozenset({"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"})


_NONFINITE_ADVICE = {
    "loss": "training diverged; lower the learning rate, check for bad batches, keep gradient clipping on",
    "reward_mean": "a reward function returned NaN/None for every completion; check the reward functions",
    "grad_norm": "gradients overflowed; lower the learning rate, check the loss and mixed precision",
    "kl_mean": "the policy or reference log-probs overflowed; check the model outputs and precision",
    "value_loss": "the value head diverged; lower the learning rate or the value-loss coefficient",
}
_PREFERENCE_ADVICE = (
    "the policy's log-probs of some chosen/rejected completions were not finite (the implicit rewards and margins "
    "are beta x the log-prob ratios of the policy to the reference): look for completions truncated to nothing "
    "(max_length / max_prompt_length / truncation_mode leave no completion token), empty chosen or rejected "
    "texts, or an overflow in fp16 (compute the log-probs in bf16/fp32); lower the learning rate if the policy "
    "is drifting far from the reference"
)


def _nonfinite_message(metric: str, value: float) -> str:
    name = {"reward_mean": "reward", "kl_mean": "KL", "grad_norm": "grad norm"}.get(metric, metric)
    advice = _NONFINITE_ADVICE.get(metric, "check the data and lower the learning rate")
    return f"{name} is {_fmt(value)} (must be finite) at step {{step}}: {advice}"


def _median(values: Iterable[float]) -> float:
    """Median of a short non-empty sequence (statistics.median's type dispatch costs more than the sort here)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    return f"{value:.3g}"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class AlertMonitor:
    """Feed flat metric records in step order (`observe`); get the alerts each one raises.

    Each rule computes whether its condition holds for the record and hands that to `_consider`, which keeps
    the rule's episode (onset, escalation, re-arm, cooldown). Values a rule only needs for an alert's text are
    computed in its `message` function, called only when an alert is raised. All state is bounded (fixed-size
    windows), so a record costs O(1) whatever the run length.

    A record with `eval_loss` (an evaluation log, `eval_*` keys) updates only the evaluation state (the
    `eval_divergence` rule); the training rules read only the training keys, so they are unaffected by it."""

    def __init__(self, rules: AlertRules | None = None) -> None:
        self.rules = rules or AlertRules()
        rules = self.rules
        self._history: dict[str, deque[float]] = {}
        self._history_steps: dict[str, deque[int]] = {}
        self._history_size = max(rules.window, rules.reward_window)
        self._pairs: deque[tuple[int, float, float]] = deque(maxlen=rules.hacking_window)
        self._reward_steps: deque[float] = deque(maxlen=rules.noise_window)
        self._reward_steps_sum = 0.0
        self._peaks: dict[str, tuple[float, int]] = {}  # metric -> (best rolling median, step it was measured at)
        self._start: dict[str, float] = {}  # metric -> median of its first reward_window values
        self._ratios: dict[str, deque[tuple[int, float]]] = {}
        self._episodes: dict[tuple[str, str], _Episode] = {}
        self._read = frozenset(_TRACKED + _RATIOS + rules.nonfinite_metrics + _PREFERENCE_NONFINITE)
        self._functions: dict[str, _RewardFn] = {}
        self._layout_keys: Any = None
        self._layout: tuple[tuple[str, str, str | None], ...] = ()
        self._evals: deque[tuple[int, float, float | None, float]] = deque(maxlen=rules.eval_divergence_evals)
        self._best_eval = math.inf
        self._train_sum = self._train_squares = 0.0
        self._train_count = 0
        self._per_function = not _PER_FUNCTION_RULES <= rules.disabled
        self._step = 0
        self._raised: list[dict[str, Any]] = []
        self._finite_now: dict[str, float] = {}  # the finite values of the record being observed
        self._values_now: dict[str, float] = {}  # all its values the rules read (NaN included)
        # the whole reward has (about) no variance: the zero_reward_variance rule's case, which the reward-collapse
        # and the per-function variance rules then leave alone (one alert for a dead or saturated reward)
        self._sparse = False

    def observe(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Alerts raised by one record (RLDKMetrics.to_dict() style, extra keys inline)."""
        self._step = int(as_number(record.get("step")) or 0)
        self._raised = []
        values = {
            key: number
            for key in self._read & record.keys()
            if (number := math.nan if (raw := record[key]) is None else as_number(raw)) is not None
        }
        if values:  # none in an evaluation record (its keys are all eval_*)
            self._training(record, values)
        if "eval_loss" in record:  # after the training part of a record that has both (a dashboard merges by step)
            self._evaluation(record)
        return self._raised

    def _training(self, record: Mapping[str, Any], values: dict[str, float]) -> None:
        """The training rules on the values they read from one record."""
        self._nonfinite(values)
        self._values_now = values
        finite = self._finite_now = {key: value for key, value in values.items() if math.isfinite(value)}
        self._kl(finite)
        self._entropy(finite)
        self._reward(finite)
        self._grad_norm(finite)
        self._clip_frac(finite)
        self._value_loss(finite)
        self._completions(finite)
        if self._per_function:
            self._reward_functions(record, finite)
        self._train_loss(finite)
        self._remember(values)

    # state -------------------------------------------------------------------------------------------------
    def _hist(self, metric: str) -> deque[float]:
        history = self._history.get(metric)
        if history is None:
            history = self._history[metric] = deque(maxlen=self._history_size)
            self._history_steps[metric] = deque(maxlen=self._history_size)
        return history

    def _remember(self, values: dict[str, float]) -> None:
        reward, kl = values.get("reward_mean"), values.get("kl_mean")
        rewards = self._hist("reward_mean")
        if reward is not None and math.isfinite(reward) and rewards:
            steps = self._reward_steps
            if len(steps) == steps.maxlen:
                self._reward_steps_sum -= steps[0]
            difference = abs(reward - rewards[-1])
            steps.append(difference)
            self._reward_steps_sum += difference
        step = self._step
        for metric in _TRACKED:
            value = values.get(metric)
            if value is not None and math.isfinite(value):
                self._hist(metric).append(value)
                self._history_steps[metric].append(step)
        window = self.rules.reward_window
        for metric in ("reward_mean", "entropy_mean"):
            # the peak is the best rolling median; the window grows from 3 values so that a fast early collapse
            # is measured against the start of the run, not against the already collapsed values
            history = self._hist(metric)
            if metric in values and len(history) >= _MIN_PEAK_WINDOW:
                recent = _median(list(history)[-window:])
                if recent > self._peaks.get(metric, (-math.inf, 0))[0]:
                    self._peaks[metric] = (recent, step)
                if metric not in self._start and len(history) >= window:
                    self._start[metric] = recent
        if reward is not None and kl is not None and math.isfinite(reward) and math.isfinite(kl):
            self._pairs.append((step, reward, kl))

    def _consider(
        self,
        type: str,
        metric: str,
        active: bool,
        value: float,
        threshold: float | None,
        badness: float,
        severity: str,
        message: Callable[[], str],
        patience: int = 1,
        window: tuple[int, int] | Callable[[], tuple[int, int]] | None = None,
        held: bool = False,
    ) -> None:
        """One rule's verdict on the record, de-duplicated: an alert at onset (after `patience` records and the
        cooldown), one escalation when `badness` reaches escalation_factor times its onset value, re-armed after
        rearm_steps clear records. `held`: not active but not clear either (hysteresis), the episode is kept as it
        is. `window` = (records looked at, the first one's step), the alert's evidence (default: this record), or a
        function giving it (called only for an alert raised).
        `message` builds the text (with `{step}`) only for an alert raised."""
        key = (type, metric)
        episode = self._episodes.get(key)
        if episode is None:
            if not active or type in self.rules.disabled:
                return  # nothing to remember for a condition that was never seen
            episode = self._episodes[key] = _Episode()
        rules, step = self.rules, self._step
        if not active:
            episode.streak = 0
            if episode.active and not held:
                episode.clear += 1
                if episode.clear >= rules.rearm_steps:
                    episode.active = False
            return
        episode.clear = 0
        episode.streak += 1
        if episode.active:
            onset = episode.onset_badness
            if not episode.escalated and math.isfinite(onset) and onset > 0 and badness >= rules.escalation_factor * onset:
                episode.escalated = True
                episode.last_alert_step = step
                severity = SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
                text = f"{message()} [escalated: {badness / onset:.1f}x worse than at step {episode.onset_step}]"
                self._raise(type, metric, value, threshold, severity, text, window)
            return
        if episode.streak < patience:
            return
        if episode.last_alert_step is not None and step - episode.last_alert_step < rules.cooldown_steps:
            return
        episode.active = True
        episode.escalated = False
        episode.onset_badness = badness
        episode.onset_step = step
        episode.last_alert_step = step
        self._raise(type, metric, value, threshold, severity, message(), window)

    def _raise(
        self, type: str, metric: str, value: float, threshold: float | None, severity: str, text: str,
        window: tuple[int, int] | Callable[[], tuple[int, int]] | None,
    ) -> None:
        step = self._step
        count, first = (window() if callable(window) else window) if window is not None else (1, step)
        self._raised.append({
            "type": type,
            "message": text.replace("{step}", str(step)),
            "step": step,
            "severity": severity,
            "metric": metric,
            "value": value,
            "threshold": threshold,
            "window": count,
            "window_start": first,
        })

    # rules -------------------------------------------------------------------------------------------------
    def _relative(self, metric: str) -> float | None:
        """Rolling median of the metric's previous values, once there are `min_history` of them."""
        history = self._history.get(metric)
        if not history or len(history) < self.rules.min_history:
            return None
        return _median(list(history)[-self.rules.window :])

    def _span(self, metric: str, previous: int) -> tuple[int, int]:
        """Evidence of a decision on `previous` earlier values of `metric` plus this record."""
        steps = self._history_steps.get(metric)
        if not steps or previous <= 0:
            return (1, self._step)
        previous = min(previous, len(steps))
        return (previous + 1, steps[-previous])

    def _loss_jump(self) -> tuple[float, float] | None:
        """(the loss of this record, the level above which it counts as a jump) when the loss jumped: above the
        median of its last `window` values by more than `loss_jump_sigma` robust standard deviations (1.4826 x
        the median absolute deviation) and `loss_jump_min_frac` of the median; else None."""
        loss = self._finite_now.get("loss")
        history = self._history.get("loss")
        if loss is None or not history or len(history) < self.rules.min_history:
            return None
        rules = self.rules
        recent = list(history)[-rules.window :]
        median = _median(recent)
        spread = 1.4826 * _median([abs(v - median) for v in recent])
        level = median + max(rules.loss_jump_sigma * spread, rules.loss_jump_min_frac * abs(median), 1e-12)
        return (loss, level) if loss > level else None

    def _nonfinite(self, values: dict[str, float]) -> None:
        preference = not _PREFERENCE_MARKERS.isdisjoint(values)
        for metric in self.rules.nonfinite_metrics:
            if metric in values and not (preference and metric == "reward_mean"):
                value = values[metric]
                self._consider(
                    "nonfinite", metric, not math.isfinite(value), value, None, math.inf, "critical",
                    functools.partial(_nonfinite_message, metric, value),
                )
        if preference:
            bad = [key for key in _PREFERENCE_NONFINITE if key in values and not math.isfinite(values[key])]
            loss = values.get("loss")
            metric = bad[0] if bad else next(key for key in _PREFERENCE_NONFINITE if key in values)
            value = values[metric]
            loss_finite = _finite(loss)
            self._consider(
                "nonfinite", metric, bool(bad), value, None, math.inf, "warning" if loss_finite else "critical",
                lambda: f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} {_fmt(value)} at step {{step}}"
                f"{' while the loss stays finite' if loss_finite else ''}: {_PREFERENCE_ADVICE}",
            )

    def _kl(self, values: dict[str, float]) -> None:
        if "kl_mean" not in values:
            return
        rules, kl = self.rules, values["kl_mean"]
        self._consider(
            "kl_high", "kl_mean", kl > rules.kl_max, kl, rules.kl_max, kl, "warning",
            lambda: f"KL {_fmt(kl)} > {_fmt(rules.kl_max)} at step {{step}}: the policy is drifting from the reference; "
            "lower the learning rate or raise beta",
            held=kl > _HOLD * rules.kl_max,
        )
        median = self._relative("kl_mean")
        if median is not None:
            # a signed KL estimate (RLOO's) scatters around a median near 0: then the ratio means nothing, and the
            # spike must clear the scatter (robust sd: 1.4826 x the median absolute deviation) too
            threshold = max(rules.kl_spike_factor * median, rules.kl_spike_min)
            if kl > threshold:  # only then can the scatter term matter
                recent = list(self._history["kl_mean"])[-rules.window :]
                spread = 1.4826 * _median([abs(v - median) for v in recent])
                threshold = max(threshold, median + rules.kl_spike_sigma * spread)
            active = kl > threshold
            jump = self._loss_jump() if active else None
            with_loss = (f", with a loss jump to {_fmt(jump[0])} (> {_fmt(jump[1])}) at the same step"
                         if jump else "")
            self._consider(
                "kl_spike", "kl_mean", active, kl, threshold, kl, "warning",
                lambda: f"KL spiked to {_fmt(kl)} (> {_fmt(threshold)}: {kl / median if median > 0 else math.inf:.3g}x "
                f"its recent median {_fmt(median)}) at step {{step}}{with_loss}: a sudden policy jump; look at that "
                "step's batch, lower the learning rate or raise beta",
                window=functools.partial(self._span, "kl_mean", rules.window),
            )
        self._hacking(values)

    def _hacking(self, values: dict[str, float]) -> None:
        rules = self.rules
        if "reward_mean" not in values or len(self._pairs) < rules.hacking_window - 1:
            return
        pairs = list(self._pairs)[-(rules.hacking_window - 1) :] + [(self._step, values["reward_mean"],
                                                                      values["kl_mean"])]
        # the start is the first half of the window, the end its last quarter (a jump shows within a few steps)
        edge, tail = max(1, len(pairs) // 2), max(1, len(pairs) // 4)
        reward_start = _median([r for _, r, _ in pairs[:edge]])
        reward_end = _median([r for _, r, _ in pairs[-tail:]])
        kl_start = kl_end = threshold = math.nan
        active = reward_end > reward_start  # only then are the KL medians needed
        if active:
            kl_start = _median([k for _, _, k in pairs[:edge]])
            kl_end = _median([k for _, _, k in pairs[-tail:]])
            threshold = max(kl_start + rules.hacking_kl_min_rise, rules.hacking_kl_ratio * kl_start)
            active = kl_end >= threshold
        self._consider(
            "reward_hacking", "kl_mean", active, kl_end, threshold, kl_end, "warning",
            lambda: f"reward rose {_fmt(reward_start)} -> {_fmt(reward_end)} while KL grew {_fmt(kl_start)} -> "
            f"{_fmt(kl_end)} (>= {_fmt(threshold)}) over the last {len(pairs)} steps, at step {{step}}: possible "
            "reward hacking; read recent completions for exploits, raise beta or tighten the reward",
            window=(len(pairs), pairs[0][0]),
        )

    def _entropy(self, values: dict[str, float]) -> None:
        if "entropy_mean" not in values:
            return
        rules, entropy = self.rules, values["entropy_mean"]
        peak, peak_step = self._peaks.get("entropy_mean", (None, self._step))
        threshold = rules.entropy_min if peak is None else max(rules.entropy_min, rules.entropy_collapse_ratio * peak)
        reason = f"its peak {_fmt(peak)} x {rules.entropy_collapse_ratio:g}" if peak is not None else "the minimum"
        self._consider(
            "entropy_collapse", "entropy_mean", entropy < threshold, entropy, threshold,
            1 / max(entropy, 1e-12), "warning",
            lambda: f"entropy {_fmt(entropy)} < {_fmt(threshold)} ({reason}) at step {{step}}: the policy is collapsing to "
            "near-deterministic outputs; raise the temperature or entropy bonus, lower the learning rate",
            window=functools.partial(self._since, "entropy_mean", peak_step), held=entropy * _HOLD < threshold,
        )

    def _since(self, metric: str, step: int) -> tuple[int, int]:
        """Evidence from `step` (the start of a peak's window, say) to this record."""
        steps = self._history_steps.get(metric)
        if not steps:
            return (1, self._step)
        count = sum(1 for s in steps if s >= step) + 1
        return (count, min(step, self._step))

    def _reward_noise(self) -> float:
        """Step-to-step noise of the reward as a standard deviation: mean |difference| / 1.128 over the last
        `noise_window` steps (exact for Gaussian noise; unlike the median difference, it sees the blips of a sparse
        reward, whose median difference is 0). Kept as a running sum: O(1)."""
        steps = self._reward_steps
        return self._reward_steps_sum / len(steps) / 1.128 if steps else 0.0

    def _reward(self, values: dict[str, float]) -> None:
        rules = self.rules
        sparse = self._sparse = False
        if "frac_reward_zero_std" in values:
            frac = values["frac_reward_zero_std"]
            level, span = self._windowed("frac_reward_zero_std", frac, rules.zero_variance_window)
            self._consider(
                "zero_reward_variance", "frac_reward_zero_std", level >= rules.zero_std_frac_max, level,
                rules.zero_std_frac_max, level, "warning",
                lambda: f"no learning signal: {level:.0%} of prompt groups got identical rewards (median of the last "
                f"{span[0]} logs, >= {rules.zero_std_frac_max:.0%}) at step {{step}}: {self._why_no_variance()}",
                rules.zero_variance_patience, window=span, held=level >= rules.zero_std_frac_clear,
            )
            sparse = self._sparse = level >= rules.zero_std_frac_clear
        elif "reward_std" in values:
            std = values["reward_std"]
            level, span = self._windowed("reward_std", std, rules.zero_variance_window)
            self._consider(
                "zero_reward_variance", "reward_std", level <= rules.reward_std_min, level, rules.reward_std_min, 1.0,
                "warning",
                lambda: f"no learning signal: reward std {_fmt(level)} <= {_fmt(rules.reward_std_min)} (median of the "
                f"last {span[0]} logs) at step {{step}}: {self._why_no_variance()}",
                rules.zero_variance_patience, window=span,
            )
            sparse = self._sparse = level <= rules.reward_std_min
        if "reward_mean" in values:
            history = [*self._hist("reward_mean"), values["reward_mean"]]
            peak, peak_step = self._peaks.get("reward_mean", (None, self._step))
            if peak is not None and len(history) >= rules.min_history:
                recent = _median(history[-rules.reward_recent_window :])
                start = self._start.get("reward_mean", history[0])
                noise = rules.reward_collapse_noise_factor * self._reward_noise()
                # a best that is not above the start by more than the noise is not a rise: measure from the start
                best = peak if peak - start > noise else start
                drop = best - recent
                allowed = max(rules.reward_collapse_frac * max(abs(best), best - start), noise)
                active = drop > allowed and recent < best and not sparse
                self._consider(
                    "reward_collapse", "reward_mean", active, recent, best - allowed, drop, "warning",
                    lambda: f"reward {_fmt(recent)} (median of last {rules.reward_recent_window}) fell below "
                    f"{_fmt(best - allowed)}, {_fmt(drop)} under its best {_fmt(best)}, at step {{step}}: the policy may "
                    "have collapsed; read recent completions, lower the learning rate or restore an earlier checkpoint",
                    window=functools.partial(self._since, "reward_mean", peak_step if best == peak else 0),
                    held=sparse or drop > _HOLD * allowed,
                )

    def _windowed(self, metric: str, value: float, size: int) -> tuple[float, tuple[int, int]]:
        """Median of the last `size` values of a ratio metric (this one included) and its evidence window."""
        recent = self._ratios.get(metric)
        if recent is None:
            recent = self._ratios[metric] = deque(maxlen=size)
        recent.append((self._step, value))
        return _median([v for _, v in recent]), (len(recent), recent[0][0])

    def _why_no_variance(self) -> str:
        """The zero-variance advice: the reward is saturated (at its best after rising), collapsed (it rose and fell
        back: the policy gives answers that all score the same) or dead (it never rose: a sparse reward)."""
        rewards = self._history.get("reward_mean")
        peak = self._peaks.get("reward_mean")
        start = self._start.get("reward_mean")
        if rewards and peak is not None and start is not None:
            recent = _median(list(rewards)[-self.rules.reward_window :])
            noise = self.rules.reward_collapse_noise_factor * self._reward_noise()
            if peak[0] - start > noise and recent >= peak[0] - noise:
                return (f"the reward saturated (median {_fmt(recent)}, its best {_fmt(peak[0])}): every completion gets "
                        "the top reward, the task is solved for this data; use harder prompts or stop here")
            if peak[0] - start > noise:
                return (f"the reward rose to {_fmt(peak[0])} and fell back to {_fmt(recent)}: the policy collapsed to "
                        "answers that all score the same; read recent completions, restore an earlier checkpoint, "
                        "lower the learning rate or raise beta")
        return ("the reward is dead (sparse: almost every completion of a prompt scores the same, usually 0); make the "
                "reward denser (partial credit), use easier prompts, raise num_generations or the temperature")

    def _grad_norm(self, values: dict[str, float]) -> None:
        if "grad_norm" not in values:
            return
        rules, norm = self.rules, values["grad_norm"]
        median = self._relative("grad_norm")
        threshold, reason, jump = rules.grad_norm_max, "the absolute limit", None
        if median is not None and median > 0 and norm > rules.grad_norm_floor:
            if norm > rules.grad_norm_spike_factor * median:
                threshold = min(threshold, max(rules.grad_norm_spike_factor * median, rules.grad_norm_floor))
                reason = f"{rules.grad_norm_spike_factor:g}x its median {_fmt(median)}"
            elif norm > rules.grad_norm_loss_jump_factor * median and (jump := self._loss_jump()) is not None:
                threshold = min(threshold, max(rules.grad_norm_loss_jump_factor * median, rules.grad_norm_floor))
                reason = (f"{rules.grad_norm_loss_jump_factor:g}x its median {_fmt(median)}, with the loss jumping to "
                          f"{_fmt(jump[0])} (> {_fmt(jump[1])}) at the same step")
        elif median is not None and median > 0:
            reason = f"the absolute limit; relative spikes count above {_fmt(rules.grad_norm_floor)}"
        window = functools.partial(self._span, "grad_norm", rules.window) if median is not None else None
        self._consider(
            "grad_norm_explosion", "grad_norm", norm > threshold, norm, threshold, norm, "warning",
            lambda: f"grad norm {_fmt(norm)} > {_fmt(threshold)} ({reason}) at step {{step}}: gradients are exploding; "
            "lower the learning rate, check max_grad_norm and the batch that caused it",
            window=window,
        )

    def _clip_frac(self, values: dict[str, float]) -> None:
        if "clip_frac" not in values:
            return
        rules, frac = self.rules, values["clip_frac"]
        self._consider(
            "clip_frac_high", "clip_frac", frac > rules.clip_frac_max, frac, rules.clip_frac_max, frac, "warning",
            lambda: f"clip fraction {_fmt(frac)} > {_fmt(rules.clip_frac_max)} at step {{step}}: updates leave the trust "
            "region; lower the learning rate or the number of PPO epochs / iterations per batch",
            held=frac > _HOLD * rules.clip_frac_max,
        )

    def _value_loss(self, values: dict[str, float]) -> None:
        if "value_loss" not in values:
            return
        median = self._relative("value_loss")
        if median is None:
            return
        rules, loss = self.rules, values["value_loss"]
        threshold = max(rules.value_loss_spike_factor * median, rules.value_loss_min)
        self._consider(
            "value_loss_spike", "value_loss", loss > threshold, loss, threshold, loss, "warning",
            lambda: f"value loss {_fmt(loss)} > {_fmt(threshold)} ({rules.value_loss_spike_factor:g}x its median "
            f"{_fmt(median)}) at step {{step}}: the critic is unstable; lower vf_coef or the learning rate, "
            "check reward scaling / whitening",
            window=functools.partial(self._span, "value_loss", rules.window),
        )

    def _completions(self, values: dict[str, float]) -> None:
        rules = self.rules
        if "completions/mean_length" in values:
            median = self._relative("completions/mean_length")
            if median is not None and median > 0:
                length = values["completions/mean_length"]
                threshold = rules.length_spike_factor * median
                self._consider(
                    "completion_length_blowup", "completions/mean_length", length > threshold, length, threshold,
                    length, "warning",
                    lambda: f"mean completion length {_fmt(length)} > {_fmt(threshold)} ({rules.length_spike_factor:g}x "
                    f"its median {_fmt(median)}) at step {{step}}: completions are blowing up (rambling or repetition); "
                    "read samples, add a length penalty or lower max_completion_length",
                    window=functools.partial(self._span, "completions/mean_length", rules.window),
                )
        if "completions/clipped_ratio" in values:
            ratio = values["completions/clipped_ratio"]
            self._consider(
                "completions_clipped", "completions/clipped_ratio", ratio > rules.clipped_ratio_max, ratio,
                rules.clipped_ratio_max, ratio, "warning",
                lambda: f"{ratio:.0%} of completions hit max_completion_length (> {rules.clipped_ratio_max:.0%}) at step "
                "{step}: answers are truncated, so their rewards judge unfinished text; raise max_completion_length or "
                "reward shorter answers",
                rules.clipped_ratio_patience,
                window=(rules.clipped_ratio_patience, self._step), held=ratio > _HOLD * rules.clipped_ratio_max,
            )

    # per reward function -----------------------------------------------------------------------------------
    def _function_keys(self, record: Mapping[str, Any]) -> tuple[tuple[str, str, str | None], ...]:
        """(name, mean key, std key or None) of each reward function in the record, parsed once per key layout:
        `rewards/<fn>/mean` + `rewards/<fn>/std` (TRL >= 0.17), or `rewards/<fn>` (TRL <= 0.16, not DPO's)."""
        keys = record.keys()
        if keys == self._layout_keys:
            return self._layout
        found: dict[str, list[str | None]] = {}
        preference = not _PREFERENCE_MARKERS.isdisjoint(keys)
        for key in keys:
            if not isinstance(key, str) or not key.startswith("rewards/"):
                continue
            parts = key.split("/")
            if len(parts) == 3 and parts[2] in ("mean", "std"):
                slot = found.setdefault(parts[1], [None, None])
                slot[0 if parts[2] == "mean" else 1] = key
            elif len(parts) == 2 and not preference and key not in _PREFERENCE_REWARD_KEYS:
                found.setdefault(parts[1], [None, None])[0] = key
        self._layout_keys = set(keys)
        self._layout = tuple((name, mean, std) for name, (mean, std) in sorted(found.items()) if mean is not None)
        return self._layout

    def _reward_functions(self, record: Mapping[str, Any], finite: dict[str, float]) -> None:
        layout = self._function_keys(record)
        if not layout:
            return
        # a NaN total reward is the `nonfinite` rule's (critical) alert; a function's NaN matters when the total
        # stays finite, as TRL's nansum over the functions makes it
        total_nan = "reward_mean" in self._values_now and "reward_mean" not in finite
        states: list[_RewardFn] = []
        mean_sum = 0.0
        all_finite = True
        for name, mean_key, std_key in layout:
            raw = record.get(mean_key)
            mean = math.nan if raw is None else raw if type(raw) is float else as_number(raw)
            if mean is None:
                continue
            state = self._functions.get(name)
            if state is None:
                state = self._functions[name] = _RewardFn(name, self.rules.reward_fn_window)
            if not math.isfinite(mean):
                all_finite = False
                self._consider(
                    "reward_fn_nonfinite", mean_key, not total_nan, mean, None, math.inf, "warning",
                    lambda name=name, mean=mean: f"reward function {name} returned {_fmt(mean)} for the whole batch at "
                    "step {step} (TRL logs None when every completion's reward is None/NaN; the total reward then "
                    "leaves it out): check that function (a caught exception, an answer it cannot parse, a missing "
                    "column)",
                    held=total_nan,
                )
                continue
            if state.nonfinite_key in self._episodes:
                self._consider("reward_fn_nonfinite", mean_key, False, mean, None, math.inf, "warning", str)
            mean_sum += mean
            std = None
            if std_key is not None:
                raw = record.get(std_key)
                std = raw if type(raw) is float else None if raw is None else as_number(raw)
                if std is not None and not math.isfinite(std):
                    std = None
            self._function_step(state, mean, std)
            states.append(state)
        reward = finite.get("reward_mean")
        if all_finite and reward is not None and len(states) >= 2 and \
                abs(reward - mean_sum) <= 1e-4 * (1.0 + abs(mean_sum)):
            self._dominance(states)

    def _function_step(self, state: _RewardFn, mean: float, std: float | None) -> None:
        rules = self.rules
        state.means.append(mean)
        state.steps.append(self._step)
        state.count += 1
        mean_level = _median(state.means)
        if state.count >= _MIN_PEAK_WINDOW:
            if mean_level > state.peak_mean:
                state.peak_mean = mean_level
            if mean_level < state.low_mean:
                state.low_mean = mean_level
        if state.start_mean is None and len(state.means) == state.means.maxlen:
            state.start_mean = mean_level
        state.std_window = None
        state.collapsed = False
        if std is None:
            return
        stds = state.stds
        stds.append(std)
        level = _median(stds)
        if len(stds) < stds.maxlen:
            return
        state.std_window = level
        if state.start_std is None:
            state.start_std = level
        peak_std = state.peak_std
        threshold = max(rules.reward_std_min, rules.reward_fn_std_collapse_ratio * peak_std)
        collapsed = level <= threshold
        state.collapsed = collapsed
        if level > peak_std:
            state.peak_std = level
        sparse = self._sparse
        held = sparse or level * _HOLD <= threshold
        if not (collapsed or held) and state.saturated_key not in self._episodes and \
                state.collapse_key not in self._episodes:
            return  # the common case: it varies, nothing to remember
        name = state.name
        window = (len(stds), state.steps[-len(stds)])
        start = state.start_mean if state.start_mean is not None else mean_level
        rise = state.peak_mean - start
        # saturated: its variance is gone with its mean at (within 10% of its range) its best, after rising to it
        saturated = collapsed and not sparse and \
            rise > rules.reward_fn_std_collapse_ratio * max(peak_std, abs(start), 1e-12) and \
            mean_level >= state.peak_mean - 0.1 * (state.peak_mean - state.low_mean)
        since = "" if peak_std > rules.reward_std_min else " (it never varied)"
        self._consider(
            "reward_fn_saturated", state.mean_key, saturated, mean_level, state.peak_mean, 1.0, "info",
            lambda: f"reward function {name} saturated at {_fmt(mean_level)}, its maximum (std {_fmt(level)} over the "
            f"last {window[0]} logs, its peak std {_fmt(peak_std)}) at step {{step}}: every completion gets its top "
            "score, so it no longer moves the advantages; fine if that skill is learned (drop it or lower its weight), "
            "else make it harder",
            window=window, held=sparse,
        )
        self._consider(
            "reward_fn_variance_collapse", state.std_key, collapsed and not sparse and not saturated, level, threshold,
            1.0, "warning",
            lambda: f"reward function {name}'s std collapsed to {_fmt(level)} (median of the last {window[0]} logs, <= "
            f"{_fmt(threshold)}; its peak {_fmt(peak_std)}){since} at mean {_fmt(mean_level)}, at step {{step}}: it "
            "gives every completion the same score and adds no learning signal; check that function (a constant "
            "return, a bug) or whether the policy collapsed to one kind of answer for it",
            window=window, held=held,
        )

    def _dominance(self, states: list[_RewardFn]) -> None:
        rules = self.rules
        levels = [state for state in states if state.std_window is not None]
        if len(levels) < 2:
            return
        total = sum(state.std_window * state.std_window for state in levels)
        if total <= 0:
            return
        top = max(levels, key=lambda state: state.std_window)
        level = top.std_window
        share = level * level / total
        held = share >= rules.reward_fn_dominance - _DOMINANCE_CLEAR_MARGIN
        if not held and top.dominant_key not in self._episodes:
            return
        # the others must still vary as they did at the start (one whose variance went, because it saturates or
        # collapses, is its own rule's case)
        others_vary = all(other.std_window >= _DOMINANCE_OTHERS_KEEP * (other.start_std or 0.0)
                          for other in levels if other is not top)
        window = (len(top.stds), top.steps[-len(top.stds)])
        self._consider(
            "reward_fn_dominant", top.std_key, share >= rules.reward_fn_dominance and others_vary and not self._sparse,
            share, rules.reward_fn_dominance, share, "warning",
            lambda: f"reward function {top.name} makes {share:.0%} of the reward variance (std {_fmt(level)} vs "
            + ", ".join(f"{other.name} {_fmt(other.std_window)}" for other in levels if other is not top)
            + f"; >= {rules.reward_fn_dominance:.0%}) at step {{step}}: the advantages follow it and hardly the others; "
            "rescale the functions (reward_weights) or normalise each one if the others matter",
            window=window, held=held,
        )

    # evaluation --------------------------------------------------------------------------------------------
    def _train_loss(self, values: dict[str, float]) -> None:
        """Accumulate the finite training losses since the last evaluation (their mean is the training loss that
        evaluation is compared with)."""
        loss = values.get("loss")
        if loss is not None and math.isfinite(loss):
            self._train_sum += loss
            self._train_squares += loss * loss
            self._train_count += 1

    def _evaluation(self, record: Mapping[str, Any]) -> None:
        """An evaluation record: its eval_loss against the previous evaluations and the mean training loss of the
        records between each two evaluations."""
        if "eval_reward" in record:
            return  # GRPO / RLOO evaluate their policy loss on sampled completions: not a held-out fit
        raw = record.get("eval_loss")
        value = None if raw is None else as_number(raw)
        if value is None or not math.isfinite(value):
            return
        rules = self.rules
        train, error = None, 0.0
        if self._train_count:
            n = self._train_count
            train = self._train_sum / n
            error = math.sqrt(max(0.0, self._train_squares / n - train * train) / max(1, n - 1))  # of the mean
        self._train_sum = self._train_squares = 0.0
        self._train_count = 0
        evals = self._evals
        evals.append((self._step, value, train, error))
        best = self._best_eval = min(self._best_eval, value)
        if len(evals) < evals.maxlen:
            return
        points = list(evals)
        rising = all(b[1] > a[1] for a, b in zip(points, points[1:]))
        first_train, last_train = points[0][2], points[-1][2]
        rise = value - best
        needed = max(rules.eval_divergence_min_rise * abs(best), 1e-6)
        # overfitting: the training loss did not rise with the eval loss (by less than half as much, give or take
        # two standard errors of the two means); when both rise, training itself is failing and other rules speak
        noise = 2 * math.hypot(points[0][3], points[-1][3])
        train_stays = first_train is not None and last_train is not None and \
            last_train - first_train <= 0.5 * (value - points[0][1]) + noise
        self._consider(
            "eval_divergence", "eval_loss", rising and train_stays and rise > needed, value, best + needed, rise,
            "warning",
            lambda: f"eval loss rose over the last {len(points)} evaluations ({' -> '.join(_fmt(p[1]) for p in points)}; "
            f"{_fmt(rise)} above its best {_fmt(best)}) while the training loss went {_fmt(first_train)} -> "
            f"{_fmt(last_train)}, at step {{step}}: the model is overfitting the training data; keep the best "
            "checkpoint (load_best_model_at_end, early stopping), train fewer epochs, lower the learning rate, add "
            "data or regularisation (weight decay, dropout; for DPO a higher beta)",
            window=(len(points), points[0][0]), held=rising and rise > needed,
        )
