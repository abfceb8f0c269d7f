"""observe_columns gives exactly what AlertMonitor.observe gives record by record: the same alerts (every field, in
order) and afterwards the same monitor state, over every trainer kind of `synthetic_runs`, healthy and with every
fault that applies to it, the issue's patterns, and random walks that cross the rules' thresholds often, fed in
batches of random sizes (a single record up to thousands, so that batches start mid-episode and mid-warm-up)."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import numpy as np
import pytest

from rldk_widget.alert_batches import observe_columns
from rldk_widget.alerts import RULE_TYPES, AlertMonitor, AlertRules
from rldk_widget.synthetic_runs import FAULTS, ISSUE_PATTERNS, KINDS, healthy_run, inject, records

STEPS = 1200


def numeric(history: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The records as a dashboard's series hold them: numbers only (None becomes NaN, as `observe` reads it)."""
    out = []
    for record in records(history, kind):
        out.append({key: (math.nan if value is None else float(value)) if key != "step" else value
                    for key, value in record.items() if key != "run_id"})
    return out


def state(monitor: AlertMonitor) -> str:
    """Everything the monitor remembers, as text (exact floats, NaN included)."""
    functions = {name: {slot: getattr(fn, slot) for slot in fn.__slots__} for name, fn in monitor._functions.items()}
    episodes = {key: dataclasses.asdict(episode) for key, episode in monitor._episodes.items()}
    return repr((
        {k: list(v) for k, v in monitor._history.items()}, {k: list(v) for k, v in monitor._history_steps.items()},
        list(monitor._pairs), list(monitor._reward_steps), monitor._reward_steps_sum, monitor._peaks,
        monitor._start, {k: list(v) for k, v in monitor._ratios.items()}, episodes, functions, list(monitor._evals),
        monitor._best_eval, monitor._train_sum, monitor._train_squares, monitor._train_count, monitor._step,
        monitor._sparse,
    ))


def one_by_one(rows: list[dict[str, Any]], rules: AlertRules) -> tuple[list[dict[str, Any]], AlertMonitor]:
    monitor = AlertMonitor(rules)
    return [alert for row in rows for alert in monitor.observe(row)], monitor


def in_batches(rows: list[dict[str, Any]], rules: AlertRules, rng: random.Random
               ) -> tuple[list[dict[str, Any]], AlertMonitor]:
    """Runs of records with the same keys as columns, cut into batches of random sizes."""
    monitor = AlertMonitor(rules)
    alerts: list[dict[str, Any]] = []
    start = 0
    while start < len(rows):
        keys = rows[start].keys()
        end = start
        limit = start + rng.choice((1, 7, 64, 65, 300, 1000, 5000))
        while end < len(rows) and end < limit and rows[end].keys() == keys:
            end += 1
        batch = rows[start:end]
        names = [key for key in keys if key != "step"]
        steps = np.array([row["step"] for row in batch], dtype="f8")
        alerts.extend(observe_columns(monitor, steps, {name: np.array([row[name] for row in batch]) for name in names}))
        start = end
    return alerts, monitor


def assert_same(rows: list[dict[str, Any]], rules: AlertRules, seed: int) -> int:
    expected, scalar = one_by_one(rows, rules)
    got, batched = in_batches(rows, rules, random.Random(seed))
    assert repr(got) == repr(expected)
    assert state(batched) == state(scalar)
    return len(expected)


def runs() -> list[tuple[str, str, list[dict[str, Any]]]]:
    out = []
    for index, kind in enumerate(KINDS):
        history = healthy_run(kind, steps=STEPS, seed=index)
        out.append((kind, "healthy", history))
        rng = random.Random(index)
        for fault in FAULTS.values():
            if fault.applies(kind, history):
                size = rng.choice(fault.train_sizes + fault.test_sizes)
                out.append((kind, fault.name, inject(history, fault.name, rng.randrange(150, STEPS - 100), size,
                                                     kind=kind, seed=index)))
    return out


RUNS = runs()


@pytest.mark.parametrize("kind", KINDS)
def test_every_fault_of_every_kind_gives_the_same_alerts_and_state(kind):
    raised = 0
    for position, (run_kind, name, history) in enumerate(RUNS):
        if run_kind == kind:
            raised += assert_same(numeric(history, kind), AlertRules.for_trainer(kind), seed=position)
    assert raised  # the faults were found: the comparison is not between two silent monitors


def test_the_issue_patterns_give_the_same_alerts_and_state():
    for position, pattern in enumerate(ISSUE_PATTERNS.values()):
        history = pattern.build(0)
        assert_same(numeric(history, pattern.kind), AlertRules.for_trainer(pattern.kind), seed=position)


@pytest.mark.parametrize("seed", range(6))
def test_random_walks_crossing_every_threshold_give_the_same_alerts_and_state(seed):
    """Metrics that wander across the rules' thresholds, with bursts, plateaus (exact ties in the windows), NaN
    and ±Inf, and tighter rules (some disabled), so that episodes start, hold, escalate and re-arm throughout."""
    rng = random.Random(seed)
    names = ["loss", "grad_norm", "reward_mean", "reward_std", "kl_mean", "entropy_mean", "clip_frac", "value_loss",
             "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std",
             "rewards/a/mean", "rewards/a/std", "rewards/b/mean", "rewards/b/std"]
    if seed % 2:
        names.remove("frac_reward_zero_std")
    level = {name: rng.uniform(0.1, 1.0) for name in names}
    rows = []
    for step in range(4000):
        row: dict[str, Any] = {"step": step}
        for name in names:
            roll = rng.random()
            if roll < 0.002:
                level[name] = rng.choice((math.nan, math.inf, -math.inf, 0.0))
            elif roll < 0.02:
                level[name] = rng.uniform(0, 5) * (1 + 10 * (roll < 0.005))
            elif roll < 0.5 and not math.isfinite(level[name]):
                level[name] = rng.uniform(0.1, 1.0)
            elif math.isfinite(level[name]) and roll > 0.3:
                level[name] = abs(level[name] + rng.gauss(0, 0.05))
            row[name] = round(level[name], 2) if roll > 0.9 else level[name]  # rounding: ties in the windows
        row["reward_mean"] = row["rewards/a/mean"] + row["rewards/b/mean"] if rng.random() < 0.7 else row["reward_mean"]
        rows.append(row)
    rules = AlertRules(cooldown_steps=rng.choice((0, 10, 50)), rearm_steps=rng.choice((1, 5)), window=rng.choice((8, 20)),
                       min_history=rng.choice((4, 10)), noise_window=rng.choice((30, 100)), hacking_window=rng.choice((8, 20)),
                       zero_variance_window=rng.choice((3, 5)), reward_fn_window=rng.choice((3, 5)), kl_max=0.5,
                       kl_spike_min=0.2, grad_norm_max=4.0, clip_frac_max=0.6,
                       disabled=set(rng.sample(RULE_TYPES, 4)) if seed >= 3 else set())
    assert assert_same(rows, rules, seed) > 20


def calm_rows(steps: int, seed: int, frac: bool = True) -> list[dict[str, Any]]:
    """A quiet GRPO-like run with two reward functions (the reward is their sum): nothing near a threshold."""
    rng = random.Random(seed)
    rows = []
    for step in range(steps):
        a, b = 0.4 + 0.02 * rng.random(), 0.3 + 0.02 * rng.random()
        row = {"step": step, "loss": 0.1 + 0.01 * rng.random(), "grad_norm": 0.5 + 0.2 * rng.random(),
               "reward_mean": a + b, "reward_std": 0.3 + 0.02 * rng.random(), "kl_mean": 0.01 + 0.002 * rng.random(),
               "entropy_mean": 1.0 + 0.05 * rng.random(), "clip_frac": 0.05 + 0.01 * rng.random(),
               "value_loss": 0.2 + 0.02 * rng.random(), "completions/mean_length": 100 + 5 * rng.random(),
               "completions/clipped_ratio": 0.1 + 0.02 * rng.random(),
               "rewards/a/mean": a, "rewards/a/std": 0.3 + 0.02 * rng.random(),
               "rewards/b/mean": b, "rewards/b/std": 0.3 + 0.02 * rng.random()}
        if frac:
            row["frac_reward_zero_std"] = 0.1 + 0.02 * rng.random()
        rows.append(row)
    return rows


def ramp(rows: list[dict[str, Any]], key: str, start: int, length: int, to: float) -> None:
    """Move `key` linearly from its value at `start` to `to` over `length` steps, and keep it there (with its noise)."""
    base = rows[start][key]
    for i, row in enumerate(rows[start:]):
        row[key] += (to - base) * min(1.0, i / length)


def spike(rows: list[dict[str, Any]], key: str, at: int, factor: float) -> None:
    rows[at][key] *= factor


def with_reward_sum(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["reward_mean"] = row["rewards/a/mean"] + row["rewards/b/mean"]
    return rows


SCENARIOS = {
    "kl_high": lambda rows: ramp(rows, "kl_mean", 600, 400, 0.5),
    "kl_spike": lambda rows: spike(rows, "kl_mean", 700, 15),
    "entropy_collapse": lambda rows: ramp(rows, "entropy_mean", 600, 500, 0.02),
    "reward_collapse": lambda rows: (ramp(rows, "rewards/a/mean", 300, 400, 2.0),
                                     ramp(rows, "rewards/a/mean", 800, 20, 0.2), with_reward_sum(rows)),
    "zero_reward_variance": lambda rows: ramp(rows, "frac_reward_zero_std", 600, 300, 0.95),
    # from a KL of 0.05, a rise to 0.15 is no spike (under 5x its median) and stays under kl_max
    "reward_hacking": lambda rows: (ramp(rows, "kl_mean", 0, 1, 0.05), ramp(rows, "rewards/a/mean", 700, 20, 0.6),
                                    ramp(rows, "kl_mean", 700, 20, 0.15), with_reward_sum(rows)),
    "grad_norm_explosion": lambda rows: ramp(rows, "grad_norm", 600, 600, 150),
    "grad_norm_spike": lambda rows: spike(rows, "grad_norm", 700, 12),
    "clip_frac_high": lambda rows: ramp(rows, "clip_frac", 600, 300, 0.6),
    "value_loss_spike": lambda rows: spike(rows, "value_loss", 700, 8),
    "completion_length_blowup": lambda rows: spike(rows, "completions/mean_length", 700, 3),
    "completions_clipped": lambda rows: ramp(rows, "completions/clipped_ratio", 600, 300, 0.9),
    "reward_fn_nonfinite": lambda rows: rows[700].update({"rewards/b/mean": math.nan}),
    # both functions at once: one alone would leave the other dominant, a rule of its own
    "reward_fn_variance_collapse": lambda rows: (ramp(rows, "rewards/a/std", 600, 300, 0.0),
                                                 ramp(rows, "rewards/b/std", 600, 300, 0.0)),
    "reward_fn_saturated": lambda rows: (ramp(rows, "rewards/a/mean", 300, 300, 1.0),
                                         ramp(rows, "rewards/a/std", 600, 200, 0.0), with_reward_sum(rows)),
    "reward_fn_dominant": lambda rows: ramp(rows, "rewards/a/std", 600, 300, 3.0),
    "nonfinite": lambda rows: rows[700].update({"loss": math.inf}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_one_rule_crossing_its_threshold_alone_gives_the_same_alerts_and_state(scenario):
    """Each rule's condition reached slowly (or by one spike) in an otherwise quiet run: the screen must mark the
    record where it starts by that rule's own test, with no other rule's alert around to mark it instead."""
    rows = calm_rows(1500, seed=len(scenario))
    SCENARIOS[scenario](rows)
    expected, scalar = one_by_one(rows, AlertRules())
    wanted = "grad_norm_explosion" if scenario == "grad_norm_spike" else scenario
    assert wanted in {alert["type"] for alert in expected}, {alert["type"] for alert in expected}
    for batch in (64, 1000):
        monitor = AlertMonitor(AlertRules())
        got = []
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            names = [key for key in part[0] if key != "step"]
            got.extend(observe_columns(monitor, np.array([row["step"] for row in part], dtype="f8"),
                                       {name: np.array([row[name] for row in part]) for name in names}))
        assert repr(got) == repr(expected)
        assert state(monitor) == state(scalar)


def test_zero_reward_std_without_frac_gives_the_same_alerts_and_state():
    rows = calm_rows(1500, seed=3, frac=False)
    ramp(rows, "reward_std", 600, 300, 0.0)
    assert "zero_reward_variance" in {alert["type"] for alert in one_by_one(rows, AlertRules())[0]}
    assert_same(rows, AlertRules(), seed=3)
