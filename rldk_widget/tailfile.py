"""TailFile: one append-only run file — incremental, crash-safe reads through the file-system layer, and O(1)
appends under an exclusive file lock (local files only: a writer holds the file open).

A JSON array file takes an append as `,\\n{record}\\n]` written over its closing bracket in one `os.pwrite`, so it
is valid JSON after every append and a writer killed mid-append leaves at most one torn record, which the next
append cuts off. A CSV file takes appended rows; a new column rewrites it once with the wider header.

A reader remembers the file's identity, the offset just past the last complete record and the bytes just
before it (the window). Each read starts at the window: if those bytes are unchanged, what follows is new;
otherwise, or if the file is another one now or got shorter, it is read again whole (`reset`). Reads go chunk by
chunk (`fs.READ_CHUNK_BYTES`), so a huge file is never held in memory at once.

What a read finds wrong comes two ways. `problems` are damage stepped over (records lost for good: said once).
`condition` is the file's state, true until a read finds otherwise: it cannot be read, or it ends inside a record
(a write in progress — another tool's buffered writer flushes mid-record — or a writer killed mid-write). Readers that
keep a report replace a file's condition at each read, so the report never goes on saying what stopped being true.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import portalocker

from . import formats
from .fs import LOCAL, READ_CHUNK_BYTES, FileStat, FileSystem, describe_error

try:
    import fcntl
except ImportError:  # Windows: portalocker's LockFileEx
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

WINDOW_BYTES = 32
RACY_S = 1.0
"""A file last modified this recently is not trusted by its stat alone (see `TailFile._remember_stat`)."""
WRITER_SKIP_BYTES = 1 << 20
"""A writer-only store opening a JSON file at least this large finds the array's end from its last bytes instead
of parsing every record (a resumed 1M-step run would otherwise cost seconds before its first append)."""

Encoded = list[tuple[dict[str, Any], bytes]]


class Read(NamedTuple):
    records: list[dict[str, Any]]
    reset: bool
    problems: list[str]
    more: bool
    """Bytes are left to read: call again (each call reads at most about one chunk)."""
    condition: str | None = None
    """What is wrong with the file now (see the module docstring), or None."""


def lock_exclusive(fd: int) -> None:
    """Block until this process holds the exclusive lock on `fd` (flock directly where it exists: portalocker's
    flag handling costs more than the lock itself on the append path)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        portalocker.lock(fd, portalocker.LOCK_EX)


def lock_shared(fd: int) -> None:
    """Block until no writer holds the exclusive lock on the file (a copy taken under it is one complete write)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH)
    else:
        portalocker.lock(fd, portalocker.LOCK_SH)


def unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        portalocker.unlock(fd)


class TailFile:
    """Writer state (open handle, lock) and incremental reader state of one file."""

    CLOSING = b""
    """Bytes every complete write leaves after the read position (a JSON array's closing bracket)."""
    TORN = "incomplete last record, not read yet (a write in progress, or the writer was interrupted)"
    """The condition of a file that ends inside a record (after the file's name)."""

    def __init__(self, path: Path, follow: bool, fs: FileSystem = LOCAL) -> None:
        self.path = path
        self._path_text = os.fspath(path)
        self.fs = fs
        self.follow = follow
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._fd_identity: tuple[int, int] | None = None
        self._identity: Any = None
        self._size = 0
        self._offset = 0
        self._window = b""
        self._has_items = False
        self._delivered: list[dict[str, Any]] = []
        self._problems: list[str] = []
        self._unwritten: Encoded = []
        self._reset_pending = False
        self._condition: str | None = None
        self._seen_stat: tuple[Any, int, int] | None = None
        self.last_error: str | None = None

    # reading ---------------------------------------------------------------------------------------------
    def read_new(self, limit: int = READ_CHUNK_BYTES) -> Read:
        """Records added since the last call (about `limit` bytes' worth at most), whether the file was read again
        whole, problems found, and whether more is left to read."""
        with self._lock:
            if self._unchanged_stat():
                records, reset, problems, more = [], False, [], False
            else:
                records, reset, problems, more, _ = self._catch_up(None, limit)
            if self._reset_pending:
                reset, self._reset_pending = True, False
            if self._delivered:
                records.extend(self._delivered)
                self._delivered = []
            if self._problems:
                problems = self._problems + problems
                self._problems = []
            return Read(records, reset, problems, more, self._condition)

    def _unchanged_stat(self) -> bool:
        """A poll of a file nobody touched, in one stat: the same file, size and modification time as when it was
        last read to its end (anything else, or an error, goes the whole way: the window check)."""
        seen = self._seen_stat
        if seen is None and (self._identity is not None or self._delivered or self._reset_pending):
            return False
        try:
            info = self.fs.stat(self.path)
        except FileNotFoundError:
            return seen is None  # still no file (a run without CSV files, say): nothing to read
        except OSError:
            return False
        return (info.identity, info.size, info.mtime_ns) == seen

    def _read(self, fd: int | None, start: int, limit: int) -> tuple[FileStat, bytes]:
        if fd is not None:
            return LOCAL.read_open(fd, start, limit, str(self.path))
        return self.fs.read(self.path, start, limit)

    def _catch_up(self, fd: int | None, limit: int = READ_CHUNK_BYTES) -> Read:
        """Parse the bytes past the read position (through `fd`, a writer's handle, if given, else by path)."""
        try:
            if fd is not None and self._offset == 0 and not self.follow:
                size = os.fstat(fd).st_size
                if self._skip_to_end(fd, size):
                    self._identity, self._size = self._fd_identity, size
                    self._condition = None
                    return Read([], False, [], False)
            window = len(self._window)
            start = self._offset - window
            info, data = self._read(fd, start, limit + window)
            reset = False
            if self._identity is not None and (
                info.identity != self._identity or info.size < self._offset or data[:window] != self._window
            ):
                self._forget_position()
                # said by the next read_new even if the read below fails (a remote timeout): else that read would
                # start at 0 with the same identity and deliver the whole file again as new records
                self._reset_pending = True
                reset, window, start = True, 0, 0
                info, data = self._read(fd, 0, limit)
            self._identity, self._size = info.identity, info.size
            while True:
                final = start + len(data) >= info.size
                new = data[window:]
                if not new or (final and new == self.CLOSING):
                    self._remember_stat(fd, info, final)
                    self._condition = None
                    return Read([], reset, [], False)
                records, consumed, problems, torn = self._parse(new, at_start=self._offset == 0, final=final)
                if consumed or final:
                    break
                # nothing complete in the chunk (one record longer than it): read a larger one
                info, data = self._read(fd, start, 2 * len(data))
                self._identity, self._size = info.identity, info.size
        except FileNotFoundError:
            reset = self._identity is not None
            if reset:
                self._forget_position()
                self._identity = None
            self._condition = None
            return Read([], reset, [], False)
        except OSError as err:
            self._condition = f"{self.path.name}: cannot read ({describe_error(err)})"
            return Read([], False, [], False, self._condition)
        if consumed:
            self._offset += consumed
            end = window + consumed
            self._window = data[max(0, end - WINDOW_BYTES) : end]
        torn = torn and final
        self._condition = f"{self.path.name}: {self.TORN}" if torn else None
        self._remember_stat(fd, info, final and not problems and not torn)
        return Read(records, reset, problems, not final, self._condition)

    def _as_left(self, size: int) -> bool:
        """The append path's common case, from the size seen under the lock: the reader is at the writer's file and
        the file ends where this writer's last write did (another writer's append would have made it longer)."""
        return bool(self._window) and self._identity == self._fd_identity and size == self._offset + len(self.CLOSING)

    def _remember_stat(self, fd: int | None, info: FileStat, complete: bool) -> None:
        """After a read by path that reached the file's end cleanly, what the file was (for `_unchanged_stat`) —
        unless it changed less than RACY_S ago: a file system's clock is coarse, so a same-size rewrite within
        the same tick would keep its stat (as git's "racily clean" index entries)."""
        still = info.mtime_ns and time.time() - info.mtime_ns / 1e9 >= RACY_S
        self._seen_stat = (info.identity, info.size, info.mtime_ns) if fd is None and complete and still else None

    def _forget_position(self) -> None:
        """The file is another one now (replaced, shrunk, deleted): read it from the start. Own appends not yet
        delivered went to the old file and are void, except those kept in memory after a write error."""
        self._offset = 0
        self._window = b""
        self._has_items = False
        self._delivered = self.unwritten

    def _parse(self, chunk: bytes, at_start: bool, final: bool) -> tuple[list[dict[str, Any]], int, list[str], bool]:
        """The chunk's complete records, the bytes they take, the damage stepped over, and whether a final chunk
        ends inside a record (left for a later read)."""
        raise NotImplementedError

    def _skip_to_end(self, fd: int, size: int) -> bool:
        """A writer that keeps nothing in memory may set its position at the file's end without reading the
        records; True if it did (the file ends as a complete write left it)."""
        return False

    # writing ---------------------------------------------------------------------------------------------
    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records under the file lock (see `append_encoded`). A record that cannot be written at all (an
        int beyond 64 bits, a lone surrogate) raises ValueError before anything is kept or delivered."""
        encoded = []
        for record in records:
            try:
                encoded.append((record, formats.dumps_record(record)))
            except (TypeError, ValueError) as err:
                raise ValueError(f"cannot store a record in {self.path.name}: {err}") from None
        self.append_encoded(encoded)

    def append_encoded(self, encoded: Encoded) -> None:
        """Append (record, its JSON line) pairs under the file lock; on an OS error keep them in memory, retry on
        the next append, and remember the error in `last_error` (the caller shows it). Never raises OSError."""
        with self._lock:
            pending = self._unwritten + encoded
            try:
                self._write_locked(pending)
            except OSError as err:
                self._unwritten = pending
                self._close_fd()
                self.last_error = f"cannot write {self.path.name}: {describe_error(err)}"
                logger.warning("%s (%d records kept in memory)", self.last_error, len(pending))
            else:
                self._unwritten = []
                self.last_error = None
            finally:
                if self.follow:
                    self._delivered.extend([record for record, _ in encoded])

    def retry_unwritten(self) -> None:
        """Write records kept in memory after an earlier write error, if any."""
        if self._unwritten:
            self.append([])

    @property
    def unwritten(self) -> list[dict[str, Any]]:
        """Records kept in memory because writing failed (written by the next successful append)."""
        return [record for record, _ in self._unwritten]

    def _write_locked(self, pending: Encoded) -> None:
        """Write (record, JSON line) pairs at the end of the file while holding its lock."""
        if not pending:
            return
        self._seen_stat = None
        fd, size = self._lock_for_writing()
        try:
            if not self._as_left(size):
                self._take_foreign(fd)
            self._write_at_tail(fd, pending)
        finally:
            unlock(fd)

    def _take_foreign(self, fd: int) -> None:
        """Under the lock, before an append: read what others wrote since this writer's last write (a reader that
        follows gets it; a file replaced or rewritten is taken whole)."""
        foreign: list[dict[str, Any]] = []
        reset = False
        problems: list[str] = []
        while True:
            read = self._catch_up(fd)
            foreign.extend(read.records)
            reset = reset or read.reset
            problems.extend(read.problems)
            if not read.more:
                break
        if self.follow:
            if reset:
                # replaced or rewritten since the last read: the reader gets the file whole (`reset`), then
                # the records kept in memory that are written now; what it was given before is void
                self._delivered = foreign + [record for record, _ in self._unwritten]
                self._reset_pending = True
            else:
                self._delivered.extend(foreign)
            self._problems.extend(problems)

    def _write_at_tail(self, fd: int, pending: Encoded) -> None:
        raise NotImplementedError

    def _lock_for_writing(self) -> tuple[int, int]:
        """This writer's handle of the file now at `path`, locked, and the file's size under the lock: one stat by
        path tells both that the path still names the open file (not deleted, replaced or moved away) and whether
        another writer appended. A path that names another file, or none, is opened (created) again."""
        for _ in range(3):
            fd = self._fd if self._fd is not None else self._open_for_writing()
            lock_exclusive(fd)
            try:
                current = os.stat(self._path_text, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            except OSError:
                unlock(fd)
                raise
            if current is not None and (current.st_dev, current.st_ino) == self._fd_identity:
                return fd, current.st_size
            unlock(fd)
            self._close_fd()
        raise OSError(errno.EAGAIN, "the file is replaced as fast as it is opened")

    def _open_for_writing(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO named like the run file must not block the writer
        fd = os.open(self.path, flags, 0o644)
        try:
            LOCAL.read_open(fd, 0, 0, str(self.path))  # raises NotARegularFile for a FIFO or device
        except OSError:
            os.close(fd)
            raise
        opened = os.fstat(fd)
        self._fd, self._fd_identity = fd, (opened.st_dev, opened.st_ino)
        return fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
            self._fd_identity = None

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def _commit_write(self, fd: int, position: int, payload: bytes) -> None:
        """Write `payload` at `position`, cut anything after it (the size is known: the lock is held), and set
        the read position's window to the bytes just before `end - len(CLOSING)`."""
        written = os.pwrite(fd, payload, position)
        if written != len(payload):
            try:  # drop the partial bytes: records in them would be read back as written, then written again
                os.ftruncate(fd, position)
            except OSError:
                pass
            raise OSError(28, "short write (disk full?)")
        end = position + len(payload)
        if self._size > end:
            os.ftruncate(fd, end)
        body_end = len(payload) - len(self.CLOSING)
        if body_end >= WINDOW_BYTES:
            self._window = payload[body_end - WINDOW_BYTES : body_end]
        else:
            before = self._window if position == self._offset else b""
            self._window = (before + payload[:body_end])[-WINDOW_BYTES:]
        self._offset = end - len(self.CLOSING)
        self._size = end
        self._identity = self._fd_identity


class JsonArrayFile(TailFile):
    """`[\\n{...},\\n{...}\\n]` — a JSON array of objects, one per line."""

    CLOSING = formats.ARRAY_CLOSING

    def __init__(self, path: Path, follow: bool, fs: FileSystem = LOCAL) -> None:
        super().__init__(path, follow, fs)
        self._not_an_array = False

    def _forget_position(self) -> None:
        super()._forget_position()
        self._not_an_array = False

    def _parse(self, chunk: bytes, at_start: bool, final: bool) -> tuple[list[dict[str, Any]], int, list[str], bool]:
        parsed = formats.parse_array_chunk(chunk, at_start, final, self.path.name)
        if parsed.values:
            self._has_items = True
        if at_start and parsed.consumed and not parsed.opened:
            self._not_an_array = True  # a bare object or values without brackets: rewritten before an append
        return parsed.records, parsed.consumed, parsed.problems, parsed.torn

    def _skip_to_end(self, fd: int, size: int) -> bool:
        if size < WRITER_SKIP_BYTES:
            return False
        head = os.pread(fd, len(formats.BOM) + 1, 0)
        # `}` + CLOSING is how every complete write ends; a raw newline cannot stand inside a JSON string
        ending = b"}" + self.CLOSING
        if head.removeprefix(formats.BOM)[:1] != b"[" or os.pread(fd, len(ending), size - len(ending)) != ending:
            return False
        self._offset = size - len(self.CLOSING)
        self._window = os.pread(fd, WINDOW_BYTES, self._offset - WINDOW_BYTES)
        self._has_items = True
        return True

    def _write_at_tail(self, fd: int, pending: Encoded) -> None:
        if self._not_an_array:
            self._rewrite_as_array(fd)
        lines = pending[0][1] if len(pending) == 1 else b",\n".join([line for _, line in pending])
        if self._offset == 0:
            position, payload = 0, b"[\n" + lines + self.CLOSING
        else:
            separator = b",\n" if self._has_items else b"\n"
            position, payload = self._offset, separator + lines + self.CLOSING
        self._commit_write(fd, position, payload)
        self._has_items = True

    def _rewrite_as_array(self, fd: int) -> None:
        """A file that is not a JSON array (a legacy single object, one value per line) becomes an array of its
        complete records before the first append (O(n), once)."""
        _, text = LOCAL.read_open(fd, 0, os.fstat(fd).st_size, str(self.path))
        parsed = formats.parse_array_chunk(text, at_start=True, final=True, name=self.path.name)
        body = b",\n".join(formats.dumps_record(record) for record in parsed.records)
        payload = b"[\n" + body + self.CLOSING if body else b"[" + self.CLOSING
        self._size = os.fstat(fd).st_size
        self._offset = 0
        self._commit_write(fd, 0, payload)
        self._has_items = bool(body)
        self._not_an_array = False


class CsvFile(TailFile):
    """CSV with one header line; rows are appended, the header is written once."""

    TORN = "incomplete last line, not read yet (a write in progress, or the writer was interrupted)"

    def __init__(self, path: Path, follow: bool, fs: FileSystem = LOCAL) -> None:
        super().__init__(path, follow, fs)
        self.header: list[str] | None = None
        self.rows_read = 0

    def _forget_position(self) -> None:
        super()._forget_position()
        self.header = None
        self.rows_read = 0

    def _parse(self, chunk: bytes, at_start: bool, final: bool) -> tuple[list[dict[str, Any]], int, list[str], bool]:
        problems: list[str] = []
        bom = len(formats.BOM) if at_start and chunk.startswith(formats.BOM) else 0
        parsed = formats.parse_csv_chunk(chunk[bom:], final, len(self.header) if self.header else None)
        records: list[dict[str, Any]] = []
        bad = 0
        for row in parsed.rows:
            if self.header is None:
                self.header = [name.strip() for name in row]
                if "step" not in self.header:
                    problems.append(f"{self.path.name}: no 'step' column; the row number is used as step")
                continue
            if len(row) != len(self.header):
                bad += 1
            record: dict[str, Any] = {}
            for name, cell in zip(self.header, row):
                if cell != "" and name:
                    record[name] = formats.parse_cell(cell)
            if "step" not in self.header:
                record["step"] = self.rows_read
            self.rows_read += 1
            records.append(record)
        if bad:
            problems.append(f"{self.path.name}: {bad} row(s) with missing or extra columns (extra ones ignored)")
        return records, (bom + parsed.consumed) if parsed.consumed else 0, problems, parsed.torn

    def _write_at_tail(self, fd: int, pending: Encoded) -> None:
        records = [record for record, _ in pending]
        keys: list[str] = list(self.header or [])
        for record in records:
            for key in record:
                if key not in keys:
                    keys.append(key)
        if self.header is not None and keys != self.header:
            self._rewrite_with_header(fd, keys)
        rows = [[formats.format_cell(record.get(key)) for key in keys] for record in records]
        payload = formats.format_rows(keys if self.header is None else None, rows)
        self.header = keys
        self._commit_write(fd, self._offset, payload)
        self.rows_read += len(records)

    def _rewrite_with_header(self, fd: int, keys: list[str]) -> None:
        """New columns appeared: write the file again once with the wider header (rare; O(n) once)."""
        _, old = LOCAL.read_open(fd, 0, self._offset, str(self.path))
        bom = len(formats.BOM) if old.startswith(formats.BOM) else 0
        rows = formats.parse_csv_chunk(old[bom:], final=True, width=len(self.header or ())).rows[1:]
        widened = [row + [""] * (len(keys) - len(row)) for row in rows]
        payload = formats.format_rows(keys, widened)
        self._offset = 0
        self._commit_write(fd, 0, payload)
        self.header = keys


RECORD_AT = "_at"
"""The key `IndexedJsonArrayFile` adds to each record read: `(offset, length)` of its JSON object in the file, or None
when the record was recovered from damage or from a file not written one record per line."""
RECORD_HEAD = "_head"
"""Set (True) on a record of which only the fields before `head_until` were parsed."""


class IndexedJsonArrayFile(JsonArrayFile):
    """A JSON array file of one object per line (as every append writes it) whose reader also tells where each record
    lies, so that a reader can keep offsets instead of the records (the samples file: texts stay on disk). A line that
    looks like one object but does not parse is damage: what `JsonArrayFile`'s tolerant parser finds in it is kept;
    from a line that is not one whole object on (a torn last record, a pretty-printed or hand-written file) the chunk
    is read by that parser. Records found that way get `_at: None`.

    `head_until` (e.g. `b',"prompt":'`): for a reader that needs only the fields before the large ones, each whole line
    is parsed up to the last occurrence of these bytes (which, quotes inside strings being escaped, can only be a key)
    and its record gets `_head: True`; a line where that does not parse is parsed whole. The unterminated last line of
    a final chunk (another writer's append in progress, torn where it ends) is parsed whole or left for the next
    read: a `}` it happens to end with proves nothing."""

    def __init__(self, path: Path, follow: bool, fs: FileSystem = LOCAL, head_until: bytes | None = None) -> None:
        super().__init__(path, follow, fs)
        self.head_until = head_until

    def _parse(self, chunk: bytes, at_start: bool, final: bool) -> tuple[list[dict[str, Any]], int, list[str], bool]:
        base = self._offset
        position = 0
        if at_start:
            position = len(formats.BOM) if chunk.startswith(formats.BOM) else 0
            stripped = chunk[position:].lstrip(formats.WHITESPACE)
            if not stripped:
                return [], 0, [], False
            if stripped[:1] != b"[":
                records, consumed, problems, torn = super()._parse(chunk, True, final)
                for record in records:
                    record[RECORD_AT] = None
                return records, consumed, problems, torn
            position = len(chunk) - len(stripped) + 1
        end = len(chunk) if final else chunk.rfind(b"\n") + 1
        records: list[dict[str, Any]] = []
        consumed = 0
        skipped = 0
        damaged = 0
        problems: list[str] = []
        torn = False
        whitespace = formats.WHITESPACE
        for line in chunk[position:end].split(b"\n"):
            line_start = position
            position += len(line) + 1
            open_line = position > end  # a final chunk's unterminated last line: perhaps a write in progress
            body = line.strip(whitespace)
            if body[:1] == b",":
                body = body[1:].lstrip(whitespace)
            if body[-1:] == b",":
                body = body.rstrip(b",").rstrip(whitespace)
            if not body or body == b"]":
                continue
            start = line_start + line.find(body[:1])
            whole = body[:1] == b"{" and body[-1:] == b"}"
            if whole and self.head_until is not None and not open_line:
                cut = body.rfind(self.head_until)
                head = _loads_object(body[:cut] + b"}") if cut > 0 else None
                if isinstance(head, dict):
                    self._has_items = True
                    head[RECORD_AT] = (base + start, len(body))
                    head[RECORD_HEAD] = True
                    records.append(head)
                    consumed = start + len(body)
                    continue
            value = _loads_object(body) if whole else None
            if value is None and whole and not open_line:  # damage inside a line: keep what it holds, go on
                part = formats.parse_array_chunk(body, False, True, self.path.name)
                for record in part.records:
                    record[RECORD_AT] = None
                records.extend(part.records)
                damaged += 1
                consumed = start + len(body)
                continue
            if value is None:
                rest = formats.parse_array_chunk(chunk[start:end], False, final, self.path.name)
                if rest.values:
                    self._has_items = True
                for record in rest.records:
                    record[RECORD_AT] = None
                records.extend(rest.records)
                problems.extend(rest.problems)
                torn = rest.torn
                if rest.consumed:
                    consumed = start + rest.consumed
                break
            self._has_items = True
            if isinstance(value, dict):
                value[RECORD_AT] = (base + start, len(body))
                records.append(value)
            else:
                skipped += 1
            consumed = start + len(body)
        if skipped:
            problems.append(f"{self.path.name}: skipped {skipped} item(s) that are not objects")
        if damaged:
            problems.append(f"{self.path.name}: {damaged} damaged line(s) skipped (complete records kept)")
        return records, consumed, problems, torn


def _loads_object(body: bytes) -> Any:
    try:
        return formats.loads(body)
    except ValueError:
        return None
