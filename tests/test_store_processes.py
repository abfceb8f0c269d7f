"""RunStore across processes: a live writer process with a refreshing reader, and writers killed mid-append."""

import json
import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from rldk_widget.store import RunStore

WRITER = textwrap.dedent(
    """
    import sys
    from rldk_widget.store import RunStore
    store = RunStore(sys.argv[1], "live")
    for step in range(int(sys.argv[2])):
        store.append_metrics({"step": step, "loss": 1.0 / (step + 1), "note": "x" * (step % 7)})
        if step % 10 == 0:
            store.append_alert({"type": "t", "message": f"alert {step}", "step": step})
    """
)


def test_reader_refreshing_every_50ms_sees_exactly_what_a_writer_process_wrote(tmp_path):
    total = 5000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(total)])
    reader = RunStore(tmp_path, "live", follow=True)
    metrics, alerts, reads = [], [], 0
    while True:
        finished = writer.poll() is not None
        data = reader.read_new()
        assert not data.reset
        metrics.extend(data.metrics)
        alerts.extend(data.alerts)
        reads += 1
        if finished:
            break
        time.sleep(0.05)
    assert writer.returncode == 0
    assert reads > 2
    assert [r["step"] for r in metrics] == list(range(total))
    assert [a["step"] for a in alerts] == list(range(0, total, 10))


def _append_until_killed(directory, progress):
    store = RunStore(directory, "killed")
    start = len(store.read_all().metrics)
    step = start
    while True:
        progress.seek(0)
        progress.write(struct.pack("q", step))
        store.append_metrics({"step": step, "payload": "y" * random.randint(0, 4000)})
        step += 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_points_loses_at_most_the_record_being_written(tmp_path):
    path = tmp_path / "killed_metrics.json"
    progress = mmap.mmap(-1, 8)
    rng = random.Random(1234)
    for kill in range(50):
        progress.seek(0)
        progress.write(struct.pack("q", -1))
        pid = os.fork()
        if pid == 0:
            try:
                _append_until_killed(tmp_path, progress)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.002, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        attempted = struct.unpack("q", progress[:8])[0]
        steps = [r["step"] for r in RunStore(tmp_path, "killed").read_all().metrics]
        assert steps == list(range(len(steps))), f"kill {kill}: records out of order or duplicated"
        if attempted >= 0:
            assert len(steps) >= attempted, f"kill {kill}: lost more than the record being written"
    RunStore(tmp_path, "killed").append_metrics({"step": -1})
    final = json.loads(path.read_text())
    assert final[-1] == {"step": -1} and [r["step"] for r in final[:-1]] == list(range(len(final) - 1))
