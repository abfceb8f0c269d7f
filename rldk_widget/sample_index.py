"""SampleIndex: one run's completions, indexed for pages — the steps that have samples, one step's samples grouped by
prompt, a text search over all steps (newest first, in pages with progress), one prompt across steps, and a
DataFrame.

Fed incrementally (`update()`) from the run's samples file (`{run_id}_samples.json`, records of samples.py) and from
TRL completions folders (`completions/*.parquet`, trl_samples.py), through the file-system layer. Memory stays small
whatever the run's length: per sample the index keeps ~100 bytes of numbers in numpy columns (step, content key,
prompt key, rewards, advantage, length, flags, and where its record lies: the byte range of its line in the samples
file, or its row in a parquet file); texts are read from the files when a page asks for them.

Each sample is shown once, at the first step it appeared. A batch repeats when logging is more frequent than
generation (TRL logs the same batch at every log until the next generation) and when both sources hold it (our
callback and TRL's parquet files): a new batch's samples whose content keys (samples.py) are at the same step
already, or make up at least half of the batch at the nearest earlier step, are duplicates; those it shares with
half of the nearest later step are shown here and hidden there. A prompt that comes back in a later epoch with the
same answer is not a repeat: only the neighbouring steps are compared.

Pages are plain JSON-able dicts (texts as plain strings, NaN / ±Inf as null); see `page`, `search`,
`prompt_history` and `sample` for their formats. This module holds the index (columns, feeding, de-duplication,
reading a row's record); sample_pages.py builds the pages from it and sample_search.py searches it.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import formats
from . import sample_pages as pages
from .fs import LOCAL, FileSystem, as_path, describe_error
from .sample_pages import IN_MEMORY, PREVIEW_CHARS, SAMPLES_FILE, SORT_COLUMNS, TRUNCATED_UNKNOWN
from .sample_pages import completions_frame  # noqa: F401 - dash.completions() over several runs' indexes
from .samples import (
    FLAG_NAMES,
    TEXT_CAP_BYTES,
    BatchKeys,
    SampleMeta,
    cap_text,
    extra_value,
    meta_from_record,
    parse_key,
    render_text,
    text_key,
    total_reward,
)
from .tailfile import RECORD_AT, RECORD_HEAD, IndexedJsonArrayFile
from .trl_samples import CompletionsFolder, ParquetBatch, ParquetRow

logger = logging.getLogger(__name__)

NEIGHBOUR_OVERLAP = 0.5
"""A batch is a repeat of its neighbouring step's when at least this share of its samples is there."""
SPAN_GAP_BYTES = 64 << 10
SPAN_MAX_BYTES = 8 << 20
SEARCH_CHUNK_BYTES = 4 << 20
UPDATE_CHUNK_BYTES = 4 << 20
"""Bytes of the samples file one `update()` reads at most (about 1,500 samples of 2 KB): what it parses at once."""
MAX_RECORD_BYTES = 16 << 20
"""A samples-file record longer than this (a hand-written file: ours hold at most two 64 KB texts) is not read."""
PARQUET_CACHE_CHARS = 32 << 20
"""Decoded parquet files kept for pages, by their texts' size (the most recent one whatever its size)."""
TEXTS_START = b',"prompt":'
"""Where a record's texts begin (samples.py writes them last): the index parses each line only up to there."""
_Item = tuple  # (SampleMeta, (source, loc, length), record held in memory or None)


@dataclass
class IndexUpdate:
    """What one `update()` did: the steps whose samples changed (gained some, or lost some to an earlier step;
    ascending), problems found, whether more is left to read (call again), and whether the index was rebuilt (the
    samples file was replaced: every step may have changed)."""

    steps: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    conditions: dict[str, str | None] = field(default_factory=dict)
    """The samples file's condition, by file name, when the read changed it (tailfile.Read.condition)."""
    more: bool = False
    reset: bool = False


class _Columns:
    """Growable numpy columns, one row per sample."""

    SPEC = {
        "step": np.int64, "key": np.uint64, "prompt_key": np.uint64, "index": np.int32, "source": np.int32,
        "loc": np.int64, "length": np.int32, "reward": np.float64, "advantage": np.float64,
        "completion_length": np.float32, "truncated": np.int8, "empty": np.bool_, "cut": np.bool_,
        "hidden": np.bool_, "prompt_chars": np.int32, "completion_chars": np.int32,
    }

    def __init__(self) -> None:
        self.n = 0
        self.capacity = 0
        self.data: dict[str, np.ndarray] = {name: np.empty(0, dtype) for name, dtype in self.SPEC.items()}
        self.rewards: dict[str, np.ndarray] = {}

    def reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= self.capacity:
            return
        capacity = max(need, int(self.capacity * 1.5), 1024)
        for name, column in self.data.items():
            grown = np.empty(capacity, column.dtype)
            grown[: self.n] = column[: self.n]
            self.data[name] = grown
        for name, column in self.rewards.items():
            grown = np.full(capacity, np.nan)
            grown[: self.n] = column[: self.n]
            self.rewards[name] = grown
        self.capacity = capacity

    def reward_column(self, name: str) -> np.ndarray:
        column = self.rewards.get(name)
        if column is None:
            column = self.rewards[name] = np.full(self.capacity, np.nan)
        return column

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name][: self.n]

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.data.values()) + sum(c.nbytes for c in self.rewards.values())


class SampleIndex:
    """The completions of one run, for pages (see the module docstring).

    `samples_path`: the run's `{run_id}_samples.json` (None: none); `completions_dirs`: TRL `completions/` folders
    (`add_completions_dir` adds more later, e.g. the trainer's, from the run info); `reward_names`: which parquet
    columns are reward functions (else learned from the samples file, else every numeric column);
    `reward_weights`: TRL's weights for the total reward of parquet rows (default 1 each). Thread-safe."""

    def __init__(
        self,
        run_id: str,
        samples_path: str | os.PathLike[str] | None = None,
        completions_dirs: Iterable[str | os.PathLike[str]] = (),
        fs: FileSystem = LOCAL,
        reward_names: Sequence[str] | None = None,
        reward_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.run_id = run_id
        self.fs = fs
        self.samples_path = as_path(samples_path, fs) if samples_path is not None else None
        self._reward_hint = [str(n) for n in reward_names] if reward_names else []
        self.reward_weights = dict(reward_weights) if reward_weights else None
        self._lock = threading.RLock()
        self._folders: dict[Path, CompletionsFolder] = {}
        for folder in completions_dirs:
            self._folders[as_path(folder, fs)] = CompletionsFolder(folder, fs)
        self._clear()

    @classmethod
    def for_store(cls, store: Any, completions_dirs: Iterable[str | os.PathLike[str]] = (), **kwargs: Any
                  ) -> "SampleIndex":
        """The index of a `RunStore`'s run (its samples file, through its file system), with its own read position."""
        return cls(store.run_id, store.path("samples"), completions_dirs, fs=store.fs, **kwargs)

    def _clear(self) -> None:
        self._cols = _Columns()
        self._reader = (
            IndexedJsonArrayFile(self.samples_path, True, self.fs, head_until=TEXTS_START) if self.samples_path else None
        )
        self._ranges: dict[int, list[tuple[int, int]]] = {}
        self._all_steps: list[int] = []
        self._visible: dict[int, int] = {}
        self._sorted_visible: list[int] | None = None
        self._reward_names: list[str] = list(self._reward_hint)
        self._memory: dict[int, dict[str, Any]] = {}
        self._parquet: list[tuple[CompletionsFolder, str, Any, list[str]]] = [(None, "", None, [])]  # type: ignore
        self._parquet_ids: dict[tuple[Path, str], int] = {}
        self._parquet_cache: OrderedDict[int, list[ParquetRow]] = OrderedDict()
        self._problems: dict[str, None] = {}
        self._condition: str | None = None
        self._bad_records = 0
        self._touched = set()
        for folder in list(self._folders):
            self._folders[folder] = CompletionsFolder(folder, self.fs)

    def add_completions_dir(self, folder: str | os.PathLike[str]) -> None:
        """Also index the TRL completions parquet files of `folder` (no-op if it is indexed already)."""
        with self._lock:
            path = as_path(folder, self.fs)
            if path not in self._folders:
                self._folders[path] = CompletionsFolder(path, self.fs)

    @property
    def completions_dirs(self) -> list[Path]:
        return list(self._folders)

    # ---- reading ---------------------------------------------------------------------------------------------
    def update(self, limit: int = UPDATE_CHUNK_BYTES, max_files: int = 32) -> IndexUpdate:
        """Index what the sources gained since the last call: about `limit` bytes of the samples file and up to
        `max_files` parquet files (`more` says to call again). Never raises: problems are returned (and kept in
        `problems`)."""
        with self._lock:
            result = IndexUpdate()
            try:
                self._update(result, limit, max_files)
            except Exception as err:  # noqa: BLE001 - a reader bug must not reach the dashboard or training
                logger.exception("indexing the samples of %s failed", self.run_id)
                result.problems.append(f"{self.run_id}: indexing samples failed ({type(err).__name__}: {err})")
            result.steps = sorted(self._touched)
            for problem in result.problems:
                self._problems[problem] = None
            return result

    def _update(self, result: IndexUpdate, limit: int, max_files: int) -> None:
        self._touched = set()
        if self._reader is not None:
            read = self._reader.read_new(limit)
            if read.reset:
                self._clear()
                result.reset = True
                self._touched = set()
                read = self._reader.read_new(limit)  # type: ignore[union-attr]
            self._add_records(read.records, result)
            result.problems.extend(read.problems)
            if read.condition != self._condition:
                result.conditions[self._reader.path.name] = self._condition = read.condition
            result.more = read.more
        for folder in self._folders.values():
            batches, problems, more = folder.poll(self._reward_names or None, max_files)
            for batch in batches:
                self._add_parquet(folder, batch)
            result.problems.extend(problems)
            result.more = result.more or more

    def update_all(self) -> IndexUpdate:
        """`update()` until nothing is left to read."""
        total = IndexUpdate()
        while True:
            part = self.update()
            total.steps = sorted(set(total.steps) | set(part.steps)) if not part.reset else part.steps
            total.problems.extend(p for p in part.problems if p not in total.problems)
            total.conditions.update(part.conditions)
            total.reset = total.reset or part.reset
            if not part.more:
                return total

    @property
    def problems(self) -> list[str]:
        """Everything that could not be read so far, each text once, and what is wrong with the samples file now."""
        with self._lock:
            return [*self._problems, *([self._condition] if self._condition else [])]

    def _add_records(self, records: list[dict[str, Any]], result: IndexUpdate) -> None:
        batch: list[_Item] = []
        bad = 0
        for record in records:
            if record.get(RECORD_HEAD):
                meta = meta_from_record(record, strict=True)
                if meta is None:  # not as this package writes records: read the whole line
                    at = record[RECORD_AT]
                    record = {**_parse_line(self._read_bytes(at[0], at[1]), None), RECORD_AT: at}
                    meta = meta_from_record(record)
            else:
                meta = meta_from_record(record)
            if meta is None:
                bad += 1
                continue
            for name in meta.rewards:
                if name not in self._reward_names:
                    self._reward_names.append(name)
            at = record.get(RECORD_AT)
            held = None
            if at is not None:
                where = (SAMPLES_FILE, at[0], at[1])
            else:  # recovered from damage: no byte range, so the record is kept (texts capped)
                where = (IN_MEMORY, -1, 0)
                meta.cut = _hold(record) or meta.cut
                held = record
            if batch and batch[-1][0].step != meta.step:
                self._add_batch(batch)
                batch = []
            batch.append((meta, where, held))
        if batch:
            self._add_batch(batch)
        if bad:
            self._bad_records += bad
            name = self.samples_path.name if self.samples_path else "samples"
            result.problems.append(f"{name}: {self._bad_records} record(s) without a usable 'step' skipped")

    def _add_parquet(self, folder: CompletionsFolder, batch: ParquetBatch) -> None:
        for name in batch.reward_names:
            if name not in self._reward_names:
                self._reward_names.append(name)
        keys = BatchKeys()
        prompt_keys: dict[str, int] = {}
        metas = []
        for i, row in enumerate(batch.rows):
            prompt_key = prompt_keys.get(row.prompt)
            if prompt_key is None:
                prompt_key = prompt_keys[row.prompt] = text_key(row.prompt)
            metas.append(SampleMeta(
                step=batch.step, key=keys.key(row.prompt, row.completion, row.advantage), prompt_key=prompt_key,
                index=i, rewards=row.rewards, reward=total_reward(row.rewards, self.reward_weights),
                advantage=row.advantage, completion_length=math.nan, truncated=None, empty=not row.content.strip(),
                cut=False, prompt_chars=len(row.prompt), completion_chars=len(row.completion),
            ))
        file_key = (folder.folder, batch.name)
        source = self._parquet_ids.get(file_key)
        if source is None:
            source = self._parquet_ids[file_key] = len(self._parquet)
            self._parquet.append((folder, batch.name, batch.signature, list(batch.reward_names)))
        else:  # the file was rewritten (TRL rewrites the last step's at the end of training): follow its rows
            self._parquet[source] = (folder, batch.name, batch.signature, list(batch.reward_names))
            self._parquet_cache.pop(source, None)
            self._relocate(source, [m.key for m in metas])
        self._parquet_cache[source] = batch.rows
        self._trim_cache()
        self._add_batch([(meta, (source, i, 0), None) for i, meta in enumerate(metas)])

    def _relocate(self, source: int, keys: list[int]) -> None:
        """Rows indexed from an earlier version of a parquet file: point them at the same sample's row now, or
        hide them if it is gone."""
        cols = self._cols
        rows = np.flatnonzero(cols["source"] == source)
        where = {key: i for i, key in enumerate(keys)}
        for row in rows:
            i = where.get(int(cols["key"][row]))
            if i is None:
                self._hide(np.array([row]))
            else:
                cols.data["loc"][row] = i

    def _trim_cache(self) -> None:
        sizes = [sum(len(r.prompt) + len(r.completion) for r in rows) for rows in self._parquet_cache.values()]
        total = sum(sizes)
        for size in sizes[:-1]:
            if total <= PARQUET_CACHE_CHARS:
                break
            self._parquet_cache.popitem(last=False)
            total -= size

    # ---- de-duplication --------------------------------------------------------------------------------------
    def _rows_of(self, step: int) -> np.ndarray:
        ranges = self._ranges.get(step)
        if not ranges:
            return np.empty(0, np.int64)
        if len(ranges) == 1:
            return np.arange(ranges[0][0], ranges[0][1])
        return np.concatenate([np.arange(a, b) for a, b in ranges])

    def _neighbour(self, step: int, later: bool) -> int | None:
        i = bisect.bisect_right(self._all_steps, step) if later else bisect.bisect_left(self._all_steps, step) - 1
        return self._all_steps[i] if 0 <= i < len(self._all_steps) else None

    def _add_batch(self, batch: list[_Item]) -> None:
        if not batch:
            return
        cols = self._cols
        step = batch[0][0].step
        keys = np.fromiter((item[0].key for item in batch), np.uint64, len(batch))
        duplicate = np.zeros(len(batch), bool)
        same = self._rows_of(step)
        if same.size:
            matches = np.isin(keys, cols["key"][same])
            if matches.any():
                self._merge_into(same, batch, matches)
            duplicate |= matches
        earlier = self._neighbour(step, later=False)
        if earlier is not None:
            overlap = np.isin(keys, cols["key"][self._rows_of(earlier)])
            if overlap.mean() >= NEIGHBOUR_OVERLAP:
                duplicate |= overlap
        later = self._neighbour(step, later=True)
        if later is not None:
            rows = self._rows_of(later)
            overlap = np.isin(keys, cols["key"][rows])
            if overlap.mean() >= NEIGHBOUR_OVERLAP:
                shared = rows[np.isin(cols["key"][rows], keys[overlap & ~duplicate])]
                self._hide(shared[~cols["hidden"][shared]])
        kept = [item for item, dup in zip(batch, duplicate) if not dup]
        if not kept:  # a step that only repeats others is compared as those (its neighbours stay theirs)
            return
        start = cols.n
        cols.reserve(len(kept))
        d = cols.data
        end = start + len(kept)
        metas = [item[0] for item in kept]
        d["step"][start:end] = step
        d["key"][start:end] = np.fromiter((m.key for m in metas), np.uint64, len(metas))
        d["prompt_key"][start:end] = np.fromiter((m.prompt_key for m in metas), np.uint64, len(metas))
        d["index"][start:end] = [m.index for m in metas]
        d["source"][start:end] = [item[1][0] for item in kept]
        d["loc"][start:end] = [item[1][1] for item in kept]
        d["length"][start:end] = [item[1][2] for item in kept]
        d["reward"][start:end] = [m.reward for m in metas]
        d["advantage"][start:end] = [m.advantage for m in metas]
        d["completion_length"][start:end] = [m.completion_length for m in metas]
        d["truncated"][start:end] = [TRUNCATED_UNKNOWN if m.truncated is None else int(m.truncated) for m in metas]
        d["empty"][start:end] = [m.empty for m in metas]
        d["cut"][start:end] = [m.cut for m in metas]
        d["hidden"][start:end] = False
        d["prompt_chars"][start:end] = [min(m.prompt_chars, 2**31 - 1) for m in metas]
        d["completion_chars"][start:end] = [min(m.completion_chars, 2**31 - 1) for m in metas]
        names = dict.fromkeys(name for m in metas for name in m.rewards)
        for name in names:
            cols.reward_column(name)
        for name, column in cols.rewards.items():
            column[start:end] = [m.rewards.get(name, math.nan) for m in metas]
        for j, item in enumerate(kept):
            if item[2] is not None:
                self._memory[start + j] = item[2]
        cols.n = end
        self._ranges.setdefault(step, []).append((start, end))
        self._note_step(step)
        self._touched.add(step)
        self._visible[step] = self._visible.get(step, 0) + len(kept)
        self._sorted_visible = None

    def _note_step(self, step: int) -> None:
        if step in self._ranges or not self._all_steps or step > self._all_steps[-1]:
            if not self._all_steps or step > self._all_steps[-1]:
                self._all_steps.append(step)
                self._ranges.setdefault(step, [])
            return
        i = bisect.bisect_left(self._all_steps, step)
        if i >= len(self._all_steps) or self._all_steps[i] != step:
            self._all_steps.insert(i, step)
            self._ranges.setdefault(step, [])

    def _merge_into(self, rows: np.ndarray, batch: list[_Item], matches: np.ndarray) -> None:
        """The same sample from another source at the same step: keep what only the new one knows (token length,
        truncated flag)."""
        cols = self._cols
        by_key = {int(cols["key"][row]): row for row in rows}
        for (meta, _, _), match in zip(batch, matches):
            row = by_key.get(meta.key) if match else None
            if row is None:
                continue
            if math.isnan(cols["completion_length"][row]) and not math.isnan(meta.completion_length):
                cols.data["completion_length"][row] = meta.completion_length
            if cols["truncated"][row] == TRUNCATED_UNKNOWN and meta.truncated is not None:
                cols.data["truncated"][row] = int(meta.truncated)

    def _hide(self, rows: np.ndarray) -> None:
        if not rows.size:
            return
        cols = self._cols
        cols.data["hidden"][rows] = True
        for step, count in zip(*np.unique(cols["step"][rows], return_counts=True)):
            self._touched.add(int(step))
            left = self._visible.get(int(step), 0) - int(count)
            if left > 0:
                self._visible[int(step)] = left
            else:
                self._visible.pop(int(step), None)
        self._sorted_visible = None

    # ---- steps -----------------------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """The steps that have samples, ascending."""
        with self._lock:
            return list(self._steps())

    def _steps(self) -> list[int]:
        if self._sorted_visible is None:
            self._sorted_visible = sorted(self._visible)
        return self._sorted_visible

    def _visible_rows(self, step: int) -> np.ndarray:
        rows = self._rows_of(step)
        if not rows.size:
            return rows
        rows = rows[~self._cols["hidden"][rows]]
        order = np.lexsort((self._cols["source"][rows], self._cols["index"][rows]))
        return rows[order]

    def __len__(self) -> int:
        with self._lock:
            return sum(self._visible.values())

    def summary(self) -> dict[str, Any]:
        """{"run_id", "steps" (count), "first_step", "last_step", "samples", "reward_names", "sort_columns",
        "flags", "problems"}: what a step picker and the column headers need."""
        with self._lock:
            steps = self._steps()
            return {
                "run_id": self.run_id,
                "steps": len(steps),
                "first_step": steps[0] if steps else None,
                "last_step": steps[-1] if steps else None,
                "samples": sum(self._visible.values()),
                "reward_names": list(self._reward_names),
                "sort_columns": self.sort_columns(),
                "flags": [*FLAG_NAMES, "identical"],
                "problems": self.problems,
            }

    def sort_columns(self) -> list[str]:
        return [*SORT_COLUMNS, *self._reward_names]

    def memory_bytes(self) -> int:
        """What the index holds in memory, roughly (numpy columns, step tables, records held in memory)."""
        with self._lock:
            tables = 120 * len(self._ranges) + 64 * sum(len(r) for r in self._ranges.values())
            held = sum(len(str(r.get("prompt", ""))) + len(str(r.get("completion", ""))) for r in self._memory.values())
            return self._cols.nbytes() + tables + 8 * len(self._all_steps) + held

    # ---- texts -----------------------------------------------------------------------------------------------
    def _records(self, rows: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The stored record (texts, extra, cut) of each row, read from its source; a row whose record cannot be
        read gets {"missing": problem}."""
        cols = self._cols
        out: dict[int, dict[str, Any]] = {}
        file_rows = []
        parquet_rows: dict[int, list[int]] = {}
        for row in rows:
            source = int(cols["source"][row])
            if source == SAMPLES_FILE:
                file_rows.append(row)
            elif source == IN_MEMORY:
                out[row] = self._memory.get(row, {"missing": "not held"})
            else:
                parquet_rows.setdefault(source, []).append(row)
        if file_rows:
            out.update(self._read_lines(file_rows))
        for source, source_rows in parquet_rows.items():
            out.update(self._read_parquet_rows(source, source_rows))
        return out

    def _read_lines(self, rows: list[int]) -> dict[int, dict[str, Any]]:
        cols = self._cols
        rows = sorted(rows, key=lambda r: int(cols["loc"][r]))
        out: dict[int, dict[str, Any]] = {}
        spans: list[list[int]] = []
        for row in rows:
            start, end = int(cols["loc"][row]), int(cols["loc"][row]) + int(cols["length"][row])
            if end - start > MAX_RECORD_BYTES:
                out[row] = {"missing": f"its record is {end - start:,} bytes, too large to show"}
                continue
            if spans and start - spans[-1][1] <= SPAN_GAP_BYTES and end - spans[-1][0] <= SPAN_MAX_BYTES:
                spans[-1][1] = max(spans[-1][1], end)
                spans[-1].append(row)
            else:
                spans.append([start, end, row])
        for span in spans:
            start, end, span_rows = span[0], span[1], span[2:]
            try:
                _, data = self.fs.read(self.samples_path, start, end - start)  # type: ignore[arg-type]
            except OSError as err:
                problem = f"{self.samples_path.name}: cannot read ({describe_error(err)})"  # type: ignore[union-attr]
                out.update({row: {"missing": problem} for row in span_rows})
                continue
            for row in span_rows:
                offset = int(cols["loc"][row]) - start
                out[row] = _parse_line(data[offset : offset + int(cols["length"][row])], int(cols["key"][row]))
        return out

    def _read_bytes(self, offset: int, length: int) -> bytes:
        try:
            return self.fs.read(self.samples_path, offset, length)[1]  # type: ignore[arg-type]
        except OSError:
            return b""

    def _read_parquet_rows(self, source: int, rows: list[int]) -> dict[int, dict[str, Any]]:
        decoded = self._parquet_cache.get(source)
        problem = None
        if decoded is None:
            folder, name, signature, reward_names = self._parquet[source]
            decoded, problem = folder.read_rows(name, signature, reward_names or None)
            if decoded is not None:
                self._parquet_cache[source] = decoded
                self._trim_cache()
        else:
            self._parquet_cache.move_to_end(source)
        out: dict[int, dict[str, Any]] = {}
        for row in rows:
            i = int(self._cols["loc"][row])
            if decoded is None or i >= len(decoded):
                out[row] = {"missing": problem or f"{self._parquet[source][1]}: changed since it was indexed"}
                continue
            item = decoded[i]
            out[row] = {"prompt": item.prompt, "completion": item.completion,
                        "extra": {k: extra_value(v) for k, v in item.extra.items()}, "source": "parquet"}
        return out

    # ---- pages (sample_pages.py) ----------------------------------------------------------------------------
    def page(
        self,
        step: int,
        sort: str = "index",
        descending: bool = False,
        flags: Mapping[str, bool] | None = None,
        reward_range: Sequence[float | None] | None = None,
        reward_column: str = "reward",
        group: bool = True,
        offset: int = 0,
        limit: int = 64,
        text_chars: int = PREVIEW_CHARS,
    ) -> dict[str, Any]:
        """One step's samples.

        `sort`: a column of `sort_columns()` ("index" is the trainer's order; NaN last either way); `flags`:
        {"truncated" | "empty" | "cut" | "identical": True / False} rows must match; `reward_range`: (low, high),
        either None for open, on `reward_column` ("reward" = total, or a reward function); `group`: rows grouped by
        prompt, groups ordered by their first row, `offset` / `limit` counting groups (else rows); `text_chars`:
        characters of each text (the rest is marked `*_more`; `sample(id)` has it all). Raises ValueError for an
        unknown sort column or flag.

        Returns {"kind": "step", "run_id", "step", "prev_step", "next_step", "reward_names", "sort": {"column",
        "descending"}, "total_rows", "matched_rows", "total_groups", "matched_groups", "offset", "limit", "more",
        "groups": [{"prompt_id", "prompt", "prompt_more", "prompt_chars", "size", "shown", "reward_mean",
        "reward_std", "reward_min", "reward_max", "identical_rewards", "rows": [row, ...]}, ...]} — or "rows"
        instead of "groups" when `group` is False. A row: {"id", "step", "index", "prompt_id", "source",
        ["prompt", "prompt_more",] "completion", "completion_more", "reward", "rewards": {name: value}, "advantage",
        "completion_length", "truncated", "empty", "cut", "completion_chars", "prompt_chars", "extra": {...}
        [, "missing": why its texts could not be read]}."""
        return pages.step_page(self, step, sort, descending, flags, reward_range, reward_column, group, offset,
                               limit, text_chars)

    def sample(self, sample_id: str) -> dict[str, Any] | None:
        """One sample with its whole stored texts (a row of `page` with "prompt" and "completion" complete and
        "cut_fields": which of them were capped on disk); None for an unknown id."""
        return pages.sample_page(self, sample_id)

    def prompt_history(self, prompt_id: str, offset: int = 0, limit: int = 20, text_chars: int = 400
                       ) -> dict[str, Any]:
        """One prompt across steps, oldest first: how its answers changed over training. Pages of `limit` steps.

        Returns {"kind": "prompt", "run_id", "prompt_id", "prompt", "prompt_more", "total_steps", "offset", "limit",
        "more", "steps": [{"step", "size", "reward_mean", "reward_std", "reward_min", "reward_max",
        "identical_rewards", "rows": [row, ...]}, ...]} (rows as in `page`, without the prompt)."""
        return pages.prompt_page(self, prompt_id, offset, limit, text_chars)

    # ---- search ----------------------------------------------------------------------------------------------
    def search(self, query: str, cursor: Mapping[str, Any] | None = None, limit: int = 50, budget_s: float = 0.25,
               text_chars: int = 240) -> dict[str, Any]:
        """Samples whose prompt or completion contains `query` (case-insensitive), newest step first, in pages.

        Each call searches steps until `limit` matches are found (a page ends at a step's end) or `budget_s` has
        passed (at least one step is searched), and returns a `cursor` to pass back for the next page (None when
        every step up to the newest at the first call has been searched). Steps added during a search are not
        searched by it (start a new one).

        Returns {"kind": "search", "run_id", "query", "matches": [{"id", "step", "index", "prompt_id", "in":
        ["prompt", "completion"], "prompt": snippet, "completion": snippet, "reward", "advantage", "truncated",
        "empty", "cut"}, ...], "searched_steps", "total_steps", "done", "cursor"}, a snippet being {"text",
        "start": where the text starts in the whole text, "match": [start, end] in "text", or None}."""
        from .sample_search import search_page

        return search_page(self, query, cursor, limit, budget_s, text_chars)

    # ---- dataframe ------------------------------------------------------------------------------------------
    def dataframe(self, step: int | None = None) -> Any:
        """`dash.completions()`: a pandas DataFrame, one row per sample (all steps, or `step`), ordered by step and
        the trainer's order: step, prompt, completion, reward, one column per reward function, advantage,
        completion_length, truncated, empty, cut (stored text capped), plus id, prompt_id and source. Missing
        values are NaN / <NA>; texts are the stored ones (capped at 64 KB by default)."""
        return pages.dataframe(self, step)


# ---- helpers ------------------------------------------------------------------------------------------------
def _hold(record: dict[str, Any]) -> bool:
    """A record kept in memory (recovered from damage): its texts capped like on disk. True if one was cut."""
    cut = False
    for name in ("prompt", "completion"):
        value = record.get(name)
        text = value if isinstance(value, str) else render_text(value)
        record[name], was_cut = cap_text(text, TEXT_CAP_BYTES)
        cut = cut or was_cut
    return cut


def _parse_line(data: bytes, key: int | None) -> dict[str, Any]:
    try:
        record = formats.loads(data)
    except ValueError:
        return {"missing": "the samples file changed on disk since it was indexed"}
    if not isinstance(record, dict) or (key is not None and "id" in record
                                        and parse_key(record.get("id")) not in (key, None)):
        return {"missing": "the samples file changed on disk since it was indexed"}
    return record
