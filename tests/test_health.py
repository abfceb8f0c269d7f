"""Health checks on any run (issue 16 §1): runs without alerts of their own get the callback's rules, computed by
the dashboard from what it reads, marked as computed, kept in memory only, checked once per record, and checked
again from the start when their file is read again whole. Runs the RLDKCallback recorded (its run info says so)
are never checked, even when they have no alerts. A computed alert is dated when its step was logged."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from rldk_widget import AlertRules, RLDKDashboard
from rldk_widget.store import RunStore

from helpers import CommTap, wait_until


def grpo_history(steps: int, nan_at: int | None = None, kl_spike_at: int | None = None) -> list[dict]:
    history = []
    for step in range(1, steps + 1):
        history.append({
            "step": step, "loss": 0.02, "reward": 0.5 + 0.001 * step, "reward_std": 0.2, "kl": 0.01,
            "grad_norm": math.nan if step == nan_at else 0.5, "frac_reward_zero_std": 0.1,
            "completions/mean_length": 20.0, "learning_rate": 1e-5,
        })
        if step == kl_spike_at:
            history[-1]["kl"] = 0.9
    return history


def write_trainer_state(folder, history, max_steps=100):
    (folder / "trainer_state.json").write_text(json.dumps({"max_steps": max_steps, "log_history": history}))


def test_a_trainer_state_run_gets_computed_alerts_that_are_never_written(tmp_path):
    write_trainer_state(tmp_path, grpo_history(60, nan_at=30))
    before = sorted(os.listdir(tmp_path))
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        tap = CommTap(dash, view=True)
        (alert,) = dash.alerts
        assert alert["type"] == "nonfinite" and alert["step"] == 30 and alert["computed"] is True
        assert alert["metric"] == "grad_norm" and alert["run_id"] == dash.run_ids[0]
        assert sorted(os.listdir(tmp_path)) == before, "a computed alert must not be written into the folder"
        assert [a["step"] for a in tap.view.alerts] == [30]
        assert alert["value"] == "NaN" and not tap.wire_errors
    finally:
        dash.close()


def test_new_records_are_checked_once_and_a_rewritten_history_is_checked_again(tmp_path):
    write_trainer_state(tmp_path, grpo_history(40, nan_at=20))
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        assert [a["step"] for a in dash.alerts] == [20]
        history = grpo_history(80, nan_at=20) + []
        history[69]["grad_norm"] = math.nan  # step 70
        write_trainer_state(tmp_path, history)
        dash.update_data()
        assert [a["step"] for a in dash.alerts] == [20, 70]
        dash.update_data()
        assert [a["step"] for a in dash.alerts] == [20, 70], "points observed twice"
        write_trainer_state(tmp_path, grpo_history(30, nan_at=10))  # a new run in the same folder: shorter
        dash.update_data()
        assert [a["step"] for a in dash.alerts] == [10]
    finally:
        dash.close()


def test_a_run_the_callback_recorded_is_not_checked_even_without_alerts(tmp_path):
    store = RunStore(tmp_path, "cb")
    store.write_info({"run_id": "cb", "trainer": "grpo", "writer": "RLDKCallback", "started": 1.0})
    store.append_metrics_many({"step": s, "loss": 0.1, "grad_norm": math.nan if s == 5 else 0.5} for s in range(20))
    store.append_metrics_many({"step": s, "loss": 0.1, "grad_norm": math.nan if s == 5 else 0.5} for s in [])
    other = RunStore(tmp_path, "plain")
    other.append_metrics_many({"step": s, "loss": 0.1, "grad_norm": math.nan if s == 5 else 0.5} for s in range(20))
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        assert [(a["run_id"], a["step"]) for a in dash.alerts] == [("plain", 5)]
        assert not (tmp_path / "plain_alerts.json").exists()
    finally:
        dash.close()


def test_a_computed_alert_is_dated_when_its_step_was_logged(tmp_path):
    logged = 1_700_000_000.0  # a run finished long ago: its alerts are not "now"
    store = RunStore(tmp_path, "old")
    store.append_metrics_many({"step": s, "timestamp": logged + 10 * s, "loss": 0.1,
                               "grad_norm": math.nan if s == 5 else 0.5} for s in range(20))
    other = RunStore(tmp_path, "untimed")  # records without a time: the alert is dated when it was computed
    other.append_metrics_many({"step": s, "loss": 0.1, "grad_norm": math.nan if s == 7 else 0.5} for s in range(20))
    before = time.time()
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        dated = {a["run_id"]: a["timestamp"] for a in dash.alerts}
        assert dated["old"] == logged + 50
        assert before <= dated["untimed"] <= time.time()
    finally:
        dash.close()


def test_metrics_added_by_hand_are_checked_with_the_given_rules(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="mine", auto_refresh=False,
                         alert_rules=AlertRules(disabled={"kl_spike"}, kl_max=0.5))
    try:
        for step in range(40):
            dash.add_metrics({"step": step, "kl_mean": 0.9 if step == 25 else 0.01, "loss": 0.1})
        types = [a["type"] for a in dash.alerts]
        assert types == ["kl_high"], types  # kl_spike is disabled; kl_high fires above the given 0.5
        assert all(a["computed"] for a in dash.alerts)
        assert not (tmp_path / "mine_alerts.json").exists()
    finally:
        dash.close()


def test_a_connected_callback_run_is_never_checked(tmp_path):
    pytest.importorskip("transformers")
    dash = RLDKDashboard(output_dir=tmp_path, run_id="live", auto_refresh=False)
    try:
        dash.callback()  # its run is recorded by RLDKCallback from the start
        dash.add_metrics({"step": 1, "grad_norm": math.nan})
        assert dash.alerts == []
    finally:
        dash.close()


def test_computed_alerts_reach_a_view_that_is_already_shown(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="mine", auto_refresh=False)
    try:
        tap = CommTap(dash, view=True)
        for step in range(30):
            dash.add_metrics({"step": step, "loss": math.nan if step == 12 else 0.3})
        wait_until(lambda: [a["step"] for a in tap.view.alerts] == [12], what="the computed alert in the view")
        assert tap.view.alerts[0]["computed"] is True
        assert not tap.wire_errors, tap.wire_errors
    finally:
        dash.close()


def test_figure_and_save_html_show_the_alert_markers(tmp_path):
    write_trainer_state(tmp_path, grpo_history(60, nan_at=30))
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        figure = dash.figure(metrics=["grad_norm", "loss"])
        (markers,) = [trace for trace in figure.data if trace.name == "critical alerts"]
        assert list(markers.x) == [30.0] and markers.y[0] == 0.5  # a NaN value sits on its curve
        page = dash.save_html(tmp_path / "report.html").read_text()
        assert '"computed":true' in page and '"metric":"grad_norm"' in page
    finally:
        dash.close()


def test_records_for_the_rules_are_the_same_by_columns_and_by_merge():
    """health._batches takes a by-columns path when every series has one point per step, else merges the points by
    step: either way, the records (step order, mapped names) in batches of the same names, in order."""
    import numpy as np

    from rldk_widget.alert_batches import _Records
    from rldk_widget.health import BATCH_RECORDS, _batches
    from rldk_widget.trl_keys import mapped_record

    def flat(batches):
        out = []
        for steps, columns in batches:
            records = _Records(steps, columns)
            out.extend(records[i] for i in range(len(steps)))
        return out

    steps = np.array([1.0, 2.0, 2.5, 4.0])
    fresh = {"reward": (steps, np.array([0.1, math.nan, 0.3, math.inf])), "kl": (steps, np.array([0.0, 1.0, 2.0, 3.0])),
             "loss": (steps, np.array([5.0, 4.0, 3.0, 2.0]))}
    expected = [mapped_record({"step": int(s) if s.is_integer() else s, "reward": r, "kl": k, "loss": lo}, "grpo")
                for s, r, k, lo in zip(steps.tolist(), *(fresh[n][1].tolist() for n in ("reward", "kl", "loss")))]
    by_columns = flat(_batches(fresh, "grpo"))
    assert [sorted(r) for r in by_columns] == [sorted(r) for r in expected]
    assert [[(k, str(r[k])) for k in sorted(r)] for r in by_columns] == [[(k, str(r[k])) for k in sorted(r)]
                                                                          for r in expected]
    assert [type(r["step"]) for r in by_columns] == [int, int, float, int]
    # one series without a point at step 2: merged by step, that record lacks it (a batch of its own)
    batches = list(_batches({**fresh, "loss": (np.array([1.0, 2.5, 4.0]), np.array([5.0, 3.0, 2.0]))}, "grpo"))
    assert [len(steps) for steps, _ in batches] == [1, 1, 2]
    merged = flat(batches)
    assert [str(sorted(merged[i].items())) for i in (0, 2, 3)] == [str(sorted(by_columns[i].items())) for i in (0, 2, 3)]
    assert "loss" not in merged[1] and str(merged[1]["reward_mean"]) == "nan"
    # a long run: batches of at most BATCH_RECORDS, every step once, in order
    long = np.arange(1.0, 2 * BATCH_RECORDS + 10)
    batches = list(_batches({"loss": (long, long / 10), "kl": (long, long / 100)}, "grpo"))
    assert [len(steps) for steps, _ in batches] == [BATCH_RECORDS, BATCH_RECORDS, 9]
    assert np.array_equal(np.concatenate([steps for steps, _ in batches]), long)


def test_with_every_rule_disabled_no_check_runs(tmp_path):
    import threading

    from rldk_widget.alerts import RULE_TYPES

    dash = RLDKDashboard(output_dir=tmp_path, run_id="quiet", auto_refresh=False,
                         alert_rules=AlertRules(disabled=set(RULE_TYPES)))
    try:
        dash.add_metrics([{"step": s, "loss": math.nan, "grad_norm": math.nan} for s in range(30)])
        dash.flush()
        assert dash.alerts == []
        assert "rldk-health" not in {t.name for t in threading.enumerate()}
    finally:
        dash.close()
