"""Static plotly figures of the dashboard's charts, for export (HTML, images, nbconvert, reports)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .series import RunSeries

DEFAULT_CHARTS = ("reward_mean", "kl_mean", "loss", "entropy_mean", "grad_norm", "learning_rate")
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def build_figure(runs: Mapping[str, RunSeries], run_order: list[str], metrics: list[str]) -> go.Figure:
    """One subplot per metric (the given ones, else the defaults present), one coloured trace per run;
    reward_mean gets a ±reward_std band like the live view."""
    present = {name for run in runs.values() for name in run.columns}
    chosen = [m for m in (metrics or DEFAULT_CHARTS) if m in present] or sorted(
        n for n in present if ":" not in n and n != "timestamp"
    )[:6]
    order = [r for r in run_order if r in runs] + [r for r in runs if r not in run_order]
    columns = 2 if len(chosen) > 1 else 1
    rows = max(1, -(-len(chosen) // columns))
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=chosen or ["no metrics yet"])
    for index, metric in enumerate(chosen):
        row, col = index // columns + 1, index % columns + 1
        for run_index, run_id in enumerate(order):
            column = runs[run_id].columns.get(metric)
            if column is None:
                continue
            colour = RUN_COLOURS[run_index % len(RUN_COLOURS)]
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
