"""RunSeries: one run's metrics held column by column (step and value per metric) in compact float arrays.

Records come in as flat dicts; every numeric key except `step` becomes a series of (step, value) points, so a
metric logged at only some steps has points only there, and a logged NaN stays a NaN. Columns encode to the
base64 float64 form of docs/protocol.md, which carries NaN and ±Inf unchanged.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .metrics import as_number, coerce_step

NON_SERIES_KEYS = frozenset({"step", "run_id"})
Points = dict[str, tuple[array, array]]


def encode_column(values: Iterable[float] | array) -> str:
    """Little-endian float64 values as base64 text."""
    if type(values) is array and values.typecode == "d" and sys.byteorder == "little":
        return base64.b64encode(values).decode("ascii")  # the delta path: no numpy round trip
    column = np.asarray(values, dtype="<f8")
    return base64.b64encode(column.tobytes()).decode("ascii")


def decode_column(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


def encode_points(points: Mapping[str, tuple[Any, Any]]) -> dict[str, dict[str, str]]:
    return {name: {"x": encode_column(xs), "y": encode_column(ys)} for name, (xs, ys) in points.items()}


def decimate(xs: np.ndarray, ys: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~`max_points` points that keep each bucket's minimum and maximum (NaN and ±Inf included, so
    spikes and gaps stay visible), the first and the last point."""
    count = len(xs)
    if count <= max_points:
        return xs, ys
    buckets = max(1, max_points // 2 - 1)
    size = -(-count // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:count] = ys
    grid = padded.reshape(buckets, size)
    nan = np.isnan(grid)
    lows = np.where(nan, np.inf, grid).argmin(axis=1)
    highs = np.where(nan, -np.inf, grid).argmax(axis=1)
    offsets = np.arange(buckets) * size
    with_nan = nan.any(axis=1)
    first_nan = (offsets + nan.argmax(axis=1))[with_nan]
    keep = np.unique(np.concatenate([offsets + lows, offsets + highs, first_nan, [0, count - 1]]))
    keep = keep[keep < count]
    return xs[keep], ys[keep]


class RunSeries:
    """All points of one run; `add_records` returns just the points it added (for a delta message)."""

    def __init__(self) -> None:
        self.columns: dict[str, tuple[array, array]] = {}
        self.last_step: int | None = None
        self.record_count = 0

    def add_records(self, records: Iterable[Mapping[str, Any]], prefix: str = "") -> tuple[Points, int]:
        """Add records; returns the new points by series name and how many records had no usable step."""
        columns = self.columns
        first_new: dict[str, int] = {}  # per series touched: where this call's points start
        skipped = 0
        for record in records:
            try:
                step = coerce_step(record.get("step"))
            except (TypeError, ValueError):
                skipped += 1
                continue
            self.record_count += 1
            if self.last_step is None or step > self.last_step:
                self.last_step = step
            for key, raw in record.items():
                if key in NON_SERIES_KEYS or not isinstance(key, str):
                    continue
                value = raw if type(raw) is float else as_number(raw)
                if value is None:
                    continue
                name = prefix + key if prefix else key
                column = columns.get(name)
                if column is None:
                    column = columns[name] = (array("d"), array("d"))
                if name not in first_new:
                    first_new[name] = len(column[0])
                column[0].append(step)
                column[1].append(value)
        added = {name: (columns[name][0][start:], columns[name][1][start:]) for name, start in first_new.items()}
        return added, skipped

    def drop_prefix(self, prefix: str) -> None:
        """Forget the series of one source (a file that was replaced and is read again whole)."""
        for name in [n for n in self.columns if _has_prefix(n, prefix)]:
            del self.columns[name]

    def encoded(self, max_points_per_series: int | None = None) -> dict[str, dict[str, str]]:
        """All series in the protocol's form; with a cap, each longer series is decimated to about that many
        points (the views' snapshot stays bounded whatever the run length)."""
        if max_points_per_series is None:
            return encode_points(self.columns)
        out = {}
        for name, (xs, ys) in self.columns.items():
            x, y = decimate(np.frombuffer(xs, dtype="f8"), np.frombuffer(ys, dtype="f8"), max_points_per_series)
            out[name] = {"x": encode_column(x), "y": encode_column(y)}
        return out

    def latest(self, name: str) -> float | None:
        column = self.columns.get(name)
        return column[1][-1] if column else None

    def to_dataframe(self, run_id: str) -> pd.DataFrame:
        """One row per step (the last value logged at a step wins), a `run_id` column first."""
        series = {}
        for name, (xs, ys) in self.columns.items():
            values = pd.Series(np.frombuffer(ys, dtype="f8"), index=np.frombuffer(xs, dtype="f8").astype("int64"))
            series[name] = values[~values.index.duplicated(keep="last")]
        if not series:
            return pd.DataFrame({"run_id": pd.Series(dtype=str), "step": pd.Series(dtype="int64")})
        frame = pd.concat(series, axis=1).sort_index()
        frame.index.name = "step"
        frame = frame.reset_index()
        frame.insert(0, "run_id", run_id)
        return frame


def _has_prefix(name: str, prefix: str) -> bool:
    if prefix:
        return name.startswith(prefix)
    return ":" not in name or not name.split(":", 1)[0] in ("ppo", "ckpt")


def json_safe(value: Any) -> Any:
    """Alert fields for JSON: non-finite floats become the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if type(value) in (str, int, float, bool) or value is None:
        return value
    number = as_number(value)  # numpy / torch scalars (np.float64 is a float subclass orjson would write as text)
    if number is not None:
        return json_safe(number)
    return str(value)
