"""EventInbox: work the training thread asks for, batched so that it is done at most about ten times a second.

Per logged step, a fixed cost (mapping keys, a locked file append, reading rows back, sending a delta) is about
as large for one step as for ten, and on a busy training thread each one costs more than in a loop (the
trainer's work has evicted its code and data from the CPU caches). So both ends of the live path queue items
here: RLDKCallback queues each log (written as records by one pass), the dashboard queues "run R's file grew"
(read back by one pass, one delta). When the last pass is `coalesce_s` old the caller handles everything queued
at once, otherwise the item waits for the next call or, if training goes quiet, for the inbox's worker thread.
Doing the passes on the training thread itself is deliberate: a Python-bound step loses more to a second
thread taking the GIL back and forth than to the pass. For the same reason the worker looks at the queue only
every `TAIL_LOOK_S` while items come in (each look takes the GIL from the training thread), and passes only when
the callers stopped passing for twice `coalesce_s`. Whoever must see everything so far calls `drain()`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable

logger = logging.getLogger(__name__)

Handler = Callable[[list[Any]], None]

# While items are queued the worker looks this often (or every coalesce interval, if longer) whether the callers
# stopped passing: the tail of a burst waits at most two coalesce intervals and a look (a second by default).
TAIL_LOOK_S = 0.5


class EventInbox:
    """Queued items, handed to `handler` in order and in batches, by the callers or one worker thread (the handler
    is held weakly: the inbox does not keep its owner alive). Call `drain()` only while not holding a lock that
    `handler` takes; `coalesce_s=0` hands every item over at once."""

    def __init__(
        self,
        handler: Handler,
        name: str,
        coalesce_s: float = 0.1,
        tail_look_s: float | None = None,
        quiet_s: float | None = None,
    ) -> None:
        """`tail_look_s`: how often the worker looks while items are queued (default TAIL_LOOK_S or `coalesce_s`,
        whichever is longer); `quiet_s`: how long no caller must have passed before the worker does (default twice
        `coalesce_s`)."""
        self._handler = weakref.WeakMethod(handler)  # type: ignore[arg-type]
        self._name = name
        self._coalesce_s = coalesce_s
        self._tail_look_s = max(TAIL_LOOK_S, coalesce_s) if tail_look_s is None else tail_look_s
        self._quiet_s = 2 * coalesce_s if quiet_s is None else quiet_s
        self._pending: list[Any] = []
        self._last_pass = 0.0
        self._pending_lock = threading.Lock()
        self._handling = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, item: Any) -> None:
        """Queue `item`; handle the queue now if the last pass is `coalesce_s` old, else leave it to a later call
        or to the worker (started on first use), which passes once no pass ran for twice `coalesce_s`."""
        with self._pending_lock:
            if self._closed.is_set():
                return
            self._pending.append(item)
            due = time.monotonic() - self._last_pass >= self._coalesce_s
            if not due and self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        if due:
            self.drain()
        elif not self._wake.is_set():
            self._wake.set()

    def drain(self) -> None:
        """Handle every queued item now, in the calling thread (after a pass of the worker already running)."""
        with self._handling:
            with self._pending_lock:
                pending, self._pending = self._pending, []
                if pending:
                    self._last_pass = time.monotonic()
            if not pending:
                return
            handler = self._handler()
            if handler is not None:
                handler(pending)

    def on_worker(self) -> bool:
        """True on the inbox's worker thread (a pass there is the tail of a burst: no caller passed for a while)."""
        return threading.current_thread() is self._thread

    def close(self) -> None:
        """Stop the worker; items still queued are dropped (drain first to keep them)."""
        with self._pending_lock:  # so that no put starts a worker after this
            self._closed.set()
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _work(self) -> None:
        look = self._tail_look_s
        while True:
            if not self._wake.wait(timeout=60):
                if self._handler() is None:
                    return  # the owner was collected without close(): end instead of idling forever
                continue
            # while puts keep coming, the callers' own passes handle the queue; this thread passes only when they
            # stopped for two intervals: the last items of a burst, after which training went quiet (eval, end)
            if self._closed.wait(look):
                return
            with self._pending_lock:
                if self._closed.is_set():  # closed on the way here: close()'s wake-up would be cleared below
                    return
                if not self._pending:
                    self._wake.clear()  # a put from now on wakes this thread again
                    continue
                if time.monotonic() - self._last_pass < self._quiet_s:
                    continue
                self._wake.clear()
            if self._handler() is None:
                return
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - the worker must survive a failing pass
                logger.exception("%s: handling queued items failed", self._name)
