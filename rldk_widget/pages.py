"""PageServer: the views' requests for data too large or too optional for the synced state (a step's samples, a
search, a run's series), answered one page at a time on a worker thread (docs/protocol.md, "Pages on request").

A request names a `slot`; a newer request in the same slot supersedes an older one (a slider's burst is answered
for its newest position only): one still waiting gets a `stale` reply at once, one being computed is told at its
next `progress` call and ends with a `stale` reply. A handler may send partial pages through `progress` (a search
that reports "searched N of M steps") before its final page; between those slices the worker answers what other
slots asked meanwhile, so a step's page never waits for a whole search.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import orjson

logger = logging.getLogger(__name__)

MAX_REPLY_BYTES = 4 << 20
"""A page larger than this is refused with an error reply (handlers are written to stay far below it)."""
_MAX_ID_CHARS = 200


class Superseded(Exception):
    """Raised by `Progress` inside a handler whose request a newer one in the same slot replaced."""


@dataclass
class _Request:
    id: str
    slot: str
    what: str
    params: dict[str, Any]
    cancelled: threading.Event = field(default_factory=threading.Event)


Progress = Callable[[Any], None]
Handler = Callable[[dict[str, Any], Progress], Any]


class PageServer:
    def __init__(self, send: Callable[[dict[str, Any]], None], name: str = "rldk-pages") -> None:
        self._send = send
        self._name = name
        self._handlers: dict[str, Handler] = {}
        self._waiting: OrderedDict[str, _Request] = OrderedDict()
        self._running: dict[str, _Request] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.replies_sent = 0

    def register(self, what: str, handler: Handler) -> None:
        """Answer requests for `what` with `handler(params, progress)`; its return value is the final page."""
        self._handlers[what] = handler

    def submit(self, message: Mapping[str, Any]) -> None:
        """Queue a `{"type": "request", "id", "slot", "what", "params"}` message from a view (any thread)."""
        request_id = message.get("id")
        if not isinstance(request_id, str) or not request_id or len(request_id) > _MAX_ID_CHARS:
            logger.warning("ignored a request without a usable id")
            return
        what = message.get("what")
        params = message.get("params", {})
        slot = message.get("slot")
        slot = slot if isinstance(slot, str) and slot else request_id
        if not isinstance(what, str) or what not in self._handlers:
            self._reply(request_id, slot, error=f"unknown request {what!r}")
            return
        if not isinstance(params, dict):
            self._reply(request_id, slot, error="params must be an object")
            return
        request = _Request(request_id, slot, what, params)
        with self._wake:
            if self._closed:
                return
            older = self._waiting.pop(slot, None)
            running = self._running.get(slot)
            if running is not None:
                running.cancelled.set()
            self._waiting[slot] = request
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        if older is not None:
            self._reply(older.id, older.slot, stale=True)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._waiting.clear()
            for request in self._running.values():
                request.cancelled.set()
            self._wake.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                _, request = self._waiting.popitem(last=False)
                self._running[request.slot] = request
            try:
                self._answer(request)
            finally:
                with self._wake:
                    if self._running.get(request.slot) is request:
                        del self._running[request.slot]

    def _answer(self, request: _Request, nested: bool = False) -> None:
        def progress(partial: Any) -> None:
            if request.cancelled.is_set():
                raise Superseded
            self._reply(request.id, request.slot, data=partial, partial=True)
            if not nested:
                self._answer_others(request.slot)

        try:
            data = self._handlers[request.what](request.params, progress)
        except Superseded:
            self._reply(request.id, request.slot, stale=True)
            return
        except Exception as err:  # noqa: BLE001 - a failing page is an error reply, never a dead worker
            logger.exception("%s: answering %r failed", self._name, request.what)
            self._reply(request.id, request.slot, error=f"{type(err).__name__}: {err}")
            return
        if request.cancelled.is_set():
            self._reply(request.id, request.slot, stale=True)
        else:
            self._reply(request.id, request.slot, data=data)

    def _answer_others(self, busy_slot: str) -> None:
        """Between the slices of a long handler: answer the requests other slots made meanwhile, oldest first (each to
        its end, without slicing in turn). One in the busy slot has cancelled it, and is answered after it."""
        while True:
            with self._wake:
                if self._closed:
                    return
                slot = next((s for s in self._waiting if s != busy_slot and s not in self._running), None)
                if slot is None:
                    return
                request = self._waiting.pop(slot)
                self._running[request.slot] = request
            try:
                self._answer(request, nested=True)
            finally:
                with self._wake:
                    if self._running.get(request.slot) is request:
                        del self._running[request.slot]

    def _reply(
        self, request_id: str, slot: str, data: Any = None, error: str | None = None, stale: bool = False,
        partial: bool = False,
    ) -> None:
        message: dict[str, Any] = {"type": "reply", "id": request_id, "slot": slot}
        if stale:
            message["stale"] = True
        elif error is not None:
            message["error"] = error
        else:
            message["data"] = jsonable(data)
            if partial:
                message["partial"] = True
            size = len(orjson.dumps(message, default=str))
            if size > MAX_REPLY_BYTES:
                message = {"type": "reply", "id": request_id, "slot": slot,
                           "error": f"the page is too large to send ({size >> 20} MB)"}
        try:
            self._send(message)
            self.replies_sent += 1
        except Exception:  # noqa: BLE001 - the view asks again (it times out the request)
            logger.exception("%s: could not send a reply", self._name)


def jsonable(value: Any) -> Any:
    """`value` as plain JSON the kernel's encoder takes (it refuses NaN): non-finite floats become the strings
    "NaN", "Infinity", "-Infinity" (as in alerts), numpy scalars and arrays plain numbers and lists, tuples lists."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return jsonable(tolist())
    return str(value)
