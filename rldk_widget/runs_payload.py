"""The runs table as the views get it: columns described once (key, label, kind, group), rows as lists of plain
JSON values (NaN and missing as null), at most a page of rows."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

_IDENTITY = ("run_id", "name", "source", "folder", "trainer", "status", "duplicate_of")
_PROGRESS = ("step", "max_steps", "duration_s", "started", "last_activity")
_LABELS = {"run_id": "run id", "name": "run", "duration_s": "duration", "last_activity": "last record",
           "max_steps": "max steps"}
_KINDS = {"status": "status", "duration_s": "duration", "started": "time", "last_activity": "time"}


def table_payload(table: pd.DataFrame, max_rows: int, offset: int = 0) -> dict[str, Any]:
    """{"columns": [...], "rows": [[...]], "total": n, "offset": offset} of `table` (runs_table's DataFrame)."""
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
    page = table.iloc[offset : offset + max_rows]
    rows = [[_plain(value) for value in row] for row in page.itertuples(index=False, name=None)]
    return {"columns": columns, "rows": rows, "total": len(table), "offset": offset}


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
