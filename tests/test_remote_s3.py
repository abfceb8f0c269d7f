"""Remote folders against a real S3 API: moto's standalone server on 127.0.0.1 (one per module, tests/remote_server.py)
through s3fs. A training job in another process mirrors to it while a dashboard reads it (no duplicates, no gaps,
within mirror + refresh interval); the remote stops answering mid-run and comes back; it restarts empty and the mirror
uploads everything again; 50 runs in one prefix cost one listing per pass; replaced and hostile objects; credentials
are never shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from remote_server import SECRET, MotoServer, moto_available

from rldk_widget.store import RunStore

pytestmark = [
    pytest.mark.remote,
    pytest.mark.skipif(not moto_available(), reason="needs the test-remote extra (moto's server, s3fs)"),
]
WRITER = Path(__file__).with_name("remote_writer.py")
MIRROR_S = 0.5
REFRESH_S = 0.5


@pytest.fixture(scope="module")
def server():
    import s3fs

    retries, s3fs.S3FileSystem.retries = s3fs.S3FileSystem.retries, 2  # an outage fails in ~2 s, not after 5 tries
    srv = MotoServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        s3fs.S3FileSystem.retries = retries


@pytest.fixture
def bucket(server):
    if server.process is None:
        server.start()
    if server.paused:
        server.resume()
    name = f"rldk-{uuid.uuid4().hex[:10]}"
    server.make_bucket(name)
    return name


def s3(server):
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **server.storage_options())


class Writer:
    """remote_writer.py in its own process; `lines` holds what it printed (with arrival times)."""

    def __init__(self, server: MotoServer, out: Path, run_id: str, url: str, steps: int, step_s: float, *extra: str):
        env = {
            **os.environ, "RLDK_TEST_STORAGE_OPTIONS": json.dumps(server.storage_options()),
            "RLDK_TEST_S3_RETRIES": "2", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path]),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), "--out", str(out), "--run-id", run_id, "--mirror", url, "--steps", str(steps),
             "--step-s", str(step_s), "--mirror-interval", str(MIRROR_S), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines: list[tuple[float, str]] = []
        self.errors: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self, stream, into) -> None:
        for line in stream:
            into.append((time.time(), line.strip()))

    def _read_errors(self) -> None:
        for line in self.process.stderr:
            self.errors.append(line.rstrip())

    def printed(self, text: str) -> bool:
        return any(line == text for _, line in self.lines)

    def wait(self, timeout: float = 60) -> None:
        self.process.wait(timeout=timeout)
        time.sleep(0.1)
        assert self.process.returncode == 0, "\n".join(self.errors[-20:])


def steps_of(dash, run_id: str) -> list[int]:
    frame = dash.to_dataframe(run_id)
    return [int(step) for step in frame["step"]] if len(frame) else []


def test_training_job_mirrors_while_a_dashboard_reads(server, bucket, tmp_path, dashboards):
    url = f"s3://{bucket}/sweep/"
    dash = dashboards.from_dir(url, storage_options=server.storage_options(), remote_timeout=5)
    assert dash.run_ids == [] and dash.status["level"] == "ok"
    writer = Writer(server, tmp_path / "logs", "job", url, steps=40, step_s=0.1)
    partial: set[int] = set()  # the lengths the view showed while the job was still writing
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(REFRESH_S)
        running = not writer.printed("finished")
        dash.update_data()
        frame = dash.to_dataframe("job") if "job" in dash.run_ids else None
        if frame is None or not len(frame):
            continue
        seen = [int(step) for step in frame["step"]]
        assert seen == list(range(1, len(seen) + 1)), seen  # never a gap, never a duplicate
        assert dash.load_report == {}, dash.load_report  # never a torn record either, while the mirror uploads
        if running and len(seen) < 40:
            partial.add(len(seen))
        if writer.printed("done") and len(seen) == 40:
            break
    writer.wait()
    dash.update_data()
    assert steps_of(dash, "job") == list(range(1, 41))
    assert dash.info["job"]["max_steps"] == 40 and dash.runs().loc[0, "status"] == "finished"
    # the view followed the job as the mirror uploaded it (~8 uploads in its 4 s), not only its end (how soon each
    # record shows is measured in benchmarks/remote.py)
    assert len(partial) >= 3, sorted(partial)
    assert dash.load_report == {}


def count_requests(s3fs_instance):
    """Count the HTTP requests and response bytes of an s3fs client (botocore's event hooks)."""
    counts = {"requests": 0, "bytes": 0, "operations": []}

    def before(request, **_):
        counts["requests"] += 1

    def after(http_response, model, **_):
        counts["operations"].append(model.name)
        counts["bytes"] += int(http_response.headers.get("content-length") or 0)

    events = s3fs_instance.s3.meta.events
    events.register("before-send.s3", before)
    events.register("after-call.s3", after)
    return counts


def test_fifty_runs_in_one_prefix_one_listing_per_pass(server, bucket, tmp_path, dashboards):
    fs = s3(server)
    local = tmp_path / "local"
    for index in range(50):
        with RunStore(local, f"run{index:02d}") as store:
            store.append_metrics_many({"step": step, "loss": 1 / step, "reward_mean": index} for step in range(1, 21))
            store.write_info({"max_steps": 20, "trainer": "grpo", "started": time.time()})
        for name in (f"run{index:02d}_metrics.json", f"run{index:02d}_run_info.json"):
            fs.pipe_file(f"{bucket}/sweep/{name}", (local / name).read_bytes())
    dash = dashboards.from_dir(f"s3://{bucket}/sweep", storage_options=server.storage_options())
    assert len(dash.run_ids) == 50 and len(dash.runs()) == 50
    assert all(steps_of(dash, f"run{index:02d}") == list(range(1, 21)) for index in (0, 49))
    counts = count_requests(dash._fs.fs)

    def one_pass():
        counts.update(requests=0, bytes=0, operations=[])
        dash.update_data()
        dash._samples.drain()  # the samples worker's reads of this pass (answered by the listing too)
        return counts["requests"], list(counts["operations"]), counts["bytes"]

    requests, operations, _ = one_pass()
    assert (requests, operations) == (1, ["ListObjectsV2"])
    with RunStore(local, "run07") as store:
        store.append_metrics_many({"step": step, "loss": 1 / step} for step in range(21, 24))
    fs.pipe_file(f"{bucket}/sweep/run07_metrics.json", (local / "run07_metrics.json").read_bytes())
    requests, operations, received = one_pass()
    assert (requests, sorted(operations)) == (2, ["GetObject", "ListObjectsV2"])
    assert steps_of(dash, "run07") == list(range(1, 24))
    listing_bytes = one_pass()[2]
    assert received - listing_bytes < 400  # the range read: three records and the 32-byte window


def test_remote_stops_answering_and_comes_back(server, bucket, tmp_path, dashboards):
    url = f"s3://{bucket}/sweep"
    writer = Writer(server, tmp_path / "logs", "job", url, steps=60, step_s=0.1)
    dash = dashboards.from_dir(url, storage_options=server.storage_options(), remote_timeout=1.5)
    deadline = time.monotonic() + 30
    while not ("job" in dash.run_ids and len(steps_of(dash, "job")) >= 5) and time.monotonic() < deadline:
        time.sleep(0.2)
        dash.update_data()
    shown = steps_of(dash, "job")
    assert len(shown) >= 5 and not writer.printed("done")
    server.pause()  # SIGSTOP: connections are accepted by the kernel, nothing answers
    try:
        started = time.monotonic()
        dash.update_data()
        assert time.monotonic() - started < 10  # the pass gives up at its timeout (1.5 s): the server never answers
        message = dash.status["message"]
        assert message.startswith("remote read ") and "timeout" in message and "retrying" in message, message
        assert steps_of(dash, "job") == shown  # everything read before stays shown
        assert not dash._fs.health.due()
        time.sleep(1.5)  # the writer's uploads fail meanwhile; training goes on
    finally:
        server.resume()
    writer.wait()
    assert writer.printed("finished"), writer.errors[-10:]  # the final upload caught up
    warnings = [line for line in writer.errors if "RuntimeWarning" in line]
    assert len([w for w in warnings if "failed (" in w]) == 1 and len([w for w in warnings if "work again" in w]) == 1
    time.sleep(1.1)  # the dashboard's backoff
    dash.update_data()
    assert dash.status == {"level": "ok", "message": ""}
    assert steps_of(dash, "job") == list(range(1, 61))


def test_remote_restarts_empty_and_the_mirror_uploads_everything_again(server, bucket, tmp_path, dashboards):
    url = f"s3://{bucket}/sweep"
    writer = Writer(server, tmp_path / "logs", "job", url, steps=100, step_s=0.08)
    fs = s3(server)
    deadline = time.monotonic() + 30
    while not fs.exists(f"{bucket}/sweep/job_run_info.json") and time.monotonic() < deadline:
        time.sleep(0.2)
    dash = dashboards.from_dir(url, storage_options=server.storage_options(), remote_timeout=2)
    assert "job" in dash.run_ids
    server.stop()
    server.start()  # the same port, no data
    server.make_bucket(bucket)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not writer.printed("done"):
        fs.invalidate_cache()
        if fs.exists(f"{bucket}/sweep/job_run_info.json") and fs.exists(f"{bucket}/sweep/job_metrics.json"):
            break
        time.sleep(0.2)
    assert not writer.printed("done"), "the job ended before the mirror uploaded its run info again"
    info = json.loads(fs.cat_file(f"{bucket}/sweep/job_run_info.json"))
    assert "train_runtime" not in info  # the run info of the start (unchanged locally): uploaded again
    writer.wait()
    time.sleep(1.1)
    dash.update_data()
    assert steps_of(dash, "job") == list(range(1, 101))


def test_replaced_and_hostile_objects_as_local_files(server, bucket, tmp_path, dashboards):
    fs = s3(server)
    local = tmp_path / "local"
    with RunStore(local, "replaced") as store:
        store.append_metrics_many({"step": step, "loss": 1 / step} for step in range(1, 6))
    good = (local / "replaced_metrics.json").read_bytes()
    objects = {
        "replaced_metrics.json": good,
        "torn_metrics.json": good[:-2] + b',\n{"step": 6, "lo',
        "utf_metrics.json": b'[\n{"step": 1, "loss": 0.5, "note": "\xff\xfe bad"},\n{"step": 2, "loss": 0.4}\n]',
    }
    for name, data in objects.items():
        fs.pipe_file(f"{bucket}/sweep/{name}", data)
    fs.pipe_file(f"{bucket}/sweep/dir_metrics.json/", b"")  # a 'folder' object named like a run file
    (local / "dir_metrics.json").mkdir()
    for name in ("torn_metrics.json", "utf_metrics.json"):
        (local / name).write_bytes(objects[name])
    url = f"s3://{bucket}/sweep"
    remote_dash = dashboards.from_dir(url, storage_options=server.storage_options())
    local_dash = dashboards.from_dir(local)
    assert remote_dash.run_ids == local_dash.run_ids == ["dir", "replaced", "torn", "utf"]
    for run_id in remote_dash.run_ids:
        assert remote_dash.to_dataframe(run_id).equals(local_dash.to_dataframe(run_id)), run_id

    def report(dash, where):
        return {run: [p.replace(str(where), "<folder>") for p in problems] for run, problems in dash.load_report.items()}

    assert report(remote_dash, url) == report(local_dash, local)
    with RunStore(tmp_path / "other", "replaced") as store:  # another run of the same name, shorter
        store.append_metrics_many({"step": step, "loss": 2.0} for step in range(1, 3))
    fs.pipe_file(f"{bucket}/sweep/replaced_metrics.json", (tmp_path / "other" / "replaced_metrics.json").read_bytes())
    remote_dash.update_data()
    assert steps_of(remote_dash, "replaced") == [1, 2]
    assert set(remote_dash.to_dataframe("replaced")["loss"]) == {2.0}


def test_credentials_are_never_shown(server, bucket, tmp_path, dashboards):
    fs = s3(server)
    with RunStore(tmp_path, "r") as store:
        store.append_metrics_many({"step": step, "loss": 1 / step} for step in range(1, 4))
    fs.pipe_file(f"{bucket}/sweep/r_metrics.json", (tmp_path / "r_metrics.json").read_bytes())
    dash = dashboards.from_dir(f"s3://{bucket}/sweep/", storage_options=server.storage_options(), remote_timeout=1)
    server.pause()
    try:
        dash.update_data()
    finally:
        server.resume()
    html = dash.save_html(tmp_path / "report.html").read_text(encoding="utf-8")
    shown = [json.dumps(dash.status), json.dumps(dash.load_report), repr(dash._fs), dash.runs().to_json(), html]
    assert "remote read" in shown[0]
    assert f"s3://{bucket}/sweep" in html
    for text in shown:
        assert SECRET not in text
