"""Shared test helpers: wait for a condition (`wait_until`), a clock the test moves (`FakeClock`), tap a widget's
comm, check every message would survive the kernel's wire encoding, and replay the messages into a model of the
view (the same snapshot / delta rules as js/src/widget.ts)."""

from __future__ import annotations

import base64
import math
import threading
import time
from typing import Any, Callable, TypeVar

import numpy as np

try:  # the kernel's own encoder: allow_nan=False, UTF-8 with surrogateescape
    from jupyter_client.session import json_packer
except ImportError:  # pragma: no cover - jupyter_client comes with ipykernel
    import json

    def json_packer(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf8", errors="surrogateescape")


T = TypeVar("T")

DEADLINE_S = 30.0
"""How long `wait_until` waits by default: generous, since a condition that holds returns at once and only a broken
one waits this long."""


def wait_until(
    condition: Callable[[], T],
    timeout: float = DEADLINE_S,
    what: str | None = None,
    interval: float = 0.01,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition()` until it returns something truthy and return that value; after `timeout` seconds raise
    TimeoutError naming `what` and the last value seen. An exception of a type in `retry_on` counts as "not yet"
    (the last one is named on timeout); any other exception, and always an AssertionError, propagates at once, so
    a check that failed is reported as itself, not as a timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last = condition()
            last_error = None
            if last:
                return last
        except AssertionError:
            raise
        except retry_on as err:
            last_error = err
        if time.monotonic() >= deadline:
            detail = f"last error: {last_error!r}" if last_error is not None else f"last value: {repr(last)[:300]}"
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or condition!r} ({detail})")
        time.sleep(interval)


class FakeClock:
    """Stands in for the `time` module of an rldk_widget module that reads the clock through its module global
    (`inbox.py` and `transport.py` call `time.monotonic()`): `monkeypatch.setattr(rldk_widget.inbox, "time", clock)`.
    `monotonic()` returns what the test set with `advance()`; `sleep()` waits a real moment without moving the
    clock (so a thread that sleeps until a deadline polls instead of spinning) and counts the calls in `sleeps`;
    everything else is the real `time`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps = 0  # calls of sleep(): a thread sleeping until a deadline has looked at the clock again

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        time.sleep(min(max(seconds, 0.0), 0.005))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class CountingEvent(threading.Event):
    """An Event that counts its timed waits: put in place of an EventInbox's `_closed`, it counts the worker's looks
    at the queue (each look is a `_closed.wait(look)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.timed_waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.timed_waits += 1
        return super().wait(timeout)


def decode(column: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(column), dtype="<f8")


class ViewModel:
    """What a view holds after the messages it got: docs/protocol.md, as js/src/widget.ts `Sync` applies it."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.awaiting_snapshot = False
        self.gaps = 0
        self.snapshots_applied = 0
        self.status: dict[str, Any] | None = None
        self.alerts: list[dict[str, Any]] = []
        self._model_alerts: list[dict[str, Any]] = []
        self._chunks: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}

    # ---- messages ----
    def on_message(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("method") == "update":
            state = data.get("state", {})
            if "status" in state:
                self.status = state["status"]
            if "alerts" in state:
                self._model_alerts = state["alerts"]
            if "metrics" in state:
                self.on_snapshot(state["metrics"], self._model_alerts)
            elif "alerts" in state:
                self.alerts = list(state["alerts"])
        elif data.get("method") == "custom":
            self.on_delta(data.get("content"))

    def on_snapshot(self, metrics: dict[str, Any], alerts: list[dict[str, Any]]) -> None:
        seq = metrics.get("seq", 0)
        empty = not self._chunks and not self.alerts
        if not (seq > self.last_seq or self.awaiting_snapshot or empty):
            return
        self.awaiting_snapshot = False
        self.last_seq = seq
        self.snapshots_applied += 1
        self._chunks = {}
        self._add(metrics.get("runs", {}))
        self.alerts = list(alerts)

    def on_delta(self, content: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "delta":
            return
        seq = content["seq"]
        if seq <= self.last_seq:
            return
        if seq == self.last_seq + 1:
            self.last_seq = seq
            for run_id in content.get("drop_runs", []):
                self._chunks.pop(run_id, None)
            for run_id in content.get("replace_runs", {}):
                self._chunks.pop(run_id, None)
            self._add(content.get("replace_runs", {}))
            self._add(content.get("metrics", {}))
            self.alerts.extend(content.get("alerts", []))
            return
        self.gaps += 1
        self.awaiting_snapshot = True

    def _add(self, runs: dict[str, Any]) -> None:
        for run_id, series in runs.items():
            run = self._chunks.setdefault(run_id, {})
            for name, columns in series.items():
                run.setdefault(name, []).append((decode(columns["x"]), decode(columns["y"])))

    # ---- what the view shows ----
    @property
    def run_ids(self) -> list[str]:
        return list(self._chunks)

    def names(self, run_id: str) -> list[str]:
        return list(self._chunks.get(run_id, {}))

    def series(self, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        chunks = self._chunks.get(run_id, {}).get(name, [])
        if not chunks:
            return np.empty(0), np.empty(0)
        return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])

    def point_count(self) -> int:
        return sum(len(c[0]) for run in self._chunks.values() for chunks in run.values() for c in chunks)


class CommTap:
    """Records every message the widget sends to its frontends, checks that each one passes the kernel's wire
    encoder (`wire_errors`), and with `view=True` replays them into a `ViewModel` seeded with the widget's
    current state, as a view displayed now would be."""

    def __init__(self, widget: Any, view: bool = False, keep: bool = True) -> None:
        self.messages: list[Any] = []
        self.wire_errors: list[str] = []
        self.count = 0
        self.keep = keep
        self.view = ViewModel() if view else None
        original = widget.comm.send

        def send(data=None, metadata=None, buffers=None):
            self._record(data)
            return original(data=data, metadata=metadata, buffers=buffers)

        if self.view is not None:
            with widget._lock:
                widget.comm.send = send
                state = widget.get_state(["metrics", "alerts", "status"])
                self.view.status = state["status"]
                self.view.on_snapshot(state["metrics"], state["alerts"])
        else:
            widget.comm.send = send

    def _record(self, data: Any) -> None:
        self.count += 1
        try:
            json_packer(data)
        except Exception as err:  # noqa: BLE001 - anything the kernel would fail to send
            self.wire_errors.append(f"{type(err).__name__}: {err}")
        if self.keep:
            self.messages.append(data)
        if self.view is not None:
            self.view.on_message(data)

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [m["content"] for m in self.messages if m.get("method") == "custom"]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["state"] for m in self.messages if m.get("method") == "update"]


def same_float(a: float, b: float) -> bool:
    """Equal as stored values: NaN equals NaN (any payload), and 0.0 differs from -0.0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def same_floats(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, dtype="f8"), np.asarray(b, dtype="f8")
    return a.shape == b.shape and all(same_float(x, y) for x, y in zip(a.tolist(), b.tolist()))
