"""The bounded snapshots of the `metrics` and `alerts` traits: what a view (or a saved page) gets of the runs.

A snapshot carries the selected runs' series, each decimated to its share of a point budget (first, last, minima,
maxima and NaN kept: series.py), and the newest alerts with the counts of the older ones. Deltas always carry every
point; `dash.metrics`, `dash.alerts` and `to_dataframe()` always have all data (traits.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .records import SEVERITIES
from .series import RunSeries

SNAPSHOT_POINT_BUDGET = 30_000
"""Points the `metrics` snapshot carries at most, over all the runs it holds (≈0.65 MB of JSON): longer series are
decimated to keep first, last, minima and maxima. Deltas always carry every point; `to_dataframe()` and
`dash.metrics` always have all data."""
MIN_SERIES_POINTS = 100
"""A series in a snapshot keeps at least this many points (a selection of 10 runs × 30 metrics stays ≤ 30k)."""
SNAPSHOT_ALERTS = 500
"""Alerts the `alerts` snapshot carries at most (the newest); the counts of the older ones travel in `metrics`
(`alert_counts`), so the badge and the Alerts tab say how many there are. `dash.alerts` has every alert."""
HTML_POINT_BUDGET = 400_000
"""Points `save_html` keeps at most (≈ 10 MB of page): a static report can afford more than the live snapshot."""


def metrics_snapshot(
    seq: int, runs: Mapping[str, RunSeries], selected: list[str], alerts: list[dict[str, Any]],
    point_budget: int = SNAPSHOT_POINT_BUDGET, kept_alerts: int = SNAPSHOT_ALERTS,
) -> dict[str, Any]:
    """The `metrics` trait's JSON: all data up to delta `seq` of the selected runs within `point_budget`, and the
    counts of the alerts older than the `kept_alerts` newest (those the `alerts` snapshot leaves out)."""
    return {
        "seq": seq,
        "runs": encoded_runs(runs, selected, point_budget),
        "alert_counts": older_alert_counts(alerts, kept_alerts),
    }


def newest_alerts(alerts: list[dict[str, Any]], kept: int = SNAPSHOT_ALERTS) -> list[dict[str, Any]]:
    """The `alerts` trait's JSON: the newest `kept` alerts, oldest first."""
    return alerts[-kept:]


def older_alert_counts(alerts: list[dict[str, Any]], kept: int) -> dict[str, int]:
    """Counts by severity of the alerts older than the newest `kept` (those a bounded list leaves out)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for alert in alerts[: max(0, len(alerts) - kept)]:
        counts[alert.get("severity", "warning")] = counts.get(alert.get("severity", "warning"), 0) + 1
    return counts


def encoded_runs(runs: Mapping[str, RunSeries], selected: list[str], point_budget: int) -> dict[str, Any]:
    """The selected runs' series, encoded; each series decimated to its share of `point_budget`."""
    shown = [run for run in selected if run in runs]
    cap = series_cap(runs, shown, point_budget)
    return {run_id: runs[run_id].encoded(cap) for run_id in shown}


def series_cap(runs: Mapping[str, RunSeries], run_ids: list[str], point_budget: int) -> int:
    """Points each series of these runs keeps: an equal share of `point_budget`, at least MIN_SERIES_POINTS."""
    series_count = sum(len(runs[run].columns) for run in run_ids if run in runs)
    return max(MIN_SERIES_POINTS, point_budget // max(1, series_count))
