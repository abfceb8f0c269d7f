"""FolderWatch: which files of a set of local folders changed since a given pass, from the kernel's change
notifications (Linux inotify, through inotify_simple), so that a refresh pass over a sweep of hundreds of runs reads
only the runs whose files changed instead of stat'ing every run's files.

Nothing runs in the background: `drain()`, called at the start of a pass, reads the events queued since the last
one without blocking. The kernel queues an event before the writer's `write()` returns, so a pass that starts after
an append has completed sees it — `update_data()` right after another process's write still reads it.

Events are counted in passes: `drain()` starts pass `seq`; a reader notes `seq` when it reads a run, and later asks
`changed_since(folder, names, seen)`. The answer is True (read it) whenever the watch cannot tell: the folder is
not watched (not a local disk file system, a symbolic link among its entries, the watch limit reached), was watched
only after `seen`, the event queue overflowed, or it is the periodic recheck (every RECHECK_S: a pass then
looks at every run's files once, as if nothing had been watched). Off Linux or
without inotify_simple, `open_watch()` returns None and readers stat their files each pass as before.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOCAL_FILE_SYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs", "jfs", "reiserfs",
    "bcachefs", "nilfs2",
})
"""File systems whose changes, by any process on this machine, inotify reports. Network and FUSE file systems (nfs,
cifs, fuse.*, 9p, virtiofs, lustre, ...) are changed by other machines too, unseen: their folders are polled."""
RECHECK_S = 30.0
"""Every this many seconds a pass takes nothing as unchanged (a net under the notifications' edge cases)."""
MAX_NAMES = 100_000
"""Changed names remembered at most (a folder where some program writes ever new temporary files); past this they
are forgotten, and that pass takes nothing as unchanged."""

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR = 0x400, 0x800, 0x4000, 0x8000, 0x01000000
ENTRY_EVENTS = _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
"""A name appeared in the folder or went away (created, deleted, renamed): the folder's listing changed."""
_GONE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED
_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | ENTRY_EVENTS | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class FolderWatch:
    """Change notifications for local folders (see the module docstring). Not thread-safe: one pass at a time (a
    dashboard calls it under its lock)."""

    def __init__(self, inotify: object, recheck_s: float = RECHECK_S) -> None:
        self._inotify = inotify
        self.recheck_s = recheck_s
        self.seq = 0
        """The current pass: events drained by the last `drain()` are counted in it."""
        self._wds: dict[int, str] = {}
        self._folders: dict[str, tuple[int, int]] = {}  # folder -> (watch descriptor, pass it was watched from)
        self._pinned: set[str] = set()
        self._refused: dict[str, int] = {}  # folder -> the pass it could not be watched in
        self._file_seq: dict[tuple[str, str], int] = {}
        self._folder_seq: dict[str, int] = {}
        self._changed_files: list[tuple[str, str]] = []
        self.entries_seq = 0
        """The last pass in which a name appeared in a watched folder or went away, or a folder stopped being
        watched (a listing may differ from the one kept)."""
        self.lost_seq = 0
        """The last pass that takes nothing as unchanged: the queue overflowed, reading it failed, or the recheck."""
        self._checked_at = time.monotonic()
        self._mounts: list[tuple[str, str]] | None = None

    # ---- which folders ------------------------------------------------------------------------------------------
    def watch(self, folder: str | os.PathLike[str], pin: bool = False) -> bool:
        """Watch `folder` (already watched: nothing to do); False when its changes cannot be told (see the module
        docstring). A pinned folder stays watched through `watch_only`."""
        key = os.fspath(folder)
        if key in self._folders:
            if pin:
                self._pinned.add(key)
            return True
        if self._refused.get(key, -1) >= self.lost_seq:
            return False  # refused since the last recheck: asked again then, not at every pass
        path = os.path.realpath(key)
        wd = None
        if self._local(path) and not _holds_symlinks(path):
            try:
                wd = self._inotify.add_watch(path, _MASK)  # type: ignore[attr-defined]
            except OSError as err:  # ENOSPC: the user's watch limit; EACCES, ENOENT, ENOTDIR
                logger.debug("cannot watch %s: %s", path, err)
        if wd is None or wd in self._wds:  # (the same folder by a second path: one descriptor, the first's name)
            self._refused[key] = self.seq
            return False
        self._refused.pop(key, None)
        self._wds[wd] = key
        self._folders[key] = (wd, self.seq)
        if pin:
            self._pinned.add(key)
        return True

    def watch_only(self, folders: set[str]) -> tuple[bool, bool]:
        """Watch these folders and the pinned ones (after a discovery walk): new ones are added, the others
        removed. Returns whether every one of `folders` is watched, and whether any was watched only now (its
        listing was read before its watch began: a change in between is in neither)."""
        for folder in [f for f in self._folders if f not in folders and f not in self._pinned]:
            self._forget(folder, remove=True)
        before = len(self._folders)
        watched = all([self.watch(folder) for folder in folders])
        return watched, len(self._folders) != before

    def watched(self, folder: str) -> bool:
        return folder in self._folders

    def _forget(self, folder: str, remove: bool) -> None:
        wd, _ = self._folders.pop(folder)
        self._wds.pop(wd, None)
        self._pinned.discard(folder)
        self.entries_seq = self.seq
        if remove:
            try:
                self._inotify.rm_watch(wd)  # type: ignore[attr-defined]
            except OSError:
                pass  # the folder is gone already: the kernel dropped its watch

    # ---- what changed -------------------------------------------------------------------------------------------
    def drain(self) -> None:
        """Start a pass: count the events queued since the last one in it."""
        self.seq += 1
        now = time.monotonic()
        if now - self._checked_at >= self.recheck_s:
            self._checked_at = now
            self.lost_seq = self.seq
        try:
            events = self._inotify.read(timeout=0)  # type: ignore[attr-defined]
        except OSError as err:
            logger.warning("reading folder change events failed (%s): every run is read this pass", err)
            self.lost_seq = self.entries_seq = self.seq
            return
        if len(self._file_seq) > MAX_NAMES:
            self._file_seq.clear()
            self.lost_seq = self.seq
        for event in events:
            if event.mask & _IN_Q_OVERFLOW:
                self.lost_seq = self.entries_seq = self.seq
                continue
            folder = self._wds.get(event.wd)
            if folder is None:
                continue
            self._folder_seq[folder] = self.seq
            if event.name:
                self._file_seq[(folder, event.name)] = self.seq
                self._changed_files.append((folder, event.name))
            if event.mask & ENTRY_EVENTS:
                self.entries_seq = self.seq
                if event.mask & (_IN_CREATE | _IN_MOVED_TO) and os.path.islink(os.path.join(folder, event.name)):
                    self._forget(folder, remove=True)  # what the new link points to changes unseen: poll it
                    continue
            if event.mask & _GONE and folder in self._folders:
                self._forget(folder, remove=not event.mask & _IN_IGNORED)

    def take_changed_files(self) -> list[tuple[str, str]]:
        """The (folder, name) pairs changed since the last call, each once."""
        changed, self._changed_files = list(dict.fromkeys(self._changed_files)), []
        return changed

    def changed_since(self, folder: str, names: tuple[str, ...] | None, seen: int) -> bool:
        """Whether `names` in `folder` (None: anything in it) may have changed after pass `seen`."""
        watched = self._folders.get(folder)
        if watched is None or watched[1] > seen or self.lost_seq > seen:
            return True
        if names is None:
            return self._folder_seq.get(folder, 0) > seen
        file_seq = self._file_seq
        return any(file_seq.get((folder, name), 0) > seen for name in names)

    def close(self) -> None:
        self._folders.clear()
        self._pinned.clear()
        self._refused.clear()
        self._wds.clear()
        try:
            self._inotify.close()  # type: ignore[attr-defined]
        except OSError:
            pass

    def _local(self, path: str) -> bool:
        if self._mounts is None:
            self._mounts = _mount_points()
        for point, kind in self._mounts:
            if path == point or path.startswith(point.rstrip("/") + "/"):
                return kind in LOCAL_FILE_SYSTEMS
        return False


def open_watch() -> FolderWatch | None:
    """A FolderWatch, or None where there are no change notifications (not Linux, no inotify_simple, no inotify
    instance left: the user's instance limit; RLDK_WIDGET_NO_WATCH set)."""
    if not sys.platform.startswith("linux") or os.environ.get("RLDK_WIDGET_NO_WATCH"):
        return None
    try:
        from inotify_simple import INotify
    except ImportError:
        return None
    try:
        return FolderWatch(INotify(nonblocking=True))
    except OSError as err:
        logger.info("no folder change notifications (%s): run files are polled", err)
        return None


def _mount_points() -> list[tuple[str, str]]:
    """(mount point, file system type), longest mount point first (/proc/self/mountinfo)."""
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        point = _OCTAL_ESCAPE.sub(lambda match: chr(int(match[1], 8)), fields[4])  # a space is written \040
        mounts.append((point, fields[separator + 1]))
    return sorted(mounts, key=lambda mount: len(mount[0]), reverse=True)


def _holds_symlinks(path: str) -> bool:
    """A symbolic link among the folder's entries: a change to what it points to is not this folder's event."""
    try:
        with os.scandir(path) as entries:
            return any(entry.is_symlink() for entry in entries)
    except OSError:
        return True
