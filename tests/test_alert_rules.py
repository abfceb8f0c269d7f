"""The alert rules against the patterns issue 16 lists (must alert / must stay silent), on synthetic histories
(`rldk_widget.synthetic_runs`: warm-up, learning-rate decay, sampled-batch noise) and on real tiny-model TRL 1.16
runs (`tests/fixtures/alert_runs`, written by `benchmarks/alert_eval.py --save-runs`): the evidence every alert
carries, at most two alerts for a condition that lasts 100 steps, the per-reward-function checks, train/eval
divergence (through RLDKCallback too), bounded state."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from rldk_widget.alerts import RULE_TYPES, SEVERITIES, AlertMonitor, AlertRules
from rldk_widget.callback import RLDKCallback
from rldk_widget.store import RunStore
from rldk_widget.synthetic_runs import (
    FAULTS,
    ISSUE_PATTERNS,
    eval_logs,
    healthy_run,
    inject,
    records,
    train_logs,
)

FIXTURES = Path(__file__).parent / "fixtures" / "alert_runs"
REAL_RUNS = sorted(path.stem for path in FIXTURES.glob("*.json"))


def observe(history, kind, rules: AlertRules | None = None) -> list[dict]:
    monitor = AlertMonitor(rules or AlertRules.for_trainer(kind))
    return [alert for record in records(history, kind) for alert in monitor.observe(record)]


def of(alerts, rule: str) -> list[dict]:
    return [a for a in alerts if a["type"] == rule]


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# ---- the issue's patterns, one test each ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_spike_of_50x_with_a_loss_spike_alerts_at_that_step(seed):
    base = healthy_run("grpo", 1000, seed)
    history = inject(base, "kl_spike", 500, 50.0, kind="grpo")
    spike = next(log for log in history if log["step"] == 500)
    before = [log["kl"] for log in base if 480 <= log["step"] < 500]
    assert spike["kl"] == pytest.approx(50 * sorted(before)[10], rel=0.2)  # ~50x its median, one step
    assert spike["loss"] > max(log["loss"] for log in base if 480 <= log["step"] < 500)
    (alert,) = of(observe(history, "grpo"), "kl_spike")
    assert alert["step"] == 500 and alert["severity"] == "warning"
    assert "loss jump" in alert["message"] and alert["value"] == spike["kl"]
    assert observe(base, "grpo") == []


@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_nan_logps_with_a_finite_loss_alerts_with_log_prob_advice(seed):
    history = inject(healthy_run("dpo", 1000, seed), "nan_logps", 400, 1.0, duration=10, kind="dpo")
    nan_steps = [log["step"] for log in history if log.get("logps/chosen", 0) is None]
    assert nan_steps == [400, 403, 409]
    assert all(math.isfinite(log["loss"]) for log in train_logs(history))
    (alert,) = observe(history, "dpo")  # the three NaN steps are one condition (cooldown)
    assert (alert["type"], alert["step"], alert["metric"], alert["severity"]) == (
        "nonfinite", 400, "logps/chosen", "warning")
    assert "log-probs" in alert["message"] and "loss stays finite" in alert["message"]
    assert "reward function" not in alert["message"]
    assert "max_length" in alert["message"]  # truncation is the usual cause


def test_dpo_nan_logps_with_a_nan_loss_is_critical():
    history = inject(healthy_run("dpo", 300, 0), "nan_logps", 200, 1.0, duration=1, kind="dpo")
    history = inject(history, "nan_loss", 200, 1.0, kind="dpo")
    alerts = observe(history, "dpo")
    assert {(a["metric"], a["severity"]) for a in alerts} == {("loss", "critical"), ("logps/chosen", "critical")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_grpo_reward_alerts_once_as_a_dead_reward_not_a_collapse(seed):
    history = healthy_run("grpo", 1000, seed, sparse=True)
    fractions = sorted(log["frac_reward_zero_std"] for log in history)
    assert fractions[len(fractions) // 10] >= 0.85  # nearly every group identical, the whole run
    alerts = observe(history, "grpo")
    assert [a["type"] for a in alerts] == ["zero_reward_variance"]
    assert "no learning signal" in alerts[0]["message"] and "dead" in alerts[0]["message"]
    assert alerts[0]["step"] <= 10


def test_zero_variance_after_a_rise_says_saturated():
    history = inject(healthy_run("grpo", 600, 0), "zero_variance", 400, 1.0, kind="grpo")
    for log in history:  # the reward at its best from the onset on: every completion gets the top score
        if log["step"] >= 400:
            log["reward"] = 2.0
    (alert,) = of(observe(history, "grpo"), "zero_reward_variance")
    assert "saturated" in alert["message"] and "dead" not in alert["message"]


@pytest.mark.parametrize("seed", [0, 1])
def test_95_percent_of_completions_clipped_is_a_warning(seed):
    history = healthy_run("grpo", 1000, seed, clipped=0.95)
    assert sorted(log["completions/clipped_ratio"] for log in history)[500] == pytest.approx(0.95, abs=0.05)
    alerts = observe(history, "grpo")
    assert [(a["type"], a["severity"]) for a in alerts] == [("completions_clipped", "warning")]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dpo_grad_norm_spikes_of_5_to_10x_with_loss_jumps_alert(seed):
    history = healthy_run("dpo", 1000, seed)
    for onset, size in ((300, 5.0), (500, 7.0), (700, 10.0)):
        history = inject(history, "grad_spike_with_loss", onset, size, kind="dpo")
    alerts = of(observe(history, "dpo"), "grad_norm_explosion")
    assert [a["step"] for a in alerts] == [300, 500, 700]
    assert all("loss" in a["message"] for a in alerts[:2])  # the 5x and 7x ones alert because the loss jumped


def test_grad_norm_spike_without_a_loss_jump_needs_10x():
    history = inject(healthy_run("dpo", 600, 0), "grad_explosion", 300, 6.0, kind="dpo")
    assert of(observe(history, "dpo"), "grad_norm_explosion") == []
    history = inject(healthy_run("dpo", 600, 0), "grad_explosion", 300, 12.0, kind="dpo")
    assert [a["step"] for a in of(observe(history, "dpo"), "grad_norm_explosion")] == [300]


def zero_advantage_run(seed: int = 0) -> list[dict]:
    return ISSUE_PATTERNS["grpo_zero_advantage_grad_jump"].build(seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_grad_norm_jump_from_1e3_to_01_with_zero_advantages_is_not_an_explosion(seed):
    history = zero_advantage_run(seed)
    norms = sorted(log["grad_norm"] for log in history)
    assert norms[len(norms) // 2] < 2e-3 and norms[-1] > 0.08  # 1e-3, with jumps to 0.1 (50-100x)
    alerts = observe(history, "grpo")
    assert of(alerts, "grad_norm_explosion") == []
    assert [a["type"] for a in alerts] == ["zero_reward_variance"]  # what is wrong: no advantage signal


def test_the_grad_norm_floor_is_a_rule_parameter():
    history = zero_advantage_run()
    alerts = of(observe(history, "grpo", AlertRules.for_trainer("grpo", grad_norm_floor=0.01)), "grad_norm_explosion")
    assert alerts and alerts[0]["value"] > 0.05 and alerts[0]["threshold"] >= 0.01


@pytest.mark.parametrize(("kind", "steps"), [("sft", 300), ("sft", 1000), ("orpo", 300), ("orpo", 1000)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smooth_sft_and_orpo_runs_stay_silent(kind, steps, seed):
    history = healthy_run(kind, steps, seed)
    assert len(eval_logs(history)) >= 10
    assert observe(history, kind) == []


@pytest.mark.parametrize("name", sorted(ISSUE_PATTERNS))
def test_every_issue_pattern_as_the_benchmark_checks_it(name):
    pattern = ISSUE_PATTERNS[name]
    for seed in (0, 1):
        assert pattern.check(observe(pattern.build(seed), pattern.kind)) == [], (name, seed)


# ---- per reward function ----------------------------------------------------------------------------------------
def test_one_reward_function_none_for_a_batch_is_named_while_the_total_stays_finite():
    history = inject(healthy_run("grpo", 600, 0), "fn_none", 300, 1.0, kind="grpo")
    log = next(log for log in history if log["step"] == 300)
    assert log["rewards/accuracy/mean"] is None and math.isfinite(log["reward"])
    alerts = observe(history, "grpo")
    assert [(a["type"], a["metric"], a["step"], a["severity"]) for a in alerts] == [
        ("reward_fn_nonfinite", "rewards/accuracy/mean", 300, "warning")]
    assert "accuracy" in alerts[0]["message"] and "None" in alerts[0]["message"]


def test_early_trl_per_function_keys_none_is_named_too():
    """TRL <= 0.16 logs `rewards/<fn>` (no /mean, no /std): the NaN check still works there."""
    logs = [{"step": s, "loss": 0.01, "reward": 0.9, "reward_std": 0.3, "rewards/fmt": 0.5, "rewards/acc": 0.4,
             "completion_length": 80.0} for s in range(1, 30)]
    logs[20] = {**logs[20], "rewards/acc": None, "reward": 0.5}
    alerts = observe(logs, "grpo")
    assert [(a["type"], a["metric"], a["step"]) for a in alerts] == [("reward_fn_nonfinite", "rewards/acc", 21)]


def test_one_function_variance_collapse():
    history = inject(healthy_run("grpo", 600, 0), "fn_variance_collapse", 300, 0.0, kind="grpo")
    alerts = observe(history, "grpo")
    (alert,) = of(alerts, "reward_fn_variance_collapse")
    assert alert["metric"] == "rewards/accuracy/std" and 300 <= alert["step"] <= 303 and alert["value"] == 0.0
    assert (alert["window"], alert["window_start"]) == (5, alert["step"] - 4)


def test_one_function_dominating_the_variance():
    history = inject(healthy_run("grpo", 600, 0), "fn_dominant", 300, 10.0, kind="grpo")
    (alert,) = observe(history, "grpo")
    assert (alert["type"], alert["metric"]) == ("reward_fn_dominant", "rewards/accuracy/std")
    assert alert["value"] >= 0.95 and 300 <= alert["step"] <= 303 and "format" in alert["message"]


def test_dominance_is_not_checked_when_the_reward_is_not_the_plain_sum():
    """With reward_weights the logs do not say each function's weight: the share cannot be computed."""
    history = inject(healthy_run("grpo", 600, 0), "fn_dominant", 300, 10.0, kind="grpo")
    for log in history:
        log["reward"] = 0.5 * log["rewards/accuracy/mean"] + 2.0 * log["rewards/format/mean"]
    assert of(observe(history, "grpo"), "reward_fn_dominant") == []


def test_a_function_at_its_maximum_with_no_variance_is_saturated_info():
    history = inject(healthy_run("grpo", 600, 0), "fn_saturated", 300, 0.0, kind="grpo")
    (alert,) = observe(history, "grpo")
    assert (alert["type"], alert["severity"], alert["metric"]) == (
        "reward_fn_saturated", "info", "rewards/accuracy/mean")
    assert 300 <= alert["step"] <= 303 and "no longer moves the advantages" in alert["message"]


def test_a_function_that_saturates_does_not_make_the_other_dominant():
    """A format reward learned to ~100%: its std falls, the accuracy reward has all the variance. That is the
    format reward saturating, not the accuracy reward dominating."""
    rows = []
    for step in range(1, 400):
        p = min(0.999, 0.5 + step / 400)
        rows.append({"step": step, "loss": 0.01, "rewards/acc/mean": 0.4, "rewards/acc/std": 0.49,
                     "rewards/fmt/mean": p, "rewards/fmt/std": math.sqrt(p * (1 - p)), "reward": 0.4 + p,
                     "reward_std": 0.5, "frac_reward_zero_std": 0.2})
    assert of(observe(rows, "grpo"), "reward_fn_dominant") == []


# ---- train / eval divergence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sft", "dpo", "reward"])
def test_eval_loss_rising_while_the_train_loss_falls_alerts_within_two_evaluations(kind):
    base = healthy_run(kind, 2000, 0, eval_every=50)
    history = inject(base, "eval_divergence", 1000, 0.03, kind=kind)
    alerts = observe(history, kind)
    (alert, *rest) = of(alerts, "eval_divergence")
    assert alert["step"] in (1000, 1050) and len(rest) <= 1  # the second faulty evaluation, escalated at most once
    assert alert["metric"] == "eval_loss" and (alert["window"], alert["window_start"]) == (3, alert["step"] - 100)
    assert "overfitting" in alert["message"]
    assert observe(base, kind) == []


def test_eval_loss_rising_with_the_train_loss_is_not_overfitting():
    history = inject(healthy_run("sft", 2000, 0, eval_every=50), "eval_divergence", 1000, 0.03, kind="sft")
    for log in history:  # the train loss rises as much as the eval loss (5% per evaluation): training itself fails
        if "loss" in log and log["step"] > 950:
            log["loss"] *= 1 + 0.05 * ((log["step"] - 951) // 50 + 1)
    assert of(observe(history, "sft"), "eval_divergence") == []


def test_grpo_evaluations_are_not_checked_for_divergence():
    logs = []
    for step in range(1, 200):
        logs.append({"step": step, "loss": 0.1 - step * 1e-4, "reward": 0.5, "reward_std": 0.3})
        if step % 10 == 0:
            logs.append({"step": step, "eval_loss": 0.01 * step, "eval_reward": 0.5, "eval_runtime": 1.0})
    assert of(observe(logs, "grpo", AlertRules()), "eval_divergence") == []


def test_eval_records_leave_the_training_rules_alone():
    """The same training records with and without evaluation records in between raise the same training alerts."""
    base = healthy_run("sft", 1500, 1, eval_every=20)
    history = inject(base, "grad_explosion", 700, 20.0, kind="sft")
    history = inject(history, "nan_loss", 900, 1.0, kind="sft")
    with_evals = observe(history, "sft")
    without = observe(train_logs(history), "sft")
    assert [a["type"] for a in without] == ["grad_norm_explosion", "nonfinite"]
    assert with_evals == without


def test_eval_logs_reach_the_monitor_through_the_callback(tmp_path):
    """RLDKCallback feeds evaluation logs to its monitor: the divergence alert is in the alerts file."""
    history = inject(healthy_run("sft", 600, 0, eval_every=30), "eval_divergence", 300, 0.05, kind="sft")
    cb = RLDKCallback(tmp_path, run_id="sft", write_interval=0)
    args = type("SFTConfig", (), {})()
    state = SimpleNamespace(is_world_process_zero=True, max_steps=600, global_step=0)
    cb.on_train_begin(args, state, None)
    for log in history:
        state.global_step = log["step"]
        cb.on_log(args, state, None, logs={k: v for k, v in log.items() if k != "step"})
    cb.on_train_end(args, state, None)
    alerts = RunStore(tmp_path, "sft").read_all().alerts
    assert [a["type"] for a in alerts][:1] == ["eval_divergence"] and alerts[0]["step"] in (300, 330)
    assert alerts[0]["run_id"] == "sft" and alerts[0]["metric"] == "eval_loss"


# ---- evidence, de-duplication, bounded state --------------------------------------------------------------------
def _alerts_with_records():
    """(alert, the record at its step) for one injected case of every fault and every issue pattern."""
    out = []
    for fault in FAULTS.values():
        kind = sorted(fault.kinds)[0]
        base = healthy_run(kind, 600, 0)
        history = inject(base, fault.name, 300, fault.train_sizes[-1], duration=100, kind=kind)
        recs = records(history, kind)
        monitor = AlertMonitor(AlertRules.for_trainer(kind))
        for record in recs:
            out += [(alert, record) for alert in monitor.observe(record)]
    return out


ALERTS_WITH_RECORDS = _alerts_with_records()


def test_every_rule_is_exercised_by_a_fault():
    assert {alert["type"] for alert, _ in ALERTS_WITH_RECORDS} == set(RULE_TYPES)


@pytest.mark.parametrize("index", range(len(ALERTS_WITH_RECORDS)))
def test_every_alert_carries_its_evidence(index):
    alert, record = ALERTS_WITH_RECORDS[index]
    assert set(alert) == {"type", "message", "step", "severity", "metric", "value", "threshold", "window",
                          "window_start"}
    assert alert["severity"] in SEVERITIES and alert["step"] == record["step"]
    assert alert["metric"] in record, "the metric an alert names is a series of the run at that step"
    assert isinstance(alert["value"], float)
    assert alert["threshold"] is None or math.isfinite(alert["threshold"])
    assert isinstance(alert["window"], int) and alert["window"] >= 1
    assert isinstance(alert["window_start"], int) and alert["window_start"] <= alert["step"]
    assert f"at step {alert['step']}" in alert["message"]


def test_evidence_of_a_relative_rule_is_its_median_window():
    history = inject(healthy_run("grpo", 600, 0), "kl_spike", 300, 50.0, kind="grpo")
    (alert,) = of(observe(history, "grpo"), "kl_spike")
    assert (alert["window"], alert["window_start"]) == (21, 280)  # the 20 records of the median and this one
    assert alert["threshold"] == pytest.approx(5 * sorted(log["kl"] for log in history if 280 <= log["step"] < 300)[10]
                                               if alert["threshold"] > 0.02 else 0.02, rel=0.1)


LASTING = [name for name, fault in FAULTS.items() if fault.lasting]


@pytest.mark.parametrize("name", LASTING)
def test_a_condition_lasting_100_steps_gives_at_most_two_alerts_of_its_rule(name):
    fault = FAULTS[name]
    for kind in sorted(fault.kinds):
        base = healthy_run(kind, 800, 3)
        if not fault.applies(kind, base):
            continue
        history = inject(base, name, 300, fault.test_sizes[0], duration=100, kind=kind)
        alerts = observe(history, kind)
        for rule in fault.expected:
            assert len([a for a in of(alerts, rule) if 300 <= a["step"] < 400]) <= 2, (name, kind, rule)
        assert any(a["type"] in fault.expected for a in alerts), (name, kind)


def test_monitor_state_is_bounded():
    """observe() is O(1): the monitor's state after 20,000 records is the size it had after 2,000."""
    recs = records(healthy_run("grpo", 20_000, 0), "grpo")
    monitor = AlertMonitor(AlertRules.for_trainer("grpo"))
    sizes = {}
    for index, record in enumerate(recs, 1):
        monitor.observe(record)
        if index in (2_000, 20_000):
            sizes[index] = len(pickle.dumps(monitor))
    assert sizes[20_000] <= 1.1 * sizes[2_000]


# ---- real tiny-model TRL 1.16 runs ------------------------------------------------------------------------------
def test_the_real_runs_are_there():
    assert {load(name)["kind"] for name in REAL_RUNS} == {"grpo", "rloo", "dpo", "sft", "reward", "orpo", "kto", "cpo"}
    for name in REAL_RUNS:
        run = load(name)
        assert run["source"] == "captured" and run["versions"]["trl"] == "1.16.0"
        assert len(train_logs(run["log_history"])) >= 200


@pytest.mark.parametrize("name", REAL_RUNS)
def test_healthy_real_runs_raise_nothing(name):
    run = load(name)
    assert observe(run["log_history"], run["kind"]) == []


@pytest.mark.parametrize("name", REAL_RUNS)
def test_faults_injected_into_real_runs_are_named_within_5_steps(name):
    run = load(name)
    kind, history = run["kind"], run["log_history"]
    onset = train_logs(history)[len(train_logs(history)) // 2]["step"]
    checked = 0
    for fault in FAULTS.values():
        if not fault.applies(kind, history):
            continue
        size = fault.test_sizes[-1]
        injected = inject(history, fault.name, onset, size, duration=100, kind=kind)
        onset_record = next(r for r in records(injected, kind) if r["step"] == onset and "eval_loss" not in r)
        alerts = observe(injected, kind)
        if fault.under_floor(onset_record, kind):  # e.g. 50x the tiny model's KL of 1e-4: not a spike by definition
            assert not any(a["type"] in fault.expected for a in alerts), fault.name
            continue
        checked += 1
        if fault.evaluation:
            deadline = [log["step"] for log in eval_logs(history) if log["step"] >= onset][1]
        else:
            deadline = onset + 5
        assert any(a["type"] in fault.expected and onset <= a["step"] <= deadline for a in alerts), (
            fault.name, [(a["step"], a["type"]) for a in alerts])
    assert checked >= 4


def test_sparse_reward_blips_are_not_a_collapse():
    """A sparse reward (nearly every group identical) whose rolling median once rose to 1/64 for a few steps and
    went back to 0: measured against its own tiny noise that is a rise and a fall, but with no variance in the
    groups it is the dead reward the zero-variance alert names, not a collapse."""
    logs = []
    for step in range(1, 301):
        blip = 1 / 64 if 100 <= step < 108 else 0.0
        logs.append({"step": step, "loss": 0.0, "grad_norm": 1e-3, "reward": blip, "reward_std": 0.0,
                     "frac_reward_zero_std": 1.0 if step % 7 else 0.875, "kl": 1e-4})
    alerts = observe(logs, "grpo")
    assert [a["type"] for a in alerts] == ["zero_reward_variance"] and "dead" in alerts[0]["message"]


@pytest.mark.parametrize(("metric", "level", "rules"), [
    ("kl", 0.2, {}), ("completions/clipped_ratio", 0.5, {}), ("frac_reward_zero_std", 0.9, {}),
])
def test_a_level_hovering_at_its_threshold_is_one_condition(metric, level, rules):
    """300 steps at the threshold +-10%: crossing it back and forth is one lasting condition (hysteresis)."""
    import random

    rng = random.Random(3)
    logs = []
    for step in range(1, 301):
        log = {"step": step, "loss": 0.01, "reward": 0.5, "reward_std": 0.3, "kl": 0.01,
               "completions/clipped_ratio": 0.0, "frac_reward_zero_std": 0.2}
        log[metric] = min(1.0, level * (1 + rng.uniform(-0.1, 0.1)))
        logs.append(log)
    alerts = observe(logs, "grpo", AlertRules(**rules))
    assert 1 <= len(alerts) <= 2, [(a["step"], a["type"]) for a in alerts]


def test_a_record_with_training_and_eval_keys_is_both():
    """A dashboard merges a run's series by step, so an evaluation step's record holds the training keys and the
    eval_ keys together: the same alerts as the separate records the callback sees."""
    history = inject(healthy_run("sft", 1500, 1, eval_every=20), "eval_divergence", 700, 0.05, kind="sft")
    history = inject(history, "grad_explosion", 900, 20.0, kind="sft")
    separate = observe(history, "sft")
    merged: dict[int, dict] = {}
    for log in history:
        merged.setdefault(log["step"], {}).update(log)
    together = observe(list(merged.values()), "sft")
    assert [(a["type"], a["step"]) for a in together] == [(a["type"], a["step"]) for a in separate]
    assert {a["type"] for a in separate} == {"eval_divergence", "grad_norm_explosion"}
