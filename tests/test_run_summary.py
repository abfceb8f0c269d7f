"""RunSummary (incremental statistics of one run: last / best of every series, step, duration, alerts, status with
an injectable clock) and SummaryCache (the on-disk form in the user's cache dir)."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest

from rldk_widget.run_summary import (
    RunSummary,
    SummaryCache,
    default_cache_dir,
    key_metrics,
    metric_direction,
)
from rldk_widget.series import RunSeries

T0 = 1_700_000_000.0


def records(n, start=0, t0=T0):
    return [{"step": s, "loss": 1.0 / (s + 1), "reward_mean": s * 0.1, "kl_mean": 0.01 * s, "timestamp": t0 + s,
             "run_id": "r"} for s in range(start, start + n)]


def test_key_metrics_follow_the_default_charts():
    assert key_metrics("grpo") == ["reward_mean", "kl_mean", "entropy_mean", "loss"]
    assert key_metrics("rloo") == key_metrics("grpo")
    assert key_metrics("dpo") == ["rewards/margins", "rewards/accuracies", "loss", "rewards/chosen"]
    assert key_metrics("sft") == ["loss", "mean_token_accuracy", "entropy_mean", "eval_loss"]
    assert key_metrics("reward") == ["accuracy", "margin", "loss", "reward_mean"]
    assert key_metrics("ppo") == ["reward_mean", "kl_mean", "entropy_mean", "value_loss"]
    assert key_metrics(None) == ["reward_mean", "kl_mean", "entropy_mean", "loss"]
    for kind in ("grpo", "dpo", "sft", "reward", "ppo", "orpo", "kto", "cpo", None):
        assert "learning_rate" not in key_metrics(kind) and "grad_norm" not in key_metrics(kind)


@pytest.mark.parametrize("name, direction", [
    ("reward_mean", "max"), ("rewards/margins", "max"), ("rewards/accuracies", "max"), ("mean_token_accuracy", "max"),
    ("accuracy", "max"), ("margin", "max"), ("objective/scores", "max"), ("rewards/chosen", "max"),
    ("loss", "min"), ("eval_loss", "min"), ("value_loss", "min"), ("nll_loss", "min"), ("ppo:loss/value_avg", "min"),
    ("rewards/rejected", None), ("logps/rejected", None), ("kl_mean", None), ("entropy_mean", None),
    ("completions/mean_length", None),
])
def test_best_direction(name, direction):
    assert metric_direction(name) == direction


def test_last_and_best_step_and_records():
    summary = RunSummary()
    summary.add_records(records(10))
    assert summary.step == 9 and summary.records == 10
    assert summary.last("loss") == pytest.approx(0.1) and summary.best("loss") == pytest.approx(0.1)
    assert summary.last("reward_mean") == pytest.approx(0.9) and summary.best("reward_mean") == pytest.approx(0.9)
    assert summary.best("kl_mean") is None and summary.last("kl_mean") == pytest.approx(0.09)
    assert "run_id" not in summary.series and "step" not in summary.series
    summary.add_records([{"step": 10, "loss": math.nan, "reward_mean": math.inf}, {"step": 11, "reward_mean": 0.0}])
    assert math.isnan(summary.last("loss")) and summary.best("loss") == pytest.approx(0.1)  # NaN is last, never best
    assert summary.best("reward_mean") == pytest.approx(0.9) and summary.last("reward_mean") == 0.0
    assert summary.series["loss"][0] == 11 and summary.series["loss"][2] == 10  # count, step of the last value


def test_records_without_a_usable_step_count_at_the_previous_step_plus_one():
    summary = RunSummary()
    summary.add_records([{"step": 5, "loss": 1.0}, {"loss": 0.5}, {"step": "bad", "loss": 0.25}])
    assert summary.step == 7 and summary.series["loss"][2] == 7


def test_points_give_the_same_statistics_as_records():
    batch = records(50) + [{"step": 50, "loss": math.nan, "reward_mean": -math.inf, "timestamp": T0 + 50}]
    from_records = RunSummary()
    from_records.add_records(batch[:20])
    from_records.add_records(batch[20:])
    series = RunSeries()
    from_points = RunSummary()
    from_points.add_points(series.add_records(batch[:20]).points)
    from_points.add_points(series.add_records(batch[20:]).points)
    assert from_points.step == from_records.step == 50 and from_points.records == from_records.records == 51
    assert from_points.series.keys() == from_records.series.keys()
    for name in from_records.series:
        a, b = from_records.series[name], from_points.series[name]
        assert a[0] == b[0] and a[2] == b[2] and a[3] == b[3] and a[4] == b[4]
        assert a[1] == b[1] or (math.isnan(a[1]) and math.isnan(b[1]))
    assert from_points.started == from_records.started == T0 and from_points.record_time == T0 + 50


def test_feeding_costs_the_same_per_record_whatever_the_run_length():
    summary = RunSummary()
    for start in range(0, 100_000, 1000):
        summary.add_records(records(1000, start))
    assert summary.records == 100_000 and len(summary.series) == 4  # nothing kept per record
    assert len(json.dumps(summary.to_json())) < 2000


def test_alerts_by_severity_and_resets():
    summary = RunSummary()
    summary.add_alerts([{"severity": "critical"}, {"severity": "warning"}, {"severity": "odd"}, {"type": "x"}])
    assert summary.alert_counts == {"info": 0, "warning": 3, "critical": 1}
    summary.add_records(records(3))
    summary.add_records([{"step": 1, "value_loss": 0.5}], prefix="ppo:")
    summary.reset("metrics")
    assert set(summary.series) == {"ppo:value_loss"} and summary.step is None and summary.records == 0
    summary.reset("alerts")
    assert summary.alert_counts == {"info": 0, "warning": 0, "critical": 0}
    summary.reset("ppo_metrics")
    assert summary.series == {}


def test_status_with_an_injectable_clock():
    summary = RunSummary()
    assert summary.status(now=T0) == "stopped"  # nothing written yet
    summary.set_info({"max_steps": 100, "trainer": "grpo", "started": T0, "timestamp": T0})
    assert summary.status(now=T0 + 5) == "running"  # started, no record yet
    summary.add_records(records(10))
    assert summary.status(now=T0 + 9 + 599) == "running"
    assert summary.status(now=T0 + 9 + 600) == "stopped"  # no new record for 10 minutes
    assert summary.status(now=T0 + 9 + 61, stale_after=60) == "stopped"  # configurable
    summary.add_records(records(1, start=10, t0=T0 + 1000))
    assert summary.status(now=T0 + 1011) == "running"  # records again
    summary.set_info({"train_runtime": 1010.0, "finished": T0 + 1012})
    assert summary.status(now=T0 + 10**6) == "finished"
    assert summary.duration == 1010.0


def test_finished_when_the_planned_steps_are_reached_and_a_new_run_info_forgets_it():
    summary = RunSummary()
    summary.set_info({"max_steps": 10})
    summary.add_records(records(11))
    assert summary.status(now=T0) == "finished" and summary.max_steps == 10
    summary.set_info({"started": T0, "finished": T0 + 3})
    assert summary.finished
    summary.set_info({"max_steps": 50, "started": T0 + 100}, replace=True)  # the run info file was replaced
    assert "finished" not in summary.info and summary.status(now=T0 + 101) == "running"


def test_file_time_counts_only_for_runs_without_timestamps():
    summary = RunSummary()
    summary.add_records([{"step": 1, "loss": 1.0}])  # a trainer_state.json history: no timestamps
    summary.touch(T0)
    assert summary.last_activity == T0 and summary.status(now=T0 + 10) == "running"
    stamped = RunSummary()
    stamped.add_records(records(2))
    stamped.touch(T0 + 10**5)  # a copied folder's new modification times do not make an old run look live
    assert stamped.last_activity == T0 + 1


def test_duration():
    summary = RunSummary()
    assert summary.duration is None
    summary.add_records(records(5))
    assert summary.duration == 4.0  # first to last record
    summary.set_info({"started": T0 - 10})
    assert summary.duration == 14.0


def test_row():
    summary = RunSummary()
    summary.set_info({"trainer": "grpo", "max_steps": 20})
    summary.add_records(records(5))
    summary.add_alerts([{"severity": "critical"}])
    row = summary.row(now=T0 + 5)
    assert row["trainer"] == "grpo" and row["status"] == "running" and row["step"] == 4 and row["max_steps"] == 20
    assert row["last.reward_mean"] == pytest.approx(0.4) and row["best.loss"] == pytest.approx(0.2)
    assert "best.kl_mean" not in row and row["last.entropy_mean"] is None
    assert (row["alerts.info"], row["alerts.warning"], row["alerts.critical"]) == (0, 0, 1)
    detected = RunSummary()
    detected.add_records([{"step": 1, "rewards/margins": 0.1, "rewards/chosen": 0.2, "logps/chosen": -1.0}])
    assert detected.trainer_kind == "dpo" and "last.rewards/margins" in detected.row(now=T0)


def test_json_round_trip_and_garbage():
    summary = RunSummary()
    summary.set_info({"trainer": "grpo", "max_steps": 5, "started": T0, "config": {"never": "here"}})
    summary.add_records(records(3) + [{"step": 3, "loss": math.nan, "reward_mean": math.inf}])
    summary.add_alerts([{"severity": "info"}])
    summary.touch(T0 + 3)
    data = json.loads(json.dumps(summary.to_json(), allow_nan=False))
    again = RunSummary.from_json(data)
    assert again.row(now=T0 + 4).keys() == summary.row(now=T0 + 4).keys()
    for key, value in summary.row(now=T0 + 4).items():
        other = again.row(now=T0 + 4)[key]
        assert value == other or (isinstance(value, float) and math.isnan(value) and math.isnan(other))
    assert "config" not in again.info
    again.add_records([{"loss": 0.0}])  # continues where it was: the previous step is kept
    assert again.step == 4
    for bad in (None, [], {"series": []}, {"series": {"x": [1, 2]}}, {"series": {"x": ["a", 1, 1, 1, 1]}},
                {"series": {"x": [-1, 1, 1, 1, 1]}}, {"series": {"x": [1, "zzz", 1, 1, 1]}}):
        with pytest.raises(ValueError):
            RunSummary.from_json(bad)


# ---- the cache ---------------------------------------------------------------------------------------------------
def test_cache_lives_in_the_user_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("RLDK_WIDGET_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rldk_widget"
    monkeypatch.setenv("RLDK_WIDGET_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    cache = SummaryCache("local:/some/sweep")
    assert cache.path.parent == tmp_path / "mine" / "summaries" and cache.path.suffix == ".json"
    assert SummaryCache("local:/other").path != cache.path


def test_cache_round_trip_permissions_and_damage(tmp_path):
    cache = SummaryCache("local:/sweep", tmp_path / "c")
    assert cache.load() == {}
    entries = {"r": {"location": ["rldk", "", "r"], "signature": {"r_metrics.json": [1, 2, [3, 4]]},
                     "summary": RunSummary().to_json(), "config": {}, "results": {}}}
    assert cache.save(entries)
    assert cache.load() == entries
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600
    assert [p.name for p in cache.directory.iterdir()] == [cache.path.name]  # no temporary file left
    assert SummaryCache("local:/another", tmp_path / "c").load() == {}
    other = SummaryCache("local:/sweep", tmp_path / "c")
    other.path.write_text("{damaged")
    assert other.load() == {} and "ignored" in other.problem
    other.path.write_text(json.dumps({"format": "rldk_widget.run_summaries", "version": 99, "root": "local:/sweep",
                                      "runs": entries}))
    assert other.load() == {}  # a newer format is not guessed at
    blocked = SummaryCache("local:/sweep", tmp_path / "file")
    (tmp_path / "file").write_text("a file where the folder should be")
    assert not blocked.save(entries) and "not written" in blocked.problem
