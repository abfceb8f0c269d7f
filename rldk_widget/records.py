"""What users add and what files hold, as records: `add_metrics` / `add_alert` input validated (bad input raises
before anything is stored), and alerts read from disk made safe to show, whatever the file held."""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

from .formats import dumps_record
from .metrics import RLDKMetrics, as_number, coerce_step, record_from_mapping
from .series import json_safe
from .store import validate_run_id

SEVERITIES = ("info", "warning", "critical")
EXACT_INT_LIMIT = 2**53
"""Integers beyond this are not exact in a browser (JavaScript numbers are float64)."""


def encode_or_raise(record: Mapping[str, Any]) -> bytes:
    """The record's JSON line; ValueError now, before any run or file is touched, for what a run file cannot hold
    (a lone surrogate in a name or text, an int beyond 64 bits)."""
    try:
        return dumps_record(record)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot store this record: {err}") from None


def as_list(value: Any, what: str) -> list[Any]:
    """One item or a list / tuple of them."""
    expected = "RLDKMetrics, a mapping with a 'step' key, or a list of them" if what == "metrics" else "a dict"
    if value is None:
        raise TypeError(f"add_{what} expects {expected}; got None")
    if isinstance(value, (RLDKMetrics, Mapping)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"add_{what} expects {expected}; got {type(value).__name__}")


def metrics_record(item: Any, default_run_id: str, now: float | None = None) -> dict[str, Any]:
    """A flat metrics record with run_id and timestamp from RLDKMetrics or a flat mapping with `step`."""
    if isinstance(item, RLDKMetrics):
        record = item.to_dict()
    elif type(item) is dict or isinstance(item, Mapping):
        record = record_from_mapping(item)
    else:
        raise TypeError(
            f"add_metrics expects RLDKMetrics, a mapping with a 'step' key, or a list of them; got {type(item).__name__}"
        )
    run_id = record.get("run_id")
    record["run_id"] = default_run_id if run_id is None or run_id == default_run_id else validate_run_id(run_id)
    if "timestamp" not in record:
        record["timestamp"] = time.time() if now is None else now
    return record


def alert_record(alert: Any, default_run_id: str) -> dict[str, Any]:
    """An alert record: `type` and `message` (text), optional `step`, `severity` (default warning), `run_id`, and
    a `timestamp` (now, unless a usable one is given)."""
    if not isinstance(alert, Mapping):
        raise TypeError(f"add_alert expects a dict with 'type' and 'message', got {type(alert).__name__}")
    record: dict[str, Any] = {}
    for key, value in alert.items():
        if not isinstance(key, str):
            raise TypeError(f"alert keys must be str, got {key!r}")
        record[key] = json_safe(value)
    for key in ("type", "message"):
        if not isinstance(alert.get(key), str) or not alert[key]:
            raise ValueError(f"an alert needs a non-empty text '{key}'; got {alert.get(key)!r}")
    severity = record.setdefault("severity", "warning")
    if severity not in SEVERITIES:
        raise ValueError(f"alert severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
    if record.get("step") is not None:
        record["step"] = coerce_step(alert["step"])
    run_id = record.get("run_id")
    record["run_id"] = validate_run_id(run_id) if run_id is not None else default_run_id
    timestamp = record.get("timestamp")
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool) or not math.isfinite(as_number(timestamp)):
        record["timestamp"] = time.time()
    return record


def alert_from_file(item: Any, run_id: str) -> tuple[dict[str, Any], bool]:
    """An alert record as read from disk, made safe to show whatever the file held, and whether its step had to
    be shown inexactly (an integer step beyond 2**53 travels to the browser as the nearest float64). Integers
    beyond 64 bits in other fields become their exact text (no JSON encoder of the export takes them)."""
    source = item if isinstance(item, Mapping) else {"message": item}
    alert: dict[str, Any] = {}
    inexact = False
    for key, value in source.items():
        if key == "step" and type(value) is int and abs(value) > EXACT_INT_LIMIT:
            inexact = True
            value = float(value) if abs(value) < 1 << 1024 else None
        elif type(value) is int and not -(2**63) <= value < 2**64:
            value = str(value)
        alert[str(key)] = json_safe(value)
    alert["run_id"] = run_id
    alert["type"] = str(alert.get("type") or "alert")
    alert["message"] = str(alert.get("message") if alert.get("message") is not None else "")
    if alert.get("severity") not in SEVERITIES:
        alert["severity"] = "warning"
    step = alert.get("step")
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or not math.isfinite(step)):
        alert["step"] = None
    return alert, inexact


def group_by_run(records: Iterable[tuple[dict[str, Any], bytes]]) -> dict[str, list[tuple[dict[str, Any], bytes]]]:
    by_run: dict[str, list[tuple[dict[str, Any], bytes]]] = {}
    for record, line in records:
        by_run.setdefault(record["run_id"], []).append((record, line))
    return by_run
