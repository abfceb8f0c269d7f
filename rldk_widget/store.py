"""RunStore: a run's four files on disk — O(1) locked appends, a crash-safe reader and incremental tail reads.

Files of run `R` in `output_dir` (names and formats of the original RLDK dashboard, so old runs load):
`R_metrics.json` and `R_alerts.json` hold a JSON array of flat objects, one per line; `R_ppo_metrics.csv` and
`R_checkpoint_summary.csv` are CSV with a header; `R_run_info.json` holds one object, replaced whole. An append writes `,\\n{record}\\n]` over the array's closing
bracket in one `os.pwrite` while holding an exclusive lock on the open file, so the file is valid JSON after
every append and a writer killed mid-append leaves at most one torn record, which the next append cuts off.

A reader remembers per file (device, inode, offset of the last complete record, the bytes just before it) and
reads only what was added since; a file that shrank or was replaced is read again whole (`RunData.reset`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import orjson
import portalocker

try:
    import fcntl
except ImportError:  # Windows: portalocker's LockFileEx
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
JSON_KINDS = {"metrics": "metrics.json", "alerts": "alerts.json"}
CSV_KINDS = {"ppo_metrics": "ppo_metrics.csv", "checkpoint_summary": "checkpoint_summary.csv"}
FILE_SUFFIXES = {**JSON_KINDS, **CSV_KINDS}
RUN_FILE_PATTERN = re.compile(
    r"(?P<run_id>[A-Za-z0-9._-]{1,128})_(?P<suffix>" + "|".join(re.escape(s) for s in FILE_SUFFIXES.values()) + r")"
)
RUN_INFO_SUFFIX = "run_info.json"
"""`R_run_info.json`: one JSON object (max_steps, trainer, started, the train_runtime summary), replaced whole."""
CsvKind = Literal["ppo_metrics", "checkpoint_summary"]

_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_FINGERPRINT_BYTES = 32
_WRITER_SKIP_BYTES = 1 << 20
"""A writer-only store opening a JSON file at least this large finds the array's end from its last bytes instead
of parsing every record (a resumed 1M-step run would otherwise cost seconds before its first append)."""


def validate_run_id(run_id: Any) -> str:
    """Return `run_id` if it is a safe file-name stem; raise otherwise, so nothing lands outside output_dir."""
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a str, got {type(run_id).__name__}")
    if not RUN_ID_PATTERN.fullmatch(run_id) or run_id in (".", ".."):
        raise ValueError(
            f"run_id {run_id!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-' (not '.' or '..')"
        )
    return run_id


def default_run_id() -> str:
    """A new run id from the current UTC time, e.g. `rldk_run_20261125T103000Z`."""
    return f"rldk_run_{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"


def discover_runs(output_dir: str | os.PathLike[str]) -> list[str]:
    """Run ids that have at least one run file in `output_dir`, sorted by name (exact file names only)."""
    try:
        names = os.listdir(output_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs = {m["run_id"] for name in names if (m := RUN_FILE_PATTERN.fullmatch(name))}
    return sorted(run for run in runs if run not in (".", ".."))


@dataclass
class RunData:
    """Records read from a run's files. After an incremental read, only the new ones; a kind listed in
    `reset` was read again whole and replaces what the caller held."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    ppo_metrics: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_summary: list[dict[str, Any]] = field(default_factory=list)
    reset: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.metrics or self.alerts or self.ppo_metrics or self.checkpoint_summary or self.reset or self.problems
        )


def _lock_exclusive(fd: int) -> None:
    """Block until this process holds the exclusive lock on `fd` (flock directly where it exists: portalocker's
    flag handling costs more than the lock itself on the append path)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        portalocker.lock(fd, portalocker.LOCK_EX)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        portalocker.unlock(fd)


def dumps_record(record: Mapping[str, Any]) -> bytes:
    """One record as JSON bytes. NaN/±Inf are written as the `NaN`/`Infinity` tokens Python's json module
    reads back (orjson would turn them into null and lose them)."""
    for value in record.values():
        if isinstance(value, float) and not math.isfinite(value):
            return json.dumps(record, allow_nan=True, ensure_ascii=False, default=str).encode("utf-8")
    return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)


class _TailFile:
    """One append-only file: writer state (open handle, lock) and incremental reader state."""

    CLOSING = b""
    """Bytes every complete write leaves after the read position (a JSON array's closing bracket)."""

    def __init__(self, path: Path, follow: bool) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._fd_identity: tuple[int, int] | None = None
        self._identity: tuple[int, int] | None = None
        self._size = 0
        self._offset = 0
        self._fingerprint = b""
        self._has_items = False
        self.follow = follow
        self._delivered: list[dict[str, Any]] = []
        self._problems: list[str] = []
        self._unwritten: list[tuple[dict[str, Any], bytes]] = []
        self._reset_pending = False
        self.last_error: str | None = None

    # reading ---------------------------------------------------------------------------------------------
    def read_new(self) -> tuple[list[dict[str, Any]], bool, list[str]]:
        """Records added since the last call, whether the file was read again whole, and problems found."""
        with self._lock:
            records, reset, problems = self._catch_up()
            if self._reset_pending:
                reset, self._reset_pending = True, False
            if self._delivered:
                records.extend(self._delivered)
                self._delivered = []
            if self._problems:
                problems = self._problems + problems
                self._problems = []
            return records, reset, problems

    def _catch_up(self, fd: int | None = None) -> tuple[list[dict[str, Any]], bool, list[str]]:
        """Parse the bytes past the read position (through `fd` if given, else by path)."""
        own_fd = fd is None
        if own_fd:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                reset = self._offset > 0
                if reset:
                    self._forget_position()
                return [], reset, []
            except OSError as err:
                return [], False, [f"{self.path.name}: cannot open ({err.strerror})"]
        assert fd is not None
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if identity == self._identity and self._unchanged_since_read(fd, stat.st_size):
                self._size = stat.st_size
                return [], False, []
            reset = False
            if self._identity is not None and (
                identity != self._identity or stat.st_size < self._offset or not self._fingerprint_matches(fd)
            ):
                self._forget_position()
                reset = True
            self._identity = identity
            self._size = stat.st_size
            if stat.st_size <= self._offset:
                return [], reset, []
            if self._offset == 0 and not self.follow and self._skip_to_end(fd, stat.st_size):
                return [], reset, []
            start = self._offset
            chunk = os.pread(fd, stat.st_size - start, start)
        finally:
            if own_fd:
                os.close(fd)
        records, consumed, problems = self._parse(chunk, at_start=start == 0)
        if consumed:
            self._offset = start + consumed
            self._fingerprint = chunk[max(0, consumed - _FINGERPRINT_BYTES) : consumed]
        return records, reset, problems

    def _unchanged_since_read(self, fd: int, size: int) -> bool:
        """The common case of an append or a poll, in one read: nothing after the read position but the closing
        bytes, and the bytes before it are the ones read last time."""
        expected = self._fingerprint + self.CLOSING
        return (
            bool(self._fingerprint)
            and size == self._offset + len(self.CLOSING)
            and os.pread(fd, len(expected), self._offset - len(self._fingerprint)) == expected
        )

    def _fingerprint_matches(self, fd: int) -> bool:
        if not self._fingerprint:
            return True
        size = len(self._fingerprint)
        return os.pread(fd, size, self._offset - size) == self._fingerprint

    def _forget_position(self) -> None:
        self._offset = 0
        self._fingerprint = b""
        self._has_items = False

    def _parse(self, chunk: bytes, at_start: bool) -> tuple[list[dict[str, Any]], int, list[str]]:
        raise NotImplementedError

    def _skip_to_end(self, fd: int, size: int) -> bool:
        """A writer that keeps nothing in memory may set its position at the file's end without reading the
        records; True if it did (the file ends as a complete write left it)."""
        return False

    # writing ---------------------------------------------------------------------------------------------
    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records under the file lock; on an OS error keep them in memory, retry on the next append,
        and remember the error in `last_error` (the caller shows it). A record that cannot be written at all
        (an int beyond 64 bits, a lone surrogate) raises ValueError before anything is kept or delivered."""
        with self._lock:
            encoded = []
            for record in records:
                try:
                    encoded.append((record, dumps_record(record)))
                except (TypeError, ValueError) as err:
                    raise ValueError(f"cannot store a record in {self.path.name}: {err}") from None
            pending = self._unwritten + encoded
            try:
                self._write_locked(pending)
            except OSError as err:
                self._unwritten = pending
                self._close_fd()
                self.last_error = f"cannot write {self.path.name}: {err.strerror or err}"
                logger.warning("%s (%d records kept in memory)", self.last_error, len(pending))
            else:
                self._unwritten = []
                self.last_error = None
            finally:
                if self.follow:
                    self._delivered.extend(records)

    def retry_unwritten(self) -> None:
        """Write records kept in memory after an earlier write error, if any."""
        if self._unwritten:
            self.append([])

    def _write_locked(self, pending: list[tuple[dict[str, Any], bytes]]) -> None:
        """Write (record, JSON line) pairs at the end of the file while holding its lock."""
        if not pending:
            return
        fd = self._open_for_writing()
        _lock_exclusive(fd)
        try:
            foreign, reset, problems = self._catch_up(fd)
            if self.follow:
                if reset:
                    # replaced or rewritten since the last read: the reader gets the file whole (`reset`), then
                    # the records kept in memory that are written now; what it was given before is void
                    self._delivered = foreign + [record for record, _ in self._unwritten]
                    self._reset_pending = True
                else:
                    self._delivered.extend(foreign)
                self._problems.extend(problems)
            self._write_at_tail(fd, pending)
        finally:
            _unlock(fd)

    def _write_at_tail(self, fd: int, pending: list[tuple[dict[str, Any], bytes]]) -> None:
        raise NotImplementedError

    def _open_for_writing(self) -> int:
        try:
            current = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if self._fd is not None:
            if current is not None and (current.st_dev, current.st_ino) == self._fd_identity:
                return self._fd
            self._close_fd()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o644)
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
        """Write `payload` at `position` and cut anything after it (the size is known: the lock is held)."""
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
        self._size = end
        self._identity = self._fd_identity


class _JsonArrayFile(_TailFile):
    """`[\\n{...},\\n{...}\\n]` — a JSON array of objects, one per line."""

    CLOSING = b"\n]\n"

    def __init__(self, path: Path, follow: bool) -> None:
        super().__init__(path, follow)
        self._single_object = False

    def _forget_position(self) -> None:
        super()._forget_position()
        self._single_object = False

    def _parse(self, chunk: bytes, at_start: bool) -> tuple[list[dict[str, Any]], int, list[str]]:
        problems: list[str] = []
        prefix = 0
        if at_start:
            if chunk.startswith(_BOM):
                prefix = len(_BOM)
            stripped = chunk[prefix:].lstrip(_WHITESPACE)
            if not stripped:
                return [], 0, []
            if stripped[:1] == b"{":
                return self._parse_single_object(chunk, prefix, problems)
            if stripped[:1] != b"[":
                return [], 0, [f"{self.path.name}: not a JSON array; nothing read"]
            prefix = len(chunk) - len(stripped) + 1
        values, consumed, torn = _parse_array_body(chunk, prefix)
        records: list[dict[str, Any]] = []
        skipped = 0
        for value in values:
            if isinstance(value, dict):
                records.append(value)
            else:
                skipped += 1
        if values:
            self._has_items = True
        if skipped:
            problems.append(f"{self.path.name}: skipped {skipped} item(s) that are not objects")
        if torn:
            problems.append(f"{self.path.name}: incomplete last record ignored (writer interrupted?)")
        if consumed == 0 and prefix and at_start:
            consumed = prefix
        return records, consumed, problems

    def _parse_single_object(
        self, chunk: bytes, prefix: int, problems: list[str]
    ) -> tuple[list[dict[str, Any]], int, list[str]]:
        try:
            value = json.loads(chunk[prefix:].decode("utf-8", "replace"))
        except ValueError:
            return [], 0, [f"{self.path.name}: incomplete JSON object; nothing read"]
        problems.append(f"{self.path.name}: a single object, not an array (read as one record)")
        self._single_object = True
        return [value], len(chunk), problems

    def _skip_to_end(self, fd: int, size: int) -> bool:
        if size < _WRITER_SKIP_BYTES:
            return False
        head = os.pread(fd, len(_BOM) + 1, 0)
        # `}` + CLOSING is how every complete write ends; a raw newline cannot stand inside a JSON string
        ending = b"}" + self.CLOSING
        if head.removeprefix(_BOM)[:1] != b"[" or os.pread(fd, len(ending), size - len(ending)) != ending:
            return False
        self._offset = size - len(self.CLOSING)
        self._fingerprint = os.pread(fd, _FINGERPRINT_BYTES, self._offset - _FINGERPRINT_BYTES)
        self._has_items = True
        return True

    def _write_at_tail(self, fd: int, pending: list[tuple[dict[str, Any], bytes]]) -> None:
        if self._single_object:
            self._convert_single_object(fd)
        lines = b",\n".join(line for _, line in pending)
        if self._offset == 0:
            position, payload = 0, b"[\n" + lines + self.CLOSING
        else:
            separator = b",\n" if self._has_items else b"\n"
            position, payload = self._offset, separator + lines + self.CLOSING
        self._commit_write(fd, position, payload)
        self._offset = position + len(payload) - len(self.CLOSING)
        self._fingerprint = payload[: len(payload) - 3][-_FINGERPRINT_BYTES:]
        if len(self._fingerprint) < _FINGERPRINT_BYTES:
            self._fingerprint = b""
        self._has_items = True

    def _convert_single_object(self, fd: int) -> None:
        """A legacy file holding one bare object becomes a one-item array before the first append."""
        size = os.fstat(fd).st_size
        text = os.pread(fd, size, 0)
        try:
            value = json.loads(text.decode("utf-8", "replace"))
        except ValueError:
            value = None
        body = dumps_record(value) if isinstance(value, dict) else b""
        payload = b"[\n" + body + self.CLOSING if body else b"[" + self.CLOSING
        self._commit_write(fd, 0, payload)
        self._offset = len(payload) - len(self.CLOSING)
        self._has_items = bool(body)
        self._fingerprint = b""
        self._single_object = False


def _parse_array_body(chunk: bytes, start: int) -> tuple[list[Any], int, bool]:
    """Parse the values of a JSON array body from `start`: `v, v, v ]` with any whitespace.
    Returns the values, the byte offset just after the last complete value (0 if none), and whether an
    incomplete value was left at the end."""
    body_end = len(chunk)
    trimmed = chunk.rstrip(_WHITESPACE)
    closed = trimmed.endswith(b"]")
    if closed:
        body_end = len(trimmed) - 1
    body = chunk[start:body_end].strip(_WHITESPACE)
    if body.startswith(b","):
        body = body[1:].lstrip(_WHITESPACE)
    last_value_end = len(chunk[:body_end].rstrip(_WHITESPACE + b","))
    if closed or body.endswith(b"}"):
        if not body:
            return [], 0, False
        wrapped = b"[" + body.rstrip(b",") + b"]"
        try:
            return orjson.loads(wrapped), last_value_end, False
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(wrapped), last_value_end, False
        except (ValueError, UnicodeDecodeError):
            pass
    return _parse_values_tolerantly(chunk, start)


def _parse_values_tolerantly(chunk: bytes, start: int) -> tuple[list[Any], int, bool]:
    """Slow path for damaged data: decode value by value, keep every complete one, stop at the first
    that does not parse. Invalid UTF-8 is replaced by U+FFFD."""
    text = chunk[start:].decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    last_end = 0
    length = len(text)
    while True:
        while position < length and text[position] in " \t\r\n,":
            position += 1
        if position >= length or text[position] == "]":
            torn = False
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            torn = True
            break
        values.append(_repair_text(value))
        last_end = position
    consumed = start + len(text[:last_end].encode("utf-8", "surrogateescape")) if values else 0
    return values, consumed, torn


def _repair_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_repair_text(k): _repair_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repair_text(v) for v in value]
    return value


class _CsvFile(_TailFile):
    """CSV with one header line; rows are appended, the header is written once."""

    def __init__(self, path: Path, follow: bool) -> None:
        super().__init__(path, follow)
        self.header: list[str] | None = None
        self.rows_read = 0

    def _forget_position(self) -> None:
        super()._forget_position()
        self.header = None
        self.rows_read = 0

    def _parse(self, chunk: bytes, at_start: bool) -> tuple[list[dict[str, Any]], int, list[str]]:
        problems: list[str] = []
        complete = chunk.rfind(b"\n") + 1
        torn = complete < len(chunk) and chunk[complete:].strip(_WHITESPACE) != b""
        if torn:
            problems.append(f"{self.path.name}: incomplete last line ignored (writer interrupted?)")
        text = chunk[:complete].decode("utf-8", "replace")
        if at_start and text.startswith("\ufeff"):
            text = text[1:]
        rows = list(csv.reader(io.StringIO(text)))
        records: list[dict[str, Any]] = []
        bad = 0
        for row in rows:
            if not row:
                continue
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
                    record[name] = _parse_cell(cell)
            if "step" not in self.header:
                record["step"] = self.rows_read
            self.rows_read += 1
            records.append(record)
        if bad:
            problems.append(f"{self.path.name}: {bad} row(s) with missing or extra columns (extra ones ignored)")
        return records, complete, problems

    def _write_at_tail(self, fd: int, pending: list[tuple[dict[str, Any], bytes]]) -> None:
        records = [record for record, _ in pending]
        keys: list[str] = list(self.header or [])
        for record in records:
            for key in record:
                if key not in keys:
                    keys.append(key)
        if self.header is not None and keys != self.header:
            self._rewrite_with_header(fd, keys)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self.header is None:
            writer.writerow(keys)
            self.header = keys
        for record in records:
            writer.writerow([_format_cell(record.get(key)) for key in keys])
        payload = buffer.getvalue().encode("utf-8")
        self._commit_write(fd, self._offset, payload)
        self._offset += len(payload)
        self._fingerprint = b""
        self.rows_read += len(records)

    def _rewrite_with_header(self, fd: int, keys: list[str]) -> None:
        """New columns appeared: write the file again once with the wider header (rare; O(n) once)."""
        old = os.pread(fd, self._offset, 0).decode("utf-8", "replace")
        rows = list(csv.reader(io.StringIO(old)))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(keys)
        for row in rows[1:]:
            if row:
                writer.writerow(row + [""] * (len(keys) - len(row)))
        payload = buffer.getvalue().encode("utf-8")
        self._commit_write(fd, 0, payload)
        self._offset = len(payload)
        self.header = keys


def _parse_cell(cell: str) -> Any:
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def _format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class RunStore:
    """The four files of one run in `output_dir`; writers and readers of the same run share nothing but the
    files, so a dashboard in another process sees the same run."""

    def __init__(self, output_dir: str | os.PathLike[str], run_id: str, follow: bool = False) -> None:
        """`follow=True` makes `read_new` return this store's own appends too (a dashboard's view of the run);
        a writer-only store (the training callback) leaves it off and keeps nothing in memory."""
        self.run_id = validate_run_id(run_id)
        self.output_dir = Path(output_dir)
        self._files: dict[str, _TailFile] = {}
        self._info_signature: tuple[int, int, int] | None = None
        self._info_path = self.output_dir / f"{run_id}_{RUN_INFO_SUFFIX}"
        for kind, suffix in JSON_KINDS.items():
            self._files[kind] = _JsonArrayFile(self.output_dir / f"{run_id}_{suffix}", follow)
        for kind, suffix in CSV_KINDS.items():
            self._files[kind] = _CsvFile(self.output_dir / f"{run_id}_{suffix}", follow)

    def path(self, kind: str) -> Path:
        return self._files[kind].path

    def append(self, kind: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records to one file ("metrics", "alerts", "ppo_metrics", "checkpoint_summary") in one locked
        write. Raises ValueError, writing none of them, if one cannot be stored (see `_TailFile.append`)."""
        if kind not in FILE_SUFFIXES:
            raise ValueError(f"kind must be one of {sorted(FILE_SUFFIXES)}, got {kind!r}")
        self._files[kind].append([dict(record) for record in records])

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        self.append("metrics", [record])

    def append_metrics_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.append("metrics", records)

    def append_alert(self, record: Mapping[str, Any]) -> None:
        self.append("alerts", [record])

    def append_csv(self, kind: CsvKind, row: Mapping[str, Any]) -> None:
        if kind not in CSV_KINDS:
            raise ValueError(f"kind must be one of {sorted(CSV_KINDS)}, got {kind!r}")
        self.append(kind, [row])

    @property
    def write_errors(self) -> list[str]:
        """The current write error of each file that has records waiting in memory."""
        return [f.last_error for f in self._files.values() if f.last_error]

    def retry_unwritten(self) -> None:
        for tail_file in self._files.values():
            tail_file.retry_unwritten()

    @property
    def info_path(self) -> Path:
        return self._info_path

    def write_info(self, info: Mapping[str, Any]) -> None:
        """Replace the run info file (planned steps, trainer kind, start time, the final summary) atomically: a
        reader sees the old object or the new one, never a mix. Raises OSError when the folder is not writable."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.output_dir / f".{self.info_path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            temporary.write_bytes(orjson.dumps(dict(info), option=orjson.OPT_SERIALIZE_NUMPY))
            os.replace(temporary, self.info_path)
        finally:
            temporary.unlink(missing_ok=True)

    def read_info(self) -> dict[str, Any] | None:
        """The run info when the file is new or changed since the last call, else None (also when it is missing
        or unreadable: the info only feeds progress tiles, so a bad file is skipped, not reported)."""
        try:
            stat = self.info_path.stat()
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if signature == self._info_signature:
                return None
            info = orjson.loads(self.info_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        self._info_signature = signature
        return info if isinstance(info, dict) else None

    def read_new(self, kinds: Iterable[str] | None = None) -> RunData:
        """Records added since the last call (by anyone, this store's own appends included), of every file or
        of the files named in `kinds` ("metrics", "alerts", "ppo_metrics", "checkpoint_summary")."""
        data = RunData()
        for kind in FILE_SUFFIXES if kinds is None else kinds:
            records, reset, problems = self._files[kind].read_new()
            getattr(data, kind).extend(records)
            if reset:
                data.reset.add(kind)
            data.problems.extend(problems)
        return data

    def read_all(self) -> RunData:
        """Everything in the run's files now, read fresh (does not move this store's read position)."""
        fresh = RunStore(self.output_dir, self.run_id, follow=True)
        try:
            data = fresh.read_new()
        finally:
            fresh.close()
        data.reset = set(FILE_SUFFIXES)
        return data

    def close(self) -> None:
        for tail_file in self._files.values():
            tail_file.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
