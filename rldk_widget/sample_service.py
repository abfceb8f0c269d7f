"""SampleService: a dashboard's completions — one `SampleIndex` per run that has samples (our samples file, TRL's
completions parquet folders), kept up to date on a worker thread, answering the views' page requests (pages.py:
"samples.steps", "samples.step", "samples.sample", "samples.search", "samples.prompt") and `dash.completions()`.

The views learn what exists from a small summary per run (steps, first and last step, reward functions), sent as
the `samples` trait when it changes; the pages themselves travel only on request. For a notebook saved without a
kernel and for `save_html`, `recent_pages` keeps the newest steps' pages within a byte budget.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import orjson

from .pages import PageServer, jsonable
from .sample_index import SampleIndex
from .sample_pages import completions_frame
from .worker import KeyedWorker

logger = logging.getLogger(__name__)

RECENT_BYTES = 256 << 10
"""What the newest steps' pages may take in the saved state, over all runs."""
RECENT_STEPS = 3
RECENT_TEXT_CHARS = 300
SEARCH_BUDGET_S = 0.25
"""A search sends a partial page at least this often ("searched N of M steps") until it is done."""
MAX_QUERY_CHARS = 1000


class SampleService:
    def __init__(
        self,
        pages: PageServer,
        on_change: Callable[[], None],
        on_problems: Callable[[str, list[str], dict[str, str | None]], None],
    ) -> None:
        """`on_change()` is called (on the worker) when a run's steps changed: the dashboard resends summaries;
        `on_problems(run_id, problems, conditions)` when reading a run's samples found damage, or a samples file's
        condition changed (problems.ProblemLog.note)."""
        self._on_change = on_change
        self._on_problems = on_problems
        self._indexes: dict[str, SampleIndex] = {}
        self._lock = threading.Lock()
        self._worker = KeyedWorker(self._update, "rldk-samples")
        for what, handler in (
            ("samples.steps", self._steps),
            ("samples.step", self._step),
            ("samples.sample", self._sample),
            ("samples.search", self._search),
            ("samples.prompt", self._prompt),
        ):
            pages.register(what, handler)

    # ---- sources ---------------------------------------------------------------------------------------------
    def watch(self, run_id: str, samples_path: Path | None = None, completions_dir: str | Path | None = None,
              fs: Any = None) -> None:
        """Index `run_id`'s samples file and/or a TRL completions folder (more folders may be added later)."""
        with self._lock:
            index = self._indexes.get(run_id)
            if index is None:
                kwargs = {"fs": fs} if fs is not None else {}
                index = self._indexes[run_id] = SampleIndex(run_id, samples_path, (), **kwargs)
            if completions_dir is not None:
                index.add_completions_dir(completions_dir)
        self.touch(run_id)

    def completions_dirs(self, run_id: str) -> list[Path]:
        """The TRL completions folders indexed for the run (none for a run without samples)."""
        with self._lock:
            index = self._indexes.get(run_id)
        return index.completions_dirs if index is not None else []

    def touch(self, run_id: str) -> None:
        """The run's sources may have grown: update its index soon (on the worker)."""
        with self._lock:
            if run_id not in self._indexes:
                return
        self._worker.touch(run_id)

    def drain(self) -> None:
        """Index everything pending now, on the calling thread."""
        self._worker.drain()

    def close(self) -> None:
        self._worker.close()

    def _update(self, run_id: str) -> None:
        with self._lock:
            index = self._indexes.get(run_id)
        if index is None:
            return
        changed = False
        while not self._worker.closed:
            update = index.update()
            changed = changed or bool(update.steps) or update.reset
            if update.problems or update.conditions:
                self._on_problems(run_id, update.problems, update.conditions)
            if not update.more:
                break
        if changed:
            self._on_change()

    # ---- what the views and Python read ----------------------------------------------------------------------
    def summaries(self) -> dict[str, dict[str, Any]]:
        """Per run with samples: {steps, first_step, last_step, samples, reward_names, sort_columns, flags}."""
        with self._lock:
            indexes = dict(self._indexes)
        out = {}
        for run_id, index in indexes.items():
            summary = index.summary()
            if summary.get("samples"):
                out[run_id] = jsonable({k: v for k, v in summary.items() if k != "problems"})
        return out

    def recent_pages(self, budget: int = RECENT_BYTES) -> dict[str, dict[str, Any]]:
        """The newest steps' first pages per run (texts cut short), newest first, within `budget` bytes in all."""
        with self._lock:
            indexes = dict(self._indexes)
        out: dict[str, dict[str, Any]] = {}
        used = 0
        for run_id, index in indexes.items():
            for step in reversed(index.steps()[-RECENT_STEPS:]):
                page = jsonable(index.page(step, limit=16, text_chars=RECENT_TEXT_CHARS))
                size = len(orjson.dumps(page))
                if used + size > budget:
                    return out
                out.setdefault(run_id, {})[str(step)] = page
                used += size
        return out

    def completions(self, step: int | None = None, run_id: str | None = None) -> Any:
        self.drain()
        with self._lock:
            indexes = dict(self._indexes)
        return completions_frame(indexes, step=step, run_id=run_id)

    # ---- page handlers ----------------------------------------------------------------------------------------
    def _index(self, params: Mapping[str, Any]) -> SampleIndex:
        run_id = params.get("run_id")
        with self._lock:
            index = self._indexes.get(run_id) if isinstance(run_id, str) else None
        if index is None:
            raise KeyError(f"no samples for run {run_id!r}")
        return index

    def _steps(self, params: dict[str, Any], progress: Any) -> Any:
        index = self._index(params)
        return {"run_id": index.run_id, "steps": index.steps(), "summary": jsonable(index.summary())}

    def _step(self, params: dict[str, Any], progress: Any) -> Any:
        index = self._index(params)
        step = params.get("step")
        steps = index.steps()
        if not steps:
            return {"kind": "step", "run_id": index.run_id, "step": None, "groups": [], "total_rows": 0}
        if not isinstance(step, (int, float)) or isinstance(step, bool) or not math.isfinite(step):
            step = steps[-1]  # no step asked for: the newest
        else:  # a step without samples (a chart point, an alert): the batch logged at or before it, else the first
            step = steps[max(0, bisect.bisect_right(steps, int(step)) - 1)]
        reward_range = params.get("reward_range")
        if reward_range is not None:
            if not isinstance(reward_range, (list, tuple)) or len(reward_range) != 2:
                raise ValueError("reward_range must be [low, high] (either may be null)")
            reward_range = tuple(None if v is None else float(v) for v in reward_range)
        return index.page(
            int(step),
            sort=str(params.get("sort", "index")),
            descending=bool(params.get("descending", False)),
            flags=_flags(params.get("flags")),
            reward_range=reward_range,
            reward_column=str(params.get("reward_column", "reward")),
            group=bool(params.get("group", True)),
            offset=_count(params.get("offset"), 0),
            limit=min(_count(params.get("limit"), 64), 256),
            text_chars=min(_count(params.get("text_chars"), 2000), 20_000),
        )

    def _sample(self, params: dict[str, Any], progress: Any) -> Any:
        index = self._index(params)
        sample = index.sample(str(params.get("id", "")))
        if sample is None:
            raise KeyError(f"no sample {params.get('id')!r}")
        return sample

    def _prompt(self, params: dict[str, Any], progress: Any) -> Any:
        """One prompt across steps: how the answers to it changed over training."""
        index = self._index(params)
        return index.prompt_history(
            str(params.get("prompt_id", "")),
            offset=_count(params.get("offset"), 0),
            limit=min(_count(params.get("limit"), 20), 100),
            text_chars=min(_count(params.get("text_chars"), 400), 20_000),
        )

    def _search(self, params: dict[str, Any], progress: Any) -> Any:
        """Newest steps first; a partial page ("searched N of M steps") after each slice, so the first matches
        show fast and a newer search (same slot) stops this one. A page that stopped at `limit` matches carries a
        `cursor`: sent back, the search goes on from there (the next matches)."""
        index = self._index(params)
        query = str(params.get("query", ""))[:MAX_QUERY_CHARS]
        limit = min(_count(params.get("limit"), 50), 500)
        cursor = params.get("cursor")
        if cursor is not None and not isinstance(cursor, Mapping):
            raise ValueError("a search cursor is the `cursor` of a search page")
        matches: list[Any] = []
        while True:
            page = index.search(query, cursor=cursor, limit=limit - len(matches), budget_s=SEARCH_BUDGET_S)
            matches.extend(page.get("matches", []))
            cursor = page.get("cursor")
            result = {**page, "matches": matches}
            if page.get("done") or cursor is None or len(matches) >= limit:
                return result
            progress(result)


def _count(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return default
    return int(value)


def _flags(value: Any) -> dict[str, bool] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(key): bool(flag) for key, flag in value.items() if isinstance(flag, bool)}
