"""TrainerStateReader: reads any Hugging Face Trainer run from its `trainer_state.json` files.

The Trainer rewrites `trainer_state.json` (its `log_history` list) whole at every checkpoint, in
`output_dir/checkpoint-N/` and at the end in `output_dir/`. The reader takes the most complete history among
them, maps each log through `trl_keys.map_log` like the callback does, and on later calls returns only the
entries past the ones it already returned; a history that got shorter (a new run in the same folder) is read
again whole.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from .store import RUN_ID_PATTERN

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def trainer_state_run_id(output_dir: Path) -> str:
    """`hf_<folder name>`, made safe as a run id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(output_dir).resolve().name)[:120] or "run"
    run_id = f"hf_{name}"
    return run_id if RUN_ID_PATTERN.fullmatch(run_id) else "hf_run"


class TrainerStateReader:
    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir)
        self.run_id = trainer_state_run_id(self.output_dir)
        self._seen: dict[Path, tuple[int, int]] = {}
        self._returned = 0
        self._first_entry: Any = None
        self.max_steps: int | None = None
        self.trainer_kind: str | None = None

    def candidates(self) -> list[Path]:
        paths = [self.output_dir / STATE_FILE]
        try:
            for entry in os.scandir(self.output_dir):
                if entry.is_dir(follow_symlinks=False) and _CHECKPOINT.fullmatch(entry.name):
                    paths.append(Path(entry.path) / STATE_FILE)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [p for p in paths if p.is_file()]

    def read_new(self) -> tuple[list[dict[str, Any]], bool, list[str]]:
        """Mapped records not returned before, whether they replace what was returned, and problems."""
        changed = []
        for path in self.candidates():
            try:
                stat = path.stat()
            except OSError:
                continue
            signature = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(path) != signature:
                changed.append((path, signature))
        if not changed:
            return [], False, []
        problems: list[str] = []
        best: list[dict[str, Any]] | None = None
        best_state: dict[str, Any] = {}
        for path, signature in changed:
            try:
                state = json.loads(path.read_text(encoding="utf-8", errors="replace"))
            except (OSError, ValueError) as err:
                problems.append(f"{path.parent.name}/{STATE_FILE}: unreadable ({err})")
                continue
            self._seen[path] = signature
            history = state.get("log_history") if isinstance(state, dict) else None
            if not isinstance(history, list):
                problems.append(f"{path.parent.name}/{STATE_FILE}: no log_history list")
                continue
            if best is None or len(history) > len(best):
                best, best_state = history, state
        if best is None:
            return [], False, problems
        if isinstance(best_state.get("max_steps"), int):
            self.max_steps = best_state["max_steps"]
        reset = len(best) < self._returned or (bool(best) and best[0] != self._first_entry and self._returned > 0)
        start = 0 if reset else self._returned
        if len(best) <= start and not reset:
            return [], False, problems
        self._first_entry = best[0] if best else None
        self._returned = len(best)
        return self._map(best[start:]), reset, problems

    def _map(self, entries: list[Any]) -> list[dict[str, Any]]:
        from .trl_keys import detect_trainer_kind, is_summary_log, map_log

        records = []
        for entry in entries:
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
