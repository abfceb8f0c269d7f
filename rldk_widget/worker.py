"""KeyedWorker: a background thread that handles keys (run ids) marked as pending, each once however often it was
marked, and that a reader can drain on its own thread when it must see everything handled. A long pass on the
worker may pause (`may_pause`) so that it does not hold the GIL against the training thread for seconds."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Hashable

logger = logging.getLogger(__name__)


class KeyedWorker:
    def __init__(self, handle: Callable[[Hashable], None], name: str) -> None:
        """`handle(key)` runs on the worker (started on first use) or on a thread calling `drain()`."""
        self._handle = handle
        self._name = name
        self._pending: set[Hashable] = set()
        self._lock = threading.Lock()
        self._working = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._waiting = 0  # callers blocked in drain() on the worker's pass

    def touch(self, key: Hashable) -> None:
        """Handle `key` soon (once, however often it is touched before)."""
        with self._lock:
            if self._closed:
                return
            self._pending.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        self._wake.set()

    def drain(self) -> None:
        """Handle everything pending now, on the calling thread (after a pass of the worker under way)."""
        with self._lock:
            self._waiting += 1
        self._working.acquire()
        try:
            with self._lock:
                self._waiting -= 1
            while True:
                with self._lock:
                    if not self._pending or self._closed:
                        return
                    key = self._pending.pop()
                self._handle(key)
        finally:
            self._working.release()

    def may_pause(self) -> bool:
        """True on the worker's own pass while no caller waits for it in drain(): a long pass may pause there to
        let other threads take the GIL (a caller's pass, or one a caller waits for, goes on at full speed)."""
        return threading.current_thread() is self._thread and not self._waiting

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            self._wake.wait(timeout=60)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - the worker must survive a failing key
                logger.exception("%s failed", self._name)
