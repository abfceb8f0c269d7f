"""DeltaChannel: sends what was appended since the last message to the views, numbered and throttled.

A training loop blocks the kernel's event loop for the whole cell, so nothing is scheduled on it: the caller's
thread sends when the throttle interval has passed, and the channel's one flusher thread (started on first need,
woken by an event; no thread per message) sends what is left if the callers did not within a second interval.
All of it runs under the widget's lock, the same lock that builds snapshots, so a snapshot's `seq` always says
exactly which deltas it already contains (docs/protocol.md).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable

from .series import Points, encode_points

logger = logging.getLogger(__name__)


_RECHECK_S = 0.02
"""While waiting to send, the flusher looks again this often (a tail shortens its wait)."""


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
        self._replaced: dict[str, dict[str, Any]] = {}
        self._dropped: set[str] = set()
        self._last_sent = 0.0
        self._flush_wanted = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._tail = False

    def push(self, run_id: str, points: Points, alerts: list[dict[str, Any]]) -> None:
        """Queue new points (the channel takes over their arrays) and alerts; send now if the interval has passed,
        else make sure the flusher will."""
        with self._lock:
            if points:
                pending = self._points.setdefault(run_id, {})
                for name, (xs, ys) in points.items():
                    column = pending.get(name)
                    if column is None:
                        pending[name] = (xs, ys)
                    else:
                        column[0].extend(xs)
                        column[1].extend(ys)
            self._alerts.extend(alerts)
            if self._empty():
                return
            self._flush_or_schedule()

    def replace_run(self, run_id: str, encoded: dict[str, Any]) -> None:
        """The views replace what they hold of `run_id` with `encoded` (its series now, in the protocol's form);
        points queued for it before are in it already, points pushed after it apply on top."""
        with self._lock:
            self._points.pop(run_id, None)
            self._dropped.discard(run_id)
            self._replaced[run_id] = encoded
            self._flush_or_schedule()

    def drop_run(self, run_id: str) -> None:
        """The views forget `run_id`'s series (no longer shown)."""
        with self._lock:
            self._points.pop(run_id, None)
            self._replaced.pop(run_id, None)
            self._dropped.add(run_id)
            self._flush_or_schedule()

    def _empty(self) -> bool:
        return not (self._points or self._alerts or self._replaced or self._dropped)

    def send_tail(self) -> None:
        """What is queued is the end of a burst (no pushes follow): send it one interval after the last send, not
        two (the flusher's wait that leaves sends to a still-pushing thread)."""
        with self._lock:
            if self._empty():
                return
            self._tail = True
            self._flush_or_schedule()

    def _flush_or_schedule(self) -> None:
        wait = self._last_sent + self.min_interval - time.monotonic()
        if wait <= 0:
            self.flush()
        elif not self._closed:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=_flush_loop, args=(weakref.ref(self), self._flush_wanted), name="rldk-delta-flush",
                    daemon=True,
                )
                self._flusher.start()
            self._flush_wanted.set()

    def _flush_when_due(self) -> bool:
        """On the flusher thread: send what is queued once the callers had one more interval to send it themselves
        (while points keep coming they do, and this thread only takes the GIL for the tail). False once closed."""
        while True:
            with self._lock:
                if self._closed:
                    return False
                if self._empty():
                    self._flush_wanted.clear()  # a caller sent it; the next deferred push wakes this thread
                    return True
                wait = self._last_sent + (1 if self._tail else 2) * self.min_interval - time.monotonic()
                if wait <= 0:
                    self._flush_wanted.clear()
                    self.flush()
                    return True
            time.sleep(min(wait, _RECHECK_S))  # a tail (send_tail) may shorten the wait meanwhile

    def flush(self) -> None:
        """Send everything queued as one delta message (no-op when nothing is queued)."""
        with self._lock:
            if self._empty():
                return
            self.seq += 1
            message: dict[str, Any] = {
                "type": "delta",
                "seq": self.seq,
                "metrics": {run: encode_points(points) for run, points in self._points.items()},
                "alerts": self._alerts,
            }
            if self._replaced:
                message["replace_runs"] = self._replaced
            if self._dropped:
                message["drop_runs"] = sorted(self._dropped)
            self._points = {}
            self._alerts = []
            self._replaced = {}
            self._dropped = set()
            self._tail = False
            self._last_sent = time.monotonic()
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
            if not self._empty() or replace:
                self._points = {}
                self._alerts = []
                self._replaced = {}
                self._dropped = set()
                self.seq += 1
            return self.seq

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._flush_wanted.set()


def _flush_loop(channel_ref: "weakref.ref[DeltaChannel]", wanted: threading.Event) -> None:
    """The flusher thread: holds its channel weakly, so a dropped widget's thread ends within a minute."""
    while True:
        wanted.wait(timeout=60)
        channel = channel_ref()
        if channel is None:
            return
        if wanted.is_set() and not channel._flush_when_due():
            return
        del channel
