"""The file-system layer: every reader of a run folder lists and reads through a `FileSystem` (local files here;
remote folders plug in the same interface).

Reads never block and never raise anything but `OSError`: a path is opened non-blocking and checked on the open
handle to be a regular file (a FIFO, socket, device or directory named like a run file is refused with
`NotARegularFile` before a byte is read), and one call reads at most `limit` bytes. `describe_error` turns any `OSError` into the short text
the status line and `load_report` show.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from typing import Hashable, NamedTuple, Protocol

READ_CHUNK_BYTES = 16 << 20
"""The most one read returns: a reader goes through a larger file chunk by chunk, so memory stays bounded."""


class FileStat(NamedTuple):
    """What a listing or a read tells about one file. `identity` changes when the path names another file
    (replaced, not appended to): device and inode locally."""

    size: int
    identity: Hashable
    mtime_ns: int
    kind: str


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


class FileSystem(Protocol):
    """What readers of run folders need from a file system."""

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
