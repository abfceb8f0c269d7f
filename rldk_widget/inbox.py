"""EventInbox: work the training thread asks for, batched so that it is done at most about ten times a second.

RLDKCallback tells a connected dashboard "run R's metrics file grew" after every write. Reading the new rows
back, updating the series and sending a delta costs about as much for one row as for ten, so the dashboard puts
the key `(R, "metrics")` here: when the last pass is `coalesce_s` old the caller handles everything queued at
once (one read, one delta), otherwise the key waits for the next call or, if training goes quiet, for the
inbox's worker thread. Doing the passes on the training thread itself is deliberate: a Python-bound step loses
more to a second thread taking the GIL back and forth than to the pass. Readers that must see everything
written so far (`to_dataframe`, `flush`, ...) call `drain()` first.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable, Hashable

logger = logging.getLogger(__name__)

Handler = Callable[[set[Hashable]], None]


class EventInbox:
    """A set of pending keys and one worker thread that hands them to `handler` (held weakly: the inbox does not
    keep its owner alive). Call `drain()` only while not holding a lock that `handler` takes."""

    def __init__(self, handler: Handler, name: str, coalesce_s: float = 0.1) -> None:
        self._handler = weakref.WeakMethod(handler)  # type: ignore[arg-type]
        self._name = name
        self._coalesce_s = coalesce_s
        self._pending: set[Hashable] = set()
        self._last_pass = 0.0
        self._pending_lock = threading.Lock()
        self._handling = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, key: Hashable) -> None:
        """Queue `key`; handle the queue now if the last pass is `coalesce_s` old, else leave it to a later call
        or to the worker (started on first use), which passes once no pass ran for twice `coalesce_s`."""
        with self._pending_lock:
            if self._closed.is_set():
                return
            self._pending.add(key)
            due = time.monotonic() - self._last_pass >= self._coalesce_s
            if not due and self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        if due:
            self.drain()
        else:
            self._wake.set()

    def drain(self) -> None:
        """Handle every queued key now, in the calling thread (after a pass of the worker already running)."""
        with self._handling:
            with self._pending_lock:
                pending, self._pending = self._pending, set()
                if pending:
                    self._last_pass = time.monotonic()
            if not pending:
                return
            handler = self._handler()
            if handler is not None:
                handler(pending)

    def close(self) -> None:
        """Stop the worker; keys still queued are dropped (the files hold them; a reload reads them)."""
        self._closed.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            if not self._wake.wait(timeout=60):
                if self._handler() is None:
                    return  # the owner was collected without close(): end instead of idling forever
                continue
            # while puts keep coming, the callers' own passes handle the queue; this thread passes only once none
            # did for two intervals: the last keys of a burst, after which training went quiet (eval, end of run)
            while (idle := time.monotonic() - self._last_pass) < 2 * self._coalesce_s:
                if self._closed.wait(2 * self._coalesce_s - idle):
                    return
            if self._closed.is_set():
                return
            self._wake.clear()
            if self._handler() is None:
                return
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - the worker must survive; the next pass reads the files again
                logger.exception("%s: handling queued events failed", self._name)
