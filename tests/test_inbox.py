"""The batching machinery of the live path: EventInbox (callback writes, dashboard read-backs) and DeltaChannel
(view messages) do their work on the caller's thread while items keep coming, and leave only the tail of a
burst to their one background thread."""

from __future__ import annotations

import threading
import time
from array import array

from helpers import decode

from rldk_widget.inbox import TAIL_LOOK_S, EventInbox
from rldk_widget.transport import DeltaChannel


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, list[int]]] = []  # (thread ident, items)

    def handle(self, items: list[int]) -> None:
        self.batches.append((threading.get_ident(), list(items)))


class CountingEvent(threading.Event):
    """An Event that counts its timed waits (the inbox worker's looks at the queue)."""

    def __init__(self) -> None:
        super().__init__()
        self.timed_waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.timed_waits += 1
        return super().wait(timeout)


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_inbox_passes_on_the_callers_thread_while_items_come_and_the_worker_takes_only_the_tail():
    recorder = Recorder()
    inbox = EventInbox(recorder.handle, name="test-inbox", coalesce_s=0.05)
    inbox._closed = looks = CountingEvent()
    caller = threading.get_ident()
    started = time.monotonic()
    for item in range(150):  # 1.5 s of puts every 10 ms: about one caller pass per 50 ms
        inbox.put(item)
        time.sleep(0.01)
    passes_while_putting = list(recorder.batches)
    # each look takes the GIL from the training thread: one per TAIL_LOOK_S, not one per pass (~30 here)
    assert looks.timed_waits <= (time.monotonic() - started) / TAIL_LOOK_S + 1
    assert wait_until(lambda: sum(len(items) for _, items in recorder.batches) == 150, 3 * TAIL_LOOK_S + 1)
    assert [item for _, items in recorder.batches for item in items] == list(range(150))  # in order, once each
    assert len(passes_while_putting) >= 10
    # the worker passes only when the callers stopped for two intervals (here: a hiccup of the test machine)
    assert sum(thread != caller for thread, _ in passes_while_putting) <= len(passes_while_putting) // 10
    assert [thread == caller for thread, _ in recorder.batches[len(passes_while_putting):]] == [False]
    inbox.close()


def test_inbox_worker_parks_when_the_callers_emptied_the_queue():
    recorder = Recorder()
    inbox = EventInbox(recorder.handle, name="test-inbox", coalesce_s=0.05)
    inbox.put(0)  # due: handled at once
    inbox.put(1)  # not due: queued, worker started and woken
    inbox.drain()  # a reader takes it first
    time.sleep(2 * TAIL_LOOK_S + 0.2)
    assert [items for _, items in recorder.batches] == [[0], [1]]
    assert not inbox._wake.is_set()  # the worker looked, found nothing and waits for the next put
    inbox.put(2)
    assert wait_until(lambda: len(recorder.batches) == 3, 3 * TAIL_LOOK_S + 1)
    inbox.close()


def test_delta_channel_sends_from_the_pushing_thread_while_points_come_and_the_flusher_sends_the_tail():
    sent: list[tuple[int, dict]] = []
    channel = DeltaChannel(lambda message: sent.append((threading.get_ident(), message)), threading.RLock(),
                           min_interval=0.05)
    caller = threading.get_ident()
    started = time.monotonic()
    for step in range(100):  # a push every 10 ms for 1 s
        channel.push("run", {"loss": (array("d", [step]), array("d", [step / 10]))}, [])
        time.sleep(0.01)
    sends_while_pushing = list(sent)
    pushing_s = time.monotonic() - started
    assert wait_until(lambda: sum(len(decode(m["metrics"]["run"]["loss"]["x"])) for _, m in sent) == 100, 2)
    steps = [x for _, message in sent for x in decode(message["metrics"]["run"]["loss"]["x"]).tolist()]
    assert steps == list(range(100)) and [m["seq"] for _, m in sent] == list(range(1, len(sent) + 1))
    assert 10 <= len(sends_while_pushing) <= pushing_s / 0.05 + 1  # throttled
    # the pushing thread makes the sends (before, the flusher locked onto its 50 ms clock and made ~40% of them)
    assert sum(thread != caller for thread, _ in sends_while_pushing) <= len(sends_while_pushing) // 10
    channel.close()
