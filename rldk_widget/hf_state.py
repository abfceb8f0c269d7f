"""TrainerStateReader: reads any Hugging Face Trainer run from its `trainer_state.json` files.

The Trainer rewrites `trainer_state.json` (its `log_history` list) whole at every checkpoint, in
`output_dir/checkpoint-N/` and at the end in `output_dir/`. The reader takes the most complete history among
them, maps each log through `trl_keys.map_log` like the callback does, and on later calls returns only the
entries past the ones it already returned; a history that got shorter (a new run in the same folder) is read
again whole.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from . import formats
from .fs import LOCAL, FileSystem, as_path, describe_error, is_url, signature as file_signature
from .store import RUN_ID_PATTERN

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
STATE_MAX_BYTES = 1 << 30
"""A trainer_state.json is read whole (the Trainer rewrites it whole); larger ones are reported, not read."""
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def trainer_state_run_id(output_dir: Path | str) -> str:
    """`hf_<folder name>`, made safe as a run id (a URL's last part: `s3://bucket/grpo-out/` gives `hf_grpo-out`)."""
    if is_url(output_dir):
        base = str(output_dir).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    else:
        base = Path(output_dir).resolve().name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:120] or "run"
    run_id = f"hf_{name}"
    return run_id if RUN_ID_PATTERN.fullmatch(run_id) else "hf_run"


class TrainerStateReader:
    def __init__(self, output_dir: str | os.PathLike[str], fs: FileSystem = LOCAL) -> None:
        self.output_dir = as_path(output_dir, fs)
        self.fs = fs
        self.run_id = trainer_state_run_id(self.output_dir)
        self._seen: dict[Path, tuple[Any, int, int]] = {}
        self._conditions: dict[str, str] = {}  # label of a state file -> why it cannot be used now
        self._returned = 0
        self._first_entry: Any = None
        self.max_steps: int | None = None
        self.trainer_kind: str | None = None
        self.state_fields: dict[str, Any] = {}
        """The other fields of the state file the history was last taken from (max_steps, train_batch_size,
        trial_params, ...), for the run's configuration."""
        self.summary_log: dict[str, Any] | None = None
        """The end-of-training entry of the history (train_runtime, ...) when there is one: the run finished."""

    def candidates(self) -> list[tuple[Path, Any]]:
        """The state files there are, with their (identity, size, mtime): the folder's own and each checkpoint's."""
        try:
            entries = self.fs.listdir(self.output_dir)
        except OSError:
            return []
        found = []
        if entries.get(STATE_FILE) is not None and entries[STATE_FILE].kind == "file":
            found.append((self.output_dir / STATE_FILE, entries[STATE_FILE]))
        for name, entry in sorted(entries.items()):
            if entry.kind == "directory" and _CHECKPOINT.fullmatch(name):
                path = self.output_dir / name / STATE_FILE
                try:
                    found.append((path, self.fs.stat(path)))
                except OSError:
                    continue
        return [(path, info) for path, info in found if info.kind == "file"]

    def read_new(self) -> tuple[list[dict[str, Any]], bool, dict[str, str | None]]:
        """Mapped records not returned before, whether they replace what was returned, and the state files whose
        condition changed: what is wrong with each now, or None. A state file is rewritten in place at each save (a
        read can find it empty or cut), so what is wrong with one holds only until it reads whole."""
        conditions = dict(self._conditions)
        changed = []
        candidates = self.candidates()
        labels = {_label(path) for path, _ in candidates}
        for label in [label for label in conditions if label not in labels]:
            del conditions[label]  # gone (a checkpoint deleted by save_total_limit)
        for path, info in candidates:
            signature = file_signature(info)
            if self._seen.get(path) != signature:
                changed.append((path, signature))
        best: list[dict[str, Any]] | None = None
        best_state: dict[str, Any] = {}
        for path, signature in changed:
            label = _label(path)
            try:
                info, data = self.fs.read(path, 0, STATE_MAX_BYTES)
                if info.size > STATE_MAX_BYTES:
                    raise ValueError(f"larger than {STATE_MAX_BYTES >> 20} MiB")
                state = formats.loads(data)
            except OSError as err:
                conditions[label] = f"{label}: cannot read ({describe_error(err)})"
                continue
            except ValueError as err:
                conditions[label] = f"{label}: unreadable ({err})"
                continue
            self._seen[path] = signature
            history = state.get("log_history") if isinstance(state, dict) else None
            if not isinstance(history, list):
                conditions[label] = f"{label}: no log_history list"
                continue
            conditions.pop(label, None)
            if best is None or len(history) > len(best):
                best, best_state = history, state
        updates = {
            label: conditions.get(label)
            for label in {*self._conditions, *conditions}
            if conditions.get(label) != self._conditions.get(label)
        }
        self._conditions = conditions
        if best is None:
            return [], False, updates
        if isinstance(best_state.get("max_steps"), int):
            self.max_steps = best_state["max_steps"]
        self.state_fields = {key: value for key, value in best_state.items() if key != "log_history"}
        reset = len(best) < self._returned or (bool(best) and best[0] != self._first_entry and self._returned > 0)
        start = 0 if reset else self._returned
        if start == 0:
            self.summary_log = None
        if len(best) <= start and not reset:
            return [], False, updates
        self._first_entry = best[0] if best else None
        self._returned = len(best)
        return self._map(best[start:]), reset, updates

    def _map(self, entries: list[Any]) -> list[dict[str, Any]]:
        from .trl_keys import detect_trainer_kind, is_summary_log, map_log

        records = []
        for entry in entries:
            if isinstance(entry, dict) and is_summary_log(entry):
                self.summary_log = entry
            if not isinstance(entry, dict) or not isinstance(entry.get("step"), int) or is_summary_log(entry):
                continue
            logs = {k: v for k, v in entry.items() if k != "step"}
            if self.trainer_kind is None:
                self.trainer_kind = detect_trainer_kind(logs)
            try:
                records.append(map_log(logs, entry["step"], self.trainer_kind).to_dict())
            except (TypeError, ValueError) as err:
                logger.info("skipped a log_history entry: %s", err)
        return records


def _label(path: Path) -> str:
    """How a state file is named in problem texts: `checkpoint-500/trainer_state.json`."""
    return f"{path.parent.name}/{STATE_FILE}"
