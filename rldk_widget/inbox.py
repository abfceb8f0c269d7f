"""EventInbox: work the training thread asks for, done on a background thread so that the training loop only pays
for queueing it.

RLDKCallback tells a connected dashboard "run R's metrics file grew" after every write. Reading the new rows
back, updating the series and queueing a delta for the views takes longer than the write itself, so the
dashboard puts the key `(R, "metrics")` here and returns at once; one daemon thread handles the keys gathered
since its last pass. Readers that must see everything written so far (`to_dataframe`, `flush`, ...) call
`drain()` first: it handles what is queued in the calling thread and waits for a pass already running.
"""

from __future__ import annotations

import logging
import threading
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
        self._pending_lock = threading.Lock()
        self._handling = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, key: Hashable) -> None:
        """Queue `key` (cheap: a set insert and an event); starts the worker on first use."""
        with self._pending_lock:
            if self._closed.is_set():
                return
            self._pending.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        self._wake.set()

    def drain(self) -> None:
        """Handle every queued key now, in the calling thread (after a pass of the worker already running)."""
        with self._handling:
            with self._pending_lock:
                pending, self._pending = self._pending, set()
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
            self._wake.wait()
            # a short pause gathers the events of a burst into one pass (one read of the file, one delta)
            if self._closed.wait(self._coalesce_s):
                return
            self._wake.clear()
            if self._handler() is None:
                return
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - the worker must survive; the next pass reads the files again
                logger.exception("%s: handling queued events failed", self._name)
