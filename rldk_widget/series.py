"""RunSeries: one run's metrics held column by column (step and value per metric) in compact float arrays.

Records come in as flat dicts; every numeric key except `step` becomes a series of (step, value) points, so a
metric logged at only some steps has points only there, and a logged NaN stays a NaN. Columns encode to the
base64 float64 form of docs/protocol.md, which carries NaN and ±Inf unchanged.

A record read from a file is never dropped for its step: one without a usable step (none, as in raw `on_log`
dicts, or negative, fractional, non-numeric) is placed at the previous record's step + 1 (0 for the first), and an
integer step beyond 2**53 at the nearest float64; `add_records` counts both so the status line can say so.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from operator import itemgetter
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd

from .metrics import MAX_STEP, as_number

NON_SERIES_KEYS = frozenset({"step", "run_id"})
Points = dict[str, tuple[array, array]]
_INT64_MAX = 2**63 - 1
_COLUMNS_FROM = 8
"""Records with the same keys in a row, from which `add_records` adds them column by column."""


class Added(NamedTuple):
    points: Points
    """The new points by series name (for a delta message)."""
    fallback_steps: int
    """Records without a usable step, placed at the previous record's step + 1."""
    inexact_steps: int
    """Records whose integer step is beyond 2**53, placed at the nearest float64."""


def read_step(value: Any) -> tuple[float | None, bool]:
    """A record's step as read from a file: (step, exact), or (None, _) when it is unusable (see module doc)."""
    if type(value) is int:
        if 0 <= value <= MAX_STEP:
            return value, True
        if value > MAX_STEP:
            step = float(value) if value < 1 << 1024 else math.inf
            return (step, False) if math.isfinite(step) else (None, False)
        return None, False
    if isinstance(value, bool) or value is None:
        return None, False
    number = as_number(value)
    if number is None or not math.isfinite(number) or number < 0 or number != int(number):
        return None, False
    return number, number <= MAX_STEP


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
        self.last_step: float | None = None
        self.record_count = 0
        self._previous_step: dict[str, float | None] = {}

    def add_records(self, records: Iterable[Mapping[str, Any]], prefix: str = "", want_points: bool = True) -> Added:
        """Add records of one source (`prefix`: "" for the metrics file, "ppo:", "ckpt:"); see `Added` (its points
        are left empty when not `want_points`: a load that goes to the views as a snapshot)."""
        first_new: dict[str, int] = {}  # per series touched: where this call's points start
        plans: dict[tuple[Any, ...], list[tuple[Any, Any, Any]]] = {}  # per key layout: (key, its columns' appends)
        fallback = inexact = 0
        rows = records if isinstance(records, list) else list(records)
        # every record with the same keys (the common case) in one go, else runs of records with the same keys
        whole = len(rows) >= _COLUMNS_FROM and self._add_columns(rows, tuple(rows[0]), prefix, first_new)
        layouts = [] if whole else list(map(tuple, rows))
        for start, end in same_key_runs(layouts):
            if end - start < _COLUMNS_FROM or not self._add_columns(rows[start:end], layouts[start], prefix,
                                                                    first_new):
                for record in rows[start:end]:
                    fallback_step, inexact_step = self._add_record(record, prefix, plans, first_new)
                    fallback += fallback_step
                    inexact += inexact_step
        columns = self.columns
        for name in [name for name, start in first_new.items() if not start and not columns[name][0]]:
            del columns[name]  # opened for a key whose values were all missing: no series
            del first_new[name]
        if not want_points:
            return Added({}, fallback, inexact)
        added = {name: (columns[name][0][start:], columns[name][1][start:]) for name, start in first_new.items()}
        return Added({name: points for name, points in added.items() if points[0]}, fallback, inexact)

    def _add_record(self, record: Mapping[str, Any], prefix: str, plans: dict[tuple[Any, ...], Any],
                    first_new: dict[str, int]) -> tuple[bool, bool]:
        """One record's points; (its step was a fallback, its step is inexact)."""
        previous = self._previous_step.get(prefix)
        raw_step = record.get("step")
        fallback = inexact = False
        if type(raw_step) is int and 0 <= raw_step <= MAX_STEP:
            step: float = raw_step
        else:
            usable, exact = read_step(raw_step)
            if usable is None:
                fallback = True
                step = 0 if previous is None else previous + 1
            else:
                inexact = not exact
                step = usable
        self._previous_step[prefix] = step
        self.record_count += 1
        if self.last_step is None or step > self.last_step:
            self.last_step = step
        keys = tuple(record)
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = self._plan(keys, prefix, first_new)
        for key, append_step, append_value in plan:
            raw = record[key]
            value = raw if type(raw) is float else as_number(raw)
            if value is not None:
                append_step(step)
                append_value(value)
        return fallback, inexact

    def _add_columns(self, rows: list[Mapping[str, Any]], keys: tuple[Any, ...], prefix: str,
                     first_new: dict[str, int]) -> bool:
        """Records that all have `keys` (in any order), column by column, when every step is an int in range and
        every value a float (what add_metrics and the callback write): the same points as record by record,
        without a Python step per value. False, with nothing added, for anything else."""
        if "step" not in keys or set(map(len, rows)) != {len(keys)}:
            return False
        try:  # a record without one of the keys (it has as many: another one instead) raises here
            columns = {key: list(map(itemgetter(key), rows)) for key in keys}
        except (KeyError, TypeError):
            return False
        steps = columns["step"]
        if set(map(type, steps)) != {int} or min(steps) < 0 or max(steps) > MAX_STEP:
            return False
        series = []
        for key in keys:
            if key in NON_SERIES_KEYS or not isinstance(key, str):
                continue
            column = columns[key]
            if set(map(type, column)) != {float}:
                return False
            series.append((prefix + key if prefix else key, column))
        xs = array("d", steps)
        for name, column in series:
            target = self.columns.get(name)
            if target is None:
                target = self.columns[name] = (array("d"), array("d"))
            first_new.setdefault(name, len(target[0]))
            target[0].extend(xs)
            target[1].extend(array("d", column))
        self._previous_step[prefix] = steps[-1]
        self.record_count += len(rows)
        top = max(steps)
        if self.last_step is None or top > self.last_step:
            self.last_step = top
        return True

    def _plan(self, keys: tuple[Any, ...], prefix: str, first_new: dict[str, int]) -> list[tuple[Any, Any, Any]]:
        """The series keys of one key layout with the appends of their columns (opened if new), noting where each
        column's new points start."""
        plan = []
        for key in keys:
            if key in NON_SERIES_KEYS or not isinstance(key, str):
                continue
            name = prefix + key if prefix else key
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = (array("d"), array("d"))
            first_new.setdefault(name, len(column[0]))
            plan.append((key, column[0].append, column[1].append))
        return plan

    def drop_prefix(self, prefix: str) -> None:
        """Forget the series of one source (a file that was replaced and is read again whole)."""
        for name in [n for n in self.columns if _has_prefix(n, prefix)]:
            del self.columns[name]
        self._previous_step.pop(prefix, None)

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

    def series(self) -> dict[str, pd.Series]:
        """Every series as a pandas Series of values indexed by step (a copy; repeated steps kept)."""
        return {
            name: pd.Series(np.frombuffer(ys, dtype="f8").copy(), index=step_index(xs), name=name)
            for name, (xs, ys) in self.columns.items()
        }

    def latest(self, name: str) -> float | None:
        column = self.columns.get(name)
        return column[1][-1] if column else None

    def to_dataframe(self, run_id: str) -> pd.DataFrame:
        """One row per step (the last value logged at a step wins), a `run_id` column first."""
        series = {}
        for name, (xs, ys) in self.columns.items():
            values = pd.Series(np.frombuffer(ys, dtype="f8").copy(), index=step_index(xs))
            series[name] = values[~values.index.duplicated(keep="last")]
        if not series:
            return pd.DataFrame({"run_id": pd.Series(dtype=str), "step": pd.Series(dtype="int64")})
        frame = pd.concat(series, axis=1).sort_index()
        frame.index.name = "step"
        frame = frame.reset_index()
        frame.insert(0, "run_id", run_id)
        return frame


def same_key_runs(layouts: list[tuple[Any, ...]], longest: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of consecutive records with the same keys (`layouts[i]`: record i's keys), at most
    `longest` records each."""
    start = 0
    while start < len(layouts):
        end = start + 1
        while end < len(layouts) and layouts[end] == layouts[start] and (longest is None or end - start < longest):
            end += 1
        yield start, end
        start = end


def step_index(xs: array) -> pd.Index:
    """Steps as an int64 index named "step", or float64 where a step is beyond int64 (read from a file)."""
    steps = np.frombuffer(xs, dtype="f8")
    if len(steps) and steps.max() > _INT64_MAX:
        return pd.Index(steps.copy(), name="step")
    return pd.Index(steps.astype("int64"), name="step")


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
