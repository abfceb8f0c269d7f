"""KeyedWorker: a background thread that handles keys (run ids) marked as pending, each once however often it was
marked, and that a reader can drain on its own thread when it must see everything handled."""

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
        with self._working:
            while True:
                with self._lock:
                    if not self._pending or self._closed:
                        return
                    key = self._pending.pop()
                self._handle(key)

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
