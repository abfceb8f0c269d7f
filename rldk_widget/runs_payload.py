"""The runs table as the views get it: columns described once (key, label, kind, group), rows as lists of plain
JSON values (NaN and missing as null), at most a page of rows; and `table_page`, one page of it sorted and
filtered for a view's "runs.page" request (a sweep of more than a thousand runs is paged)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

_IDENTITY = ("run_id", "name", "source", "folder", "trainer", "status", "duplicate_of")
_PROGRESS = ("step", "max_steps", "duration_s", "started", "last_activity")
_LABELS = {"run_id": "run id", "name": "run", "duration_s": "duration", "last_activity": "last record",
           "max_steps": "max steps"}
_KINDS = {"status": "status", "duration_s": "duration", "started": "time", "last_activity": "time"}
_FILTER_MAX_CHARS = 200
_FILTER_MAX_TERMS = 8


def table_payload(table: pd.DataFrame, max_rows: int, offset: int = 0) -> dict[str, Any]:
    """{"columns": [...], "rows": [[...]], "total": n, "offset": offset} of `table` (runs_table's DataFrame)."""
    page = table.iloc[offset : offset + max_rows]
    rows = [[_plain(value) for value in row] for row in page.itertuples(index=False, name=None)]
    return {"columns": _columns(table), "rows": rows, "total": len(table), "offset": offset}


def table_page(table: pd.DataFrame, params: Mapping[str, Any], max_rows: int) -> dict[str, Any]:
    """One page of `table` for a view: `params` {"offset", "limit" (≤ max_rows), "sort": {"key", "desc"},
    "filter": text, "run_ids": [...]}, all optional. `filter` keeps the rows where every white-space separated
    term is in the run id, the name or a configuration value (case-insensitive); `run_ids` keeps those runs;
    `sort` orders by one column (numbers numerically and before text, missing values last either way, ties in
    run order). The payload is `table_payload`'s, with "total" the number of rows that matched and the columns
    of the whole table."""
    frame = table
    run_ids = params.get("run_ids")
    if isinstance(run_ids, list):
        wanted = [run for run in run_ids[:max_rows] if isinstance(run, str)]
        frame = frame[frame["run_id"].isin(wanted)]
    text = params.get("filter")
    if isinstance(text, str) and text.strip():
        frame = frame[_matches(frame, text, table.attrs.get("config_columns", ()))]
    sort = params.get("sort")
    if isinstance(sort, Mapping) and isinstance(sort.get("key"), str) and sort["key"] in frame.columns:
        frame = frame.iloc[_order(frame[sort["key"]].tolist(), bool(sort.get("desc")))]
    offset = _count(params.get("offset"), 0, 0, max(0, len(frame)))
    limit = _count(params.get("limit"), max_rows, 1, max_rows)
    page = frame.iloc[offset : offset + limit]
    rows = [[_plain(value) for value in row] for row in page.itertuples(index=False, name=None)]
    return {"columns": _columns(table), "rows": rows, "total": len(frame), "offset": offset}


def _columns(table: pd.DataFrame) -> list[dict[str, str]]:
    groups = {column: "metrics" for column in table.attrs.get("metric_columns", ())}
    groups.update({column: "alerts" for column in table.attrs.get("alert_columns", ())})
    groups.update({column: "config" for column in table.attrs.get("config_columns", ())})
    groups.update({column: "identity" for column in _IDENTITY})
    groups.update({column: "progress" for column in _PROGRESS})
    columns = []
    for column in table.columns:
        numeric = pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(table[column])
        kind = _KINDS.get(column, "number" if numeric else "text")
        columns.append({"key": str(column), "label": _LABELS.get(column, str(column)), "kind": kind,
                        "group": groups.get(column, "config")})
    return columns


def _matches(frame: pd.DataFrame, text: str, config_columns: Any) -> pd.Series:
    terms = text[:_FILTER_MAX_CHARS].lower().split()[:_FILTER_MAX_TERMS]
    searched = [c for c in ("run_id", "name", *config_columns) if c in frame.columns]
    haystack = pd.Series("", index=frame.index)
    for column in searched:
        values = frame[column]
        haystack = haystack + "\u0000" + values.map(_text).where(values.notna(), "")
    keep = pd.Series(True, index=frame.index)
    for term in terms:
        keep &= haystack.str.contains(term, regex=False)
    return keep


def _text(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, float) and plain.is_integer() and abs(plain) < 1e15:
        return f"{plain} {int(plain)}".lower()  # "3.0 3": a seed typed as 3 finds a float column's 3.0
    return str(plain).lower()


def _order(values: list[Any], desc: bool) -> list[int]:
    """Positions of `values` sorted: numbers (numerically) before text (case-insensitive), missing last."""
    present, missing = [], []
    for index, value in enumerate(values):
        plain = _plain(value)
        if plain is None:
            missing.append(index)
        elif isinstance(plain, (int, float)):
            present.append(((0, float(plain), ""), index))
        else:
            present.append(((1, 0.0, str(plain).lower()), index))
    present.sort(key=lambda item: item[0], reverse=desc)  # sorted is stable either way: ties keep run order
    return [index for _, index in present] + missing


def _count(value: Any, default: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return max(low, min(high, int(value)))


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, str):
        return value[:500]
    return str(value)[:500]
