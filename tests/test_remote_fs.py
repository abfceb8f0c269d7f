"""Remote folders without a server: fsspec's memory:// and file:// URLs through FsspecFileSystem (one listing per pass,
range reads, identity and the window check, hostile objects, timeouts and backoff of a slow remote), URL handling and
redaction, the missing-package error, and the mirror (mirror.py, RLDKCallback(mirror_to=...)) into memory://."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from rldk_widget import RLDKDashboard
from rldk_widget.fs import RemotePath, as_path, is_url, join
from rldk_widget.hf_state import trainer_state_run_id
from rldk_widget.mirror import Mirror
from rldk_widget.remote_fs import FsspecFileSystem, MissingPackage, open_url, redact_text, redact_url
from rldk_widget.runs import Sweep
from rldk_widget.store import RunStore

from helpers import wait_until


def records(n: int, start: int = 1) -> list[dict]:
    return [{"step": step, "loss": 1.0 / step, "reward_mean": step / 10} for step in range(start, start + n)]


@pytest.fixture
def memory():
    """A fresh folder in fsspec's memory file system: (fs, internal path, URL)."""
    fs = fsspec.filesystem("memory")
    folder = f"/rldk-{uuid.uuid4().hex[:8]}"
    yield fs, folder, f"memory://{folder.lstrip('/')}"
    try:
        fs.rm(folder, recursive=True)
    except FileNotFoundError:
        pass


def upload_run(tmp_path, fs, folder: str, run_id: str, new: list[dict]) -> bytes:
    """Append `new` to a local run and upload its metrics file whole (as the mirror does); the bytes uploaded."""
    with RunStore(tmp_path, run_id) as store:
        store.append_metrics_many(new)
    data = (tmp_path / f"{run_id}_metrics.json").read_bytes()
    fs.pipe_file(f"{folder}/{run_id}_metrics.json", data)
    return data


def steps(dash: RLDKDashboard, run_id: str) -> list[int]:
    frame = dash.to_dataframe(run_id)
    return [int(step) for step in frame["step"]] if len(frame) else []


# ---- URLs and paths -------------------------------------------------------------------------------------------------
def test_redact_url_hides_credentials_and_tokens():
    assert redact_url("s3://bucket/sweep/") == "s3://bucket/sweep/"
    assert redact_url("ftp://alice:pa55@host/runs") == "ftp://***@host/runs"
    assert redact_url("https://h/x.json?X-Amz-Signature=abc&X-Amz-Credential=k%2F1#frag") == (
        "https://h/x.json?X-Amz-Signature=***&X-Amz-Credential=***#frag"
    )
    assert redact_url("simplecache::sftp://u:secret@host/a") == "simplecache::sftp://***@host/a"
    assert redact_url("/local/path") == "/local/path"
    text = redact_text('Could not connect to "http://key:sec@127.0.0.1:9/b?token=t0k" (retries)')
    assert "sec" not in text and "t0k" not in text and "127.0.0.1:9" in text


def test_paths_keep_urls_intact():
    assert is_url("s3://b/x") and is_url("memory://x") and is_url("simplecache::s3://b") and not is_url("/tmp/x")
    assert not is_url("C:\\runs") and not is_url("./a/b")
    path = join("s3://bucket/sweep", "run_metrics.json")
    assert isinstance(path, RemotePath) and path == "s3://bucket/sweep/run_metrics.json"
    assert path.name == "run_metrics.json" and path.parent == "s3://bucket/sweep"
    assert (RemotePath("s3://bucket") / "a" / "b") == "s3://bucket/a/b"
    assert as_path("s3://bucket/x") == "s3://bucket/x" and type(as_path("/tmp/x")).__name__.endswith("Path")
    assert trainer_state_run_id("s3://bucket/grpo-out/") == "hf_grpo-out"
    assert trainer_state_run_id("hf://datasets/user/repo/grpo out") == "hf_grpo_out"


def test_missing_package_names_what_to_install(monkeypatch):
    with pytest.raises(MissingPackage, match=r"gcsfs.*rldk-widget\[gcs\]"):
        open_url("gs://bucket/sweep")
    with pytest.raises(MissingPackage, match="gcsfs"):
        RLDKDashboard.from_dir("gs://bucket/sweep", auto_refresh=False)
    import fsspec.core

    def no_hub(url, **options):
        raise ImportError("Install huggingface_hub to access HfFileSystem")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_hub)
    with pytest.raises(MissingPackage, match=r"huggingface_hub.*rldk-widget\[hf\]"):
        open_url("hf://datasets/user/repo/sweep")


def test_hf_url_offline_is_a_remote_state_not_an_exception(dashboards):
    """hf:// cannot be reached here (HF_HUB_OFFLINE): the dashboard opens, says so in the status line, never raises."""
    started = time.monotonic()
    dash = dashboards.from_dir("hf://datasets/someone/repo/sweep", remote_timeout=2)
    assert time.monotonic() - started < 15  # no hang: remote_timeout, plus importing huggingface_hub on a cold machine
    assert dash.output_dir == "hf://datasets/someone/repo/sweep" and dash.run_ids == []
    assert dash.status["level"] == "warning" and dash.status["message"].startswith("remote not read yet:")
    assert "retrying" in dash.status["message"]
    assert list(dash.load_report) == ["hf://datasets/someone/repo/sweep"]


# ---- reading --------------------------------------------------------------------------------------------------------
def test_memory_folder_reads_incrementally_one_listing_per_pass(tmp_path, memory, dashboards):
    fs, folder, url = memory
    upload_run(tmp_path, fs, folder, "a", records(5))
    upload_run(tmp_path / "b", fs, folder, "b", records(3))
    dash = dashboards.from_dir(url + "/")
    assert dash.run_ids == ["a", "b"] and dash.output_dir == url
    assert steps(dash, "a") == [1, 2, 3, 4, 5] and steps(dash, "b") == [1, 2, 3]
    remote = dash._fs
    before = dict(remote.requests)
    dash.update_data()  # nothing new: the folder's listing, no read at all (the objects' ends are kept)
    assert {k: remote.requests.get(k, 0) - before.get(k, 0) for k in ("ls", "cat_file")} == {"ls": 1, "cat_file": 0}
    upload_run(tmp_path, fs, folder, "a", records(4, start=6))
    before, read_before = dict(remote.requests), remote.bytes_read
    dash.update_data()  # one run appended: one listing, one range read from its saved offset minus the window
    assert {k: remote.requests.get(k, 0) - before.get(k, 0) for k in ("ls", "cat_file")} == {"ls": 1, "cat_file": 1}
    assert remote.bytes_read - read_before < 400  # the new records and the 32-byte window, not the object
    assert steps(dash, "a") == list(range(1, 10)) and dash.load_report == {}
    table = dash.runs()
    assert sorted(table["run_id"]) == ["a", "b"] and set(table["folder"]) == {url}


def test_identity_is_the_path_and_the_window_decides(tmp_path, memory, dashboards):
    """An upload always gives a new version; an object that grew with its window unchanged is an append, one whose
    window differs (same size or larger) or that shrank is read again whole."""
    fs, folder, url = memory
    first = upload_run(tmp_path, fs, folder, "r", records(4))
    remote = FsspecFileSystem(url)
    info = remote.stat(f"{url}/r_metrics.json")
    assert info.identity == f"{folder}/r_metrics.json" and info.version is not None and info.kind == "file"
    dash = dashboards.from_dir(url)
    assert steps(dash, "r") == [1, 2, 3, 4]
    # replaced by another run of the same size whose last record differs: the window differs, read again whole (a
    # change before the window in an object of the same size is not seen: the limit of reading objects incrementally)
    assert first.count(b'"reward_mean":0.4}') == 1
    fs.pipe_file(f"{folder}/r_metrics.json", first.replace(b'"reward_mean":0.4}', b'"reward_mean":0.9}'))
    dash.update_data()
    frame = dash.to_dataframe("r")
    assert list(frame["step"]) == [1, 2, 3, 4] and frame["reward_mean"].iloc[-1] == 0.9
    assert any("replaced" in p for p in dash.load_report["r"])
    # replaced by a shorter object: read again whole
    other = tmp_path / "other"
    fs.pipe_file(f"{folder}/r_metrics.json", upload_run(other, MemoryFileSystem(), "/scratch", "r", records(2)))
    dash.update_data()
    assert steps(dash, "r") == [1, 2]
    # grew, but the bytes before the saved offset changed: read again whole, no duplicates
    grown = upload_run(tmp_path / "third", MemoryFileSystem(), "/scratch", "r", records(6, start=1))
    fs.pipe_file(f"{folder}/r_metrics.json", grown.replace(b'"loss":0.5,', b'"loss":0.25,'))
    dash.update_data()
    assert steps(dash, "r") == [1, 2, 3, 4, 5, 6]


def test_an_object_uploaded_again_after_the_listing_is_read_as_it_is_now(tmp_path, memory):
    """The mirror uploads an append as a whole new object; when that lands between a pass's listing and its read, the
    read gets the new object (one GET is one version), not the new object cut at the listed size: that would end
    inside the next record, which a reader takes for a torn write."""
    fs, folder, url = memory
    upload_run(tmp_path, fs, folder, "r", records(4))
    remote = FsspecFileSystem(url)
    store = RunStore(url, "r", follow=True, fs=remote)
    try:
        assert [r["step"] for r in store.read_new().metrics] == [1, 2, 3, 4]
        for start in (5, 9, 13):
            upload_run(tmp_path, fs, folder, "r", records(2, start=start))
            remote.begin_pass()
            listed = remote.stat(f"{url}/r_metrics.json").size  # the pass's listing: steps up to start + 1
            grown = upload_run(tmp_path, fs, folder, "r", records(2, start=start + 2))  # then uploaded again
            read = store.read_new()
            assert [r["step"] for r in read.metrics] == list(range(start, start + 4)), read
            assert read.problems == [] and read.conditions["r_metrics.json"] is None and not read.more
            assert len(grown) > listed
        # a read that stops at `limit` in a grown object says there may be more (its end is not known)
        remote.begin_pass()
        listed = remote.stat(f"{url}/r_metrics.json").size
        grown = upload_run(tmp_path, fs, folder, "r", records(3, start=17))
        info, data = remote.read(f"{url}/r_metrics.json", 0, listed + 10)
        assert data == grown[: listed + 10] and info.size > listed + 10 and info.version is None
        info, data = remote.read(f"{url}/r_metrics.json", 0, len(grown) + 10)
        assert data == grown and info.size == len(grown)
    finally:
        store.close()
        remote.close()


def test_hostile_objects_are_handled_as_damaged_local_files(tmp_path, memory, dashboards):
    """Torn tail, invalid UTF-8, a 'directory' named like a run file: the same records and problems as the same bytes
    in a local folder."""
    fs, folder, url = memory
    local = tmp_path / "local"
    local.mkdir()
    good = upload_run(tmp_path / "w", fs, folder, "torn", records(3))
    objects = {
        "torn_metrics.json": good[:-2] + b',\n{"step": 4, "lo',
        "utf_metrics.json": b'[\n{"step": 1, "loss": 0.5, "note": "\xff\xfe bad"},\n{"step": 2, "loss": 0.4}\n]',
        "csv_ppo_metrics.csv": b"step,loss\n1,0.5\n2,0.4\n3,0.",
    }
    for name, data in objects.items():
        fs.pipe_file(f"{folder}/{name}", data)
        (local / name).write_bytes(data)
    fs.pipe_file(f"{folder}/dir_metrics.json/inner", b"x")  # a prefix: a 'directory' named like a run file
    (local / "dir_metrics.json").mkdir()
    (local / "dir_metrics.json" / "inner").write_bytes(b"x")
    remote_dash = dashboards.from_dir(url)
    local_dash = dashboards.from_dir(local)
    assert remote_dash.run_ids == local_dash.run_ids == ["csv", "dir", "torn", "utf"]
    for run_id in remote_dash.run_ids:
        assert remote_dash.to_dataframe(run_id).equals(local_dash.to_dataframe(run_id)), run_id

    def report(dash, where):
        return {run: [p.replace(str(where), "<folder>") for p in problems] for run, problems in dash.load_report.items()}

    assert report(remote_dash, url) == report(local_dash, local)
    assert any("directory" in p for p in remote_dash.load_report["dir"])


def test_file_url_and_nested_sweep_work_unchanged(tmp_path, dashboards):
    """A file:// URL goes through fsspec like any URL; discovery of nested runs and the runs table are the same as for
    the plain path, and nothing is written there."""
    for rel in ("lr_1e-5_s0", "lr_1e-4_s0"):
        with RunStore(tmp_path / "sweep" / rel, "grpo") as store:
            store.append_metrics_many(records(3))
            store.write_info({"max_steps": 3, "trainer": "grpo", "config": {"args": {"learning_rate": 1e-5}}})
    before = sorted(p.name for p in (tmp_path / "sweep").rglob("*"))
    url = f"file://{tmp_path / 'sweep'}"
    remote_dash = dashboards.from_dir(url)
    local_dash = dashboards.from_dir(tmp_path / "sweep")
    assert remote_dash.run_ids == local_dash.run_ids and len(remote_dash.run_ids) == 2
    drop = ["folder", "last_activity", "status", "started"]
    assert remote_dash.runs().drop(columns=drop).equals(local_dash.runs().drop(columns=drop))
    assert set(remote_dash.runs()["folder"]) == {f"{url}/lr_1e-5_s0", f"{url}/lr_1e-4_s0"}
    with Sweep(url, fs=FsspecFileSystem(url), cache=False) as sweep:
        sweep.refresh()
        assert sorted(sweep.runs) == sorted(remote_dash.run_ids)
    with pytest.raises(ValueError, match="remote folder"):
        remote_dash.add_metrics({"step": 1, "loss": 0.1})
    with pytest.raises(ValueError, match="mirror_to"):
        remote_dash.callback()
    assert sorted(p.name for p in (tmp_path / "sweep").rglob("*")) == before


class SlowMemoryFileSystem(MemoryFileSystem):
    """memory://, but every listing and read waits until `answering` is set (a remote that hangs; at most a minute)."""

    protocol = "slowmem"

    @classmethod
    def _strip_protocol(cls, path):
        return MemoryFileSystem._strip_protocol(path.replace("slowmem://", "memory://", 1))
    answering = threading.Event()
    answering.set()

    def ls(self, path, detail=True, **kwargs):
        SlowMemoryFileSystem.answering.wait(60)
        return super().ls(path, detail=detail, **kwargs)

    def cat_file(self, path, start=None, end=None, **kwargs):
        SlowMemoryFileSystem.answering.wait(60)
        return super().cat_file(path, start=start, end=end, **kwargs)


def test_readers_on_two_threads_share_one_listing_per_pass(tmp_path):
    """The dashboard's pass and the samples worker stat the same folder at once: one listing answers both."""
    fsspec.register_implementation("slowmem", SlowMemoryFileSystem, clobber=True)
    fs = SlowMemoryFileSystem()
    folder = f"/slow-{uuid.uuid4().hex[:8]}"
    upload_run(tmp_path, fs, folder, "s", records(3))
    remote = FsspecFileSystem(f"slowmem://{folder.lstrip('/')}", timeout=30)
    try:
        SlowMemoryFileSystem.answering.clear()  # the first listing is slow: the other thread asks meanwhile
        sizes: list[int] = []
        threads = [threading.Thread(target=lambda: sizes.append(remote.stat(f"{remote.root_url}/s_metrics.json").size))
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: remote.requests.get("ls", 0) == 1, what="the first listing to start")
        time.sleep(0.2)  # the second reader has asked by now
        SlowMemoryFileSystem.answering.set()
        for thread in threads:
            thread.join(10)
        assert len(sizes) == 2 and sizes[0] == sizes[1] > 0
        assert remote.requests == {"ls": 1}
    finally:
        SlowMemoryFileSystem.answering.set()
        remote.close()


def test_a_slow_remote_is_bounded_by_the_timeout_and_backs_off(tmp_path, dashboards, monkeypatch):
    fsspec.register_implementation("slowmem", SlowMemoryFileSystem, clobber=True)
    fs = SlowMemoryFileSystem()
    folder = f"/slow-{uuid.uuid4().hex[:8]}"
    upload_run(tmp_path, fs, folder, "s", records(3))
    dash = dashboards.from_dir(f"slowmem://{folder.lstrip('/')}", remote_timeout=0.5)
    assert steps(dash, "s") == [1, 2, 3] and dash.status["level"] == "ok"
    SlowMemoryFileSystem.answering.clear()
    try:
        upload_run(tmp_path, fs, folder, "s", records(2, start=4))
        started = time.monotonic()
        dash.update_data()
        assert time.monotonic() - started < 20  # the pass gave up at its timeout (0.5 s), not after the hang (60 s)
        message = dash.status["message"]
        assert message.startswith("remote read ") and "ago: timeout (0.5 s) — retrying" in message, message
        assert steps(dash, "s") == [1, 2, 3]  # what was read before stays shown
        assert not any("remote unavailable" in p for problems in dash.load_report.values() for p in problems)
        assert not dash._fs.health.due()  # auto-refresh waits for the backoff
        calls = dict(dash._fs.requests)
        dash._auto_refresh()
        assert dash._fs.requests == calls
    finally:
        SlowMemoryFileSystem.answering.set()
    time.sleep(1.1)  # the request threads answer meanwhile; the backoff (1 s) is over
    dash._auto_refresh()
    assert dash.status == {"level": "ok", "message": ""} and steps(dash, "s") == [1, 2, 3, 4, 5]


# ---- the mirror -------------------------------------------------------------------------------------------------------
class FlakyMemoryFileSystem(MemoryFileSystem):
    protocol = "flakymem"

    @classmethod
    def _strip_protocol(cls, path):
        return MemoryFileSystem._strip_protocol(path.replace("flakymem://", "memory://", 1))
    down = False

    def pipe_file(self, path, value, **kwargs):
        if FlakyMemoryFileSystem.down:
            raise ConnectionError("remote is down")
        return super().pipe_file(path, value, **kwargs)

    def ls(self, path, detail=True, **kwargs):
        if FlakyMemoryFileSystem.down:
            raise ConnectionError("remote is down")
        return super().ls(path, detail=detail, **kwargs)


def test_mirror_uploads_changed_files_whole_and_survives_an_outage(tmp_path):
    fsspec.register_implementation("flakymem", FlakyMemoryFileSystem, clobber=True)
    fs = FlakyMemoryFileSystem()
    folder = f"/mirror-{uuid.uuid4().hex[:8]}"
    told: list[str] = []
    mirror = Mirror(tmp_path, "m", f"flakymem://{folder.lstrip('/')}", interval=0.2, warn=told.append, exit_upload=False)
    store = RunStore(tmp_path, "m")
    store.append_metrics_many(records(3))
    store.write_info({"max_steps": 9})
    mirror.start()
    try:
        assert mirror.upload_now(wait=5)
        assert fs.cat_file(f"{folder}/m_metrics.json") == (tmp_path / "m_metrics.json").read_bytes()
        assert fs.cat_file(f"{folder}/m_run_info.json") == (tmp_path / "m_run_info.json").read_bytes()
        uploads = mirror.uploads
        assert mirror.upload_now(wait=5) and mirror.uploads == uploads  # nothing changed: nothing uploaded
        FlakyMemoryFileSystem.down = True
        store.append_metrics_many(records(3, start=4))
        wait_until(lambda: mirror.status()["failures"] >= 2, timeout=10, what="two failed passes")
        assert len(told) == 1 and "failed" in told[0] and "training continues" in told[0]
        FlakyMemoryFileSystem.down = False
        fs.rm(f"{folder}/m_run_info.json")  # the remote lost an object meanwhile
        wait_until(lambda: not mirror.status()["failing"], timeout=20, what="the mirror to recover")
        assert len(told) == 2 and "work again" in told[1]
        assert fs.cat_file(f"{folder}/m_metrics.json") == (tmp_path / "m_metrics.json").read_bytes()
        assert fs.exists(f"{folder}/m_run_info.json")
        store.append_metrics_many(records(1, start=7))
    finally:
        FlakyMemoryFileSystem.down = False
        store.close()
        assert mirror.finish(10)
    assert fs.cat_file(f"{folder}/m_metrics.json") == (tmp_path / "m_metrics.json").read_bytes()
    assert not mirror.running


class GRPOConfig(SimpleNamespace):
    pass


def test_callback_mirror_to_uploads_at_train_end_rank_zero_only(tmp_path, memory):
    from transformers import TrainerControl, TrainerState

    from rldk_widget.callback import RLDKCallback

    fs, folder, url = memory
    with pytest.raises(ValueError, match="storage_options"):
        RLDKCallback(tmp_path, run_id="x", storage_options={"key": "k"})
    with pytest.raises(ValueError, match="fsspec URL"):
        RLDKCallback(tmp_path, run_id="x", mirror_to=str(tmp_path / "elsewhere"))
    args = GRPOConfig(output_dir=str(tmp_path / "out"))
    other = RLDKCallback(tmp_path / "rank1", run_id="r1", mirror_to=url, mirror_interval=60)
    state = TrainerState(max_steps=3, is_world_process_zero=False)
    other.on_train_begin(args, state, TrainerControl())
    other.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    assert other.mirror is not None and not other.mirror.running  # rank one neither writes nor uploads
    callback = RLDKCallback(tmp_path, run_id="cb", mirror_to=url + "/", mirror_interval=60, write_interval=0)
    state = TrainerState(max_steps=3, is_world_process_zero=True)
    callback.on_train_begin(args, state, TrainerControl())
    assert callback.mirror.running
    for step in (1, 2, 3):
        state.global_step = step
        callback.on_log(args, state, TrainerControl(), logs={"loss": 1.0 / step, "reward": 0.1 * step})
    callback.on_train_end(args, state, TrainerControl())  # the final upload, well before the 60 s interval
    assert not callback.mirror.running
    for name in ("cb_metrics.json", "cb_run_info.json"):
        assert fs.cat_file(f"{folder}/{name}") == (tmp_path / name).read_bytes()
    assert not fs.exists(f"{folder}/r1_metrics.json")
