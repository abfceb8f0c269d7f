"""Static plotly figures of the dashboard's charts, for export (HTML, images, nbconvert, reports)."""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .run_colors import PALETTE
from .run_colors import colour_slots as run_colour_slots
from .series import RunSeries

DEFAULT_CHARTS = ("reward_mean", "kl_mean", "loss", "entropy_mean", "grad_norm", "learning_rate")
SEVERITY_COLOURS = {"info": "#0288d1", "warning": "#e07000", "critical": "#d32f2f"}


def build_figure(
    runs: Mapping[str, RunSeries], run_order: list[str], metrics: list[str], alerts: Sequence[Mapping[str, Any]] = (),
    colour_slots: Mapping[str, int] | None = None,
) -> go.Figure:
    """One subplot per metric (the given ones, else the defaults present), one coloured trace per run (its palette
    slot from `colour_slots`, the `run_colors` trait, as in the live view; run_colors.py for the others);
    reward_mean gets a ±reward_std band like the live view; alerts about a charted metric are markers at their
    step, coloured by severity, as in the live view."""
    present = {name for run in runs.values() for name in run.columns}
    chosen = [m for m in (metrics or DEFAULT_CHARTS) if m in present] or sorted(
        n for n in present if ":" not in n and n != "timestamp"
    )[:6]
    order = [r for r in run_order if r in runs] + [r for r in runs if r not in run_order]
    slots = run_colour_slots(colour_slots or {}, order)
    columns = 2 if len(chosen) > 1 else 1
    rows = max(1, -(-len(chosen) // columns))
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=chosen or ["no metrics yet"])
    for index, metric in enumerate(chosen):
        row, col = index // columns + 1, index % columns + 1
        for run_id in order:
            column = runs[run_id].columns.get(metric)
            if column is None:
                continue
            colour = PALETTE[slots[run_id] % len(PALETTE)]
            x = np.frombuffer(column[0], dtype="f8")
            y = np.frombuffer(column[1], dtype="f8")
            if metric == "reward_mean" and "reward_std" in runs[run_id].columns:
                _add_std_band(figure, runs[run_id], x, y, colour, row, col)
            figure.add_trace(
                go.Scatter(
                    x=x, y=y, mode="lines", name=run_id, legendgroup=run_id, showlegend=index == 0,
                    line={"color": colour},
                ),
                row=row, col=col,
            )
        _add_alert_markers(figure, runs, metric, alerts, row, col)
        figure.update_xaxes(title_text="step", row=row, col=col)
    figure.update_layout(height=max(320, 280 * rows), margin={"t": 60, "l": 50, "r": 20, "b": 40},
                         title_text="RLDK run metrics")
    return figure


def _add_std_band(figure: go.Figure, run: RunSeries, x: np.ndarray, y: np.ndarray, colour: str, row: int,
                  col: int) -> None:
    std_x = np.frombuffer(run.columns["reward_std"][0], dtype="f8")
    std_y = np.frombuffer(run.columns["reward_std"][1], dtype="f8")
    std = dict(zip(std_x.tolist(), std_y.tolist()))
    band = np.array([std.get(step, np.nan) for step in x.tolist()])
    figure.add_trace(
        go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([y + band, (y - band)[::-1]]),
                   fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0}, hoverinfo="skip",
                   showlegend=False),
        row=row, col=col,
    )


def _add_alert_markers(
    figure: go.Figure, runs: Mapping[str, RunSeries], metric: str, alerts: Sequence[Mapping[str, Any]], row: int,
    col: int,
) -> None:
    by_severity: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for alert in alerts:
        step, value = alert.get("step"), alert.get("value")
        if alert.get("metric") != metric or not isinstance(step, (int, float)) or alert.get("run_id") not in runs:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            value = _nearest(runs[alert["run_id"]], metric, float(step))
            if value is None:
                continue
        xs, ys, texts = by_severity.setdefault(str(alert.get("severity")), ([], [], []))
        xs.append(float(step))
        ys.append(float(value))
        texts.append(html.escape(str(alert.get("message", ""))[:300]))
    for severity, (xs, ys, texts) in by_severity.items():
        figure.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="markers", name=f"{severity} alerts", text=texts, hovertemplate="%{text}<extra></extra>",
                marker={"symbol": "x" if severity == "critical" else "triangle-up", "size": 10,
                        "color": SEVERITY_COLOURS.get(severity, "#e07000")},
                showlegend=False,
            ),
            row=row, col=col,
        )


def _nearest(run: RunSeries, metric: str, step: float) -> float | None:
    column = run.columns.get(metric)
    if column is None or not len(column[0]):
        return None
    xs, ys = np.frombuffer(column[0], dtype="f8"), np.frombuffer(column[1], dtype="f8")
    finite = np.isfinite(ys)
    if not finite.any():
        return None
    index = int(np.argmin(np.where(finite, np.abs(xs - step), np.inf)))
    return float(ys[index])
