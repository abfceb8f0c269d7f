"""The pages of a SampleIndex (see `SampleIndex.page`, `sample`, `prompt_history`, `dataframe` for the formats):
the numbers of a row from the index's columns, its texts from the record the index reads for it, group statistics
per prompt, sorting and filters, and the DataFrame of `dash.completions()`. Every page is JSON-able: texts are
plain strings, NaN and ±Inf are null."""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .samples import FLAG_NAMES, extra_value, json_number, key_hex, parse_key, render_text

if TYPE_CHECKING:
    from .sample_index import SampleIndex

PREVIEW_CHARS = 2000
"""Characters of each text a page carries by default (`sample()` gives the whole stored text)."""
SORT_COLUMNS = ("index", "reward", "advantage", "completion_length", "completion_chars", "prompt_chars",
                "group_mean", "group_std")
TRUNCATED_UNKNOWN = -1
SAMPLES_FILE = 0
"""Source id of the samples file; parquet files get ids from 1, records held in memory -1."""
IN_MEMORY = -1


def row_numbers(index: "SampleIndex", row: int) -> dict[str, Any]:
    cols = index._cols
    truncated = int(cols["truncated"][row])
    length = float(cols["completion_length"][row])
    return {
        "reward": json_number(float(cols["reward"][row])),
        "rewards": {name: json_number(float(column[row])) for name, column in cols.rewards.items()
                    if name in index._reward_names},
        "advantage": json_number(float(cols["advantage"][row])),
        "completion_length": None if math.isnan(length) else int(length),
        "truncated": None if truncated == TRUNCATED_UNKNOWN else bool(truncated),
        "empty": bool(cols["empty"][row]),
        "cut": bool(cols["cut"][row]),
        "completion_chars": int(cols["completion_chars"][row]),
        "prompt_chars": int(cols["prompt_chars"][row]),
    }


def sample_id(index: "SampleIndex", row: int) -> str:
    return f"{int(index._cols['step'][row])}:{key_hex(int(index._cols['key'][row]))}"


def row_identity(index: "SampleIndex", row: int) -> dict[str, Any]:
    """Which sample a row is: {"id", "step", "index" (in its batch), "prompt_id"}."""
    cols = index._cols
    return {"id": sample_id(index, row), "step": int(cols["step"][row]), "index": int(cols["index"][row]),
            "prompt_id": key_hex(int(cols["prompt_key"][row]))}


def row_dict(index: "SampleIndex", row: int, record: Mapping[str, Any], text_chars: int, with_prompt: bool
             ) -> dict[str, Any]:
    out = row_identity(index, row)
    out["source"] = _source_name(int(index._cols["source"][row]), record)
    if with_prompt:
        out["prompt"], out["prompt_more"] = _preview(record.get("prompt"), text_chars)
    out["completion"], out["completion_more"] = _preview(record.get("completion"), text_chars)
    out.update(row_numbers(index, row))
    extra = record.get("extra")
    out["extra"] = {str(k): extra_value(v) for k, v in extra.items()} if isinstance(extra, Mapping) else {}
    if "missing" in record:
        out["missing"] = str(record["missing"])
    return out


def group_stats(index: "SampleIndex", rows: np.ndarray) -> dict[int, dict[str, Any]]:
    """Per prompt among `rows`: size, reward mean, spread (sample std like TRL's), min, max, identical."""
    cols = index._cols
    prompts = cols["prompt_key"][rows]
    rewards = cols["reward"][rows]
    stats: dict[int, dict[str, Any]] = {}
    for prompt in dict.fromkeys(prompts.tolist()):
        values = rewards[prompts == prompt]
        finite = values[~np.isnan(values)]
        size = int(values.size)
        stats[prompt] = {
            "size": size,
            "reward_mean": json_number(float(finite.mean())) if finite.size else None,
            "reward_std": json_number(float(finite.std(ddof=1))) if finite.size > 1 else None,
            "reward_min": json_number(float(finite.min())) if finite.size else None,
            "reward_max": json_number(float(finite.max())) if finite.size else None,
            "identical_rewards": size > 1 and (finite.size == 0 or (finite.size == size and
                                                                   bool(finite.min() == finite.max()))),
        }
    return stats


def sort_values(index: "SampleIndex", rows: np.ndarray, column: str, stats: dict[int, dict[str, Any]]) -> np.ndarray:
    cols = index._cols
    if column in ("group_mean", "group_std"):
        name = "reward_mean" if column == "group_mean" else "reward_std"
        prompts = cols["prompt_key"][rows].tolist()
        return np.array([np.nan if stats[p][name] is None else stats[p][name] for p in prompts], float)
    if column in cols.data and column in SORT_COLUMNS:
        return cols[column][rows].astype(float)
    if column in cols.rewards:
        return cols.rewards[column][rows]
    raise ValueError(f"cannot sort by {column!r}: use one of {index.sort_columns()}")


def filter_rows(index: "SampleIndex", rows: np.ndarray, flags: Mapping[str, bool] | None,
                reward_range: Sequence[float | None] | None, reward_column: str, stats: dict[int, dict[str, Any]]
                ) -> np.ndarray:
    cols = index._cols
    keep = np.ones(rows.size, bool)
    for flag, wanted in (flags or {}).items():
        if flag == "truncated":
            values = cols["truncated"][rows]
            keep &= (values == 1) if wanted else (values == 0)
        elif flag in ("empty", "cut"):
            keep &= cols[flag][rows] == bool(wanted)
        elif flag == "identical":
            identical = np.array([stats[p]["identical_rewards"] for p in cols["prompt_key"][rows].tolist()], bool)
            keep &= identical == bool(wanted)
        else:
            raise ValueError(f"unknown flag {flag!r}: use {[*FLAG_NAMES, 'identical']}")
    if reward_range is not None:
        low, high = reward_range
        if reward_column == "reward":
            values = cols["reward"][rows]
        elif reward_column in cols.rewards:
            values = cols.rewards[reward_column][rows]
        else:
            raise ValueError(f"unknown reward column {reward_column!r}")
        with np.errstate(invalid="ignore"):
            if low is not None:
                keep &= values >= low
            if high is not None:
                keep &= values <= high
    return rows[keep]


def step_page(
    index: "SampleIndex",
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
    """`SampleIndex.page`."""
    with index._lock:
        rows = index._visible_rows(step)
        stats = group_stats(index, rows)
        matched = filter_rows(index, rows, flags, reward_range, reward_column, stats)
        if sort != "index" or descending:
            values = sort_values(index, matched, sort, stats)
            missing = np.isnan(values)
            keys = np.where(missing, 0.0, -values if descending else values)
            matched = matched[np.lexsort((keys, missing))]  # stable: ties keep the trainer's order
        steps = index._steps()
        before, after = bisect.bisect_left(steps, step), bisect.bisect_right(steps, step)
        out: dict[str, Any] = {
            "kind": "step",
            "run_id": index.run_id,
            "step": step,
            "prev_step": steps[before - 1] if before > 0 else None,
            "next_step": steps[after] if after < len(steps) else None,
            "reward_names": list(index._reward_names),
            "sort": {"column": sort, "descending": bool(descending)},
            "total_rows": int(rows.size),
            "matched_rows": int(matched.size),
            "total_groups": len(stats),
            "offset": offset,
            "limit": limit,
        }
        if group:
            order: dict[int, list[int]] = {}
            for row, prompt in zip(matched.tolist(), index._cols["prompt_key"][matched].tolist()):
                order.setdefault(prompt, []).append(row)
            groups = list(order.items())
            out["matched_groups"] = len(groups)
            chosen = groups[offset : offset + limit]
            out["more"] = offset + limit < len(groups)
            records = index._records([row for _, group_rows in chosen for row in group_rows])
            out["groups"] = []
            for prompt, group_rows in chosen:
                first = records[group_rows[0]]
                text, more = _preview(first.get("prompt"), text_chars)
                out["groups"].append({
                    "prompt_id": key_hex(prompt), "prompt": text, "prompt_more": more,
                    "prompt_chars": int(index._cols["prompt_chars"][group_rows[0]]), **stats[prompt],
                    "shown": len(group_rows),
                    "rows": [row_dict(index, row, records[row], text_chars, False) for row in group_rows],
                })
        else:
            chosen_rows = matched[offset : offset + limit].tolist()
            out["matched_groups"] = len(set(index._cols["prompt_key"][matched].tolist()))
            out["more"] = offset + limit < matched.size
            records = index._records(chosen_rows)
            out["rows"] = [row_dict(index, row, records[row], text_chars, True) for row in chosen_rows]
        return out


def find_row(index: "SampleIndex", sample_id: str) -> int | None:
    step_text, _, key_text = str(sample_id).partition(":")
    key = parse_key(key_text)
    try:
        step = int(step_text)
    except ValueError:
        return None
    if key is None:
        return None
    rows = index._visible_rows(step)
    found = rows[index._cols["key"][rows] == np.uint64(key)]
    return int(found[0]) if found.size else None


def sample_page(index: "SampleIndex", sample_id: str) -> dict[str, Any] | None:
    with index._lock:
        row = find_row(index, sample_id)
        if row is None:
            return None
        record = index._records([row])[row]
        out = row_dict(index, row, record, -1, True)
        cut = record.get("cut")
        out["cut_fields"] = [str(c) for c in cut] if isinstance(cut, list) else []
        return out


def prompt_page(index: "SampleIndex", prompt_id: str, offset: int, limit: int, text_chars: int) -> dict[str, Any]:
    with index._lock:
        key = parse_key(prompt_id)
        cols = index._cols
        if key is None:
            rows = np.empty(0, np.int64)
        else:
            rows = np.flatnonzero((cols["prompt_key"] == np.uint64(key)) & ~cols["hidden"])
        steps = np.unique(cols["step"][rows]).tolist() if rows.size else []
        chosen = steps[offset : offset + limit]
        chosen_rows = rows[np.isin(cols["step"][rows], chosen)] if chosen else rows[:0]
        chosen_rows = chosen_rows[np.lexsort((cols["index"][chosen_rows], cols["step"][chosen_rows]))]
        records = index._records(chosen_rows.tolist())
        out: dict[str, Any] = {
            "kind": "prompt", "run_id": index.run_id, "prompt_id": prompt_id, "prompt": "", "prompt_more": False,
            "total_steps": len(steps), "offset": offset, "limit": limit, "more": offset + limit < len(steps),
            "steps": [],
        }
        if chosen_rows.size:
            out["prompt"], out["prompt_more"] = _preview(records[int(chosen_rows[0])].get("prompt"), text_chars)
        for step in chosen:
            step_rows = chosen_rows[cols["step"][chosen_rows] == step]
            stats = group_stats(index, step_rows)[key]  # type: ignore[index]
            out["steps"].append({"step": int(step), **stats, "rows": [
                row_dict(index, int(row), records[int(row)], text_chars, False) for row in step_rows]})
        return out


def dataframe(index: "SampleIndex", step: int | None = None) -> Any:
    import pandas as pd

    with index._lock:
        steps = [step] if step is not None else index._steps()
        names = list(index._reward_names)
        fixed = {"step", "prompt", "completion", "reward", "advantage", "completion_length", "truncated",
                 "empty", "cut", "id", "prompt_id", "source"}
        labels = {name: (name if name not in fixed else f"rewards/{name}") for name in names}
        data: dict[str, list[Any]] = {k: [] for k in ("step", "prompt", "completion", "reward", *labels.values(),
                                                      "advantage", "completion_length", "truncated", "empty",
                                                      "cut", "id", "prompt_id", "source")}
        cols = index._cols
        for batch_start in range(0, len(steps), 64):
            rows = [int(r) for s in steps[batch_start : batch_start + 64] for r in index._visible_rows(s)]
            records = index._records(rows)
            for row in rows:
                record = records[row]
                data["step"].append(int(cols["step"][row]))
                data["prompt"].append(_text(record.get("prompt")))
                data["completion"].append(_text(record.get("completion")))
                data["reward"].append(float(cols["reward"][row]))
                for name, label in labels.items():
                    column = cols.rewards.get(name)
                    data[label].append(float(column[row]) if column is not None else math.nan)
                data["advantage"].append(float(cols["advantage"][row]))
                data["completion_length"].append(float(cols["completion_length"][row]))
                truncated = int(cols["truncated"][row])
                data["truncated"].append(None if truncated == TRUNCATED_UNKNOWN else bool(truncated))
                data["empty"].append(bool(cols["empty"][row]))
                data["cut"].append(bool(cols["cut"][row]))
                data["id"].append(sample_id(index, row))
                data["prompt_id"].append(key_hex(int(cols["prompt_key"][row])))
                data["source"].append(_source_name(int(cols["source"][row]), record))
    frame = pd.DataFrame(data)
    frame["step"] = frame["step"].astype("int64")
    frame["completion_length"] = frame["completion_length"].astype("Int64")
    frame["truncated"] = frame["truncated"].astype("boolean")
    return frame


def _text(value: Any) -> str:
    return value if isinstance(value, str) else render_text(value)


def _preview(value: Any, chars: int) -> tuple[str, bool]:
    text = _text(value)
    if chars < 0 or len(text) <= chars:
        return text, False
    return text[:chars], True


def _source_name(source: int, record: Mapping[str, Any]) -> str:
    if source == SAMPLES_FILE or source == IN_MEMORY:
        value = record.get("source")
        return value if isinstance(value, str) and len(value) <= 32 else "samples"
    return "parquet"


def completions_frame(indexes: Mapping[str, "SampleIndex"], step: int | None = None, run_id: str | None = None) -> Any:
    """`dash.completions(step=None, run_id=None)` over the indexes of several runs (run id → index): the rows of
    `SampleIndex.dataframe` with a leading `run_id` column, runs in the mapping's order; one run when `run_id` is
    given (an unknown one gives no rows)."""
    import pandas as pd

    chosen = [(r, ix) for r, ix in indexes.items() if run_id is None or r == run_id]
    frames = []
    for name, index in chosen:
        frame = index.dataframe(step)
        frame.insert(0, "run_id", name)
        frames.append(frame)
    if not frames:
        frame = _empty_frame()
        frame.insert(0, "run_id", pd.Series(dtype=object))
        return frame
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _empty_frame() -> Any:
    from .sample_index import SampleIndex

    return SampleIndex("", None).dataframe()
