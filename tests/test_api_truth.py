"""The Python API tells the truth (issue 14): `dash.metrics`, `dash.alerts`, `metrics_data` and `alerts_data` equal
what the run files hold, while the state synced to the views stays the bounded snapshot; mistakes in arguments get
a clear TypeError."""

from __future__ import annotations

import errno
import json
import math
import os
import warnings

import numpy as np
import pytest
import traitlets

from rldk_widget import AlertRules, RLDKCallback, RLDKDashboard
from rldk_widget.snapshot import SNAPSHOT_POINT_BUDGET
from rldk_widget.store import RunStore

from helpers import CommTap, decode


@pytest.fixture
def dash(tmp_path):
    widget = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    yield widget
    widget.close()


def disk(tmp_path, run: str):
    return RunStore(tmp_path, run).read_all()


def test_the_issue_example_alerts_and_metrics_are_not_empty(dash, tmp_path):
    dash.add_metrics({"step": 1, "loss": 0.5})
    dash.add_alert({"type": "x", "message": "y", "step": 1})
    (alert,) = dash.alerts
    (on_disk,) = disk(tmp_path, "r").alerts
    assert alert == on_disk and alert["message"] == "y" and alert["severity"] == "warning"
    assert list(dash.metrics) == ["r"]
    loss = dash.metrics["r"]["loss"]
    assert loss.index.tolist() == [1] and loss.tolist() == [0.5] and loss.index.name == "step"
    assert dash.alerts_data == dash.alerts
    assert dash.metrics_data == disk(tmp_path, "r").metrics


def test_alerts_are_oldest_first_and_the_same_dicts_the_views_get(dash, tmp_path):
    tap = CommTap(dash, view=True)
    for step in range(5):
        dash.add_alert({"type": "t", "message": f"m{step}", "step": step, "severity": "critical", "extra": 1.5})
    dash.flush()
    assert [a["message"] for a in dash.alerts] == [f"m{s}" for s in range(5)]
    assert dash.alerts == tap.view.alerts
    assert dash.alerts == disk(tmp_path, "r").alerts


def test_reading_is_a_copy_and_assigning_is_refused(dash):
    dash.add_alert({"type": "t", "message": "m"})
    dash.alerts[0]["message"] = "changed"
    dash.alerts.clear()
    assert dash.alerts[0]["message"] == "m"
    for name in ("alerts", "metrics"):
        with pytest.raises(traitlets.TraitError, match="read-only"):
            setattr(dash, name, [] if name == "alerts" else {})
    with pytest.raises(AttributeError):
        dash.metrics_data = []
    with pytest.raises(AttributeError):
        dash.alerts_data = []


def test_metrics_hold_every_point_while_the_synced_snapshot_stays_bounded(dash, tmp_path):
    steps = 60_000
    dash.add_metrics([{"step": s, "loss": math.sin(s / 100), "kl_mean": s * 1e-6} for s in range(steps)])
    loss = dash.metrics["r"]["loss"]
    assert len(loss) == steps and loss.index.tolist() == list(range(steps))
    assert np.allclose(loss.to_numpy(), np.sin(np.arange(steps) / 100))
    synced = dash.get_state(["metrics"])["metrics"]["runs"]["r"]
    points = sum(len(decode(series["x"])) for series in synced.values())
    assert points <= SNAPSHOT_POINT_BUDGET * 1.05 and points < 3 * steps
    assert len(dash.metrics_data) == steps


def test_reading_sends_nothing_to_the_views(dash):
    dash.add_metrics([{"step": s, "loss": 1.0} for s in range(10)])
    dash.flush()
    tap = CommTap(dash)
    for _ in range(3):
        assert len(dash.metrics["r"]["loss"]) == 10
        assert dash.alerts == []
        assert len(dash.metrics_data) == 10
    assert tap.count == 0


def test_add_metrics_is_read_back_in_batches_and_readers_see_everything_at_once(dash, tmp_path):
    for step in range(500):
        dash.add_metrics({"step": step, "loss": float(step)})
        # persisted before the call returns
    assert [r["step"] for r in json.loads((tmp_path / "r_metrics.json").read_text())] == list(range(500))
    assert dash.metrics["r"]["loss"].index.tolist() == list(range(500))
    assert dash.to_dataframe()["step"].tolist() == list(range(500))


def test_a_batch_of_adds_reaches_the_views_without_any_further_call(dash):
    from helpers import wait_until

    tap = CommTap(dash, view=True)
    for step in range(2000):
        dash.add_metrics({"step": step, "loss": float(step)})
    wait_until(lambda: len(tap.view.series("r", "loss")[0]) == 2000, timeout=10, what="the tail read back")
    xs, _ = tap.view.series("r", "loss")
    assert xs.tolist() == list(range(2000))


def test_several_runs_in_run_ids_order_and_file_order(tmp_path):
    for run, steps in (("b", [3, 1, 2]), ("a", [0, 5])):
        RunStore(tmp_path, run).append_metrics_many({"step": s, "loss": s / 10} for s in steps)
    (tmp_path / "c_metrics.json").write_text('[\n{"step": 7, "loss": 1}\n]\n')  # written by another tool: no run_id
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        assert dash.run_ids == ["a", "b", "c"]
        assert [(r["run_id"], r["step"]) for r in dash.metrics_data] == [
            ("a", 0), ("a", 5), ("b", 3), ("b", 1), ("b", 2), ("c", 7)
        ]
        assert list(dash.metrics) == ["a", "b", "c"]
        assert dash.metrics["b"]["loss"].index.tolist() == [3, 1, 2]
        assert "MetricsView" in repr(dash.metrics)
    finally:
        dash.close()


def test_a_trainer_state_run_is_read_through_the_same_names(tmp_path):
    state = {"max_steps": 3, "log_history": [{"step": s, "loss": 1.0 / s, "grad_norm": 0.5} for s in (1, 2, 3)]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        (run,) = dash.run_ids
        assert run.startswith("hf_")
        assert [r["step"] for r in dash.metrics_data] == [1, 2, 3]
        assert dash.metrics[run]["loss"].tolist() == [1.0, 0.5, 1 / 3]
    finally:
        dash.close()


def test_records_kept_in_memory_after_a_write_error_are_in_metrics_data(dash, tmp_path, monkeypatch):
    dash.add_metrics({"step": 0, "loss": 1.0})

    def no_space(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", no_space)
    dash.add_metrics({"step": 1, "loss": 2.0})
    assert [r["step"] for r in dash.metrics_data] == [0, 1]
    assert dash.metrics["r"]["loss"].index.tolist() == [0, 1]
    monkeypatch.undo()
    dash.update_data()
    assert [r["step"] for r in disk(tmp_path, "r").metrics] == [0, 1]
    assert [r["step"] for r in dash.metrics_data] == [0, 1]


# ---- mistakes get a clear message ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "name", "hint"),
    [
        (lambda d: RLDKDashboard(output_dir=d, auto_refres=False), "auto_refres", "auto_refresh"),
        (lambda d: RLDKDashboard.from_dir(d, refresh_intervl=2), "refresh_intervl", "refresh_interval"),
        (lambda d: RLDKDashboard.from_dir(d, output_dir=d), "output_dir", None),
        (lambda d: RLDKCallback(output_dir=d, runid="x"), "runid", "run_id"),
        (lambda d: AlertRules(kl_mx=0.3), "kl_mx", "kl_max"),
        (lambda d: AlertRules.for_trainer("grpo", cooldown=3), "cooldown", "cooldown_steps"),
    ],
)
def test_unknown_keyword_arguments_raise_naming_the_argument_and_the_accepted_ones(tmp_path, make, name, hint):
    with pytest.raises(TypeError) as raised:
        make(tmp_path)
    message = str(raised.value)
    assert repr(name) in message and "Accepted:" in message
    if hint:
        assert f"did you mean {hint!r}" in message


def test_widget_layout_arguments_and_storage_options_are_accepted(tmp_path):
    import ipywidgets

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False, layout=ipywidgets.Layout(height="500px"),
                             tooltip="run dashboard")
    try:
        assert dash.layout.height == "500px" and dash.tooltip == "run dashboard"
        assert dash.auto_refresh is False
    finally:
        dash.close()
    with pytest.warns(UserWarning, match="storage_options"):
        RLDKDashboard(output_dir=tmp_path, auto_refresh=False, storage_options={"anon": True}).close()


def test_auto_refresh_is_off_when_asked_and_disable_stops_it(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False)
    try:
        assert not dash.auto_refresh
        dash.enable_auto_refresh(0.05)
        assert dash.auto_refresh
        dash.disable_auto_refresh()
        assert not dash.auto_refresh
    finally:
        dash.close()
