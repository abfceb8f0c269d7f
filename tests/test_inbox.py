"""The batching machinery of the live path: EventInbox (callback writes, dashboard read-backs) and DeltaChannel
(view messages) do their work on the caller's thread while items keep coming, and leave only the tail of a
burst to their one background thread.

Where a pass or a send happens depends on the clock, so those tests drive a `FakeClock` (the modules read
`time.monotonic()` through their `time` global): the placement they check is decided by the rules, not by how
fast this machine runs the loop. The one test on the real clock counts the worker's looks against the time
that actually went by."""

from __future__ import annotations

import threading
import time
from array import array

import pytest

import rldk_widget.inbox
import rldk_widget.transport
from rldk_widget.inbox import TAIL_LOOK_S, EventInbox
from rldk_widget.transport import DeltaChannel

from helpers import CountingEvent, FakeClock, decode, wait_until


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, list[int]]] = []  # (thread ident, items)

    def handle(self, items: list[int]) -> None:
        self.batches.append((threading.get_ident(), list(items)))

    def items(self) -> list[int]:
        return [item for _, items in self.batches for item in items]


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(rldk_widget.inbox, "time", clock)
    monkeypatch.setattr(rldk_widget.transport, "time", clock)
    return clock


def after_a_whole_look(inbox: EventInbox, looks: CountingEvent) -> None:
    """Return once the inbox worker has looked at its queue at least once after this call (a look that was under
    way when it was called may have checked the queue before: wait for the next one to start and end), or as soon
    as the queue is empty (someone passed)."""
    seen = looks.timed_waits
    wait_until(lambda: looks.timed_waits >= seen + 2 or not inbox._pending, what="the inbox worker to look")


def test_inbox_passes_on_the_callers_thread_while_items_come_and_the_worker_takes_only_the_tail(clock):
    recorder = Recorder()
    inbox = EventInbox(recorder.handle, name="rldk-test-inbox", coalesce_s=0.05)
    inbox._closed = looks = CountingEvent()
    caller = threading.get_ident()
    try:
        passes_at = []
        for item in range(150):  # a put every 11 ms: due again at every fifth one (55 ms >= 50 ms > 44 ms)
            before = len(recorder.batches)
            inbox.put(item)
            if len(recorder.batches) > before:
                passes_at.append(item)
            clock.advance(0.011)
        # due every fifth put (never sooner than coalesce_s after the last pass), each pass on the caller's thread
        assert passes_at == list(range(0, 150, 5))
        assert all(thread == caller for thread, _ in recorder.batches)
        assert [items for _, items in recorder.batches] == [list(range(i - 4 if i else 0, i + 1)) for i in passes_at]
        # the tail (items 146-149) waits: the worker passes only when the callers stopped for two intervals
        after_a_whole_look(inbox, looks)
        assert recorder.items() == list(range(146)), "the worker passed while the callers were still passing"
        clock.advance(2 * 0.05)
        wait_until(lambda: recorder.items() == list(range(150)), what="the worker to hand over the tail")
        assert [thread == caller for thread, _ in recorder.batches[len(passes_at):]] == [False]
    finally:
        inbox.close()


def test_inbox_worker_looks_once_per_tail_look_not_once_per_pass():
    """On the real clock: while items come every 10 ms the worker looks at the queue once per TAIL_LOOK_S (each
    look takes the GIL from the training thread), not once per pass (~30 here); every item is handed over once,
    in order, whichever thread passed."""
    recorder = Recorder()
    inbox = EventInbox(recorder.handle, name="rldk-test-inbox", coalesce_s=0.05)
    inbox._closed = looks = CountingEvent()
    try:
        started = time.monotonic()
        for item in range(150):
            inbox.put(item)
            time.sleep(0.01)  # the pace of a training loop, not a synchronisation
        looked = looks.timed_waits
        elapsed = time.monotonic() - started
        # a look lasts TAIL_LOOK_S (the worker's wait has nothing that could end it early): +1 for the one under way
        assert looked <= elapsed / TAIL_LOOK_S + 1, (looked, elapsed)
        wait_until(lambda: len(recorder.items()) == 150, what="every item to be handed over")
        assert recorder.items() == list(range(150))
    finally:
        inbox.close()


def test_inbox_worker_parks_when_the_callers_emptied_the_queue(clock):
    recorder = Recorder()
    inbox = EventInbox(recorder.handle, name="rldk-test-inbox", coalesce_s=0.05)
    try:
        inbox.put(0)  # due: handled at once
        inbox.put(1)  # not due: queued, worker started and woken
        assert [items for _, items in recorder.batches] == [[0]] and inbox._wake.is_set()
        inbox.drain()  # a reader takes it first
        clock.advance(1.0)
        # the worker looks, finds nothing and waits for the next put
        wait_until(lambda: not inbox._wake.is_set(), what="the worker to park")
        assert [items for _, items in recorder.batches] == [[0], [1]]
        inbox.put(2)  # due (the last pass is a second old): handled at once, the worker stays parked
        assert [items for _, items in recorder.batches] == [[0], [1], [2]] and not inbox._wake.is_set()
        inbox.put(3)  # not due: wakes the worker, which hands it over once the callers stopped for two intervals
        assert inbox._wake.is_set()
        clock.advance(2 * 0.05)
        wait_until(lambda: len(recorder.batches) == 4, what="the woken worker to pass")
        assert recorder.batches[-1][1] == [3] and recorder.batches[-1][0] != threading.get_ident()
    finally:
        inbox.close()


def test_delta_channel_sends_from_the_pushing_thread_while_points_come_and_the_flusher_sends_the_tail(clock):
    sent: list[tuple[int, dict]] = []
    channel = DeltaChannel(lambda message: sent.append((threading.get_ident(), message)), threading.RLock(),
                           min_interval=0.05)
    caller = threading.get_ident()

    def steps(messages) -> list[float]:
        return [x for _, message in messages for x in decode(message["metrics"]["run"]["loss"]["x"]).tolist()]

    try:
        sent_at = []
        for step in range(100):  # a push every 11 ms: due again at every fifth one (55 ms >= 50 ms > 44 ms)
            before = len(sent)
            channel.push("run", {"loss": (array("d", [step]), array("d", [step / 10]))}, [])
            if len(sent) > before:
                sent_at.append(step)
            clock.advance(0.011)
        # throttled: a send when min_interval has passed since the last one, and the pushing thread makes it
        # (before, the flusher locked onto its own 50 ms clock and made ~40% of them)
        assert sent_at == list(range(0, 100, 5))
        assert all(thread == caller for thread, _ in sent) and channel.messages_sent == len(sent_at)
        assert steps(sent) == list(range(96))
        # the last send was 55 ms ago: the flusher leaves the tail to the pushers for one more interval
        seen = clock.sleeps
        wait_until(lambda: clock.sleeps >= seen + 2 or len(sent) > len(sent_at), what="the flusher to look again")
        assert steps(sent) == list(range(96)), "the flusher sent before the pushers had a second interval"
        clock.advance(0.05)
        wait_until(lambda: len(steps(sent)) == 100, what="the flusher to send the tail")
        assert steps(sent) == list(range(100)) and [m["seq"] for _, m in sent] == list(range(1, len(sent) + 1))
        assert [thread == caller for thread, _ in sent[len(sent_at):]] == [False]
    finally:
        channel.close()


def test_close_while_the_worker_is_on_its_way_to_the_queue_ends_the_worker():
    """close() sets the closed flag and wakes the worker; a worker that took the queue's lock right after must end,
    not clear that wake-up and sleep for a minute (seen as an rldk thread outliving its dashboard)."""

    class Owner:
        def handle(self, items):
            pass

    owner = Owner()
    inbox = EventInbox(owner.handle, name="rldk-test-inbox", coalesce_s=10.0, tail_look_s=0.05, quiet_s=10.0)
    inbox.put(1)  # the first put is due: handled on this thread
    inbox.put(2)  # not due: starts the worker and wakes it
    with inbox._pending_lock:  # the worker passes its closed check, then waits here for the lock
        time.sleep(0.3)
        inbox._pending.clear()
        inbox._closed.set()  # what close() does under this lock, then the wake-up it sends after
        inbox._wake.set()
        thread = inbox._thread
    assert thread is not None
    thread.join(timeout=3)
    assert not thread.is_alive(), "the worker cleared close()'s wake-up and went back to sleep"
