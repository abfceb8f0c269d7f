"""Views are answered while a cell runs (subshell.py): in a real ipykernel 7 kernel, a page request sent while
the main thread is busy in a cell is answered at once, on the widget's subshell; without such a kernel nothing
changes."""

from __future__ import annotations

import queue
import time

import pytest

from rldk_widget.subshell import SubshellRoute

SETUP = """
from rldk_widget import RLDKDashboard
import tempfile, threading, time
dash = RLDKDashboard(output_dir=tempfile.mkdtemp(), run_id='r', auto_refresh=False)
dash.pages.register('where', lambda params, progress: {'thread': threading.current_thread().name, 'n': params['n']})
print(dash.comm.comm_id, dash._route.subshell_id)
"""


@pytest.fixture
def kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def replies(client, until: float) -> list[dict]:
    found = []
    while time.monotonic() < until and not found:
        try:
            message = client.get_iopub_msg(timeout=0.2)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        data = message["content"].get("data", {}) if message["msg_type"] == "comm_msg" else {}
        content = data.get("content", {}) if isinstance(data, dict) else {}
        if content.get("type") == "reply":
            found.append(content)
    return found


@pytest.mark.timeout(120)
def test_a_request_is_answered_while_a_cell_keeps_the_main_thread_busy(kernel):
    printed = []
    kernel.execute_interactive(
        SETUP, timeout=60,
        output_hook=lambda m: printed.append(m["content"]["text"]) if m["msg_type"] == "stream" else None,
    )
    comm_id, subshell_id = printed[-1].split()
    assert subshell_id != "None", "ipykernel 7 should give the widget a subshell"
    busy = kernel.execute("import time; time.sleep(6)")
    time.sleep(1.0)  # the cell is running now
    request = {"type": "request", "id": "during-cell", "what": "where", "params": {"n": 3}}
    message = kernel.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": request}})
    sent = time.monotonic()
    kernel.shell_channel.send(message)
    (reply,) = replies(kernel, sent + 10)
    with pytest.raises(queue.Empty):  # the reply did not wait for the cell: it is still running (5 s more)
        kernel.get_shell_msg(timeout=0.1)
    assert reply["id"] == "during-cell" and reply["data"]["n"] == 3
    kernel.get_shell_msg(timeout=60)  # the busy cell's execute_reply (it ran to its end)
    assert busy


def test_outside_a_kernel_the_route_changes_nothing():
    class Comm:
        def _reply_subshell_for(self, data, default):
            return default

    comm = Comm()
    route = SubshellRoute()
    assert route.open(comm) is False
    assert route.subshell_id is None and comm._reply_subshell_for(None, "main") == "main"
    route.close()
