"""The samples page handlers as a view asks for them (sample_service.py): a step a chart point or an alert names may
have no samples of its own (logging more often than generation, SampleSettings.every): `samples.step` answers with
the batch logged at or before it (the first step when it is before every batch), and says which step that is.
`samples.search` stops at its match limit with a cursor; sent back, the search goes on from there."""

from __future__ import annotations

import time

from rldk_widget.samples import RawBatch, SampleSettings, batch_records
from rldk_widget.store import RunStore

from helpers import CommTap, wait_until


def ask(dash, tap: CommTap, request_id: str, what: str, **params) -> dict:
    dash._on_view_message(dash, {"type": "request", "id": request_id, "slot": request_id, "what": what,
                                 "params": params}, [])
    replies = lambda: [m["content"] for m in tap.messages if m and m.get("method") == "custom"  # noqa: E731
                       and m["content"].get("id") == request_id and not m["content"].get("partial")]
    (reply,) = wait_until(replies, what=f"the {what} reply")
    assert "error" not in reply, reply
    return reply["data"]


def test_a_step_without_samples_is_answered_with_the_batch_at_or_before_it(tmp_path, dashboards):
    store = RunStore(tmp_path, "r")
    for step in (3, 6, 9):
        batch = RawBatch(step, ["p", "p"], [f"a{step}", f"b{step}"], {"f": [0.0, 1.0]}, [-0.7, 0.7])
        store.append("samples", batch_records(batch, SampleSettings(), "r", time.time()))
    dash = dashboards(output_dir=tmp_path, run_id="r")
    tap = CommTap(dash)
    assert ask(dash, tap, "s", "samples.steps", run_id="r")["steps"] == [3, 6, 9]
    for i, (asked, shown) in enumerate([(7, 6), (6, 6), (100, 9), (1, 3), (None, 9)]):
        page = ask(dash, tap, f"p{i}", "samples.step", run_id="r", step=asked)
        assert page["step"] == shown, (asked, page["step"])
        assert [r["completion"] for g in page["groups"] for r in g["rows"]] == [f"a{shown}", f"b{shown}"]
    assert not tap.wire_errors


def test_a_search_page_stopped_at_its_limit_goes_on_from_its_cursor(tmp_path, dashboards):
    store = RunStore(tmp_path, "r")
    for step in range(1, 31):
        batch = RawBatch(step, ["p", "p"], [f"needle {step} a", f"hay {step}"], {"f": [0.0, 1.0]}, [-0.7, 0.7])
        store.append("samples", batch_records(batch, SampleSettings(), "r", time.time()))
    dash = dashboards(output_dir=tmp_path, run_id="r")
    tap = CommTap(dash)
    seen: list[int] = []
    cursor = None
    for i in range(10):
        page = ask(dash, tap, f"q{i}", "samples.search", run_id="r", query="NEEDLE", limit=7,
                   **({} if cursor is None else {"cursor": cursor}))
        seen += [m["step"] for m in page["matches"]]
        cursor = page["cursor"]
        if page["done"]:
            break
        assert len(page["matches"]) == 7 and cursor is not None, page
    assert seen == list(range(30, 0, -1)), "every match once, newest first"
    assert page["searched_steps"] == page["total_steps"] == 30 and cursor is None
    dash._on_view_message(dash, {"type": "request", "id": "bad", "slot": "bad", "what": "samples.search",
                                 "params": {"run_id": "r", "query": "other", "cursor": {"query": "NEEDLE", "top": 30,
                                                                                       "before": 10}}}, [])
    error = wait_until(lambda: [m["content"] for m in tap.messages if m and m.get("method") == "custom"
                                and m["content"].get("id") == "bad"], what="the reply to a cursor of another search")
    assert "another search" in error[-1]["error"], error
    assert not tap.wire_errors
