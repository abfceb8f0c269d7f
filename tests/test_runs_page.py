"""The runs table beyond the synced rows (issue 17 §3/§5): a view pages a sweep of more than a thousand runs with
"runs.page" requests (sorted and filtered in the kernel, `table_page`); a large sweep's runs that a view selects
are read at once, so their series travel with the selection; its default selection is the ten most recently
active runs, read before the first snapshot, and the synced table holds their summaries."""

from __future__ import annotations

import json
import math

import pandas as pd

from rldk_widget import RLDKDashboard
from rldk_widget.dashboard import RUNS_TABLE_ROWS
from rldk_widget.run_readers import LOAD_ALL_RUNS
from rldk_widget.runs_payload import table_page
from rldk_widget.store import RunStore

from helpers import CommTap, wait_until


def table() -> pd.DataFrame:
    frame = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e"],
        "name": ["sweep/A", "sweep/B", "other/C", "sweep/D", "x"],
        "step": pd.array([5, None, 3, 9, 3], dtype="Int64"),
        "last.loss": [0.5, 0.1, math.nan, 0.3, 0.2],
        "args.learning_rate": [1e-5, 1e-4, 1e-5, None, 3e-5],
        "optim": ["adamw", "sgd", None, "Adam", 7],
    })
    frame.attrs.update(metric_columns=["last.loss"], alert_columns=[], config_columns=["args.learning_rate", "optim"])
    return frame


def ids(page) -> list[str]:
    return [row[0] for row in page["rows"]]


def test_pages_sort_numbers_and_text_with_missing_values_last_either_way():
    t = table()
    assert ids(table_page(t, {"sort": {"key": "last.loss"}}, 100)) == ["b", "e", "d", "a", "c"]
    assert ids(table_page(t, {"sort": {"key": "last.loss", "desc": True}}, 100)) == ["a", "d", "e", "b", "c"]
    assert ids(table_page(t, {"sort": {"key": "step"}}, 100)) == ["c", "e", "a", "d", "b"]  # ties in run order
    assert ids(table_page(t, {"sort": {"key": "step", "desc": True}}, 100)) == ["d", "a", "c", "e", "b"]
    assert ids(table_page(t, {"sort": {"key": "optim"}}, 100)) == ["e", "d", "a", "b", "c"]  # numbers first
    assert ids(table_page(t, {"sort": {"key": "no such column"}}, 100)) == ["a", "b", "c", "d", "e"]


def test_pages_filter_over_ids_names_and_configuration_and_count_the_matches():
    t = table()
    page = table_page(t, {"filter": "SWEEP", "offset": 1, "limit": 1}, 100)
    assert page["total"] == 3 and page["offset"] == 1 and ids(page) == ["b"]
    assert ids(table_page(t, {"filter": "sweep adam"}, 100)) == ["a", "d"]  # every term, case-insensitive
    assert ids(table_page(t, {"filter": "1e-05"}, 100)) == ["a", "c"]  # a configuration value
    assert ids(table_page(t, {"filter": "0.5"}, 100)) == []  # metrics are not searched
    assert ids(table_page(t, {"run_ids": ["d", "a", 3]}, 100)) == ["a", "d"]
    assert table_page(t, {"filter": "zzz"}, 100)["total"] == 0
    page = table_page(t, {"offset": -4, "limit": 10_000}, 2)  # clamped: a page is never more than max_rows
    assert page["offset"] == 0 and ids(page) == ["a", "b"] and page["total"] == 5
    assert [c["key"] for c in page["columns"]] == list(t.columns)
    assert [c["group"] for c in page["columns"]] == ["identity", "identity", "progress", "metrics", "config", "config"]
    assert page["rows"][1][2] is None and table_page(t, {"run_ids": ["c"]}, 9)["rows"][0][3] is None  # NA, NaN


def sweep(folder, runs: int) -> list[str]:
    ids = [f"run{index:03d}" for index in range(runs)]
    for index, run in enumerate(ids):
        RunStore(folder, run).append_metrics_many(
            {"step": s, "timestamp": 1000.0 + (index * 37 % runs) * 10 + s, "loss": 1.0 / (1 + s), "reward": index}
            for s in range(20)
        )
        RunStore(folder, run).write_info({"config": {"args": {"learning_rate": 10.0 ** -(index % 5)},
                                                     "seed": index % 3}})
    return ids


def test_a_large_sweep_selects_its_newest_runs_reads_them_first_and_pages_its_table(tmp_path):
    runs = LOAD_ALL_RUNS + 10
    ids = sweep(tmp_path, runs)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        newest = sorted(ids, key=lambda run: ids.index(run) * 37 % runs)[-10:]
        assert dash.selected == sorted(newest, key=ids.index)
        state = dash.get_state(["metrics", "runs_table"])
        series = state["metrics"]["runs"]
        assert all(sorted(series[run]) == ["loss", "reward", "timestamp"] for run in dash.selected)  # read first
        columns = [c["key"] for c in state["runs_table"]["columns"]]
        rows = {row[0]: dict(zip(columns, row)) for row in state["runs_table"]["rows"]}
        assert all(rows[run]["step"] == 19 for run in ids)  # read by the sweep or by the dashboard alike

        tap = CommTap(dash)
        dash._on_view_message(dash, {"type": "request", "id": "p1", "slot": "runs.page", "what": "runs.page",
                                     "params": {"sort": {"key": "args.learning_rate", "desc": True}, "filter": "run00",
                                                "offset": 2, "limit": 3}}, [])
        reply = wait_until(lambda: next((m["content"] for m in tap.messages if m and m.get("content", {}).get(
            "type") == "reply"), None), what="the page")
        assert reply["id"] == "p1" and reply["data"]["total"] == 10
        assert [row[0] for row in reply["data"]["rows"]] == ["run001", "run006", "run002"]
        assert not tap.wire_errors
    finally:
        dash.close()


def test_a_view_that_selects_an_unread_run_of_a_large_sweep_gets_its_series_at_once(tmp_path):
    """(In Chromium the run is drawn about 0.2 s after its checkbox is ticked: tests/browser/test_runs_tab.py.)"""
    ids = sweep(tmp_path, LOAD_ALL_RUNS + 5)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        unread = next(run for run in ids if run not in dash.selected)
        tap = CommTap(dash, view=True)
        dash.set_state({"selected": [unread, dash.selected[0]]})  # a view's model.set + save_changes
        # no update_data, no flush: the selection alone reads the run and sends it at once (no throttle wait)
        xs, ys = tap.view.series(unread, "loss")
        assert xs.tolist() == list(range(20)) and ys[0] == 1.0
        assert sorted(tap.view.run_ids) == sorted(dash.selected) and not tap.wire_errors
    finally:
        dash.close()


def test_the_synced_table_of_a_thousand_runs_and_more_stays_a_page(tmp_path):
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(RUNS_TABLE_ROWS + 500)], "name": "n" * 40})
    frame.attrs.update(metric_columns=[], alert_columns=[], config_columns=[])
    page = table_page(frame, {"offset": 1200, "limit": 5000}, RUNS_TABLE_ROWS)
    assert page["total"] == 1500 and len(page["rows"]) == 300 and page["rows"][0][0] == "r1200"
    assert len(json.dumps(table_page(frame, {}, RUNS_TABLE_ROWS))) < 100_000
