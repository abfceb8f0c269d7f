"""Load: 8 threads × 10,000 `add_metrics` (+ 1,000 `add_alert` each) at once into one dashboard whose view is
displayed (a CommTap replaying every message into a view model) while auto-refresh runs every 10 ms; and a
1,000,000-step run that loads and displays with a bounded snapshot."""

from __future__ import annotations

import gc
import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

from rldk_widget import RLDKDashboard
from rldk_widget.snapshot import SNAPSHOT_POINT_BUDGET
from rldk_widget.store import RunStore

from helpers import CommTap

THREADS, ADDS, ALERT_EVERY = 8, 10_000, 10


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_record(thread: int, i: int) -> dict:
    step = thread * ADDS + i
    # every field derives from (thread, i): a torn or mixed-up record cannot satisfy all of them
    return {"step": step, "loss": 1.0 / (step + 1), "thread": float(thread), "i": float(i), "check": 2.0 * step + 1}


def assert_record_intact(record: dict) -> None:
    step = record["step"]
    assert record["thread"] * ADDS + record["i"] == step and record["check"] == 2.0 * step + 1, record
    assert record["loss"] == 1.0 / (step + 1), record


@pytest.mark.timeout(300)  # the hard timeout: a deadlock fails the test instead of hanging the suite
def test_eight_threads_adding_at_once_with_a_displayed_view_and_auto_refresh(tmp_path, capsys, dashboards):
    dash = dashboards(output_dir=tmp_path, run_id="load")
    tap = CommTap(dash, view=True, keep=False)
    dash.enable_auto_refresh(0.01)
    errors: list[BaseException] = []
    start_gate = threading.Barrier(THREADS)
    rss_before = rss_mb()

    def work(thread: int) -> None:
        try:
            start_gate.wait()
            for i in range(ADDS):
                dash.add_metrics(load_record(thread, i))
                if i % ALERT_EVERY == 0:
                    dash.add_alert({"type": f"thread_{thread}", "message": f"{thread}:{i}", "step": thread * ADDS + i,
                                    "thread": thread, "i": i})
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,), name=f"load-{n}", daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"deadlock: threads {stuck} still running"
    assert not errors, errors
    elapsed = time.monotonic() - started
    refresh_thread = dash._refresh_thread
    assert dash.auto_refresh, "the auto-refresh thread died under load"
    dash.update_data()
    dash.flush()
    rss_after = rss_mb()

    total, alerts_total = THREADS * ADDS, THREADS * ADDS // ALERT_EVERY
    every_step = set(range(total))
    # on disk: one valid JSON array, every record exactly once and intact
    on_disk = json.loads((tmp_path / "load_metrics.json").read_text())
    assert len(on_disk) == total and {r["step"] for r in on_disk} == every_step, "records lost or duplicated on disk"
    for record in on_disk:
        assert_record_intact(record)
    for thread in range(THREADS):  # each thread's records in the order it added them
        mine = [r["i"] for r in on_disk if r["thread"] == thread]
        assert mine == sorted(mine)
    alerts = json.loads((tmp_path / "load_alerts.json").read_text())
    assert len(alerts) == alerts_total and len({a["step"] for a in alerts}) == alerts_total
    assert all(a["message"] == f"{a['thread']}:{a['i']}" and a["step"] == a["thread"] * ADDS + a["i"] for a in alerts)

    # in memory: one row per record
    frame = dash.to_dataframe()
    assert len(frame) == total and set(frame["step"]) == every_step
    assert np.array_equal(frame["check"].to_numpy(), 2.0 * frame["step"].to_numpy() + 1)
    assert len(dash.alerts_dataframe()) == alerts_total

    # the view: every point exactly once, values matching their steps, no gap in the numbered deltas
    view = tap.view
    assert view.gaps == 0 and not tap.wire_errors, (view.gaps, tap.wire_errors[:3])
    for name in ("loss", "check", "thread", "i", "timestamp"):
        xs, ys = view.series("load", name)
        assert len(xs) == total and set(xs.astype(np.int64).tolist()) == every_step, f"view {name}: lost or duplicated"
        if name == "check":
            assert np.array_equal(ys, 2.0 * xs + 1), "view: a value arrived with the wrong step"
    assert len(view.alerts) == alerts_total and len({a["step"] for a in view.alerts}) == alerts_total

    # reloads identically
    fresh = dashboards(output_dir=tmp_path, run_id="load")
    pd.testing.assert_frame_equal(frame, fresh.to_dataframe(), check_like=True)
    fresh.close()

    # memory bounded: nothing queued per record once the views are up to date, and RSS grew by about the data
    assert dash._channel._points == {} and dash._channel._alerts == []
    for tail_file in dash._readers.stores["load"]._files.values():
        assert tail_file._delivered == [] and tail_file._unwritten == [] and tail_file._problems == []
    grew = rss_after - rss_before
    assert grew < 400, f"RSS grew by {grew:.0f} MB for {total} records"
    dash.close()
    assert not refresh_thread.is_alive()
    with capsys.disabled():
        print(f"\n  load: {THREADS} threads x {ADDS} add_metrics + {alerts_total} add_alert in {elapsed:.1f} s, "
              f"{tap.count} comm messages ({view.snapshots_applied} snapshots applied), records lost 0, "
              f"duplicated 0, torn 0; RSS +{grew:.0f} MB")


def million_step_loss(step: int) -> float:
    if step == SPIKE:
        return 50.0
    if step == GAP:
        return float("nan")
    return 1.0 / (step + 1)


MILLION, SPIKE, GAP = 1_000_000, 654_321, 500_000


@pytest.mark.timeout(300)
def test_a_million_step_run_loads_and_displays_with_a_bounded_snapshot(tmp_path, capsys):
    writer = RunStore(tmp_path, "big")
    chunk = 100_000
    for begin in range(0, MILLION, chunk):
        writer.append_metrics_many({"step": s, "loss": million_step_loss(s)} for s in range(begin, begin + chunk))
    writer.close()
    size_mb = (tmp_path / "big_metrics.json").stat().st_size / 2**20
    gc.collect()

    started = time.monotonic()
    dash = RLDKDashboard(output_dir=tmp_path, run_id="big", auto_refresh=False)
    loaded = time.monotonic() - started
    try:
        frame = dash.to_dataframe()
        assert len(frame) == MILLION and np.array_equal(frame["step"].to_numpy(), np.arange(MILLION))
        assert frame["loss"].iloc[SPIKE] == 50.0 and np.isnan(frame["loss"].iloc[GAP])
        assert frame["loss"].iloc[-1] == 1.0 / MILLION
        assert dash.status["level"] == "ok", dash.status

        # a view displayed now gets a bounded snapshot that keeps the first and last points, the spike and the NaN
        tap = CommTap(dash, view=True, keep=False)
        xs, ys = tap.view.series("big", "loss")
        assert len(xs) <= SNAPSHOT_POINT_BUDGET, f"{len(xs)} points in the snapshot"
        assert xs[0] == 0 and xs[-1] == MILLION - 1 and np.all(np.diff(xs) > 0)
        assert SPIKE in xs and ys[xs == SPIKE][0] == 50.0 and np.isnan(ys).any()
        snapshot_bytes = len(json.dumps(dash.get_state(["metrics"])))
        assert snapshot_bytes < 2_000_000, snapshot_bytes

        # and it keeps following the run: the next step arrives as a delta after the snapshot
        dash.add_metrics({"step": MILLION, "loss": 0.5})
        dash.flush()
        xs, _ = tap.view.series("big", "loss")
        assert xs[-1] == MILLION and tap.view.gaps == 0 and not tap.wire_errors
        assert len(dash.to_dataframe()) == MILLION + 1
    finally:
        dash.close()
    with capsys.disabled():
        print(f"\n  1M-step run: {size_mb:.0f} MB file loaded in {loaded:.1f} s; snapshot {snapshot_bytes / 1e3:.0f} kB "
              f"({len(xs)} of {MILLION + 1} points)")
