"""RunStore: a run's files in `output_dir` — run ids, discovery, and one `TailFile` per file kind.

Files of run `R` (names and formats of the original RLDK dashboard, so old runs load): `R_metrics.json` and
`R_alerts.json` hold a JSON array of flat objects, one per line; `R_ppo_metrics.csv` and
`R_checkpoint_summary.csv` are CSV with a header; `R_run_info.json` holds one object, replaced whole;
`R_samples.json` holds completions (samples.py), a JSON array of one object per line like the metrics, whose reader
also gives each record's byte range so that the sample index keeps offsets, not texts. Appends and
incremental reads are `tailfile.py`'s, the formats `formats.py`'s, and every read goes through the file-system
layer of `fs.py`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import orjson

from . import formats
from .fs import LOCAL, READ_CHUNK_BYTES, FileSystem, as_path, signature as file_signature
from .tailfile import RACY_S, CsvFile, IndexedJsonArrayFile, JsonArrayFile, TailFile

logger = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
JSON_KINDS = {"metrics": "metrics.json", "alerts": "alerts.json"}
CSV_KINDS = {"ppo_metrics": "ppo_metrics.csv", "checkpoint_summary": "checkpoint_summary.csv"}
SAMPLES_KIND = "samples"
SAMPLES_SUFFIX = "samples.json"
FILE_SUFFIXES = {**JSON_KINDS, **CSV_KINDS, SAMPLES_KIND: SAMPLES_SUFFIX}
RECORD_KINDS = (*JSON_KINDS, *CSV_KINDS)
"""What `read_new()` / `read_all()` read when no kinds are named: every file but the samples, which can be large
and are indexed (sample_index.py), not held; name them (`kinds=("samples",)`) to read their records."""
RUN_FILE_PATTERN = re.compile(
    r"(?P<run_id>[A-Za-z0-9._-]{1,128})_(?P<suffix>" + "|".join(re.escape(s) for s in FILE_SUFFIXES.values()) + r")"
)
RUN_INFO_SUFFIX = "run_info.json"
"""`R_run_info.json`: one JSON object (max_steps, trainer, started, the train_runtime summary), replaced whole."""
RUN_INFO_MAX_BYTES = 1 << 20
CsvKind = Literal["ppo_metrics", "checkpoint_summary"]
dumps_record = formats.dumps_record


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


def discover_runs(output_dir: str | os.PathLike[str], fs: FileSystem = LOCAL) -> list[str]:
    """Run ids that have at least one run file in `output_dir`, sorted by name (exact file names only). Raises
    OSError when the folder exists but cannot be listed; a missing folder holds no runs."""
    try:
        names = fs.listdir(output_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs = {m["run_id"] for name in names if (m := RUN_FILE_PATTERN.fullmatch(name))}
    return sorted(run for run in runs if run not in (".", ".."))


@dataclass
class RunData:
    """Records read from a run's files. After an incremental read, only the new ones; a kind listed in
    `reset` was read again whole and replaces what the caller held. `more`: bytes are left to read (each read
    takes about one chunk per file, so memory stays bounded): read again."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    ppo_metrics: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_summary: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    """Each with `_at`: (offset, length) of its JSON object in the file, or None (see `IndexedJsonArrayFile`)."""
    reset: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    """Damage stepped over (said once)."""
    conditions: dict[str, str | None] = field(default_factory=dict)
    """Per file read, by name: what is wrong with it now, or None (tailfile.Read.condition). A report replaces
    each file's condition by this one."""
    more: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.metrics or self.alerts or self.ppo_metrics or self.checkpoint_summary or self.samples or self.reset
            or self.problems or any(self.conditions.values())
        )


class RunStore:
    """The files of one run in `output_dir`; writers and readers of the same run share nothing but the files, so
    a dashboard in another process sees the same run. Writers write local files only; readers read through `fs`."""

    def __init__(
        self, output_dir: str | os.PathLike[str], run_id: str, follow: bool = False, fs: FileSystem = LOCAL
    ) -> None:
        """`follow=True` makes `read_new` return this store's own appends too (a dashboard's view of the run);
        a writer-only store (the training callback) leaves it off and keeps nothing in memory."""
        self.run_id = validate_run_id(run_id)
        self.output_dir = as_path(output_dir, fs)
        self.fs = fs
        self._follow = follow
        self._files: dict[str, TailFile] = {}
        self._info_signature: tuple[Any, ...] | None = None
        self._info_bytes = b""
        self._info_path = self.output_dir / f"{run_id}_{RUN_INFO_SUFFIX}"
        for kind, suffix in JSON_KINDS.items():
            self._files[kind] = JsonArrayFile(self.output_dir / f"{run_id}_{suffix}", follow, fs)
        for kind, suffix in CSV_KINDS.items():
            self._files[kind] = CsvFile(self.output_dir / f"{run_id}_{suffix}", follow, fs)
        self._files[SAMPLES_KIND] = IndexedJsonArrayFile(self.output_dir / f"{run_id}_{SAMPLES_SUFFIX}", follow, fs)
        self._file_names = (*(tail_file.path.name for tail_file in self._files.values()), self._info_path.name)

    def path(self, kind: str) -> Path:
        return self._files[kind].path

    def file_names(self) -> tuple[str, ...]:
        """The names of the run's files in `output_dir`: its records' files and its run info."""
        return self._file_names

    def _check_writable(self) -> None:
        if self.fs.remote:
            raise ValueError(
                f"{self.output_dir} is a remote folder: it is only read (writers write local files; RLDKCallback's "
                "mirror_to uploads them)"
            )

    def append(self, kind: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records to one file ("metrics", "alerts", "ppo_metrics", "checkpoint_summary", "samples") in one locked
        write. Raises ValueError, writing none of them, if one cannot be stored (see `TailFile.append`); an
        OSError never leaves: the records are kept and written later (`write_errors`, `retry_unwritten`)."""
        if kind not in FILE_SUFFIXES:
            raise ValueError(f"kind must be one of {sorted(FILE_SUFFIXES)}, got {kind!r}")
        self._check_writable()
        self._files[kind].append([dict(record) for record in records])

    def append_encoded(self, kind: str, encoded: list[tuple[dict[str, Any], bytes]]) -> None:
        """`append` of records already encoded with `formats.dumps_record` (the dashboard validates by encoding)."""
        self._check_writable()
        self._files[kind].append_encoded(encoded)

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

    def unwritten(self, kind: str) -> list[dict[str, Any]]:
        """Records of one file kept in memory after a write error (written when writing works again)."""
        return self._files[kind].unwritten

    def retry_unwritten(self) -> None:
        for tail_file in self._files.values():
            tail_file.retry_unwritten()

    @property
    def info_path(self) -> Path:
        return self._info_path

    def write_info(self, info: Mapping[str, Any]) -> None:
        """Replace the run info file (planned steps, trainer kind, start time, the final summary) atomically: a
        reader sees the old object or the new one, never a mix. Raises OSError when the folder is not writable."""
        self._check_writable()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.output_dir / f".{self.info_path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            temporary.write_bytes(orjson.dumps(dict(info), option=orjson.OPT_SERIALIZE_NUMPY))
            os.replace(temporary, self.info_path)
        finally:
            temporary.unlink(missing_ok=True)

    def read_info(self) -> dict[str, Any] | None:
        """The run info when the file is new or changed since the last call, else None (also when it is missing
        or unreadable: the info only feeds progress tiles and the run's configuration, so a bad file is skipped,
        not reported). An unchanged file costs one stat."""
        try:
            seen = self.fs.stat(self.info_path)
            signature = file_signature(seen)
            # trusted when unchanged, unless it changed within RACY_S: a coarse clock can hide a rewrite then
            if signature == self._info_signature and time.time() - seen.mtime_ns / 1e9 >= RACY_S:
                return None
            info_stat, data = self.fs.read(self.info_path, 0, RUN_INFO_MAX_BYTES)
            if data == self._info_bytes:
                self._info_signature = file_signature(info_stat)
                return None
            info = formats.loads(data)
        except (OSError, ValueError):
            return None
        self._info_signature = file_signature(info_stat)
        self._info_bytes = data
        return info if isinstance(info, dict) else None

    def read_new(self, kinds: Iterable[str] | None = None, limit: int = READ_CHUNK_BYTES) -> RunData:
        """Records added since the last call (by anyone, this store's own appends included), of every file or
        of the files named in `kinds` (default: `RECORD_KINDS`, all but the samples), about `limit` bytes per file at
        most (`more` says when to call again)."""
        data = RunData()
        for kind in RECORD_KINDS if kinds is None else kinds:
            read = self._files[kind].read_new(limit)
            getattr(data, kind).extend(read.records)
            if read.reset:
                data.reset.add(kind)
            data.problems.extend(read.problems)
            data.conditions[self._files[kind].path.name] = read.condition
            data.more = data.more or read.more
        return data

    def read_all(self, kinds: Iterable[str] | None = None) -> RunData:
        """Everything in the run's files now, read fresh (does not move this store's read position)."""
        fresh = RunStore(self.output_dir, self.run_id, follow=True, fs=self.fs)
        kinds = tuple(RECORD_KINDS if kinds is None else kinds)
        data = RunData(reset=set(kinds))
        try:
            while True:
                part = fresh.read_new(kinds)
                for kind in kinds:
                    getattr(data, kind).extend(getattr(part, kind))
                data.problems.extend(p for p in part.problems if p not in data.problems)
                data.conditions.update(part.conditions)
                if not part.more:
                    break
        finally:
            fresh.close()
        return data

    def close(self) -> None:
        for tail_file in self._files.values():
            tail_file.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
