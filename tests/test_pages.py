"""PageServer (pages on request, docs/protocol.md): replies carry the request's id; a newer request in a slot
supersedes the older one (stale reply), partial pages come before the final one, errors are replies, every reply
passes the kernel's wire encoder; the dashboard routes a view's request to it."""

from __future__ import annotations

import math
import threading

import pytest

from rldk_widget import RLDKDashboard
from rldk_widget.pages import MAX_REPLY_BYTES, PageServer, jsonable

from helpers import CommTap, json_packer, wait_until


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, message: dict) -> None:
        json_packer(message)  # what the kernel would refuse, the test refuses
        with self.lock:
            self.messages.append(message)

    def of(self, request_id: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["id"] == request_id]


@pytest.fixture
def server():
    sent = Sent()
    pages = PageServer(sent)
    yield pages, sent
    pages.close()


def request(request_id, what="echo", slot=None, **params):
    return {"type": "request", "id": request_id, "slot": slot, "what": what, "params": params}


def test_a_reply_carries_the_id_and_the_page(server):
    pages, sent = server
    pages.register("echo", lambda params, progress: {"got": params["x"], "nan": math.nan, "inf": -math.inf})
    pages.submit(request("a", x=3))
    (reply,) = wait_until(lambda: sent.of("a"), what="the reply")
    assert reply == {"type": "reply", "id": "a", "slot": "a", "data": {"got": 3, "nan": "NaN", "inf": "-Infinity"}}


def test_a_burst_in_one_slot_is_answered_for_the_newest_only(server):
    pages, sent = server
    started, release = threading.Event(), threading.Event()
    answered = []

    def slow(params, progress):
        started.set()
        release.wait(10)
        progress({"half": params["step"]})  # the running one learns here that it was superseded
        answered.append(params["step"])
        return {"step": params["step"]}

    pages.register("step", slow)
    pages.submit(request("r0", "step", slot="samples", step=0))
    assert started.wait(10)
    for step in range(1, 30):
        pages.submit(request(f"r{step}", "step", slot="samples", step=step))
    release.set()
    wait_until(lambda: sent.of("r29") and sent.of("r29")[-1].get("data") == {"step": 29}, what="the newest reply")
    assert sent.of("r0") == [{"type": "reply", "id": "r0", "slot": "samples", "stale": True}]
    for step in range(1, 29):
        assert sent.of(f"r{step}") == [{"type": "reply", "id": f"r{step}", "slot": "samples", "stale": True}]
    assert answered == [29]


def test_slots_are_independent_and_partial_pages_come_first(server):
    pages, sent = server

    def search(params, progress):
        for done in range(1, 4):
            progress({"searched": done, "of": 3})
        return {"searched": 3, "of": 3, "matches": ["x"]}

    pages.register("search", search)
    pages.register("echo", lambda params, progress: params)
    pages.submit(request("s", "search", slot="search"))
    pages.submit(request("e", "echo", slot="other", v=1))
    wait_until(lambda: any("partial" not in m for m in sent.of("s")) and sent.of("e"), what="both replies")
    replies = sent.of("s")
    assert [m.get("partial", False) for m in replies] == [True, True, True, False]
    assert replies[-1]["data"]["matches"] == ["x"]
    assert sent.of("e")[0]["data"] == {"v": 1}


def test_a_page_asked_for_during_a_long_search_is_answered_between_its_slices(server):
    pages, sent = server
    slices = threading.Semaphore(0)

    def search(params, progress):
        for done in range(1, 6):
            assert slices.acquire(timeout=10)
            progress({"searched": done, "of": 5})
        return {"searched": 5, "of": 5}

    pages.register("search", search)
    pages.register("step", lambda params, progress: {"step": params["step"]})
    pages.submit(request("s", "search", slot="search"))
    slices.release()
    wait_until(lambda: sent.of("s"), what="the first slice")
    pages.submit(request("p1", "step", slot="step", step=1))
    pages.submit(request("p2", "step", slot="step", step=2))  # a burst: the newest only
    pages.submit(request("o", "step", slot="other", step=9))
    slices.release()  # the search's second slice: the waiting pages are answered after it, before the third
    wait_until(lambda: sent.of("p2") and sent.of("o"), what="the pages asked for during the search")
    assert [m.get("partial") for m in sent.of("s")] == [True, True], "the search went on before the pages"
    assert sent.of("p1") == [{"type": "reply", "id": "p1", "slot": "step", "stale": True}]
    assert sent.of("p2")[0]["data"] == {"step": 2} and sent.of("o")[0]["data"] == {"step": 9}
    for _ in range(3):
        slices.release()
    wait_until(lambda: any("partial" not in m for m in sent.of("s")), what="the search's end")
    assert sent.of("s")[-1]["data"] == {"searched": 5, "of": 5}


def test_errors_and_bad_requests_are_replies(server):
    pages, sent = server

    def broken(params, progress):
        raise KeyError("no such step")

    def huge(params, progress):
        return {"text": "x" * (MAX_REPLY_BYTES + 10)}

    pages.register("broken", broken)
    pages.register("huge", huge)
    pages.submit(request("b", "broken"))
    pages.submit(request("u", "unknown"))
    pages.submit({"type": "request", "id": "p", "what": "broken", "params": [1, 2]})
    pages.submit(request("h", "huge"))
    pages.submit({"type": "request", "what": "broken"})  # no id: nothing to answer
    wait_until(lambda: all(sent.of(i) for i in "buph"), what="four error replies")
    assert "KeyError" in sent.of("b")[0]["error"]
    assert "unknown request" in sent.of("u")[0]["error"]
    assert "params" in sent.of("p")[0]["error"]
    assert "too large" in sent.of("h")[0]["error"]


def test_jsonable_turns_numpy_and_non_finite_values_into_json():
    import numpy as np

    value = jsonable({"a": np.float64("nan"), "b": np.arange(3), "c": (1, math.inf), 4: np.int64(7)})
    assert value == {"a": "NaN", "b": [0, 1, 2], "c": [1, "Infinity"], "4": 7}


def test_the_dashboard_answers_a_views_request(tmp_path):
    dash = RLDKDashboard(output_dir=tmp_path, run_id="r", auto_refresh=False)
    try:
        tap = CommTap(dash)
        dash.pages.register("ping", lambda params, progress: {"pong": params.get("n")})
        dash._on_view_message(dash, request("q1", "ping", n=5), [])
        wait_until(lambda: any(m.get("content", {}).get("type") == "reply" for m in tap.messages if m), what="reply")
        (reply,) = [m["content"] for m in tap.messages if m.get("content", {}).get("type") == "reply"]
        assert reply["id"] == "q1" and reply["data"] == {"pong": 5}
        assert not tap.wire_errors
    finally:
        dash.close()
