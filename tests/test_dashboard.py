"""RLDKDashboard: public API, validation, persistence, and the snapshot + delta transport to the views."""

import json
import math
import threading
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from rldk_widget import RLDKDashboard, RLDKMetrics
from rldk_widget.store import RunStore

from helpers import CommTap, decode, wait_until

THROTTLE_S = 0.1
"""docs/protocol.md: at most ~10 delta messages per second."""


@pytest.fixture
def dash(tmp_path):
    widget = RLDKDashboard(output_dir=tmp_path, run_id="my_run", auto_refresh=False)
    yield widget
    widget.close()


def test_seed_usage(tmp_path, dash):
    dash.add_metrics(RLDKMetrics(step=1, loss=0.5, reward_mean=0.7, kl_mean=0.01))
    dash.add_alert({"type": "high_kl", "message": "KL above 0.1", "step": 1})
    dash.update_data()
    frame = dash.to_dataframe()
    assert frame[["run_id", "step", "loss", "reward_mean", "kl_mean"]].to_dict("records") == [
        {"run_id": "my_run", "step": 1, "loss": 0.5, "reward_mean": 0.7, "kl_mean": 0.01}
    ]
    (alert,) = json.loads((tmp_path / "my_run_alerts.json").read_text())
    assert alert["severity"] == "warning" and alert["timestamp"] > 0 and alert["message"] == "KL above 0.1"
    assert json.loads((tmp_path / "my_run_metrics.json").read_text())[0]["loss"] == 0.5


def test_add_metrics_accepts_dicts_and_lists_and_persists_immediately(tmp_path, dash):
    dash.add_metrics([{"step": 1, "loss": 1.0}, RLDKMetrics(step=2, loss=0.5), {"step": 3, "loss": math.nan}])
    on_disk = RunStore(tmp_path, "my_run").read_all().metrics
    assert [r["step"] for r in on_disk] == [1, 2, 3] and math.isnan(on_disk[2]["loss"])
    assert dash.to_dataframe()["loss"].tolist()[:2] == [1.0, 0.5]


@pytest.mark.parametrize(
    ("bad", "error"),
    [(None, TypeError), (3, TypeError), ("loss", TypeError), ({"loss": 1}, ValueError), ({"step": -2}, ValueError),
     ([{"step": 1}, {"loss": 2}], ValueError), ({"step": 1, "run_id": "../escape"}, ValueError)],
)
def test_bad_metrics_raise_before_anything_is_stored(tmp_path, dash, bad, error):
    with pytest.raises(error):
        dash.add_metrics(bad)
    assert dash.to_dataframe().empty
    assert not (tmp_path / "my_run_metrics.json").exists()


def test_non_numeric_values_warn_once_and_are_skipped(dash):
    with pytest.warns(UserWarning, match="note"):
        dash.add_metrics({"step": 1, "loss": 1.0, "note": "hello"})
    assert "note" not in dash.to_dataframe().columns


@pytest.mark.parametrize(
    ("bad", "error"),
    [(None, TypeError), ("text", TypeError), ({"message": "m"}, ValueError), ({"type": "t"}, ValueError),
     ({"type": "t", "message": "m", "severity": "fatal"}, ValueError),
     ({"type": "t", "message": "m", "step": "x"}, TypeError), ({1: "a", "type": "t", "message": "m"}, TypeError)],
)
def test_bad_alerts_raise(dash, bad, error):
    with pytest.raises(error):
        dash.add_alert(bad)
    assert dash.alerts_dataframe().empty


def test_port_is_accepted_and_warns_only_when_not_default(tmp_path, dashboards):
    with pytest.warns(UserWarning, match="port"):
        dashboards(output_dir=tmp_path, port=9000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dashboards(output_dir=tmp_path, port=8501)


def test_constructor_validates_run_id_and_interval(tmp_path):
    with pytest.raises(ValueError):
        RLDKDashboard(output_dir=tmp_path, run_id="a/b", auto_refresh=False)
    with pytest.raises(ValueError):
        RLDKDashboard(output_dir=tmp_path, refresh_interval=0, auto_refresh=False)


def test_update_data_loads_all_runs_when_run_id_is_none(tmp_path, dashboards):
    for run in ("a", "b"):
        writer = RunStore(tmp_path, run)
        writer.append_metrics_many([{"step": s, "loss": s} for s in range(3)])
        writer.append_csv("ppo_metrics", {"step": 1, "objective/kl": 0.1})
        writer.append_csv("checkpoint_summary", {"step": 2, "size_mb": 1.5, "checkpoint_dir": "ckpt-2"})
    (tmp_path / "x_ppo_alerts.json").write_text('[{"type": "t", "message": "m", "step": 1}]')
    dash = dashboards(output_dir=tmp_path)
    assert dash.run_ids == ["a", "b", "x_ppo"]
    frame = dash.to_dataframe()
    assert sorted(frame["run_id"].unique()) == ["a", "b"] and len(frame) == 6
    assert frame.loc[frame["step"] == 1, "ppo:objective/kl"].tolist() == [0.1, 0.1]
    assert frame.loc[frame["step"] == 2, "ckpt:size_mb"].tolist() == [1.5, 1.5]
    assert dash.alerts_dataframe()["run_id"].tolist() == ["x_ppo"]
    assert len(dash.to_dataframe("a")) == 3
    RunStore(tmp_path, "c").append_metrics({"step": 0, "loss": 1})
    dash.update_data()
    assert dash.run_ids[-1] == "c"


def test_update_data_reads_only_what_was_added(tmp_path, dash):
    writer = RunStore(tmp_path, "my_run")
    writer.append_metrics_many([{"step": s, "loss": 1.0} for s in range(10)])
    dash.update_data()
    dash.update_data()
    writer.append_metrics({"step": 10, "loss": 0.5})
    dash.update_data()
    assert dash.to_dataframe()["step"].tolist() == list(range(11))


def test_damaged_file_is_reported_in_status_and_load_report(tmp_path, dashboards):
    (tmp_path / "r_metrics.json").write_bytes(b'[\n{"step": 1, "loss": 1},\n{"step": 2, "lo')
    dash = dashboards(output_dir=tmp_path)
    assert dash.to_dataframe()["step"].tolist() == [1]
    assert "incomplete last record" in dash.status["message"] and dash.status["level"] == "warning"
    assert "r" in dash.load_report


def test_auto_refresh_thread_picks_up_new_records_and_stops_on_close(tmp_path, dashboards):
    dash = dashboards(output_dir=tmp_path, run_id="r")
    dash.enable_auto_refresh(0.02)
    assert dash.auto_refresh
    RunStore(tmp_path, "r").append_metrics({"step": 5, "loss": 1})
    wait_until(lambda: not dash.to_dataframe().empty, what="the auto-refresh to read the new record")
    assert dash.to_dataframe()["step"].tolist() == [5]
    thread = dash._refresh_thread
    dash.close()
    assert not thread.is_alive() and not dash.auto_refresh
    with pytest.raises(ValueError):
        dash.enable_auto_refresh(-1)


def test_disable_auto_refresh_stops_the_thread_and_enable_starts_it_again(tmp_path, dashboards):
    writer = RunStore(tmp_path, "r")
    dash = dashboards(output_dir=tmp_path, run_id="r", auto_refresh=True, refresh_interval=0.02)
    thread = dash._refresh_thread
    assert dash.auto_refresh and thread.is_alive()
    dash.disable_auto_refresh()
    assert not dash.auto_refresh and not thread.is_alive()  # joined: nothing refreshes from now on
    dash.disable_auto_refresh()  # again: a no-op
    writer.append_metrics({"step": 1, "loss": 1.0})
    assert dash.to_dataframe().empty, "a record another process wrote was read without update_data()"
    dash.update_data()
    assert dash.to_dataframe()["step"].tolist() == [1]
    dash.enable_auto_refresh(0.02)
    assert dash.auto_refresh and dash._refresh_thread is not thread
    writer.append_metrics({"step": 2, "loss": 1.0})
    wait_until(lambda: len(dash.to_dataframe()) == 2, what="the re-enabled auto-refresh to read step 2")
    assert dash.refresh_interval == 0.02


def test_deltas_carry_only_new_rows_and_are_numbered(dash):
    tap = CommTap(dash)
    dash.add_metrics({"step": 1, "loss": 1.0, "kl_mean": math.inf})
    dash.flush()
    dash.add_metrics({"step": 2, "loss": math.nan})
    dash.flush()
    assert [delta["seq"] for delta in tap.deltas] == list(range(1, len(tap.deltas) + 1))
    first, second = [delta for delta in tap.deltas if delta["metrics"]]  # the inf / NaN also raise computed alerts
    assert decode(first["metrics"]["my_run"]["kl_mean"]["y"]).tolist() == [math.inf]
    loss = second["metrics"]["my_run"]["loss"]
    assert decode(loss["x"]).tolist() == [2.0] and math.isnan(decode(loss["y"])[0])
    assert "kl_mean" not in second["metrics"]["my_run"]


def test_at_most_about_ten_messages_per_second_whatever_the_add_rate(dash):
    """Adds as fast as this machine goes, for at least a second and until the view got deltas while they went on;
    the messages are bounded by the throttle intervals that actually went by (measured here), not by a guess of
    the machine's speed, and every point reaches the view once, in order, without a flush."""
    tap = CommTap(dash, view=True)
    started = time.monotonic()
    step = 0
    while not (time.monotonic() - started >= 1.0 and len(tap.deltas) >= 3):
        assert time.monotonic() - started < 30, f"{len(tap.deltas)} deltas while adds kept coming for 30 s"
        dash.add_metrics({"step": step, "loss": 1.0})
        step += 1
    wait_until(lambda: len(tap.view.series("my_run", "loss")[0]) >= step, what=f"the view to get all {step} steps")
    elapsed = time.monotonic() - started  # every message was sent within [started, now]
    assert len(tap.deltas) <= min(step, elapsed / THROTTLE_S + 1), (len(tap.deltas), step, elapsed)
    received = np.concatenate([decode(d["metrics"]["my_run"]["loss"]["x"]) for d in tap.deltas])
    assert received.tolist() == list(range(step))
    assert tap.view.series("my_run", "loss")[0].tolist() == list(range(step)) and tap.view.gaps == 0
    assert dash.messages_sent == len(tap.deltas)


def test_views_get_the_last_rows_without_further_adds(dash):
    tap = CommTap(dash, view=True)
    dash.add_metrics({"step": 0, "loss": 1.0})
    dash.add_metrics({"step": 1, "loss": 1.0})
    # no flush, no reader call: the throttle's flusher sends the tail (how soon: benchmarks/wire.py)
    wait_until(lambda: tap.view.series("my_run", "loss")[0].tolist() == [0, 1], what="the view to get steps 0 and 1")
    steps = np.concatenate([decode(d["metrics"]["my_run"]["loss"]["x"]) for d in tap.deltas])
    assert steps.tolist() == [0, 1]


def test_messages_sent_counts_the_delta_messages(dash):
    tap = CommTap(dash)
    assert dash.messages_sent == 0
    dash.add_metrics({"step": 0, "loss": 1.0})
    dash.flush()
    assert dash.messages_sent == len(tap.deltas) == 1
    dash.flush()  # nothing queued: no message
    assert dash.messages_sent == 1
    dash.add_metrics([{"step": s, "loss": 1.0} for s in range(1, 4)])
    dash.add_alert({"type": "t", "message": "m", "step": 3})
    dash.flush()
    assert dash.messages_sent == len(tap.deltas) >= 2
    dash._on_view_message(dash, {"type": "request_snapshot"}, [])  # a snapshot is a state update, not a delta
    assert tap.states and dash.messages_sent == len(tap.deltas)


def test_snapshot_holds_everything_and_numbers_after_the_deltas(dash):
    tap = CommTap(dash)
    dash.add_metrics([{"step": s, "loss": float(s)} for s in range(5)])
    dash.add_metrics({"step": 5, "loss": 5.0})
    dash.add_alert({"type": "t", "message": "<b>x</b>", "step": 5, "value": math.nan})
    dash.flush()  # the dashboard has read its appends back
    dash._on_view_message(dash, {"type": "request_snapshot"}, [])
    state = tap.states[-1]
    sent_seqs = [d["seq"] for d in tap.deltas]
    assert state["metrics"]["seq"] >= max(sent_seqs, default=0)
    loss = state["metrics"]["runs"]["my_run"]["loss"]
    assert decode(loss["y"]).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert state["alerts"][0]["message"] == "<b>x</b>" and state["alerts"][0]["value"] == "NaN"
    dash.add_metrics({"step": 6, "loss": 6.0})
    dash.flush()
    assert tap.deltas[-1]["seq"] == state["metrics"]["seq"] + 1


def test_replaced_file_sends_a_fresh_snapshot_not_a_delta(tmp_path, dash):
    dash.add_metrics([{"step": s, "loss": 1.0} for s in range(3)])
    dash.flush()
    tap = CommTap(dash)
    (tmp_path / "new.json").write_text('[{"step": 0, "loss": 9.0}]')
    (tmp_path / "new.json").replace(tmp_path / "my_run_metrics.json")
    dash.update_data()
    snapshots = [state for state in tap.states if "metrics" in state]
    assert snapshots and decode(snapshots[-1]["metrics"]["runs"]["my_run"]["loss"]["y"]).tolist() == [9.0]
    assert dash.status["level"] == "warning" and "my_run_metrics.json was replaced" in dash.status["message"]
    assert dash.to_dataframe()["loss"].tolist() == [9.0]


def test_figure_has_a_trace_per_run_and_metric(tmp_path, dashboards):
    for run in ("a", "b"):
        RunStore(tmp_path, run).append_metrics_many(
            [{"step": s, "reward_mean": s, "reward_std": 0.1, "loss": 1.0} for s in range(4)]
        )
    dash = dashboards(output_dir=tmp_path)
    figure = dash.figure()
    assert isinstance(figure, go.Figure)
    names = [(trace.name, trace.showlegend) for trace in figure.data if trace.name]
    assert ("a", True) in names and ("b", True) in names
    assert {ann.text for ann in figure.layout.annotations} >= {"reward_mean", "loss"}


def test_figure_metrics_chooses_the_charts_in_that_order(tmp_path, dashboards):
    for run in ("a", "b"):
        RunStore(tmp_path, run).append_metrics_many(
            [{"step": s, "reward_mean": float(s), "loss": 1.0 / (s + 1), "kl_mean": 0.01 * s} for s in range(4)]
        )
    RunStore(tmp_path, "b").append_metrics({"step": 4, "grad_norm": 2.0})
    dash = dashboards(output_dir=tmp_path)
    figure = dash.figure(metrics=["loss", "grad_norm", "not_logged"])
    assert [ann.text for ann in figure.layout.annotations] == ["loss", "grad_norm"]  # unknown names are left out
    traces = [(trace.name, trace.xaxis) for trace in figure.data]
    assert traces == [("a", "x"), ("b", "x"), ("b", "x2")]  # grad_norm: only run b logged it
    loss_a = next(t for t in figure.data if t.name == "a")
    assert list(loss_a.x) == [0, 1, 2, 3] and list(loss_a.y) == [1.0, 0.5, 1 / 3, 0.25]
    assert [ann.text for ann in dash.figure(metrics=["kl_mean"]).layout.annotations] == ["kl_mean"]


def test_to_dataframe_one_row_per_step_last_value_wins(dash):
    dash.add_metrics([{"step": 1, "loss": 1.0}, {"step": 1, "eval_loss": 2.0}, {"step": 1, "loss": 0.9}])
    frame = dash.to_dataframe()
    assert len(frame) == 1 and frame.loc[0, "loss"] == 0.9 and frame.loc[0, "eval_loss"] == 2.0
    assert isinstance(frame, pd.DataFrame)


def test_records_without_run_id_go_to_a_timestamped_run_when_run_id_is_none(tmp_path, dashboards):
    dash = dashboards(output_dir=tmp_path)
    dash.add_metrics({"step": 1, "loss": 1.0})
    dash.flush()
    (run_id,) = dash.run_ids
    assert run_id.startswith("rldk_run_") and (tmp_path / f"{run_id}_metrics.json").exists()


def test_set_run_info_reaches_the_view_and_keeps_what_was_known_for_bad_values(dash):
    tap = CommTap(dash)
    dash.set_run_info("my_run", max_steps=100, trainer_kind="grpo", started=1700000000.5)
    assert dash.info["my_run"] == {"max_steps": 100, "trainer": "grpo", "started": 1700000000.5}
    assert [st["info"] for st in tap.states if "info" in st][-1]["my_run"] == dash.info["my_run"]  # to the views
    from rldk_widget.trl_keys import default_charts

    assert dash.default_charts == default_charts("grpo")  # the trainer's charts first
    sent = len(tap.messages)
    dash.set_run_info("my_run", max_steps=-5, trainer_kind=3, started="yesterday")  # ignored, kept
    assert dash.info["my_run"] == {"max_steps": 100, "trainer": "grpo", "started": 1700000000.5}
    assert len(tap.messages) == sent, "an unchanged run info was sent again"
    dash.set_run_info("my_run", max_steps=200)  # only what is given changes
    assert dash.info["my_run"] == {"max_steps": 200, "trainer": "grpo", "started": 1700000000.5}
    dash.set_run_info("my_run", trainer_kind="dpo")
    assert dash.info["my_run"]["trainer"] == "dpo"
    assert dash.default_charts == default_charts("grpo"), "default charts set once are replaced"
    dash.set_run_info("other", trainer_kind="sft")
    assert dash.info["other"] == {"max_steps": None, "trainer": "sft", "started": None}


def test_write_error_shows_in_status_and_data_stays_visible(tmp_path, dash, monkeypatch):
    import errno

    import rldk_widget.store as store_module

    real = store_module.os.pwrite
    monkeypatch.setattr(store_module.os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    dash.add_metrics({"step": 1, "loss": 1.0})
    dash.flush()
    assert dash.status["level"] == "error" and "cannot write" in dash.status["message"]
    assert dash.to_dataframe()["step"].tolist() == [1]
    monkeypatch.setattr(store_module.os, "pwrite", real)
    dash.add_metrics({"step": 2, "loss": 1.0})
    dash.flush()
    assert dash.status["level"] == "ok"
    assert [r["step"] for r in json.loads((tmp_path / "my_run_metrics.json").read_text())] == [1, 2]
    assert dash.to_dataframe()["step"].tolist() == [1, 2]


def test_concurrent_adds_from_threads_lose_nothing(tmp_path, dash):
    def work(n):
        for i in range(300):
            dash.add_metrics({"step": n * 1000 + i, "loss": float(i)})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(dash.to_dataframe()) == 2400
    assert len(json.loads((tmp_path / "my_run_metrics.json").read_text())) == 2400


def test_start_dashboard_and_show_display_the_widget(dash, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setattr("rldk_widget.dashboard.in_widget_kernel", lambda: True)
    dash.start_dashboard()
    dash.show()
    assert shown == [dash, dash]


def test_outside_a_notebook_start_dashboard_says_what_to_do_in_one_line(tmp_path):
    """The seed's script run with plain `python`: one line on stderr instead of the widget's repr."""
    script = (
        "from rldk_widget import RLDKDashboard\n"
        f"dashboard = RLDKDashboard(output_dir={str(tmp_path)!r}, auto_refresh=False)\n"
        "dashboard.add_metrics({'step': 1, 'loss': 0.5})\n"
        "dashboard.start_dashboard()\n"
        "dashboard.close()\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "notebook" in lines[0] and "save_html" in lines[0], done.stderr
    assert "object at 0x" not in done.stderr


def test_snapshot_stays_bounded_and_keeps_extremes_and_the_last_point(dash):
    values = np.sin(np.arange(50_000) / 500.0)
    values[12_345] = 50.0
    values[33_333] = math.nan
    dash.add_metrics([{"step": s, "loss": float(v), "kl_mean": 0.1} for s, v in enumerate(values)])
    dash.flush()
    state = dash.get_state()["metrics"]
    loss = state["runs"]["my_run"]["loss"]
    xs, ys = decode(loss["x"]), decode(loss["y"])
    assert len(xs) <= 31_000 and len(xs) < 50_000
    assert 50.0 in ys.tolist() and np.isnan(ys).any()
    assert xs[0] == 0 and xs[-1] == 49_999 and np.all(np.diff(xs) > 0)
    assert len(dash.to_dataframe()) == 50_000


def test_after_each_cell_the_saved_state_is_refreshed_without_disturbing_views_in_sync(dash):
    tap = CommTap(dash)
    dash.add_metrics([{"step": s, "loss": float(s)} for s in range(3)])
    dash.flush()
    dash._refresh_saved_state()
    last_delta = tap.deltas[-1]["seq"]
    state = tap.states[-1]["metrics"]
    assert state["seq"] == last_delta
    assert decode(state["runs"]["my_run"]["loss"]["x"]).tolist() == [0, 1, 2]
    sent = len(tap.messages)
    dash._refresh_saved_state()
    assert len(tap.messages) == sent


def test_set_run_info_ignores_bools_and_non_finite_start_times(dash):
    tap = CommTap(dash)
    dash.set_run_info("my_run", max_steps=100, trainer_kind="grpo", started=1700000000.5)
    dash.set_run_info("my_run", max_steps=True, started=False)
    dash.set_run_info("my_run", started=math.nan)
    dash.set_run_info("my_run", started=math.inf)
    assert dash.info["my_run"] == {"max_steps": 100, "trainer": "grpo", "started": 1700000000.5}
    assert not tap.wire_errors, tap.wire_errors


@pytest.mark.parametrize("interval", [math.inf, 1e300])
def test_an_interval_too_long_to_wait_is_refused_or_keeps_the_thread_running(dash, interval):
    try:
        dash.enable_auto_refresh(interval)
    except ValueError:
        return
    thread = dash._refresh_thread
    thread.join(timeout=5)  # it must not end: only close() or disable_auto_refresh() stop it
    assert thread.is_alive() and dash.auto_refresh
