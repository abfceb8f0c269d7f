"""Mirror: uploads a run's local files to a remote folder (an fsspec URL) from the training job.

The local files stay the truth (append-only, crash-safe, tailfile.py); object stores cannot append, so a background
thread uploads each of the run's `{run_id}_*` files whose size, modification time or inode changed as a whole object,
every `interval` seconds, and once more at the end of training (`finish`, from `on_train_end` and at process exit).
Each upload is atomic for a reader: one PUT of the whole object on an object store (`s3`, `gs`, `az`, `hf`, `memory`),
elsewhere a temporary name renamed over the object. A file is copied under a shared lock on it (the writers' appends
take it exclusively), so an upload always holds a complete write: never a torn record.

Each pass first lists the remote folder (one request) and uploads again any object that is missing or whose size is
not what was uploaded (a remote that lost its state catches up at once). A remote that is down never slows training:
uploads run on this thread only, a failed pass is retried after an exponential backoff (`interval` doubling up to
`MAX_BACKOFF_S`), the local files keep everything and the next successful pass uploads what changed meanwhile. The
first failure and the first recovery are warned about; everything else is logged.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

from .remote_fs import bounded, open_url, redact_text, redact_url
from .tailfile import lock_shared, unlock

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0
MAX_BACKOFF_S = 600.0
REQUEST_TIMEOUT_S = 60.0
"""A listing or upload that has not finished by then (plus a second per MB uploaded) is given up (and retried)."""
FINAL_TIMEOUT_S = 30.0
"""How long the end of training (and process exit) waits for the last upload at most."""
ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf", "memory"})
"""Protocols whose single upload replaces an object atomically (a reader sees the old object or the new one)."""


def run_file_names(run_id: str) -> list[str]:
    from .discovery import RUN_SUFFIXES

    return [f"{run_id}_{suffix}" for suffix in sorted(RUN_SUFFIXES, key=lambda s: s != "run_info.json")]


class Mirror:
    """Uploads `folder/{run_id}_*` to the remote folder `url` (see the module docstring). `start()` starts the thread
    (idempotent; again after `finish`), `upload_now()` asks for a pass at once, `finish(timeout)` makes a last pass and
    stops. `status()` tells what happened. Thread-safe; never raises from the thread."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        run_id: str,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        interval: float = DEFAULT_INTERVAL_S,
        warn: Callable[[str], None] | None = None,
        exit_upload: bool = True,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        """`warn(message)`: how the first failure and the first recovery are told (default `warnings.warn`).
        `exit_upload`: finish at process exit (an owner that finishes it itself, RLDKCallback after writing its queued
        logs, passes False)."""
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 86_400:
            raise ValueError(f"mirror_interval must be a number of seconds in (0, 86400], got {interval!r}")
        if not isinstance(url, str):
            raise TypeError(f"mirror_to must be an fsspec URL string, got {type(url).__name__}")
        self.folder = Path(folder)
        self.run_id = run_id
        self.url = redact_url(url)
        """The remote folder as it may be shown (no credentials)."""
        self.interval = float(interval)
        self.request_timeout = float(request_timeout)
        self._fs, root = open_url(url, storage_options)  # a missing package raises now, before training starts
        self._root = root.rstrip("/")
        protocol = self._fs.protocol if isinstance(self._fs.protocol, str) else self._fs.protocol[0]
        self._atomic_put = protocol in ATOMIC_PUT
        self._warn = warn or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=2))
        self._uploaded: dict[str, tuple[tuple[int, int, int], int]] = {}
        """Per file name: (local size, mtime_ns, inode) when copied, and the bytes uploaded."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._requested = 0
        self._completed = 0
        self._failures = 0
        self._warned_failing = False
        self._warned_recovered = False
        self._failing = False
        self._next_at = 0.0
        self._made_folder = False
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.uploads = 0
        self.bytes_uploaded = 0
        self.passes = 0
        if exit_upload:
            _AT_EXIT.add(self)

    # ---- control ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stopping:
                return
            self._stopping = False
            self._next_at = time.monotonic() + self.interval
            self._thread = threading.Thread(target=self._run, name="rldk-mirror", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def upload_now(self, wait: float | None = None) -> bool:
        """Ask for a pass now (not before the backoff of a failing remote is over, unless the thread is stopping);
        with `wait`, wait up to that many seconds for it. True if the pass asked for completed."""
        with self._lock:
            self._requested += 1
            wanted = self._requested
            if not self._failing:
                self._next_at = min(self._next_at, time.monotonic())
        self._wake.set()
        if wait is None:
            return False
        deadline = time.monotonic() + wait
        with self._lock:
            while self._completed < wanted and self._thread is not None and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
            return self._completed >= wanted

    def finish(self, timeout: float = FINAL_TIMEOUT_S) -> bool:
        """A last pass (at once, whatever the backoff), then stop the thread; wait for it at most `timeout` seconds.
        True if everything was uploaded. Training code calls this once at the end: it never waits longer."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return not self._failing
            self._stopping = True
            self._requested += 1
            wanted = self._requested
        self._wake.set()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while self._completed < wanted and thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("RLDKCallback: the last upload to %s did not finish within %.0f s; the local files "
                                   "in %s keep everything", self.url, timeout, self.folder)
                    return False
                self._done.wait(left)
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self._failing

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self.url, "running": self.running, "passes": self.passes, "uploads": self.uploads,
                "bytes_uploaded": self.bytes_uploaded, "failing": self._failing, "failures": self._failures,
                "last_error": self.last_error, "last_success": self.last_success,
            }

    # ---- the thread ---------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                stopping = self._stopping
                wait = 0.0 if stopping else self._next_at - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                continue
            with self._lock:
                wanted = self._requested
            ok = self._pass()
            with self._lock:
                self._completed = max(self._completed, wanted)
                delay = self.interval if ok else min(
                    self.interval * 2 ** (self._failures - 1), max(self.interval, MAX_BACKOFF_S)
                )
                self._next_at = time.monotonic() + delay
                self._done.notify_all()
                if stopping:
                    self._thread = None if self._thread is threading.current_thread() else self._thread
                    return

    def _pass(self) -> bool:
        """Upload what changed; False if the remote failed (nothing of this pass is lost: the next pass retries)."""
        self.passes += 1
        try:
            remote = self._remote_sizes()
            for name in run_file_names(self.run_id):
                self._upload_if_changed(name, remote)
        except Exception as err:  # noqa: BLE001 - whatever the remote library raises, training goes on
            self._failed(err)
            return False
        self._succeeded()
        return True

    def _remote_sizes(self) -> dict[str, int]:
        try:
            invalidate = getattr(self._fs, "invalidate_cache", None)
            if invalidate is not None:
                invalidate(self._root)
            listing = bounded(self._fs, "ls", self.request_timeout, self._root, detail=True)
        except FileNotFoundError:
            return {}
        sizes = {}
        for item in listing:
            name = str(item.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(f"{self.run_id}_") and item.get("type") == "file":
                sizes[name] = int(item.get("size") or 0)
        return sizes

    def _upload_if_changed(self, name: str, remote: dict[str, int]) -> None:
        path = self.folder / name
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return
        signature = (current.st_size, current.st_mtime_ns, current.st_ino)
        done = self._uploaded.get(name)
        if done is not None and done[0] == signature and remote.get(name) == done[1]:
            return
        copied = _copy(path)
        if copied is None:
            return
        signature, data = copied
        self._put(name, data)
        self._uploaded[name] = (signature, len(data))
        self.uploads += 1
        self.bytes_uploaded += len(data)

    def _put(self, name: str, data: bytes) -> None:
        target = f"{self._root}/{name}"
        timeout = self.request_timeout + len(data) / 1e6  # a hung upload (a server that stopped answering) ends
        if self._atomic_put:
            bounded(self._fs, "pipe_file", timeout, target, data)
            return
        if not self._made_folder:
            self._fs.makedirs(self._root, exist_ok=True)
            self._made_folder = True
        temporary = f"{self._root}/.{name}.{os.getpid()}.uploading"
        bounded(self._fs, "pipe_file", timeout, temporary, data)
        bounded(self._fs, "mv", self.request_timeout, temporary, target)

    def _failed(self, err: BaseException) -> None:
        text = redact_text(f"{type(err).__name__}: {err}".strip())[:300]
        with self._lock:
            self._failures += 1
            first_of_outage = not self._failing
            self._failing = True
            self.last_error = text
        if first_of_outage and not self._warned_failing:
            self._warned_failing = True
            self._warn(
                f"RLDKCallback: uploading run {self.run_id} to {self.url} failed ({text}); training continues, the "
                f"local files in {self.folder} keep everything and uploads are retried with backoff"
            )
        elif first_of_outage:
            logger.warning("RLDKCallback: uploads to %s fail again (%s); retrying with backoff", self.url, text)
        else:
            logger.info("RLDKCallback: upload to %s failed (%s, %d in a row)", self.url, text, self._failures)

    def _succeeded(self) -> None:
        with self._lock:
            recovered, failures = self._failing, self._failures
            self._failing = False
            self._failures = 0
            self.last_error = None
            self.last_success = time.time()
        if recovered and not self._warned_recovered:
            self._warned_recovered = True
            self._warn(f"RLDKCallback: uploads to {self.url} work again (caught up after {failures} failed attempts)")
        elif recovered:
            logger.warning("RLDKCallback: uploads to %s work again (after %d failed attempts)", self.url, failures)


_AT_EXIT: "weakref.WeakSet[Mirror]" = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    """A job that ends without finish() still uploads its last records."""
    for mirror in list(_AT_EXIT):
        if mirror.running:
            mirror.finish()


def _copy(path: Path) -> tuple[tuple[int, int, int], bytes] | None:
    """The file's (size, mtime_ns, inode) and bytes as one complete write left them (under a shared lock: appends
    take it exclusively), or None if it is gone or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        import stat as stat_module

        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            return None
        lock_shared(fd)
        try:
            opened = os.fstat(fd)
            parts = []
            offset = 0
            while offset < opened.st_size:
                chunk = os.pread(fd, min(16 << 20, opened.st_size - offset), offset)
                if not chunk:
                    break
                parts.append(chunk)
                offset += len(chunk)
        finally:
            unlock(fd)
        return (opened.st_size, opened.st_mtime_ns, opened.st_ino), b"".join(parts)
    finally:
        os.close(fd)
