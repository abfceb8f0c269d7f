"""Which runs the charts show (issue 17 §3/§5): all runs up to ten, else the ten with the newest records; the
selection is the widget's (every view), set from code with `select()` or by a view; only selected runs' series
travel (snapshot and deltas), newly selected runs arrive whole in the delta stream, deselected ones are dropped;
the synced state stays bounded whatever the number of runs; a run keeps its colour while it stays selected."""

from __future__ import annotations

import json

import pytest

from rldk_widget import RLDKDashboard
from rldk_widget.run_colors import colour_slots
from rldk_widget.snapshot import SNAPSHOT_POINT_BUDGET
from rldk_widget.static_view import PALETTE, StaticData
from rldk_widget.store import RunStore

from helpers import CommTap, decode


def sweep(folder, runs: int, steps: int = 50, metrics: int = 5) -> list[str]:
    ids = [f"run{index:03d}" for index in range(runs)]
    for index, run in enumerate(ids):
        RunStore(folder, run).append_metrics_many(
            {"step": s, "timestamp": 1000.0 + index * 10 + s / 1000, **{f"m{k}": s * 0.01 + index for k in range(metrics)}}
            for s in range(steps)
        )
    return ids


def test_up_to_ten_runs_are_all_shown_and_new_ones_join(tmp_path):
    ids = sweep(tmp_path, 4)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        assert dash.selected == ids
        RunStore(tmp_path, "run100").append_metrics({"step": 0, "m0": 1.0})
        dash.update_data()
        assert dash.selected == [*ids, "run100"]
    finally:
        dash.close()


def test_more_than_ten_runs_show_the_ten_with_the_newest_records(tmp_path):
    ids = sweep(tmp_path, 25)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        assert dash.selected == ids[-10:]  # the newest timestamps
        state = dash.get_state(["metrics"])["metrics"]
        assert sorted(state["runs"]) == ids[-10:]
        assert len(dash.metrics) == 25  # Python holds every run
    finally:
        dash.close()


def test_select_from_code_sends_the_new_runs_whole_and_drops_the_others(tmp_path):
    ids = sweep(tmp_path, 3)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        tap = CommTap(dash, view=True)
        dash.select([ids[2]])
        dash.flush()
        assert tap.view.run_ids == [ids[2]]
        dash.select([ids[0], ids[2]])
        dash.flush()
        assert sorted(tap.view.run_ids) == [ids[0], ids[2]]
        xs, _ = tap.view.series(ids[0], "m0")
        assert xs.tolist() == list(range(50))
        RunStore(tmp_path, ids[1]).append_metrics({"step": 50, "m0": 9.0})  # not shown: no points travel for it
        RunStore(tmp_path, ids[0]).append_metrics({"step": 50, "m0": 9.0})
        dash.update_data()
        dash.flush()
        assert ids[1] not in tap.view.run_ids
        assert tap.view.series(ids[0], "m0")[0].tolist() == list(range(51))
        with pytest.raises(ValueError, match="unknown run ids"):
            dash.select(["nope"])
        dash.select(None)
        assert dash.selected == ids
        assert not tap.wire_errors
    finally:
        dash.close()


def test_a_view_that_selects_runs_gets_them(tmp_path):
    ids = sweep(tmp_path, 3)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        tap = CommTap(dash, view=True)
        dash.set_state({"selected": [ids[1], "stale-run"]})  # what a view's model.set + save_changes does
        dash.flush()
        assert dash.selected == [ids[1]] and tap.view.run_ids == [ids[1]]
        RunStore(tmp_path, "late").append_metrics({"step": 0, "m0": 1.0})
        dash.update_data()
        assert dash.selected == [ids[1]], "a view's choice is kept when runs appear"
    finally:
        dash.close()


def test_the_synced_state_stays_bounded_with_hundreds_of_runs(tmp_path):
    sweep(tmp_path, 120, steps=400, metrics=8)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        state = dash.get_state()
        size = len(json.dumps({k: v for k, v in state.items() if k != "_esm"}))
        assert size < 1_000_000, size
        points = sum(len(decode(s["x"])) for run in state["metrics"]["runs"].values() for s in run.values())
        assert points <= SNAPSHOT_POINT_BUDGET * 1.05
        assert len(state["run_ids"]) == 120 and len(state["selected"]) == 10
    finally:
        dash.close()


def test_the_alerts_snapshot_keeps_the_newest_and_counts_the_older(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    try:
        for step in range(700):
            dash.add_alert({"type": "t", "message": f"m{step}", "step": step,
                            "severity": "critical" if step < 100 else "warning"})
        state = dash.get_state(["alerts", "metrics"])
        assert [a["message"] for a in state["alerts"]] == [f"m{s}" for s in range(200, 700)]
        assert state["metrics"]["alert_counts"] == {"info": 0, "warning": 100, "critical": 100}
        assert len(dash.alerts) == 700
    finally:
        dash.close()


def test_the_runs_table_of_runs_that_appear_later_has_their_steps_and_metrics(tmp_path):
    """Runs the dashboard reads itself feed the table's summaries (Sweep.adopt): none is left empty."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    dash = RLDKDashboard.from_dir(sweep_dir, auto_refresh=False)
    try:
        for name in ("a", "b"):
            store = RunStore(sweep_dir / name, "grpo")
            store.write_info({"trainer": "grpo", "writer": "RLDKCallback", "max_steps": 5})
            store.append_metrics_many({"step": s, "loss": 0.1, "reward_mean": 0.5 + s / 10} for s in range(1, 6))
        dash.update_data()
        table = dash.runs().set_index("name")
        assert table.loc["a/grpo", "step"] == 5 and table.loc["b/grpo", "last.reward_mean"] == 1.0
        assert table.loc["a/grpo", "best.reward_mean"] == 1.0
    finally:
        dash.close()


def test_colour_slots_keep_each_run_s_slot_and_fill_the_lowest_free_one():
    assert colour_slots({}, ["a", "b", "c"]) == {"a": 0, "b": 1, "c": 2}
    assert colour_slots({"a": 0, "b": 1, "c": 2}, ["a", "c"]) == {"a": 0, "c": 2}
    assert colour_slots({"a": 0, "c": 2}, ["a", "c", "d", "e"]) == {"a": 0, "c": 2, "d": 1, "e": 3}
    assert colour_slots({"a": 1, "b": 1, "c": True, "d": -1}, ["a", "b", "c", "d"]) == {"a": 1, "b": 0, "c": 2, "d": 3}
    many = colour_slots({}, [f"r{i}" for i in range(50)])
    assert sorted(many.values()) == list(range(50))


def test_deselecting_a_run_leaves_the_others_colours_everywhere(tmp_path):
    ids = sweep(tmp_path, 4)
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        assert dash.run_colors == {run: i for i, run in enumerate(ids)}
        dash.select([ids[0], ids[2], ids[3]])
        assert dash.run_colors == {ids[0]: 0, ids[2]: 2, ids[3]: 3}
        dash.set_state({"selected": [ids[2], ids[3], ids[1]]})  # a view's choice
        assert dash.run_colors == {ids[2]: 2, ids[3]: 3, ids[1]: 0}
        assert dash.get_state(["run_colors"])["run_colors"] == dash.run_colors
        picture = dash._picture_data()  # the saved notebook's picture: the selected runs in the same colours
        assert {run.run_id: run.colour for run in picture.runs} == {ids[2]: PALETTE[2], ids[3]: PALETTE[3],
                                                                     ids[1]: PALETTE[0]}
        traces = {t.name: t.line.color for t in dash.figure(["m0"]).data}  # the plotly export: the same colours
        assert {run: traces[run] for run in (ids[2], ids[3], ids[1])} == {ids[2]: PALETTE[2], ids[3]: PALETTE[3],
                                                                          ids[1]: PALETTE[0]}
        assert traces[ids[0]] == PALETTE[1], "an unselected run takes the lowest free slot"
        unslotted = StaticData.collect(dash._runs, ["run003"], colour_slots={"run003": 0})
        assert [run.colour for run in unslotted.runs] == [PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3]]
    finally:
        dash.close()


def test_a_sweep_s_load_syncs_its_runs_once_not_once_per_run(tmp_path, monkeypatch):
    """Found by benchmarks/sweep.py: each run found re-sorted every run for the default selection and re-sent
    run_ids and info (9 s of a 500-run sweep's 10 s warm first display)."""
    ids = sweep(tmp_path, 40, steps=5)
    sent: list[object] = []
    original = RLDKDashboard.send_state

    def counting(self, key=None):
        sent.append(key)
        return original(self, key)

    monkeypatch.setattr(RLDKDashboard, "send_state", counting)
    selections = []
    monkeypatch.setattr(RLDKDashboard, "_select_default",
                        lambda self, _f=RLDKDashboard._select_default: (selections.append(1), _f(self))[1])
    dash = RLDKDashboard.from_dir(tmp_path, auto_refresh=False)
    try:
        with_run_ids = [key for key in sent if key is None or "run_ids" in key]
        assert len(with_run_ids) <= 2, with_run_ids
        assert len(selections) == 1
        assert dash.run_ids == ids and len(dash.selected) == 10
    finally:
        dash.close()
