"""DeltaChannel: sends what was appended since the last message to the views, numbered and throttled.

A training loop blocks the kernel's event loop for the whole cell, so nothing is scheduled on it: the caller's
thread sends when the throttle interval has passed, and a one-shot timer thread sends what is left. All of it
runs under the widget's lock, the same lock that builds snapshots, so a snapshot's `seq` always says exactly
which deltas it already contains (docs/protocol.md).
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from typing import Any, Callable

from .series import Points, encode_points

logger = logging.getLogger(__name__)


class DeltaChannel:
    def __init__(
        self, send: Callable[[dict[str, Any]], None], lock: threading.RLock, min_interval: float = 0.1
    ) -> None:
        self._send = send
        self._lock = lock
        self.min_interval = min_interval
        self.seq = 0
        self.messages_sent = 0
        self._points: dict[str, Points] = {}
        self._alerts: list[dict[str, Any]] = []
        self._last_sent = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False

    def push(self, run_id: str, points: Points, alerts: list[dict[str, Any]]) -> None:
        """Queue new points and alerts; send now if the interval has passed, else make sure a timer will."""
        with self._lock:
            if points:
                pending = self._points.setdefault(run_id, {})
                for name, (xs, ys) in points.items():
                    column = pending.get(name)
                    if column is None:
                        pending[name] = (array("d", xs), array("d", ys))
                    else:
                        column[0].extend(xs)
                        column[1].extend(ys)
            self._alerts.extend(alerts)
            if not self._points and not self._alerts:
                return
            self._flush_or_schedule()

    def _flush_or_schedule(self) -> None:
        wait = self._last_sent + self.min_interval - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self._timer is None and not self._closed:
            self._timer = threading.Timer(wait, self._flush_from_timer)
            self._timer.daemon = True
            self._timer.start()

    def _flush_from_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._flush_or_schedule()

    def flush(self) -> None:
        """Send everything queued as one delta message (no-op when nothing is queued)."""
        with self._lock:
            if not self._points and not self._alerts:
                return
            self.seq += 1
            message = {
                "type": "delta",
                "seq": self.seq,
                "metrics": {run: encode_points(points) for run, points in self._points.items()},
                "alerts": self._alerts,
            }
            self._points = {}
            self._alerts = []
            self._last_sent = time.monotonic()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._closed:
                return
            try:
                self._send(message)
                self.messages_sent += 1
            except Exception:
                logger.exception("could not send a delta to the views; they will ask for a snapshot")

    def snapshot_seq(self, replace: bool) -> int:
        """A snapshot is being built from the full data: drop what is queued (the snapshot holds it) and return
        the snapshot's seq. It is numbered past the last delta when it holds rows no delta carried or must
        replace what views hold (`replace`); otherwise it equals the last delta's seq and views that are in sync
        keep their own, full-resolution data (docs/protocol.md)."""
        with self._lock:
            if self._points or self._alerts or replace:
                self._points = {}
                self._alerts = []
                self.seq += 1
            return self.seq

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
