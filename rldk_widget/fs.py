"""The file-system layer: every reader of a run folder lists and reads through a `FileSystem` (local files here;
remote folders plug in the same interface).

Reads never block and never raise anything but `OSError`: a path is opened non-blocking and checked on the open
handle to be a regular file (a FIFO, socket, device or directory named like a run file is refused with
`NotARegularFile` before a byte is read), and one call reads at most `limit` bytes. `describe_error` turns any `OSError` into the short text
the status line and `load_report` show.

Paths: a local folder's readers use `pathlib.Path`; a remote folder's (remote_fs.py, an fsspec URL) use `RemotePath`, a
`str` with the few path operations the readers use (`/`, `name`, `parent`), because `pathlib` would turn `s3://bucket`
into `s3:/bucket`. `as_path(path, fs)` gives the right one, `join(folder, *names)` joins either kind.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_module
from pathlib import Path
from typing import Any, Hashable, NamedTuple, Protocol

READ_CHUNK_BYTES = 16 << 20
"""The most one read returns: a reader goes through a larger file chunk by chunk, so memory stays bounded."""


class FileStat(NamedTuple):
    """What a listing or a read tells about one file. `identity` changes when the path names another file
    (replaced, not appended to): device and inode locally. A remote object's identity is its path (every upload of an
    object store is a whole new object, so it cannot tell an append from a replacement: the tail reader's window check
    does). `version` changes whenever the content may have: None locally (identity, size and mtime tell), the ETag (or
    the like) of a remote object."""

    size: int
    identity: Hashable
    mtime_ns: int
    kind: str
    version: Hashable = None


def signature(info: FileStat) -> tuple[Any, ...]:
    """What tells that a file changed since it was last read: (identity, size, mtime_ns), plus the version of a remote
    object (its ETag: an object rewritten with the same size in the same second still differs)."""
    base = (info.identity, info.size, info.mtime_ns)
    return base if info.version is None else (*base, info.version)


class NotARegularFile(OSError):
    """A path named like a run file that is a directory, FIFO, socket or device: never read."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"is a {kind}, not a regular file", path)
        self.kind = kind


def _kind(mode: int) -> str:
    if stat_module.S_ISREG(mode):
        return "file"
    if stat_module.S_ISDIR(mode):
        return "directory"
    if stat_module.S_ISFIFO(mode):
        return "FIFO"
    if stat_module.S_ISSOCK(mode):
        return "socket"
    if stat_module.S_ISCHR(mode):
        return "character device"
    if stat_module.S_ISBLK(mode):
        return "block device"
    if stat_module.S_ISLNK(mode):
        return "symbolic link"
    return "special file"


def file_stat(result: os.stat_result) -> FileStat:
    return FileStat(result.st_size, (result.st_dev, result.st_ino), result.st_mtime_ns, _kind(result.st_mode))


def describe_error(err: OSError) -> str:
    """`err` as the few words a user needs ("Permission denied", "is a FIFO, not a regular file")."""
    if isinstance(err, NotARegularFile):
        return err.strerror or "not a regular file"
    return err.strerror or type(err).__name__


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(://|::)")


def is_url(path: Any) -> bool:
    """`path` is an fsspec URL (`s3://bucket/x`, `memory://x`, `file:///x`, `simplecache::s3://...`), not a local path."""
    return isinstance(path, str) and _URL.match(path) is not None


class RemotePath(str):
    """A path in a remote folder as its readers use it: the URL text, with `/`, `name` and `parent` like a
    `PurePosixPath` (which would normalise `s3://bucket` to `s3:/bucket`)."""

    __slots__ = ()

    def __truediv__(self, name: str) -> "RemotePath":
        return RemotePath(join(self, name))

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "RemotePath":
        head, _, _ = self.rstrip("/").rpartition("/")
        return RemotePath(head if head and not head.endswith(":/") else self)


def join(folder: Any, *names: str) -> Any:
    """`folder / name / ...` for a local `Path` (or a local path string: a Path), a `RemotePath` or a URL string (a
    RemotePath): remote paths are joined with one `/`, never normalised."""
    if isinstance(folder, RemotePath) or is_url(folder):
        text = str(folder)
        for name in names:
            text = f"{text.rstrip('/')}/{name.lstrip('/')}" if not text.endswith("://") else f"{text}{name.lstrip('/')}"
        return RemotePath(text)
    return Path(folder).joinpath(*names)


def as_path(path: Any, fs: Any = None) -> Any:
    """The path type a reader of `fs` uses: a `RemotePath` for a remote file system (or a URL), else a `Path`."""
    if isinstance(path, RemotePath):
        return path
    if getattr(fs, "remote", False) or is_url(path):
        return RemotePath(os.fspath(path) if not isinstance(path, str) else path)
    return Path(path)


class FileSystem(Protocol):
    """What readers of run folders need from a file system."""

    remote: bool
    """False for local files; True for a remote folder (paths are `RemotePath`s, writers never write there)."""

    def begin_pass(self) -> None:
        """A new look at the folder starts (a refresh pass): listings a remote file system kept are stale now."""
        ...

    def listdir(self, folder: str | os.PathLike[str]) -> dict[str, FileStat]:
        """Names in `folder` and what they are (symbolic links described by their target; a broken or looping
        link as "symbolic link"). Raises OSError if the folder cannot be listed."""
        ...

    def stat(self, path: str | os.PathLike[str]) -> FileStat:
        """What `path` is now (following symbolic links). Raises OSError (FileNotFoundError when missing)."""
        ...

    def read(self, path: str | os.PathLike[str], start: int, limit: int = READ_CHUNK_BYTES) -> tuple[FileStat, bytes]:
        """The file's state and at most `limit` of its bytes from `start`, from one open handle. Raises
        FileNotFoundError when missing, NotARegularFile for anything but a regular file, OSError otherwise."""
        ...


class LocalFileSystem:
    """Local files through `os`, with `read_open` for a handle a writer already holds under its lock."""

    remote = False

    def begin_pass(self) -> None:
        """Nothing is kept between calls: every listing and read asks the file system."""

    def listdir(self, folder: str | os.PathLike[str]) -> dict[str, FileStat]:
        entries: dict[str, FileStat] = {}
        with os.scandir(folder) as scan:
            for entry in scan:
                try:
                    entries[entry.name] = file_stat(entry.stat(follow_symlinks=True))
                except OSError:
                    entries[entry.name] = FileStat(0, None, 0, "symbolic link")
        return entries

    def stat(self, path: str | os.PathLike[str]) -> FileStat:
        return file_stat(os.stat(path))

    def read(self, path: str | os.PathLike[str], start: int, limit: int = READ_CHUNK_BYTES) -> tuple[FileStat, bytes]:
        fd = os.open(path, _READ_FLAGS)
        try:
            return self.read_open(fd, start, limit, os.fspath(path))
        finally:
            os.close(fd)

    def read_open(self, fd: int, start: int, limit: int = READ_CHUNK_BYTES, path: str = "") -> tuple[FileStat, bytes]:
        """`read` through an open handle (the path may meanwhile name another file)."""
        opened = os.fstat(fd)
        if not stat_module.S_ISREG(opened.st_mode):
            raise NotARegularFile(path, _kind(opened.st_mode))
        info = file_stat(opened)
        length = min(limit, info.size - start)
        return info, os.pread(fd, length, start) if length > 0 else b""


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
LOCAL = LocalFileSystem()
