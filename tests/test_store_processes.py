"""RunStore across processes: a live writer process with a refreshing reader, and writers killed mid-append."""

import json
import random
import subprocess
import sys
import textwrap
import time

from rldk_widget.store import RunStore

import killable
from helpers import wait_until

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


def test_sigkill_at_random_points_loses_at_most_the_record_being_written(tmp_path):
    """50 writers, each SIGKILLed at a random moment while it appends (1-10 ms in: ~70 records of up to 4 kB); every
    10 kills in one file, so each writer resumes a file the last one may have left torn."""
    progress = killable.Progress.create(tmp_path / "progress")
    rng = random.Random(1234)
    runs = [f"killed-{n}" for n in range(5)]
    for kill in range(50):
        run = runs[kill // 10]
        progress.set(-1)
        writer = killable.start(killable.append_until_killed, str(tmp_path), run, progress.path)
        try:
            wait_until(lambda: progress.get() >= 0 or writer.exitcode is not None, what="the writer to start")
            assert writer.exitcode is None, f"kill {kill}: the writer ended by itself with {writer.exitcode}"
            time.sleep(rng.uniform(0.001, 0.01))  # a random moment to kill at, not a synchronisation
        finally:
            killable.kill(writer)
        attempted = progress.get()
        steps = [r["step"] for r in RunStore(tmp_path, run).read_all().metrics]
        assert steps == list(range(len(steps))), f"kill {kill}: records out of order or duplicated"
        assert len(steps) >= attempted, f"kill {kill}: lost more than the record being written"
    for run in runs:
        RunStore(tmp_path, run).append_metrics({"step": -1})
        final = json.loads((tmp_path / f"{run}_metrics.json").read_text())
        assert final[-1] == {"step": -1} and [r["step"] for r in final[:-1]] == list(range(len(final) - 1))
        assert len(final) > 10, f"{run}: the writers hardly wrote anything, the kills tested nothing"
