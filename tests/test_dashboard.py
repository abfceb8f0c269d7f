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

from helpers import CommTap, decode


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


def test_port_is_accepted_and_warns_only_when_not_default(tmp_path):
    with pytest.warns(UserWarning, match="port"):
        RLDKDashboard(output_dir=tmp_path, port=9000, auto_refresh=False).close()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RLDKDashboard(output_dir=tmp_path, port=8501, auto_refresh=False).close()


def test_constructor_validates_run_id_and_interval(tmp_path):
    with pytest.raises(ValueError):
        RLDKDashboard(output_dir=tmp_path, run_id="a/b", auto_refresh=False)
    with pytest.raises(ValueError):
        RLDKDashboard(output_dir=tmp_path, refresh_interval=0, auto_refresh=False)


def test_update_data_loads_all_runs_when_run_id_is_none(tmp_path):
    for run in ("a", "b"):
        writer = RunStore(tmp_path, run)
        writer.append_metrics_many([{"step": s, "loss": s} for s in range(3)])
        writer.append_csv("ppo_metrics", {"step": 1, "objective/kl": 0.1})
        writer.append_csv("checkpoint_summary", {"step": 2, "size_mb": 1.5, "checkpoint_dir": "ckpt-2"})
    (tmp_path / "x_ppo_alerts.json").write_text('[{"type": "t", "message": "m", "step": 1}]')
    dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False)
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
    dash.close()


def test_update_data_reads_only_what_was_added(tmp_path, dash):
    writer = RunStore(tmp_path, "my_run")
    writer.append_metrics_many([{"step": s, "loss": 1.0} for s in range(10)])
    dash.update_data()
    dash.update_data()
    writer.append_metrics({"step": 10, "loss": 0.5})
    dash.update_data()
    assert dash.to_dataframe()["step"].tolist() == list(range(11))


def test_damaged_file_is_reported_in_status_and_load_report(tmp_path):
    (tmp_path / "r_metrics.json").write_bytes(b'[\n{"step": 1, "loss": 1},\n{"step": 2, "lo')
    dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False)
    assert dash.to_dataframe()["step"].tolist() == [1]
    assert "incomplete last record" in dash.status["message"] and dash.status["level"] == "warning"
    assert "r" in dash.load_report
    dash.close()


def test_auto_refresh_thread_picks_up_new_records_and_stops_on_close(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    dash.enable_auto_refresh(0.02)
    assert dash.auto_refresh
    RunStore(tmp_path, "r").append_metrics({"step": 5, "loss": 1})
    deadline = time.time() + 5
    while dash.to_dataframe().empty and time.time() < deadline:
        time.sleep(0.02)
    assert dash.to_dataframe()["step"].tolist() == [5]
    thread = dash._refresh_thread
    dash.close()
    assert not thread.is_alive() and not dash.auto_refresh
    with pytest.raises(ValueError):
        dash.enable_auto_refresh(-1)


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
    tap = CommTap(dash)
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < 1.0:
        dash.add_metrics({"step": step, "loss": 1.0})
        step += 1
    time.sleep(0.25)
    assert step > 200
    assert 5 <= len(tap.deltas) <= 12
    received = np.concatenate([decode(d["metrics"]["my_run"]["loss"]["x"]) for d in tap.deltas])
    assert received.tolist() == list(range(step))


def test_views_get_the_last_rows_within_about_100ms_without_further_adds(dash):
    tap = CommTap(dash)
    dash.add_metrics({"step": 0, "loss": 1.0})
    dash.add_metrics({"step": 1, "loss": 1.0})
    time.sleep(0.3)
    steps = np.concatenate([decode(d["metrics"]["my_run"]["loss"]["x"]) for d in tap.deltas])
    assert steps.tolist() == [0, 1]


def test_snapshot_holds_everything_and_numbers_after_the_deltas(dash):
    tap = CommTap(dash)
    dash.add_metrics([{"step": s, "loss": float(s)} for s in range(5)])
    dash.add_metrics({"step": 5, "loss": 5.0})
    dash.add_alert({"type": "t", "message": "<b>x</b>", "step": 5, "value": math.nan})
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


def test_figure_has_a_trace_per_run_and_metric(tmp_path):
    for run in ("a", "b"):
        RunStore(tmp_path, run).append_metrics_many(
            [{"step": s, "reward_mean": s, "reward_std": 0.1, "loss": 1.0} for s in range(4)]
        )
    dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False)
    figure = dash.figure()
    assert isinstance(figure, go.Figure)
    names = [(trace.name, trace.showlegend) for trace in figure.data if trace.name]
    assert ("a", True) in names and ("b", True) in names
    assert {ann.text for ann in figure.layout.annotations} >= {"reward_mean", "loss"}
    dash.close()


def test_to_dataframe_one_row_per_step_last_value_wins(dash):
    dash.add_metrics([{"step": 1, "loss": 1.0}, {"step": 1, "eval_loss": 2.0}, {"step": 1, "loss": 0.9}])
    frame = dash.to_dataframe()
    assert len(frame) == 1 and frame.loc[0, "loss"] == 0.9 and frame.loc[0, "eval_loss"] == 2.0
    assert isinstance(frame, pd.DataFrame)


def test_records_without_run_id_go_to_a_timestamped_run_when_run_id_is_none(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, auto_refresh=False)
    dash.add_metrics({"step": 1, "loss": 1.0})
    (run_id,) = dash.run_ids
    assert run_id.startswith("rldk_run_") and (tmp_path / f"{run_id}_metrics.json").exists()
    dash.close()


def test_write_error_shows_in_status_and_data_stays_visible(tmp_path, dash, monkeypatch):
    import errno

    import rldk_widget.store as store_module

    real = store_module.os.pwrite
    monkeypatch.setattr(store_module.os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    dash.add_metrics({"step": 1, "loss": 1.0})
    assert dash.status["level"] == "error" and "cannot write" in dash.status["message"]
    assert dash.to_dataframe()["step"].tolist() == [1]
    monkeypatch.setattr(store_module.os, "pwrite", real)
    dash.add_metrics({"step": 2, "loss": 1.0})
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
    dash._refresh_saved_state()
    last_delta = tap.deltas[-1]["seq"]
    state = tap.states[-1]["metrics"]
    assert state["seq"] == last_delta
    assert decode(state["runs"]["my_run"]["loss"]["x"]).tolist() == [0, 1, 2]
    sent = len(tap.messages)
    dash._refresh_saved_state()
    assert len(tap.messages) == sent
