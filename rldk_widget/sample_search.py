"""Text search over a SampleIndex's prompts and completions, newest step first, in pages with progress.

Samples-file rows are searched in their bytes: the steps' lines are read in spans of a few MB, the query's JSON
encoding (lower-cased, ASCII letters) is looked for in the lower-cased bytes, and only the lines it occurs in are
parsed and checked (`query.casefold() in text.casefold()` on the prompt and the completion: a hit in another field
is no match). Parquet rows and records held in memory are checked as text. A query with no ASCII run of two or more
characters checks every line.
"""

from __future__ import annotations

import bisect
import re
import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import orjson

from .fs import describe_error
from .sample_index import MAX_RECORD_BYTES, SEARCH_CHUNK_BYTES, SPAN_GAP_BYTES, SPAN_MAX_BYTES, _parse_line
from .sample_pages import SAMPLES_FILE, _text, row_identity, row_numbers

if TYPE_CHECKING:
    from .sample_index import SampleIndex

_ASCII_RUN = re.compile(r"[\x20-\x7e]{2,}")
_OTHER_ROW_BYTES = 4096
FIRST_CHUNK_BYTES = 256 << 10
"""What a parquet or in-memory row counts for when a search sizes its chunk of steps."""


def needle(query: str) -> bytes | None:
    """What to look for in a record's JSON bytes (lower-cased), or None: check every line."""
    if query.isascii():
        run = query
    else:
        runs = _ASCII_RUN.findall(query)
        if not runs:
            return None
        run = max(runs, key=len)
    encoded = orjson.dumps(run)[1:-1].lower()
    return encoded or None


def search_page(index: "SampleIndex", query: Any, cursor: Mapping[str, Any] | None, limit: int, budget_s: float,
                text_chars: int) -> dict[str, Any]:
    deadline = time.perf_counter() + budget_s
    query = query if isinstance(query, str) else str(query)
    folded = query.casefold()
    with index._lock:
        steps = index._steps()
        if cursor is not None:
            top, before = cursor.get("top"), cursor.get("before")
            if cursor.get("query") != query or not isinstance(top, int) or not isinstance(before, int):
                raise ValueError("this cursor belongs to another search (or is not a search cursor)")
        else:
            top = steps[-1] if steps else 0
            before = top + 1
        total = bisect.bisect_right(steps, top)
    page: dict[str, Any] = {"kind": "search", "run_id": index.run_id, "query": query, "matches": [],
                            "searched_steps": 0, "total_steps": total, "done": True, "cursor": None}
    if not folded or not total:
        page["searched_steps"] = total
        return page
    look_for = needle(query)
    matches: list[dict[str, Any]] = []
    chunk_bytes = FIRST_CHUNK_BYTES  # small first (a common word fills the page at once), then doubling
    while True:
        with index._lock:
            steps = index._steps()
            high = bisect.bisect_left(steps, before)
            if high == 0:
                break
            chunk: list[tuple[int, np.ndarray]] = []
            size = 0
            j = high - 1
            cols = index._cols
            while j >= 0:
                rows = index._visible_rows(steps[j])
                in_file = cols["source"][rows] == SAMPLES_FILE
                estimate = int(cols["length"][rows][in_file].sum()) + _OTHER_ROW_BYTES * int((~in_file).sum())
                if chunk and size + estimate > chunk_bytes:
                    break
                chunk.append((steps[j], rows))
                size += estimate
                j -= 1
            found = _scan(index, chunk, look_for, query, folded, text_chars)
            chunk_bytes = min(2 * chunk_bytes, SEARCH_CHUNK_BYTES)
        cut_at = None
        for step, _ in chunk:  # newest first
            matches.extend(found.get(step, []))
            before = step
            if len(matches) >= limit:
                cut_at = step
                break
        if cut_at is not None or time.perf_counter() >= deadline:
            break
    with index._lock:
        steps = index._steps()
        remaining = bisect.bisect_left(steps, before)
    page["matches"] = matches
    page["searched_steps"] = total - min(remaining, total)
    page["done"] = remaining == 0
    page["cursor"] = None if page["done"] else {"query": query, "top": top, "before": before}
    return page


def _scan(index: "SampleIndex", chunk: list[tuple[int, np.ndarray]], look_for: bytes | None, query: str, folded: str,
          text_chars: int) -> dict[int, list[dict[str, Any]]]:
    cols = index._cols
    rows = np.concatenate([rows for _, rows in chunk]) if chunk else np.empty(0, np.int64)
    in_file = cols["source"][rows] == SAMPLES_FILE
    records: dict[int, dict[str, Any]] = {}
    file_rows = rows[in_file]
    if file_rows.size:
        records.update(_file_candidates(index, file_rows, look_for))
    other = rows[~in_file].tolist()
    if other:
        records.update(index._records(other))
    found: dict[int, list[dict[str, Any]]] = {}
    for step, step_rows in chunk:
        for row in step_rows.tolist():
            record = records.get(row)
            if record is None or "missing" in record:
                continue
            match = _match(index, row, record, query, folded, text_chars)
            if match is not None:
                found.setdefault(step, []).append(match)
    return found


def _file_candidates(index: "SampleIndex", rows: np.ndarray, look_for: bytes | None) -> dict[int, dict[str, Any]]:
    """The records of the samples-file rows whose bytes contain `look_for` (all rows when None)."""
    cols = index._cols
    rows = rows[cols["length"][rows] <= MAX_RECORD_BYTES]
    rows = rows[np.argsort(cols["loc"][rows], kind="stable")]
    starts = cols["loc"][rows]
    ends = starts + cols["length"][rows]
    out: dict[int, dict[str, Any]] = {}
    i = 0
    n = rows.size
    while i < n:
        j = i + 1
        while j < n and starts[j] - ends[j - 1] <= SPAN_GAP_BYTES and ends[j] - starts[i] <= SPAN_MAX_BYTES:
            j += 1
        span_start, span_end = int(starts[i]), int(ends[i:j].max())
        try:
            _, data = index.fs.read(index.samples_path, span_start, span_end - span_start)  # type: ignore[arg-type]
        except OSError as err:
            index._problems[f"{index.samples_path.name}: cannot read ({describe_error(err)})"] = None  # type: ignore
            i = j
            continue
        span_rows = rows[i:j]
        local_starts = (starts[i:j] - span_start).tolist()
        local_ends = (ends[i:j] - span_start).tolist()
        if look_for is None:
            hits = range(j - i)
        else:
            lowered = data.lower()
            hits = []
            position = 0
            while True:
                position = lowered.find(look_for, position)
                if position < 0:
                    break
                k = bisect.bisect_right(local_starts, position) - 1
                if k >= 0 and position < local_ends[k]:
                    hits.append(k)
                    position = local_ends[k]
                else:
                    position += 1
        for k in hits:
            row = int(span_rows[k])
            out[row] = _parse_line(data[local_starts[k] : local_ends[k]], int(cols["key"][row]))
        i = j
    return out


def _match(index: "SampleIndex", row: int, record: Mapping[str, Any], query: str, folded: str, text_chars: int
           ) -> dict[str, Any] | None:
    texts = {name: _text(record.get(name)) for name in ("prompt", "completion")}
    where = [name for name, text in texts.items() if folded in text.casefold()]
    if not where:
        return None
    numbers = row_numbers(index, row)
    out = row_identity(index, row)
    out["in"] = where
    for name, text in texts.items():
        out[name] = snippet(text, query if name in where else None, text_chars if name in where else text_chars // 2)
    for name in ("reward", "advantage", "truncated", "empty", "cut"):
        out[name] = numbers[name]
    return out


def snippet(text: str, query: str | None, chars: int) -> dict[str, Any]:
    """A window of about `chars` characters of `text` around the first match of `query` (case-insensitive)."""
    position = text.lower().find(query.lower()) if query else -1
    if position < 0:
        return {"text": text[:chars], "start": 0, "match": None}
    length = len(query or "")
    start = max(0, position - chars // 4)
    end = min(len(text), start + max(chars, length))
    start = max(0, min(start, end - chars))
    return {"text": text[start:end], "start": start, "match": [position - start, min(position + length, end) - start]}
