"""KeyedWorker: each key handled once however often it was touched, on the worker or on a thread that drains;
a long pass on the worker may pause (to give the GIL back) only while no caller waits for it."""

from __future__ import annotations

import threading

from rldk_widget.worker import KeyedWorker

from helpers import wait_until


def test_a_pass_may_pause_on_the_worker_only_while_no_caller_waits_for_it():
    seen: list[tuple[str, bool]] = []
    inside = threading.Event()
    go_on = threading.Event()

    def handle(key):
        seen.append((threading.current_thread().name, worker.may_pause()))
        if key == "slow":
            inside.set()
            go_on.wait(10)
            seen.append(("after a caller came", worker.may_pause()))

    worker = KeyedWorker(handle, "test-worker")
    try:
        worker.touch("slow")
        assert inside.wait(10)
        assert seen[0] == ("test-worker", True), "the worker's own pass, nobody waiting"
        caller = threading.Thread(target=worker.drain)
        caller.start()
        wait_until(lambda: worker._waiting == 1, what="the caller to wait in drain()")
        go_on.set()
        caller.join(10)
        assert seen[1] == ("after a caller came", False), "a pass a caller waits for must not pause"
        assert not worker.may_pause(), "never on a caller's thread"
    finally:
        worker.close()
