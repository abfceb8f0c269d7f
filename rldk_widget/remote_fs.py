"""Remote run folders through fsspec: `FsspecFileSystem` is the `FileSystem` of fs.py for any fsspec URL (`s3://`,
`gs://`, `hf://`, `memory://`, `file://`, ...), so every reader (tailfile, store, discovery, the samples index) reads a
remote folder exactly as a local one, damaged objects included.

Cost per refresh pass. A pass starts with `begin_pass()` (RunFinder.scan and the dashboard call it): each folder is
listed once (`ls(detail=True)`, the file system's own listing cache bypassed) and the listing answers every `stat` and
the existence of every object in it for the rest of the pass, so a run file that does not exist costs nothing. A read
of an object is one ranged `cat_file`, except when the listing says the object is as it was at the last read (same
size and version, the ETag) and the bytes asked for are among the object's last `TAIL_BYTES` kept from that read: then
no request at all. So a pass over 50 runs with nothing new is one listing; an appended run adds one range read per
changed object.

Identity. An object store rewrites an object whole at every upload (new ETag each time), so a new ETag cannot tell an
append from a replacement. `FileStat.identity` of an object is its path (it never changes), `version` is its ETag: the
tail reader's window check decides (tailfile.py: it reads from the saved offset minus the 32-byte window in one range
request; the window unchanged means appended, otherwise, or an object shorter than the offset, it reads the object
again whole). `signature()` includes the version, for readers that re-read a file whole when it changed.

Time bounds. Every request runs on a small pool of worker threads and is waited for until the deadline of the pass
(`deadline(timeout)`, default 10 s for the whole pass) or `timeout` for a request outside a pass; a request that does
not answer in time raises `RemoteError` (an OSError: readers report it and keep their position) and every later request
of that pass fails at once. Transport failures (timeouts, connection errors, server errors) go to `health`: the status
line's "remote read 40 s ago: timeout — retrying in 8 s" and an exponential backoff (1 s doubling to 60 s) that
auto-refresh passes wait for; answers of a working server (missing object, access denied) are per-object problems.

Credentials come from fsspec's own mechanisms (environment, config files, `storage_options`); they are never printed
or kept: `redact_url` shows URLs without user info or query values, and error texts are redacted the same way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

from .fs import READ_CHUNK_BYTES, FileStat, NotARegularFile, RemotePath, is_url

DEFAULT_TIMEOUT_S = 10.0
"""How long one refresh pass (from_dir, update_data) may wait for a remote folder in total."""
LISTING_MAX_AGE_S = 5.0
"""A listing answers stats and reads of its pass, and for a reader outside a pass (the samples worker) while it is
younger than this."""
TAIL_BYTES = 64 << 10
"""Bytes kept of the end of each object read to its end: an unchanged object is answered from them without a request
(the tail reader's window, a torn last record, a whole small object such as a run info)."""
TAIL_BUDGET_BYTES = 32 << 20
"""All kept object ends together (least recently used dropped first)."""
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
REQUEST_THREADS = 4
REMOTE_UNAVAILABLE = "remote unavailable"
"""How the text of a `RemoteError` starts (a dashboard shows these in its status line, not as problems of files)."""

PROTOCOL_PACKAGES: dict[str, tuple[str, str | None]] = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "hf": ("huggingface_hub", "hf"),
    "az": ("adlfs", None), "abfs": ("adlfs", None), "abfss": ("adlfs", None), "adl": ("adlfs", None),
    "http": ("aiohttp", None), "https": ("aiohttp", None),
    "sftp": ("paramiko", None), "ssh": ("paramiko", None),
}
"""The package each protocol's fsspec file system comes from, and the rldk-widget extra that installs it."""

_TRANSPORT_ERRNOS = {
    getattr(errno, name) for name in (
        "EIO", "EREMOTEIO", "EBUSY", "EAGAIN", "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT",
        "EHOSTUNREACH", "EHOSTDOWN", "ENETUNREACH", "ENETDOWN", "EPIPE",
    ) if hasattr(errno, name)
}
_VERSION_KEYS = ("ETag", "etag", "generation", "blob_id", "md5Hash", "VersionId", "version_id", "sha")
_MTIME_KEYS = ("LastModified", "last_modified", "mtime", "updated", "modified", "created", "timeCreated")


class MissingPackage(ImportError):
    """The fsspec file system of a URL's protocol is not installed; the message names the package to install."""


class RemoteError(OSError):
    """The remote did not answer in time, or the connection failed: not a problem of one object."""

    def __init__(self, text: str) -> None:
        super().__init__(errno.EIO, f"{REMOTE_UNAVAILABLE}: {text}")
        self.text = text


# ---- URLs ---------------------------------------------------------------------------------------------------------
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@?#]*@)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: Any) -> str:
    """`url` as it may be shown: user info (`user:password@`) and the values of query parameters (tokens, signatures of
    presigned URLs) replaced by `***`; each part of a chained URL (`simplecache::s3://...`) likewise. A local path is
    returned as it is."""
    text = str(url)
    if "::" in text and is_url(text):
        return "::".join(redact_url(part) for part in text.split("::"))
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
    base, sep, query = text.partition("?")
    if sep:
        fragment = ""
        if "#" in query:
            query, _, fragment = query.partition("#")
            fragment = "#" + fragment
        parts = [f"{key}=***" if eq else key for key, eq, _ in (item.partition("=") for item in query.split("&"))]
        text = base + "?" + "&".join(parts) + fragment
    return text


def redact_text(text: str) -> str:
    """Every URL in `text` redacted (error messages of remote file systems may quote the URL they were given)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def bounded(fs: Any, method: str, timeout: float | None, *args: Any, **kwargs: Any) -> Any:
    """`fs.<method>(*args, **kwargs)`, for an async fsspec file system (s3fs, gcsfs, http) cancelled after `timeout`
    seconds (fsspec's sync wrapper takes `timeout`: a request that hangs, e.g. an upload to a server that stopped
    answering, ends with FSTimeoutError); other file systems rely on their own timeouts."""
    if timeout is not None and timeout > 0 and _is_async(fs):
        return getattr(fs, method)(*args, timeout=timeout, **kwargs)
    return getattr(fs, method)(*args, **kwargs)


def _is_async(fs: Any) -> bool:
    try:
        from fsspec.asyn import AsyncFileSystem
    except ImportError:  # pragma: no cover
        return False
    return isinstance(fs, AsyncFileSystem)


def package_for(protocol: str) -> tuple[str, str | None]:
    return PROTOCOL_PACKAGES.get(protocol, (f"the fsspec implementation of {protocol}://", None))


def open_url(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """(the fsspec file system, the path inside it) of `url`. A missing package raises `MissingPackage` naming it and
    the extra that installs it; an unknown protocol raises ValueError."""
    try:
        import fsspec.core
    except ImportError as err:  # pragma: no cover - fsspec comes with datasets / huggingface_hub
        raise MissingPackage("remote folders need fsspec: pip install fsspec") from err
    protocol = str(url).split("::", 1)[0].split("://", 1)[0]
    try:
        return fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as err:
        package, extra = package_for(protocol)
        how = f"pip install 'rldk-widget[{extra}]' (or pip install {package})" if extra else f"pip install {package}"
        raise MissingPackage(f"reading {protocol}:// folders needs {package}: {how}") from err


# ---- health -------------------------------------------------------------------------------------------------------
@dataclass
class RemoteHealth:
    """How the remote answered lately: the time of the last answer, the current failure (None: answering) and the
    backoff before the next attempt."""

    last_ok: float | None = None
    """Wall-clock time of the last request that got an answer."""
    error: str | None = None
    failures: int = 0
    retry_at: float = -math.inf
    """Monotonic time before which auto-refresh does not try again."""

    def ok(self) -> None:
        self.last_ok = time.time()
        self.error = None
        self.failures = 0
        self.retry_at = -math.inf

    def failed(self, text: str) -> None:
        self.error = text
        self.failures += 1
        self.retry_at = time.monotonic() + min(BACKOFF_BASE_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)

    def due(self) -> bool:
        return self.error is None or time.monotonic() >= self.retry_at

    def status(self) -> str | None:
        """"remote read 40 s ago: timeout — retrying in 8 s" while failing, else None."""
        if self.error is None:
            return None
        ago = "remote not read yet" if self.last_ok is None else f"remote read {_duration(time.time() - self.last_ok)} ago"
        wait = self.retry_at - time.monotonic()
        retry = f"retrying in {_duration(wait)}" if wait > 0.5 else "retrying"
        return f"{ago}: {self.error} — {retry}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# ---- the file system ----------------------------------------------------------------------------------------------
@dataclass
class _Listing:
    pass_no: int
    at: float
    entries: dict[str, FileStat] | None
    """None: the folder does not exist."""


@dataclass
class _Tail:
    size: int
    version: Any
    start: int
    data: bytes


class FsspecFileSystem:
    """A remote folder (an fsspec URL, or an fsspec file system and a root path in it) as a `FileSystem`.

    Readers use URL paths (`RemotePath`, e.g. `s3://bucket/sweep/run_metrics.json`) under `root_url`, the folder's URL
    without credentials. `requests` counts the requests made by kind ("ls", "cat_file") and `bytes_read` the bytes
    they returned, for benchmarks and tests. See the module docstring for what a pass costs and how time is bounded."""

    remote = True

    def __init__(
        self,
        url_or_fs: Any,
        storage_options: Mapping[str, Any] | None = None,
        *,
        root: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        listing_max_age: float = LISTING_MAX_AGE_S,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise ValueError(f"timeout must be a number of seconds in (0, 3600], got {timeout!r}")
        if isinstance(url_or_fs, str):
            self.fs, path = open_url(url_or_fs, storage_options)
            self.root_url = _strip_slash(redact_url(url_or_fs.split("?", 1)[0]))
        else:
            if root is None:
                raise TypeError("FsspecFileSystem(fs, root=...): the root path inside the file system is needed")
            self.fs, path = url_or_fs, root
            self.root_url = _strip_slash(redact_url(self.fs.unstrip_protocol(root)))
        self.root = path.rstrip("/") or ("/" if path.startswith("/") else "")
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.timeout = float(timeout)
        self.listing_max_age = float(listing_max_age)
        self.health = RemoteHealth()
        self.requests: dict[str, int] = {}
        self.bytes_read = 0
        self._lock = threading.Lock()
        self._pass = 0
        self._listings: dict[str, _Listing] = {}
        self._listing_gates: dict[str, threading.Lock] = {}
        self._folders: set[str] = {self.root}
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._tail_bytes = 0
        self._local = threading.local()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"FsspecFileSystem({self.root_url!r})"

    # ---- passes and deadlines -------------------------------------------------------------------------------------
    def begin_pass(self) -> None:
        """Listings from before are stale now: each folder is listed again, once, when first needed."""
        with self._lock:
            self._pass += 1

    @contextlib.contextmanager
    def deadline(self, timeout: float | None = None) -> Iterator[None]:
        """Bound every request made by this thread inside the block by one deadline (`timeout`, default the file
        system's): the first that does not answer in time ends the pass for the remote (later ones fail at once)."""
        previous = (getattr(self._local, "deadline", None), getattr(self._local, "failed", None),
                    getattr(self._local, "timeout", self.timeout))
        self._local.timeout = self.timeout if timeout is None else timeout
        self._local.deadline = time.monotonic() + self._local.timeout
        self._local.failed = None
        try:
            yield
        finally:
            self._local.deadline, self._local.failed, self._local.timeout = previous

    @property
    def pass_failed(self) -> RemoteError | None:
        """The remote error that ended this thread's current pass (inside `deadline`), if any."""
        return getattr(self._local, "failed", None)

    def close(self) -> None:
        """Stop the request threads (a request still waiting for an unanswering remote ends with its own timeout)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # ---- paths ------------------------------------------------------------------------------------------------------
    def internal(self, path: Any) -> str:
        """The fsspec path of a reader's path (a URL under `root_url`, or a path inside the file system)."""
        text = str(path)
        if text == self.root_url or text.startswith(self.root_url.rstrip("/") + "/"):
            rest = text[len(self.root_url):].strip("/")
            if not rest:
                return self.root
            return f"{self.root.rstrip('/')}/{rest}"
        if is_url(text):
            return self.fs._strip_protocol(text).rstrip("/") or "/"
        return text.rstrip("/") or "/"

    def url(self, internal: str) -> RemotePath:
        """The reader's path of an fsspec path under the root."""
        if internal == self.root:
            return RemotePath(self.root_url)
        rest = internal[len(self.root.rstrip("/")) + 1:] if internal.startswith(self.root.rstrip("/") + "/") else internal
        return RemotePath(f"{self.root_url.rstrip('/')}/{rest}" if not self.root_url.endswith("//") else self.root_url + rest)

    # ---- the FileSystem protocol ----------------------------------------------------------------------------------------
    def listdir(self, folder: Any) -> dict[str, FileStat]:
        key = self.internal(folder)
        entries = self._listing(key)
        if entries is None:
            raise FileNotFoundError(errno.ENOENT, "no such folder", str(folder))
        return dict(entries)

    def stat(self, path: Any) -> FileStat:
        key = self.internal(path)
        parent, _, name = key.rpartition("/")
        parent = parent or ("/" if key.startswith("/") else "")
        listing = self._cached(parent)
        if listing is not None and listing.entries is not None and name:
            entry = listing.entries.get(name)
            if entry is None:
                raise FileNotFoundError(errno.ENOENT, "no such object", str(path))
            return entry
        own = self._cached(key)
        if own is not None and own.entries is not None:
            return FileStat(0, key, 0, "directory")
        if key in self._folders or not name or (listing is not None and listing.entries is None):
            if listing is not None and listing.entries is None:
                raise FileNotFoundError(errno.ENOENT, "no such object", str(path))
            entries = self._listing(key)  # the root (or a folder seen before): its own listing tells
            if entries is None:
                raise FileNotFoundError(errno.ENOENT, "no such folder", str(path))
            return FileStat(0, key, 0, "directory")
        entries = self._listing(parent)
        entry = None if entries is None else entries.get(name)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", str(path))
        return entry

    def read(self, path: Any, start: int, limit: int = READ_CHUNK_BYTES) -> tuple[FileStat, bytes]:
        """Up to `limit` bytes of the object from `start`, and what the object is. The range asked for is not cut at
        the listed size: an object uploaded again since the listing (an append mirrored as a whole new object) is
        read as it is now, since one GET returns one version of it. Cut at the old size, the newer object would end
        inside its next record, which a reader would take for a torn write."""
        key = self.internal(path)
        info = self.stat(path)
        if info.kind != "file":
            raise NotARegularFile(str(path), info.kind)
        limit = max(0, limit)
        listed_end = min(info.size, start + limit)
        if listed_end <= start:
            return info, b""
        with self._lock:
            tail = self._tails.get(key)
            if tail is not None and (tail.size, tail.version) == (info.size, info.version) and tail.start <= start:
                self._tails.move_to_end(key)
                return info, tail.data[start - tail.start : listed_end - tail.start]
        try:
            data = self._call("cat_file", self._cat, key, start, start + limit)
        except OSError as err:
            if err.errno == errno.EINVAL and "range" in str(err).lower():  # shorter than `start` now (replaced)
                return info._replace(size=start, version=None), b""
            raise
        data = bytes(data[:limit])
        if len(data) < listed_end - start:  # shorter than listed: it changed since the listing; this is its end
            return info._replace(size=start + len(data), version=None), data
        if start + len(data) > info.size:
            # longer than listed: uploaded again since the listing. Its end is known only if the read stopped before
            # `limit`; otherwise it is at least a byte further, so that the caller reads on
            grown = start + len(data) + (1 if len(data) == limit else 0)
            return info._replace(size=grown, version=None), data
        if listed_end == info.size and info.version is not None:
            self._keep_tail(key, info, start, data)
        return info, data

    # ---- internals ------------------------------------------------------------------------------------------------------
    def _cached(self, key: str) -> _Listing | None:
        with self._lock:
            listing = self._listings.get(key)
            if listing is None or listing.pass_no != self._pass or time.monotonic() - listing.at > self.listing_max_age:
                return None
            return listing

    def _listing(self, key: str) -> dict[str, FileStat] | None:
        cached = self._cached(key)
        if cached is not None:
            return cached.entries
        with self._lock:
            gate = self._listing_gates.setdefault(key, threading.Lock())
        with gate:  # one listing of a folder at a time: a reader on another thread (the samples worker) uses it too
            cached = self._cached(key)
            if cached is not None:
                return cached.entries
            return self._list(key)

    def _list(self, key: str) -> dict[str, FileStat] | None:
        with self._lock:
            pass_no = self._pass
        try:
            raw = self._call("ls", self._ls, key)
        except FileNotFoundError:
            entries = None
        else:
            entries = {}
            for item in raw:
                name = str(item.get("name", "")).rstrip("/")
                if name == key.rstrip("/") and item.get("type") != "directory":
                    raise NotADirectoryError(errno.ENOTDIR, "is an object, not a folder", self.url(key))
                child = name.rsplit("/", 1)[-1]
                if child:
                    entries[child] = _file_stat(item, name)
            with self._lock:
                self._folders.update(f"{key.rstrip('/')}/{n}" for n, e in entries.items() if e.kind == "directory")
        with self._lock:
            self._listings[key] = _Listing(pass_no, time.monotonic(), entries)
            if len(self._listings) > 10_000:
                oldest = sorted(self._listings, key=lambda k: self._listings[k].at)[:5000]
                for stale in oldest:
                    del self._listings[stale]
                    self._listing_gates.pop(stale, None)
        return entries

    def _ls(self, key: str, timeout: float) -> list[dict[str, Any]]:
        """One listing of the folder, on a request thread (HfFileSystem's invalidate_cache may ask the Hub too)."""
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate(key)  # s3fs, gcsfs and HfFileSystem keep listings of their own: never use theirs
        return bounded(self.fs, "ls", timeout, key, detail=True)

    def _cat(self, key: str, start: int, end: int, timeout: float) -> bytes:
        return bounded(self.fs, "cat_file", timeout, key, start=start, end=end)

    def _keep_tail(self, key: str, info: FileStat, start: int, data: bytes) -> None:
        if len(data) > TAIL_BYTES:
            start, data = start + len(data) - TAIL_BYTES, data[-TAIL_BYTES:]
        with self._lock:
            old = self._tails.pop(key, None)
            if old is not None:
                self._tail_bytes -= len(old.data)
            self._tails[key] = _Tail(info.size, info.version, start, data)
            self._tail_bytes += len(data)
            while self._tail_bytes > TAIL_BUDGET_BYTES and self._tails:
                _, dropped = self._tails.popitem(last=False)
                self._tail_bytes -= len(dropped.data)

    def _call(self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` on a request thread, waited for until the deadline; transport failures become
        `RemoteError` and go to `health`."""
        failed = getattr(self._local, "failed", None)
        if failed is not None:
            raise failed
        deadline = getattr(self._local, "deadline", None)
        in_pass = deadline is not None
        if not in_pass:
            if not self.health.due():
                raise RemoteError(self.health.error or "not answering")
            deadline = time.monotonic() + self.timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._fail(in_pass, f"timeout ({self._timeout_text()})")
        with self._lock:
            if self._closed:
                raise RemoteError("closed")
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="rldk-remote")
            self.requests[kind] = self.requests.get(kind, 0) + 1
            future = self._pool.submit(fn, *args, timeout=max(0.05, remaining - 0.05), **kwargs)
        try:
            result = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self._fail(in_pass, f"timeout ({self._timeout_text()})") from None
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            self.health.ok()
            raise
        except Exception as err:  # noqa: BLE001 - every failure of a remote library is classified here
            if isinstance(err, OSError) and not _transport(err):
                self.health.ok()  # the server answered: a problem of this object
                raise OSError(err.errno, redact_text(err.strerror or str(err)), *(err.args[2:3] or ())) from None
            raise self._fail(in_pass, _describe(err)) from None
        self.health.ok()
        if isinstance(result, (bytes, bytearray)):
            self.bytes_read += len(result)
        return result

    def _timeout_text(self) -> str:
        return f"{getattr(self._local, 'timeout', self.timeout):g} s"

    def _fail(self, in_pass: bool, text: str) -> RemoteError:
        error = RemoteError(text)
        if not in_pass or getattr(self._local, "failed", None) is None:
            self.health.failed(text)
        if in_pass:
            self._local.failed = error
        return error


def _transport(err: OSError) -> bool:
    return (
        err.errno is None or err.errno in _TRANSPORT_ERRNOS or isinstance(err, (ConnectionError, TimeoutError))
    )


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    name = type(err).__name__
    if isinstance(err, TimeoutError) or "timeout" in name.lower():
        return f"timeout ({name})"
    text = redact_text(text)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{name}: {text}" if text else name


def _strip_slash(url: str) -> str:
    stripped = url.rstrip("/")
    return url if stripped.endswith(":") or not stripped else stripped


def _file_stat(item: Mapping[str, Any], name: str) -> FileStat:
    kind = {"file": "file", "directory": "directory"}.get(str(item.get("type")), "special file")
    size = item.get("size")
    size = int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) and size >= 0 else 0
    mtime_ns = 0
    for key in _MTIME_KEYS:
        value = item.get(key)
        if value is None:
            continue
        try:
            if isinstance(value, datetime):
                mtime_ns = int(value.timestamp() * 1e9)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                mtime_ns = int(float(value) * 1e9)
            elif isinstance(value, str):
                mtime_ns = int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            else:
                continue
        except (ValueError, OverflowError, OSError):
            continue
        break
    version: Any = None
    if kind == "file":
        for key in _VERSION_KEYS:
            value = item.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                version = value
                break
        if version is None and mtime_ns:
            version = mtime_ns
    return FileStat(size, name, mtime_ns, kind, version)
