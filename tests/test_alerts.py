"""AlertRules / AlertMonitor: every rule fires on a synthetic bad history, stays quiet on a healthy one, and a
lasting condition gives at most an onset and one escalation. The patterns of real runs (issue 16), the evidence,
the per-reward-function and eval rules on realistic histories: tests/test_alert_rules.py."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rldk_widget.alerts import RULE_TYPES, SEVERITIES, AlertMonitor, AlertRules
from rldk_widget.trl_keys import log_record

from trl_logs import GRPO_LOG, HEALTHY_GRPO_LOG


def run(rows: list[dict], rules: AlertRules | None = None, start: int = 1) -> list[dict]:
    monitor = AlertMonitor(rules)
    alerts: list[dict] = []
    for offset, row in enumerate(rows):
        alerts.extend(monitor.observe({"step": start + offset, **row}))
    return alerts


def series(name: str, values) -> list[dict]:
    return [{name: value} for value in values]


def noisy(level: float, scale: float, n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, scale) for _ in range(n)]


def ramp(start: float, end: float, n: int) -> list[float]:
    return [start + (end - start) * i / (n - 1) for i in range(n)]


def functions(rows) -> list[dict]:
    """GRPO records of two reward functions, a and b, from [(mean, std) of a, (mean, std) of b] per step; `reward`
    is the sum of the finite means (TRL's nansum with the default weights)."""
    out = []
    for (mean_a, std_a), (mean_b, std_b) in rows:
        out.append({"rewards/a/mean": mean_a, "rewards/a/std": std_a, "rewards/b/mean": mean_b, "rewards/b/std": std_b,
                    "reward_mean": sum(m for m in (mean_a, mean_b) if m is not None)})
    return out


def evaluations(eval_losses, train) -> list[dict]:
    """Ten training records (loss falling through `train`'s value) before each evaluation record (eval_loss)."""
    out = []
    for eval_loss, loss in zip(eval_losses, train):
        out += [{"loss": loss + 0.01 * (9 - i)} for i in range(10)]
        out.append({"eval_loss": eval_loss, "eval_runtime": 1.0})
    return out


# Each rule: (rule type, a history that must fire it, a healthy history that must not).
CASES: dict[str, tuple[list[dict], list[dict]]] = {
    "nonfinite": (
        series("loss", [1.0] * 5 + [math.nan]),
        series("loss", noisy(1.0, 0.2, 200)),
    ),
    "kl_high": (
        series("kl_mean", [0.01] * 5 + [0.31]),
        series("kl_mean", [abs(v) for v in noisy(0.05, 0.02, 200)]),
    ),
    "kl_spike": (
        series("kl_mean", [0.01] * 10 + [0.08]),
        series("kl_mean", [max(0.0, v) for v in ramp(0.001, 0.08, 200)]),
    ),
    "entropy_collapse": (
        series("entropy_mean", [2.0] * 10 + [0.15]),
        series("entropy_mean", [v + e for v, e in zip(ramp(2.0, 0.5, 200), noisy(0.0, 0.05, 200))]),
    ),
    "reward_collapse": (
        series("reward_mean", [v + e for v, e in zip(ramp(0.0, 0.8, 30) + [0.1] * 10, noisy(0, 0.03, 40))]),
        series("reward_mean", noisy(0.0, 0.1, 300, seed=1))
        + series("reward_mean", [v + e for v, e in zip(ramp(0.1, 0.9, 200), noisy(0, 0.1, 200, seed=2))]),
    ),
    "zero_reward_variance": (
        series("frac_reward_zero_std", [0.2] * 3 + [1.0] * 3),
        series("frac_reward_zero_std", ([0.25, 0.5, 1.0, 0.0] * 50)),
    ),
    "reward_hacking": (
        [{"reward_mean": r, "kl_mean": k} for r, k in zip(ramp(0.1, 0.9, 40), [0.01] * 20 + ramp(0.01, 0.15, 20))],
        [{"reward_mean": r, "kl_mean": k} for r, k in zip(ramp(0.1, 0.9, 200), ramp(0.0, 0.04, 200))],
    ),
    "grad_norm_explosion": (
        series("grad_norm", noisy(1.0, 0.1, 10) + [50.0]),
        series("grad_norm", [abs(v) + 0.1 for v in noisy(1.0, 0.5, 300)]),
    ),
    "clip_frac_high": (
        series("clip_frac", [0.1, 0.1, 0.5]),
        series("clip_frac", [abs(v) for v in noisy(0.1, 0.05, 200)]),
    ),
    "value_loss_spike": (
        series("value_loss", [0.5] * 10 + [5.0]),
        series("value_loss", [v * (1 + e) for v, e in zip(ramp(1.0, 0.1, 200), noisy(0, 0.2, 200))]),
    ),
    "completion_length_blowup": (
        series("completions/mean_length", [50.0] * 10 + [150.0]),
        series("completions/mean_length", [v + e for v, e in zip(ramp(50, 90, 200), noisy(0, 5, 200))]),
    ),
    "completions_clipped": (
        series("completions/clipped_ratio", [0.1] * 3 + [0.9] * 3),
        series("completions/clipped_ratio", [0.1, 0.9, 0.2] * 60),
    ),
    "reward_fn_nonfinite": (
        functions([(0.5, 0.3), (0.2, 0.3)] for _ in range(5)) + functions([[(None, None), (0.2, 0.3)]]),
        functions([(0.5 + a, 0.3 + b), (0.2 - a, 0.3 - b)] for a, b in zip(noisy(0, 0.05, 200), noisy(0, 0.02, 200, 1))),
    ),
    "reward_fn_variance_collapse": (
        functions([(0.2, 0.3 + a), (0.5, 0.3)] for a in noisy(0, 0.02, 20)) + functions([(0.1, 0.0), (0.5, 0.3)]
                                                                                        for _ in range(3)),
        functions([(0.5 + a, max(0.05, 0.3 + b)), (0.5, 0.3)] for a, b in zip(noisy(0, 0.05, 200), noisy(0, 0.05, 200, 1))),
    ),
    "reward_fn_saturated": (
        functions([(m, 0.4), (0.5, 0.3)] for m in ramp(0.2, 0.8, 20)) + functions([(1.0, 0.0), (0.5, 0.3)]
                                                                                 for _ in range(3)),
        functions([(m, 0.4 - 0.2 * m), (0.5, 0.3)] for m in ramp(0.2, 0.8, 200)),
    ),
    "reward_fn_dominant": (
        functions([(0.5, 0.3), (0.5, 0.3)] for _ in range(10)) + functions([(5.0, 3.0), (0.5, 0.3)] for _ in range(3)),
        functions([(0.5, 0.3 + a), (0.5, 0.1 + b)] for a, b in zip(noisy(0, 0.03, 200), noisy(0, 0.01, 200, 1))),
    ),
    "eval_divergence": (
        evaluations([1.0, 0.9, 0.8, 0.85, 0.9], train=[1.0, 0.9, 0.8, 0.75, 0.7]),
        evaluations([1.0, 0.9, 0.8, 0.82, 0.81, 0.8, 0.79] * 3, train=ramp(1.0, 0.5, 21)),
    ),
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULE_TYPES)


@pytest.mark.parametrize("rule", RULE_TYPES)
def test_rule_fires_on_bad_history(rule):
    bad, _ = CASES[rule]
    fired = [a for a in run(bad) if a["type"] == rule]
    assert fired, f"{rule} did not fire"
    alert = fired[0]
    assert set(alert) >= {"type", "message", "step", "severity", "metric", "value", "threshold", "window",
                          "window_start"}
    assert 1 <= alert["window"] and alert["window_start"] <= alert["step"]
    assert alert["severity"] in SEVERITIES
    assert f"at step {alert['step']}" in alert["message"]
    assert "{step}" not in alert["message"]


@pytest.mark.parametrize("rule", RULE_TYPES)
def test_rule_quiet_on_healthy_history(rule):
    _, healthy = CASES[rule]
    assert [a for a in run(healthy) if a["type"] == rule] == []


@pytest.mark.parametrize("rule", RULE_TYPES)
def test_lasting_condition_gives_at_most_two_alerts(rule):
    bad, _ = CASES[rule]
    lasting = bad + [bad[-1]] * 100
    assert 1 <= len([a for a in run(lasting) if a["type"] == rule]) <= 2


def test_kl_message_states_value_threshold_and_advice():
    alerts = run(series("kl_mean", [0.01] * 39 + [0.31]))
    assert [a["type"] for a in alerts] == ["kl_high", "kl_spike"]
    alert = alerts[0]
    assert alert["step"] == 40
    assert alert["message"].startswith("KL 0.31 > 0.2 at step 40: ")
    assert "lower the learning rate or raise beta" in alert["message"]
    assert (alert["value"], alert["threshold"], alert["severity"]) == (0.31, 0.2, "warning")


def test_fast_early_entropy_collapse_is_measured_against_the_start():
    # collapsed within 4 steps: the peak comes from the first steps, not from the already collapsed median
    alerts = run(series("entropy_mean", [5.9, 4.0, 2.5, 1.3, 0.3, 0.2, 0.2, 0.2]))
    collapse = [a for a in alerts if a["type"] == "entropy_collapse"]
    assert collapse and collapse[0]["step"] == 5, alerts
    assert collapse[0]["threshold"] == pytest.approx(0.4), collapse[0]
    assert "its peak 4 x 0.1" in collapse[0]["message"], collapse[0]["message"]


def test_escalation_when_twice_as_bad_then_silence():
    alerts = run(series("kl_mean", ramp(0.25, 2.0, 100)))
    assert [a["type"] for a in alerts] == ["kl_high", "kl_high"]
    onset, escalation = alerts
    assert escalation["value"] >= 2 * onset["value"]
    assert (onset["severity"], escalation["severity"]) == ("warning", "critical")
    assert "escalated" in escalation["message"] and f"step {onset['step']}" in escalation["message"]


def test_rearms_after_clearing_and_cooldown():
    kl = [0.3] * 10 + [0.05] * 60 + [0.3] * 5
    steps = [a["step"] for a in run(series("kl_mean", kl)) if a["type"] == "kl_high"]
    assert steps == [1, 71]


def test_no_rearm_without_enough_clear_steps():
    rules = AlertRules(cooldown_steps=0, rearm_steps=5)
    kl = ([0.3] * 5 + [0.05] * 3) * 10
    assert len(run(series("kl_mean", kl), rules)) == 1


def test_cooldown_limits_flapping_condition():
    rules = AlertRules(rearm_steps=1, cooldown_steps=50)
    steps = [a["step"] for a in run(series("clip_frac", [0.5, 0.1] * 60), rules)]
    assert steps == [1, 51, 101]


def test_nan_reward_logged_as_none_is_critical():
    rows = [{"reward_mean": 0.5, "loss": 0.1}] * 4 + [{"reward_mean": None, "loss": 0.1}]
    (alert,) = run(rows)
    assert (alert["type"], alert["metric"], alert["severity"], alert["step"]) == (
        "nonfinite", "reward_mean", "critical", 5)
    assert math.isnan(alert["value"])


def test_infinite_grad_norm_is_critical_once():
    alerts = run(series("grad_norm", [1.0] * 5 + [math.inf] * 50))
    assert [(a["type"], a["severity"]) for a in alerts] == [("nonfinite", "critical")]


def test_zero_variance_from_reward_std_when_no_group_fraction():
    alerts = run(series("reward_std", [0.3] * 5 + [0.0] * 5))
    assert [(a["type"], a["metric"]) for a in alerts] == [("zero_reward_variance", "reward_std")]


def test_absolute_grad_norm_limit_without_history():
    (alert,) = run(series("grad_norm", [150.0]))
    assert alert["type"] == "grad_norm_explosion" and alert["threshold"] == 100.0


def test_thresholds_are_overridable():
    assert run(series("kl_mean", [0.01] * 5 + [0.31]), AlertRules(kl_max=0.5, kl_spike_factor=50)) == []
    assert run(series("clip_frac", [0.25]), AlertRules(clip_frac_max=0.2))[0]["threshold"] == 0.2


def test_disabled_rules_stay_quiet():
    assert run(series("clip_frac", [0.9]), AlertRules(disabled={"clip_frac_high"})) == []


def test_for_trainer_defaults():
    ppo = AlertRules.for_trainer("ppo")
    assert ppo.kl_max > AlertRules().kl_max
    assert run(series("kl_mean", [3.0] * 30), ppo) == []
    reward = AlertRules.for_trainer("reward", cooldown_steps=10)
    assert "reward_collapse" in reward.disabled and reward.cooldown_steps == 10
    assert AlertRules.for_trainer(None) == AlertRules()


POLICY_REWARD_RULES = {"reward_collapse", "zero_reward_variance", "reward_hacking"}


@pytest.mark.parametrize("kind", ["sft", "reward"])
def test_for_trainer_sft_and_reward_turn_off_only_the_policy_reward_rules(kind):
    rules = AlertRules.for_trainer(kind)
    assert rules.disabled == POLICY_REWARD_RULES and dataclasses.replace(rules, disabled=frozenset()) == AlertRules()
    for rule in RULE_TYPES:
        bad, _ = CASES[rule]
        fired = {a["type"] for a in run(bad, rules)}
        if rule in POLICY_REWARD_RULES:
            assert rule not in fired, f"{kind}: {rule} fired although the {kind} rules turn it off"
            assert rule in {a["type"] for a in run(bad)}, f"{rule}: the case does not fire under the defaults"
        else:
            assert rule in fired, f"{kind}: {rule} no longer fires"
    overridden = AlertRules.for_trainer(kind, cooldown_steps=7)
    assert overridden.cooldown_steps == 7 and overridden.disabled == POLICY_REWARD_RULES


def test_the_shared_grpo_logs_alert_as_documented():
    """tests/trl_logs.py: HEALTHY_GRPO_LOG repeated raises nothing; the captured GRPO_LOG (every completion clipped)
    raises completions_clipped once."""
    def history(log):
        return [log_record(log, step, "grpo", "r", 1.0) for step in range(1, 201)]

    assert run(history(HEALTHY_GRPO_LOG), AlertRules.for_trainer("grpo")) == []
    assert [a["type"] for a in run(history(GRPO_LOG), AlertRules.for_trainer("grpo"))] == ["completions_clipped"]


@pytest.mark.parametrize(
    "kwargs", [{"kl_max": -1}, {"kl_max": math.nan}, {"window": 0}, {"escalation_factor": 1.0}, {"disabled": {"x"}}]
)
def test_invalid_rules_raise(kwargs):
    with pytest.raises(ValueError):
        AlertRules(**kwargs)


def test_records_without_metrics_are_ignored():
    assert run([{}, {"loss": "n/a"}, {"epoch": 1.0}]) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=300))
def test_onsets_respect_cooldown_and_escalate_once(values):
    rules = AlertRules()
    alerts = [a for a in run(series("kl_mean", values), rules) if a["type"] == "kl_high"]
    last_onset = None
    escalations = 0
    for alert in alerts:
        if "escalated" in alert["message"]:
            escalations += 1
            assert last_onset is not None and escalations == 1
        else:
            assert last_onset is None or alert["step"] - last_onset >= rules.cooldown_steps
            last_onset, escalations = alert["step"], 0
