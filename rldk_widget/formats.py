"""The run files' formats, as pure functions on bytes: a JSON array of records (one object per line when we write
it) and CSV with a header line. No I/O here.

Readers keep every complete record, whatever the damage: a value that does not parse (a torn write, flipped
bytes, a stray bracket, NUL, invalid UTF-8, a token too long or nested too deep for the parser) is skipped up to
the next line that starts a record, and only an incomplete value at the very end (a write in progress, or
interrupted) is left unread. Integers are read exactly (orjson would turn those beyond 64 bits into floats).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

WHITESPACE = b" \t\r\n"
BOM = b"\xef\xbb\xbf"
ARRAY_CLOSING = b"\n]\n"
"""What every complete write leaves after the last record of a JSON array file."""

_LONG_INT_VALUE = re.compile(rb":[ \t]*-?\d{19}")
"""An object's value of 19 or more digits may be an integer orjson cannot hold exactly (beyond 64 bits it silently
gives a float); looking only after a colon keeps long float fractions (0.000123…) from matching."""
_LINE_STARTING_A_RECORD = re.compile(r"\n[ \t\r]*(?=\{)")
"""After damage, a record may start again at the first `{` on the damaged line or at a line that starts with `{`
(one record per line is how run files are written; pretty-printed files start each record on a line too)."""
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
"""A complete JSON string (escapes included)."""
_NESTING_SKIP = 900
"""Braces to step over after a value nested deeper than the parser's recursion limit (about 1000): fewer would
fail the same way again, at a cost of ~1000 levels each time."""
_MAX_INT_DIGITS = 4300
"""Python's default limit for int(str); longer integer tokens are read as floats (±inf)."""


def dumps_record(record: Mapping[str, Any]) -> bytes:
    """One record as JSON bytes. NaN/±Inf are written as the `NaN`/`Infinity` tokens Python's json module
    reads back (orjson would turn them into null and lose them). Raises TypeError/ValueError for what JSON
    cannot hold (a lone surrogate, an int beyond 64 bits)."""
    try:
        line = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        if not _has_nonfinite(record):
            raise
    else:
        if b"null" not in line or not _has_nonfinite(record):  # orjson writes NaN and ±Inf as null
            return line
    return json.dumps(record, allow_nan=True, ensure_ascii=False, default=str).encode("utf-8")


def _has_nonfinite(record: Mapping[str, Any]) -> bool:
    return any(isinstance(value, float) and not math.isfinite(value) for value in record.values())


def _exact_int(token: str) -> int | float:
    if len(token.lstrip("-")) > _MAX_INT_DIGITS:
        return float(token)  # ±inf: beyond any float, and beyond what int() parses by default
    return int(token)


_DECODER = json.JSONDecoder(parse_int=_exact_int, strict=False)


def loads(data: bytes) -> Any:
    """Parse one JSON document: orjson when no integer can exceed 64 bits, else exactly with the json module.
    Raises ValueError (never RecursionError) for anything that does not parse."""
    if not _LONG_INT_VALUE.search(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as err:
        raise ValueError(str(err)) from None


@dataclass
class ArrayChunk:
    """What one chunk of a JSON array file held: its records (objects), how many bytes were read to the end of
    the last complete value (the rest waits for more bytes), and the problems found."""

    records: list[dict[str, Any]] = field(default_factory=list)
    consumed: int = 0
    problems: list[str] = field(default_factory=list)
    values: int = 0
    opened: bool = False
    """The chunk began with the array's opening bracket (only asked of a chunk at the start of the file)."""
    single_object: bool = False
    torn: bool = False
    """A final chunk ends inside a record (a write in progress, or an interrupted writer): left unread."""


def parse_array_chunk(chunk: bytes, at_start: bool, final: bool, name: str) -> ArrayChunk:
    """Parse a chunk of a JSON array file. `at_start`: the chunk begins at byte 0; `final`: it ends at the end
    of the file (else a value cut at the chunk's end is simply read with the next chunk)."""
    out = ArrayChunk()
    position = 0
    if at_start:
        if chunk.startswith(BOM):
            position = len(BOM)
        stripped = chunk[position:].lstrip(WHITESPACE)
        if not stripped:
            return out
        position = len(chunk) - len(stripped)
        if stripped[:1] == b"[":
            out.opened = True
            position += 1
        elif stripped[:1] == b"{" and final and _single_object(stripped, out, name):
            out.consumed = len(chunk)
            return out
        else:
            out.problems.append(f"{name}: not a JSON array; read value by value")
    end = len(chunk) if final else chunk.rfind(b"\n") + 1
    if end > position and not _parse_fast(chunk, position, end, final, out):
        _parse_tolerantly(chunk, position, end, final, out, name)
    if out.consumed == 0 and out.opened:
        out.consumed = position
    skipped = out.values - len(out.records)
    if skipped:
        out.problems.append(f"{name}: skipped {skipped} item(s) that are not objects")
    return out


def _single_object(stripped: bytes, out: ArrayChunk, name: str) -> bool:
    """A legacy file holding one bare object: read it as one record."""
    try:
        value = loads(stripped)
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    out.records.append(_repair_text(value))
    out.values = 1
    out.single_object = True
    out.problems.append(f"{name}: a single object, not an array (read as one record)")
    return True


def _parse_fast(chunk: bytes, start: int, end: int, final: bool, out: ArrayChunk) -> bool:
    """The undamaged case in one parser call: `v, v, v` (and the closing bracket in a final chunk)."""
    body = chunk[start:end].rstrip(WHITESPACE)
    if final and body.endswith(b"]"):
        body = body[:-1].rstrip(WHITESPACE)
    body = body.rstrip(b",").rstrip(WHITESPACE)
    leading = body.lstrip(WHITESPACE)
    if leading.startswith(b","):
        leading = leading[1:]
    if not leading.strip(WHITESPACE):
        return True
    if not body.endswith(b"}"):
        return False
    try:
        values = loads(b"[" + leading + b"]")
    except ValueError:
        return False
    out.values += len(values)
    out.records.extend(v for v in values if isinstance(v, dict))
    out.consumed = start + len(body)  # body is chunk[start:] without what trails the last value
    return True


def _parse_tolerantly(chunk: bytes, start: int, end: int, final: bool, out: ArrayChunk, name: str) -> None:
    """Value by value; damage is skipped to the next record start, an incomplete value at the end is left. A
    bracket anywhere but at the very end is damage too, stepped over like a separator. A final chunk's last line
    that does not end with the array's `]` may be a write in progress: what fails to parse on it is left whole for
    the next read (`torn`), never stepped over."""
    text = chunk[start:end].decode("utf-8", "surrogateescape")
    length = len(text)
    closing = len(text.rstrip(" \t\r\n")) - 1  # where a final `]` would be
    last_line = text.rfind("\n") + 1
    open_tail: bool | None = None  # a final chunk's last line may be a write in progress (worked out once)
    position = 0
    last_end = 0
    damaged = 0
    torn = False
    while True:
        while position < length and text[position] in " \t\r\n,":
            position += 1
        if position >= length:
            break
        if text[position] in "[]":
            if position == closing and text[position] == "]":
                break  # the array's closing bracket
            damaged += 1
            position += 1
            continue
        try:
            value, after = _DECODER.raw_decode(text, position)
        except (ValueError, RecursionError) as err:
            if final and position >= last_line:
                if open_tail is None:
                    open_tail = not _closes_the_array(text[last_line:])
                if open_tail:
                    # the file's unterminated last line: a write still in progress (or a killed writer's) that ends
                    # there, not damage to step over; resyncing at a `{` inside it would read a nested object as a
                    # record and move past the start of a record that the next read finds whole
                    torn = True
                    break
            # nested too deep: the next braces are nested as deep, so try again past as many as the parser took
            skip = _NESTING_SKIP if isinstance(err, RecursionError) else 1
            resume = _next_record_start(text, position, skip)
            if resume is None:
                torn = True
                break
            damaged += 1
            position = resume
            continue
        out.values += 1
        if isinstance(value, dict):
            out.records.append(_repair_text(value))
        position = last_end = after
    if last_end:
        out.consumed = start + len(text[:last_end].encode("utf-8", "surrogateescape"))
    if damaged:
        out.problems.append(f"{name}: skipped {damaged} damaged part(s) between records (complete records kept)")
    out.torn = torn and final


def _closes_the_array(line: str) -> bool:
    """Whether a file's unterminated last line ends as a complete file does: outside any string, with the array's
    own `]` (the line closes more brackets than it opens). A torn write ends inside a string or an object."""
    bare = _JSON_STRING.sub("", line).rstrip(" \t\r\n")
    if '"' in bare or not bare.endswith("]"):
        return False
    return bare.count("{") + bare.count("[") < bare.count("}") + bare.count("]")


def _next_record_start(text: str, failed_at: int, skip: int = 1) -> int | None:
    """Where to try a record again after one failed at `failed_at`: the `skip`-th next `{` on the same line (damage
    just before a record), else the next line starting with `{`."""
    line_end = text.find("\n", failed_at + 1)
    if line_end < 0:
        line_end = len(text)
    brace = failed_at
    for _ in range(skip):
        brace = text.find("{", brace + 1, line_end)
        if brace < 0:
            break
    else:
        return brace
    match = _LINE_STARTING_A_RECORD.search(text, line_end)
    return match.end() if match else None


def _repair_text(value: Any) -> Any:
    """Text decoded with surrogateescape (invalid UTF-8 kept as lone surrogates) with U+FFFD in their place."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_repair_text(k): _repair_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repair_text(v) for v in value]
    return value


# ---- CSV ---------------------------------------------------------------------------------------------------
_CSV_LIMIT_LOCK = threading.Lock()
_MAX_JOINED_LINES = 16
"""A quoted cell may span lines; a row is joined over at most this many lines, and only when that gives exactly
the header's number of cells (an unbalanced quote from damage must not swallow the rows after it)."""


@dataclass
class CsvChunk:
    rows: list[list[str]] = field(default_factory=list)
    consumed: int = 0
    torn: bool = False


def parse_csv_chunk(chunk: bytes, final: bool, width: int | None) -> CsvChunk:
    """Complete lines of a CSV chunk as rows of cells (a BOM at the start removed by the caller); `width` is the
    header's number of cells when known. An incomplete last line is left for later (`torn` in a final chunk), and so
    is a row whose quoted cell is still open where the complete lines end (the rest of a multi-line cell that a
    writer has not written yet, or that lies past the chunk)."""
    complete = chunk.rfind(b"\n") + 1
    out = CsvChunk(consumed=complete, torn=final and chunk[complete:].strip(WHITESPACE) != b"")
    raw_lines = chunk[:complete].split(b"\n")[:-1]
    lines = [part.decode("utf-8", "replace") for part in raw_lines]
    index = 0
    offset = 0
    while index < len(lines):
        line = lines[index].rstrip("\r")
        start = offset
        offset += len(raw_lines[index]) + 1
        index += 1
        if not line.strip():
            continue
        if '"' not in line:
            out.rows.append(line.split(","))
            width = width or len(out.rows[-1])
            continue
        quoted = _quoted_row(lines, index - 1, width)
        if quoted is None:
            out.consumed, out.torn = start, final
            break
        row, used = quoted
        offset += sum(len(part) + 1 for part in raw_lines[index : index + used - 1])
        index += used - 1
        out.rows.append(row)
        width = width or len(row)
    return out


def _quoted_row(lines: list[str], first: int, width: int | None) -> tuple[list[str], int] | None:
    """The row starting at `lines[first]`, joined with the following lines only when a quoted cell spans them; None
    when its quote is still open at the last line (the row goes on past what was read)."""
    line = lines[first].rstrip("\r")
    if line.count('"') % 2 and width:
        available = len(lines) - first
        for count in range(2, min(_MAX_JOINED_LINES, available) + 1):
            joined = "\n".join(part.rstrip("\r") for part in lines[first : first + count])
            if joined.count('"') % 2 == 0:
                row = _csv_cells(joined)
                if len(row) == width:
                    return row, count
                break
        else:
            if available < _MAX_JOINED_LINES:
                return None
    return _csv_cells(line), 1


def _csv_cells(text: str) -> list[str]:
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        with _CSV_LIMIT_LOCK:  # a cell longer than csv's field limit (131,072 characters): read it anyway
            previous = csv.field_size_limit()
            csv.field_size_limit(max(previous, len(text) + 1))
            try:
                return next(csv.reader([text]), [])
            except csv.Error:
                return text.split(",")
            finally:
                csv.field_size_limit(previous)


def parse_cell(cell: str) -> Any:
    """A CSV cell as int, float or text."""
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def format_rows(header: list[str] | None, rows: list[list[str]]) -> bytes:
    """CSV bytes of an optional header line and rows of cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
