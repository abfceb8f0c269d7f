"""RL health alerts over the mapped metric history: AlertRules (thresholds) and AlertMonitor (state). Pure, no I/O.

Every rule yields at most one alert when its condition starts (after `patience` observations) and at most one
escalation while it lasts (when it gets `escalation_factor` times worse); it re-arms only after the condition
was clear for `rearm_steps` observations, and a new onset waits `cooldown_steps` steps after the last alert.
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
)


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
    """Thresholds, cooldowns and de-duplication of the alert rules; override any by keyword,
    e.g. `AlertRules(kl_max=0.3, cooldown_steps=100, disabled={"clip_frac_high"})`.

    KL and entropy are per token for GRPO / RLOO / DPO / SFT; PPO logs them summed over the response (KTO its KL),
    so use `AlertRules.for_trainer("ppo")` or `("kto")` (the callback does when no rules are given)."""

    cooldown_steps: int = 50
    rearm_steps: int = 5
    escalation_factor: float = 2.0
    window: int = 20
    min_history: int = 10
    noise_window: int = 100
    nonfinite_metrics: tuple[str, ...] = ("loss", "reward_mean", "grad_norm", "kl_mean", "value_loss")
    kl_max: float = 0.2
    kl_spike_factor: float = 5.0
    kl_spike_min: float = 0.05
    entropy_min: float = 0.01
    entropy_collapse_ratio: float = 0.1
    reward_window: int = 10
    reward_collapse_frac: float = 0.5
    reward_collapse_noise_factor: float = 4.0
    zero_std_frac_max: float = 0.9
    reward_std_min: float = 1e-6
    zero_variance_patience: int = 3
    hacking_window: int = 20
    hacking_kl_ratio: float = 2.0
    hacking_kl_min_rise: float = 0.05
    grad_norm_max: float = 100.0
    grad_norm_spike_factor: float = 10.0
    clip_frac_max: float = 0.3
    value_loss_spike_factor: float = 5.0
    value_loss_min: float = 1e-3
    length_spike_factor: float = 2.0
    clipped_ratio_max: float = 0.5
    clipped_ratio_patience: int = 3
    disabled: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"AlertRules.{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("window", "min_history", "noise_window", "reward_window", "hacking_window", "rearm_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"AlertRules.{name} must be >= 1")
        if self.escalation_factor <= 1:
            raise ValueError("AlertRules.escalation_factor must be > 1")
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
        summed KL scale."""
        tuned: dict[str, Any] = {}
        if trainer_kind == "ppo":
            tuned = {"kl_max": 10.0, "kl_spike_min": 1.0, "hacking_kl_min_rise": 2.0}
        elif trainer_kind in ("reward", "sft"):
            tuned = {"disabled": frozenset({"reward_collapse", "zero_reward_variance", "reward_hacking"})}
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


_MIN_PEAK_WINDOW = 3
_TRACKED: tuple[str, ...] = (
    "reward_mean", "kl_mean", "entropy_mean", "grad_norm", "value_loss", "completions/mean_length"
)
_RATIOS: tuple[str, ...] = ("clip_frac", "frac_reward_zero_std", "reward_std", "completions/clipped_ratio")


_NONFINITE_ADVICE = {
    "loss": "training diverged; lower the learning rate, check for bad batches, keep gradient clipping on",
    "reward_mean": "a reward function returned NaN/None for every completion; check the reward functions",
    "grad_norm": "gradients overflowed; lower the learning rate, check the loss and mixed precision",
    "kl_mean": "the policy or reference log-probs overflowed; check the model outputs and precision",
    "value_loss": "the value head diverged; lower the learning rate or the value-loss coefficient",
}


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


class AlertMonitor:
    """Feed flat metric records in step order (`observe`); get the alerts each one raises.

    Each rule computes whether its condition holds for the record and hands that to `_consider`, which keeps
    the rule's episode (onset, escalation, re-arm, cooldown). Values a rule only needs for an alert's text are
    computed in its `message` function, called only when an alert is raised."""

    def __init__(self, rules: AlertRules | None = None) -> None:
        self.rules = rules or AlertRules()
        self._history: dict[str, deque[float]] = {}
        self._history_size = max(self.rules.window, self.rules.reward_window)
        self._pairs: deque[tuple[float, float]] = deque(maxlen=self.rules.hacking_window)
        self._reward_steps: deque[float] = deque(maxlen=self.rules.noise_window)
        self._peaks: dict[str, float] = {}
        self._episodes: dict[tuple[str, str], _Episode] = {}
        self._read = frozenset(_TRACKED + _RATIOS + self.rules.nonfinite_metrics)
        self._step = 0
        self._raised: list[dict[str, Any]] = []

    def observe(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Alerts raised by one record (RLDKMetrics.to_dict() style, extra keys inline)."""
        self._step = int(as_number(record.get("step")) or 0)
        self._raised = []
        values = {
            key: number
            for key in self._read & record.keys()
            if (number := math.nan if (raw := record[key]) is None else as_number(raw)) is not None
        }
        self._nonfinite(values)
        finite = {key: value for key, value in values.items() if math.isfinite(value)}
        self._kl(finite)
        self._entropy(finite)
        self._reward(finite)
        self._grad_norm(finite)
        self._clip_frac(finite)
        self._value_loss(finite)
        self._completions(finite)
        self._remember(values)
        return self._raised

    # state -------------------------------------------------------------------------------------------------
    def _hist(self, metric: str) -> deque[float]:
        history = self._history.get(metric)
        if history is None:
            history = self._history[metric] = deque(maxlen=self._history_size)
        return history

    def _remember(self, values: dict[str, float]) -> None:
        reward, kl = values.get("reward_mean"), values.get("kl_mean")
        rewards = self._hist("reward_mean")
        if reward is not None and math.isfinite(reward) and rewards:
            self._reward_steps.append(abs(reward - rewards[-1]))
        for metric in _TRACKED:
            value = values.get(metric)
            if value is not None and math.isfinite(value):
                self._hist(metric).append(value)
        for metric in ("reward_mean", "entropy_mean"):
            # the peak is the best rolling median; the window grows from 3 values so that a fast early collapse
            # is measured against the start of the run, not against the already collapsed values
            history = self._hist(metric)
            if metric in values and len(history) >= _MIN_PEAK_WINDOW:
                recent = _median(list(history)[-self.rules.reward_window :])
                self._peaks[metric] = max(self._peaks.get(metric, -math.inf), recent)
        if reward is not None and kl is not None and math.isfinite(reward) and math.isfinite(kl):
            self._pairs.append((reward, kl))

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
    ) -> None:
        """One rule's verdict on the record, de-duplicated: an alert at onset (after `patience` records and the
        cooldown), one escalation when `badness` reaches escalation_factor times its onset value, re-armed after
        rearm_steps clear records. `message` builds the text (with `{step}`) only for an alert raised."""
        key = (type, metric)
        episode = self._episodes.get(key)
        if episode is None:
            if not active or type in self.rules.disabled:
                return  # nothing to remember for a condition that was never seen
            episode = self._episodes[key] = _Episode()
        rules, step = self.rules, self._step
        if not active:
            episode.streak = 0
            if episode.active:
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
                self._raise(type, metric, value, threshold, severity, text)
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
        self._raise(type, metric, value, threshold, severity, message())

    def _raise(self, type: str, metric: str, value: float, threshold: float | None, severity: str, text: str) -> None:
        step = self._step
        self._raised.append({
            "type": type,
            "message": text.replace("{step}", str(step)),
            "step": step,
            "severity": severity,
            "metric": metric,
            "value": value,
            "threshold": threshold,
        })

    # rules -------------------------------------------------------------------------------------------------
    def _relative(self, metric: str) -> float | None:
        """Rolling median of the metric's previous values, once there are `min_history` of them."""
        history = self._history.get(metric)
        if not history or len(history) < self.rules.min_history:
            return None
        return _median(list(history)[-self.rules.window :])

    def _nonfinite(self, values: dict[str, float]) -> None:
        for metric in self.rules.nonfinite_metrics:
            if metric in values:
                value = values[metric]
                self._consider(
                    "nonfinite", metric, not math.isfinite(value), value, None, math.inf, "critical",
                    functools.partial(_nonfinite_message, metric, value),
                )

    def _kl(self, values: dict[str, float]) -> None:
        if "kl_mean" not in values:
            return
        rules, kl = self.rules, values["kl_mean"]
        self._consider(
            "kl_high", "kl_mean", kl > rules.kl_max, kl, rules.kl_max, kl, "warning",
            lambda: f"KL {_fmt(kl)} > {_fmt(rules.kl_max)} at step {{step}}: the policy is drifting from the reference; "
            "lower the learning rate or raise beta",
        )
        median = self._relative("kl_mean")
        if median is not None:
            threshold = max(rules.kl_spike_factor * median, rules.kl_spike_min)
            self._consider(
                "kl_spike", "kl_mean", kl > threshold, kl, threshold, kl, "warning",
                lambda: f"KL spiked to {_fmt(kl)} (> {_fmt(threshold)}, {rules.kl_spike_factor:g}x its recent median "
                f"{_fmt(median)}) at step {{step}}: a sudden policy jump; check the batch, lower the learning rate",
            )
        self._hacking(values)

    def _hacking(self, values: dict[str, float]) -> None:
        rules = self.rules
        if "reward_mean" not in values or len(self._pairs) < rules.hacking_window - 1:
            return
        pairs = list(self._pairs)[-(rules.hacking_window - 1) :] + [(values["reward_mean"], values["kl_mean"])]
        edge = min(rules.reward_window, len(pairs) // 2)
        reward_start = _median([r for r, _ in pairs[:edge]])
        reward_end = _median([r for r, _ in pairs[-edge:]])
        kl_start = kl_end = threshold = math.nan
        active = reward_end > reward_start  # only then are the KL medians needed
        if active:
            kl_start = _median([k for _, k in pairs[:edge]])
            kl_end = _median([k for _, k in pairs[-edge:]])
            threshold = max(kl_start + rules.hacking_kl_min_rise, rules.hacking_kl_ratio * kl_start)
            active = kl_end >= threshold
        self._consider(
            "reward_hacking", "kl_mean", active, kl_end, threshold, kl_end, "warning",
            lambda: f"reward rose {_fmt(reward_start)} -> {_fmt(reward_end)} while KL grew {_fmt(kl_start)} -> "
            f"{_fmt(kl_end)} (>= {_fmt(threshold)}) over the last {len(pairs)} steps, at step {{step}}: possible "
            "reward hacking; read recent completions for exploits, raise beta or tighten the reward",
        )

    def _entropy(self, values: dict[str, float]) -> None:
        if "entropy_mean" not in values:
            return
        rules, entropy = self.rules, values["entropy_mean"]
        peak = self._peaks.get("entropy_mean")
        threshold = rules.entropy_min if peak is None else max(rules.entropy_min, rules.entropy_collapse_ratio * peak)
        reason = f"its peak {_fmt(peak)} x {rules.entropy_collapse_ratio:g}" if peak is not None else "the minimum"
        self._consider(
            "entropy_collapse", "entropy_mean", entropy < threshold, entropy, threshold,
            1 / max(entropy, 1e-12), "warning",
            lambda: f"entropy {_fmt(entropy)} < {_fmt(threshold)} ({reason}) at step {{step}}: the policy is collapsing to "
            "near-deterministic outputs; raise the temperature or entropy bonus, lower the learning rate",
        )

    def _reward(self, values: dict[str, float]) -> None:
        rules = self.rules
        if "reward_mean" in values:
            history = [*self._hist("reward_mean"), values["reward_mean"]]
            peak = self._peaks.get("reward_mean")
            if peak is not None and len(history) >= rules.min_history:
                recent = _median(history[-rules.reward_window :])
                drop = peak - recent
                allowed = rules.reward_collapse_frac * abs(peak)
                active = drop > allowed
                if active and self._reward_steps:
                    # robust std of step-to-step noise: median |difference| / 0.954 for iid normal noise
                    allowed = max(allowed, rules.reward_collapse_noise_factor * _median(self._reward_steps) / 0.954)
                    active = drop > allowed
                self._consider(
                    "reward_collapse", "reward_mean", active, recent, peak - allowed, drop, "warning",
                    lambda: f"reward {_fmt(recent)} (median of last {rules.reward_window}) fell below "
                    f"{_fmt(peak - allowed)}, {_fmt(drop)} under its best {_fmt(peak)}, at step {{step}}: the policy may "
                    "have collapsed; read recent completions, lower the learning rate or restore an earlier checkpoint",
                )
        if "frac_reward_zero_std" in values:
            frac = values["frac_reward_zero_std"]
            self._consider(
                "zero_reward_variance", "frac_reward_zero_std", frac >= rules.zero_std_frac_max, frac,
                rules.zero_std_frac_max, frac, "warning",
                lambda: f"{frac:.0%} of prompt groups got identical rewards (>= {rules.zero_std_frac_max:.0%}) at step "
                "{step}: no advantage signal; make the reward less sparse, raise num_generations or temperature",
                rules.zero_variance_patience,
            )
        elif "reward_std" in values:
            std = values["reward_std"]
            self._consider(
                "zero_reward_variance", "reward_std", std <= rules.reward_std_min, std, rules.reward_std_min, 1.0,
                "warning",
                lambda: f"reward std {_fmt(std)} <= {_fmt(rules.reward_std_min)} at step {{step}}: every completion gets "
                "the same reward, so there is no learning signal; check the reward function",
                rules.zero_variance_patience,
            )

    def _grad_norm(self, values: dict[str, float]) -> None:
        if "grad_norm" not in values:
            return
        rules, norm = self.rules, values["grad_norm"]
        median = self._relative("grad_norm")
        threshold = rules.grad_norm_max
        if median is not None and median > 0:
            threshold = min(threshold, rules.grad_norm_spike_factor * median)
        reason = f"{rules.grad_norm_spike_factor:g}x its median {_fmt(median)}" if threshold != rules.grad_norm_max \
            else "the absolute limit"
        self._consider(
            "grad_norm_explosion", "grad_norm", norm > threshold, norm, threshold, norm, "warning",
            lambda: f"grad norm {_fmt(norm)} > {_fmt(threshold)} ({reason}) at step {{step}}: gradients are exploding; "
            "lower the learning rate, check max_grad_norm and the batch that caused it",
        )

    def _clip_frac(self, values: dict[str, float]) -> None:
        if "clip_frac" not in values:
            return
        rules, frac = self.rules, values["clip_frac"]
        self._consider(
            "clip_frac_high", "clip_frac", frac > rules.clip_frac_max, frac, rules.clip_frac_max, frac, "warning",
            lambda: f"clip fraction {_fmt(frac)} > {_fmt(rules.clip_frac_max)} at step {{step}}: updates leave the trust "
            "region; lower the learning rate or the number of PPO epochs / iterations per batch",
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
                )
        if "completions/clipped_ratio" in values:
            ratio = values["completions/clipped_ratio"]
            self._consider(
                "completions_clipped", "completions/clipped_ratio", ratio > rules.clipped_ratio_max, ratio,
                rules.clipped_ratio_max, ratio, "info",
                lambda: f"{ratio:.0%} of completions hit max_completion_length (> {rules.clipped_ratio_max:.0%}) at step "
                "{step}: answers are truncated; raise max_completion_length or reward shorter answers",
                rules.clipped_ratio_patience,
            )
