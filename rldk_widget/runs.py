"""Runs in a folder, as the rows of a runs table: `Sweep` finds them (discovery.py: nested folders, run ids,
display names, where each run's files are), keeps each run's status, configuration (run_config.py) and summary
statistics (run_summary.py) up to date incrementally, and `runs_table` / `differing_keys` turn them into a
DataFrame and the configuration keys that differ between runs.

A `Sweep.refresh()` finds what appeared or went away (one listing per changed folder, one stat per unchanged one),
then stats each run's files (one stat per file) and reads a run only when they changed — incrementally for our run
files (RunStore), whole for a trainer_state.json (the Trainer rewrites it whole). Records are not kept: they feed
the run's `RunSummary`. With the summary cache (`SummaryCache`, in the user's cache dir), a run whose files have
exactly the signature they had when its summary was cached is not read at all, so a reopened 500-run sweep shows
its table without reading its series.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

from .discovery import (
    CHECKPOINT_FOLDER,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FOLDERS,
    RUN_SUFFIXES,
    RunFinder,
    RunRef,
    ScanResult,
    display_name,
    run_id_for,
)
from .folder_watch import FolderWatch, open_watch
from .fs import LOCAL, FileSystem, LocalFileSystem
from .hf_state import STATE_FILE, TrainerStateReader
from .run_config import (
    FOLDER_CONFIG_FILES,
    IDENTITY_KEYS,
    flatten_config,
    parse_path_params,
    read_folder_config,
    trainer_state_config,
)
from .run_summary import SOURCES, STALE_AFTER_S, RunSummary, SummaryCache, key_metrics, metric_direction
from .store import RunStore

__all__ = [
    "RunFinder", "RunRef", "ScanResult", "Sweep", "SweepUpdate", "default_selection", "differing_keys", "display_name",
    "run_flat_config", "run_id_for", "runs_table",
]


@dataclass
class SweepUpdate:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    """Runs whose files changed since the last refresh (their summary or configuration may differ)."""
    problems: list[str] = field(default_factory=list)
    """Problems met in this refresh (discovery's, and new ones of each run's files)."""
    problem_runs: list[str] = field(default_factory=list)
    """Runs whose files showed new problems in this refresh (`problems()` has them all)."""


@dataclass
class _RunState:
    ref: RunRef
    summary: RunSummary = field(default_factory=RunSummary)
    config: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, list[Any]] | None = None
    reader: Any = None
    from_cache: bool = False
    config_signature: Any = None
    problems: list[str] = field(default_factory=list)
    problems_noted: int = 0
    """Problems ever added to `problems` (which keeps the newest MAX_PROBLEMS_PER_RUN)."""
    conditions: dict[str, str] = field(default_factory=dict)
    """Per file, what is wrong with it now (replaced at each read of it: tailfile.Read.condition)."""
    conditions_noted: int = 0
    """Changes to `conditions` so far."""


MAX_PROBLEMS_PER_RUN = 20
CHECKS_PER_PASS = 24
"""Runs (and folders) a refresh looks at, at most, besides new ones: a sweep of more runs looks at each of them
every ceil(runs / CHECKS_PER_PASS) passes, so a pass costs the same whatever the number of still runs; the runs a
dashboard reads itself (adopted) have their records polled by it every pass."""


class Sweep:
    """Every run of a folder (see `RunFinder`) with its status, configuration and summary, kept up to date by
    `refresh()`: a run is read only when its files changed (one `stat` per run file otherwise), incrementally, and
    records are not kept (the summary is). With `cache` (default: the user's cache dir, `SummaryCache`), a run whose
    files are as they were when its summary was cached is not read at all.

    `table()` is `runs_table` of the runs now; `differing_keys(run_ids)` the configuration keys whose values differ.
    Not thread-safe: call it from one thread at a time (a dashboard: under its lock)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        fs: FileSystem = LOCAL,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_folders: int = DEFAULT_MAX_FOLDERS,
        stale_after: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.time,
        cache: bool | SummaryCache = True,
        cache_interval: float = 30.0,
    ) -> None:
        if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) or not stale_after > 0:
            raise ValueError(f"stale_after must be a positive number of seconds, got {stale_after!r}")
        self.finder = RunFinder(path, fs, max_depth, max_folders)
        self.fs = fs
        self.watch: FolderWatch | None = open_watch() if isinstance(fs, LocalFileSystem) else None
        """Change notifications for the sweep's folders (Linux, local disks): a refresh reads the runs whose files
        changed (and those the watch cannot tell about in turns, as without a watch); every RECHECK_S one refresh
        looks at every run's files."""
        self.finder.watch = self.watch
        self.stale_after = float(stale_after)
        self.clock = clock
        self.cache_interval = cache_interval
        if cache is True:
            self.cache: SummaryCache | None = SummaryCache(_cache_key(self.finder.path, fs))
        else:
            self.cache = cache or None
        self._cached = self.cache.load() if self.cache is not None else {}
        self._cache_dirty = False
        self._cache_saved_at = -math.inf
        self._runs: dict[str, _RunState] = {}
        self._refs: dict[str, RunRef] = {}
        self._order: list[str] = []
        self._owners: dict[tuple[str, str], str] = {}  # (folder, file name) -> run id, for a watch's events
        self._unwatched: list[str] = []  # runs the watch cannot tell about: looked at in turns
        self._unwatched_key: tuple[int, int] = (-1, -1)
        self._unsigned: set[str] = set()
        """Runs not polled yet since they were found or adopted (each refresh polls them, whoever's turn it is)."""
        self._adopted: set[str] = set()
        self._pass = 0
        self.scan_problems: list[str] = []

    # ---- reading ----------------------------------------------------------------------------------------------
    def adopt(self, run_id: str, reader: Any = None) -> RunSummary:
        """The caller reads this run's records itself (a dashboard that loads its series) and feeds its summary
        (`add_points`, `add_alerts`, `reset`): from now on refresh() reads only the run's info and configuration,
        so no run is read twice (a Hugging Face run's configuration comes from the caller's `reader`, a
        TrainerStateReader). Returns the summary to feed, emptied of anything read or cached before."""
        state = self._runs[run_id]
        if reader is not None and state.ref.source == "hf":
            _close(state.reader)
            state.reader = reader
        if run_id not in self._adopted:
            self._adopted.add(run_id)
            info, file_time = dict(state.summary.info), state.summary.file_time
            state.summary = RunSummary()
            state.summary.set_info(info)
            state.summary.touch(file_time)  # when its files last changed is no record the caller re-reads
            state.from_cache = False
            state.signature = None
            self._unsigned.add(run_id)
        return state.summary

    @property
    def runs(self) -> Mapping[str, RunRef]:
        """The runs found, by run id (read-only; the same mapping until runs appear or go away)."""
        return MappingProxyType(self._refs)

    def refresh(self, before_reading: Callable[[list[str]], None] | None = None) -> SweepUpdate:
        """Find runs that appeared or went away, read what changed in each run's files; never raises for what a
        file holds (problems are reported). `before_reading(added run ids)` runs between the two, so a caller can
        `adopt` the new runs it will read itself."""
        watch = self.watch
        if watch is not None:
            watch.drain()
        scan = self.finder.scan()
        update = SweepUpdate(problems=list(scan.problems))
        self.scan_problems = list(scan.problems)
        if self.cache is not None and self.cache.problem:
            update.problems.append(self.cache.problem)
        for ref in scan.removed:
            state = self._runs.pop(ref.run_id, None)
            if state is not None:
                _close(state.reader)
            self._unsigned.discard(ref.run_id)
            self._cache_dirty = True
            update.removed.append(ref.run_id)
        for ref in scan.added:
            self._runs[ref.run_id] = _RunState(ref)
            self._unsigned.add(ref.run_id)
            update.added.append(ref.run_id)
        if scan.added or scan.removed or len(self._order) != len(scan.runs):
            self._runs = {run_id: self._runs[run_id] for run_id in scan.runs}
            self._refs = {run_id: state.ref for run_id, state in self._runs.items()}
            self._order = list(self._runs)
            self._owners = {
                (ref.folder, f"{ref.file_stem}_{suffix}"): run_id
                for run_id, ref in self._refs.items() if ref.source == "rldk" for suffix in RUN_SUFFIXES
            }
        if before_reading is not None and update.added:
            before_reading(list(update.added))
        self._pass += 1
        if watch is None:
            due = dict.fromkeys(self._in_turn(self._order))
        elif watch.lost_seq == watch.seq:  # the recheck (or lost events): every run's files, once
            due = dict.fromkeys(self._order)
            watch.take_changed_files()
        else:  # in turns the runs the watch cannot tell about, and the runs whose files changed
            due = dict.fromkeys(self._in_turn(self._runs_unwatched(watch)))
            owners = self._owners
            due.update(dict.fromkeys(owners[key] for key in watch.take_changed_files() if key in owners))
        if self._unsigned:
            due.update(dict.fromkeys(run_id for run_id in self._order if run_id in self._unsigned))
        for run_id in due:
            state = self._runs[run_id]
            before, conditions_before = state.problems_noted, state.conditions_noted
            try:
                changed = self._poll(state)
            except Exception as err:  # noqa: BLE001 - a reader bug must not stop the other runs
                changed = False
                self._note(state, [f"{state.ref.name}: reading failed ({type(err).__name__}: {err})"])
            if state.signature is not None:
                self._unsigned.discard(run_id)
            if changed:
                update.changed.append(run_id)
            if state.problems_noted != before:
                update.problems.extend(state.problems[-min(state.problems_noted - before, len(state.problems)):])
            if state.conditions_noted != conditions_before:
                update.problems.extend(state.conditions.values())
            if state.problems_noted != before or state.conditions_noted != conditions_before:
                update.problem_runs.append(run_id)
        if self._cache_dirty and self.clock() - self._cache_saved_at >= self.cache_interval:
            self.save_cache()
        return update

    def _in_turn(self, run_ids: list[str]) -> list[str]:
        """A large sweep looks at each still run every `period` passes, not at all of them each pass."""
        period = max(1, math.ceil(len(run_ids) / CHECKS_PER_PASS))
        return run_ids[self._pass % period :: period]

    def _runs_unwatched(self, watch: FolderWatch) -> list[str]:
        """Runs the watch cannot tell about: Hugging Face folders (their checkpoints' state files are in folders of
        their own) and runs in folders it does not watch; worked out again when runs or watched folders change."""
        key = (len(self._order), watch.entries_seq)
        if key != self._unwatched_key:
            self._unwatched_key = key
            before = set(self._unwatched)
            self._unwatched = [run_id for run_id in self._order
                               if self._refs[run_id].source != "rldk" or not watch.watched(self._refs[run_id].folder)]
            # watched from now on: looked at once more, for what changed between its last turn and the watch
            self._unsigned.update(before.difference(self._unwatched).intersection(self._runs))
        return self._unwatched

    def _poll(self, state: _RunState) -> bool:
        signature = self._signature(state.ref)
        if signature == state.signature:
            return False
        if state.signature is None and not state.from_cache and self._use_cache(state, signature):
            return True
        adopted = state.ref.run_id in self._adopted
        if not adopted and (state.from_cache or state.reader is None):
            _close(state.reader)
            state.summary, state.reader, state.from_cache = RunSummary(), None, False
        if state.ref.source == "rldk":
            self._read_ours(state, records=not adopted)
        else:
            self._read_hf(state, signature, records=not adopted)
        times = [entry[1] / 1e9 for name, entry in signature.items() if name != "checkpoint-*" and entry[1]]
        state.summary.touch(max(times) if times else None)
        state.signature = signature
        self._cache_dirty = True
        return True

    def _signature(self, ref: RunRef) -> dict[str, list[Any]]:
        """What the run's files are now, by name: [size, mtime_ns, identity(, version)] (one stat per file: a remote
        folder's listing answers them); for a Hugging Face
        folder also the names of its checkpoint folders (under "checkpoint-*") and the newest one's state file."""
        entries = self.finder.entries(ref.rel)
        signature: dict[str, list[Any]] = {}
        if ref.source == "rldk":
            names = [f"{ref.file_stem}_{suffix}" for suffix in RUN_SUFFIXES]
        else:
            checkpoints = sorted(
                (name for name, entry in entries.items()
                 if entry.kind == "directory" and CHECKPOINT_FOLDER.fullmatch(name)),
                key=lambda name: int(name[len("checkpoint-"):]),
            )
            names = [STATE_FILE, *FOLDER_CONFIG_FILES]
            if checkpoints:  # a checkpoint's state is written after its folder appears: stat the newest one's
                signature["checkpoint-*"] = checkpoints
                names.append(f"{checkpoints[-1]}/{STATE_FILE}")
        for name in names:
            if name.split("/", 1)[0] not in entries:
                continue
            try:
                info = self.fs.stat(f"{ref.folder}/{name}")
            except OSError:
                continue
            identity = list(info.identity) if isinstance(info.identity, tuple) else info.identity
            signature[name] = [info.size, info.mtime_ns, identity]
            if info.version is not None:  # a remote object's ETag: rewritten in the same second with the same size
                signature[name].append(info.version)
        return signature

    def _use_cache(self, state: _RunState, signature: dict[str, list[Any]]) -> bool:
        entry = self._cached.pop(state.ref.run_id, None)
        if not entry or entry.get("location") != list(state.ref.location) or entry.get("signature") != signature:
            return False
        try:
            summary = RunSummary.from_json(entry.get("summary"))
        except ValueError:
            return False
        config, results = entry.get("config"), entry.get("results")
        state.summary = summary
        state.config = config if isinstance(config, dict) else {}
        state.results = results if isinstance(results, dict) else {}
        state.signature = signature
        state.from_cache = True
        return True

    def _read_ours(self, state: _RunState, records: bool = True) -> None:
        ref, summary = state.ref, state.summary
        if state.reader is None:
            state.reader = RunStore(ref.folder, str(ref.file_stem), follow=True, fs=self.fs)
        store: RunStore = state.reader
        while records:
            data = store.read_new()
            for kind in sorted(data.reset):
                summary.reset(kind)
            for kind, prefix in SOURCES.items():
                records = getattr(data, kind)
                if records:
                    summary.add_records(records, prefix)
            summary.add_alerts(data.alerts)
            self._note(state, [f"{ref.name}: {problem}" for problem in data.problems], data.conditions)
            if not data.more:
                break
        info = store.read_info()
        if info is not None:
            summary.set_info(info, replace=True)
            config = info.get("config")
            state.config = config if isinstance(config, dict) else {}

    def _read_hf(self, state: _RunState, signature: dict[str, list[Any]], records: bool = True) -> None:
        ref, summary = state.ref, state.summary
        if state.reader is None:
            state.reader = TrainerStateReader(ref.folder, self.fs)
        reader: TrainerStateReader = state.reader
        if records:
            new, reset, conditions = reader.read_new()
            if reset:
                summary.reset("metrics")
            summary.add_records(new)
            self._note(state, [], conditions)
        entries = self.finder.entries(ref.rel)
        newest = (signature.get("checkpoint-*") or [None])[-1]
        config_signature = [signature.get(name) for name in FOLDER_CONFIG_FILES] + [newest]
        if config_signature != state.config_signature:
            folder_config, state.results, problems = read_folder_config(self.fs, ref.folder, entries, ref.name)
            state.config_signature = config_signature
            state.config = {**{k: v for k, v in state.config.items() if k in ("state", "trial")}, **folder_config}
            self._note(state, problems)
        state.config.update(trainer_state_config(reader.state_fields))
        info: dict[str, Any] = {"max_steps": reader.max_steps, "trainer": reader.trainer_kind}
        runtime = (reader.summary_log or {}).get("train_runtime", state.results.get("train_runtime"))
        if isinstance(runtime, (int, float)) and not isinstance(runtime, bool):
            info["train_runtime"] = runtime
        summary.set_info(info)

    def _note(
        self, state: _RunState, problems: Iterable[str], conditions: Mapping[str, str | None] | None = None
    ) -> None:
        """Problems (each text once) and, per file, what is wrong with it now (None: nothing any more)."""
        for problem in problems:
            if problem not in state.problems:
                state.problems.append(problem)
                state.problems_noted += 1
        del state.problems[:-MAX_PROBLEMS_PER_RUN]
        for source, condition in (conditions or {}).items():
            text = None if condition is None else f"{state.ref.name}: {condition}"
            if state.conditions.get(source) != text:
                if text is None:
                    del state.conditions[source]
                else:
                    state.conditions[source] = text
                state.conditions_noted += 1

    # ---- what a table shows -----------------------------------------------------------------------------------
    def summary(self, run_id: str) -> RunSummary:
        return self._runs[run_id].summary

    def knows(self, run_id: str) -> bool:
        """The run is one of this sweep's (read or not); `runs` builds the whole mapping."""
        return run_id in self._runs

    def problems(self) -> dict[str, list[str]]:
        """Problems by run id ("" for discovery), as the status line or a load report shows them."""
        out = {"": list(self.scan_problems)} if self.scan_problems else {}
        out.update({
            run_id: [*s.problems, *s.conditions.values()] for run_id, s in self._runs.items()
            if s.problems or s.conditions
        })
        return out

    def run_problems(self, run_id: str) -> tuple[list[str], dict[str, str]]:
        """The run's problems (each said once) and its files' conditions now (by file)."""
        state = self._runs.get(run_id)
        return ([], {}) if state is None else (list(state.problems), dict(state.conditions))

    def config(self, run_id: str) -> dict[str, Any]:
        """The run's configuration as flat keys (see `run_config`): recorded by the callback or read from the
        folder's JSON, plus `name.<key>` parameters from its folder and run names when no training arguments were
        recorded."""
        state = self._runs[run_id]
        return run_flat_config(state.ref, state.config, self.finder.root_name)

    def status(self, run_id: str) -> str:
        return self._runs[run_id].summary.status(self.clock(), self.stale_after)

    def duplicate_of(self) -> dict[str, str]:
        """Hugging Face folders that are the output_dir a run recorded by RLDKCallback trained in (its files being
        elsewhere, e.g. `out/rldk_logs`): the folder's run id → the recorded run's id. The same training seen
        twice; a table may leave these rows out."""
        if not isinstance(self.fs, LocalFileSystem):
            return {}
        recorded = {}
        for run_id, state in self._runs.items():
            where = state.config.get("output_path") if state.ref.source == "rldk" else None
            if isinstance(where, str) and where:
                recorded.setdefault(os.path.realpath(where), run_id)
        return {
            run_id: recorded[real]
            for run_id, state in self._runs.items()
            if state.ref.source == "hf" and (real := os.path.realpath(state.ref.folder)) in recorded
        }

    def table(self, run_ids: Iterable[str] | None = None, metrics: Sequence[str] | None = None) -> Any:
        """`runs_table` of the runs (all, or those of `run_ids` in that order) as they are now."""
        ids = list(self._runs) if run_ids is None else [run_id for run_id in run_ids if run_id in self._runs]
        return runs_table(
            [self._runs[run_id].ref for run_id in ids],
            {run_id: self._runs[run_id].summary for run_id in ids},
            {run_id: self.config(run_id) for run_id in ids},
            now=self.clock(),
            stale_after=self.stale_after,
            metrics=metrics,
            duplicate_of=self.duplicate_of(),
        )

    def default_selection(self, limit: int = 10) -> list[str]:
        return default_selection(self.runs.values(), {i: s.summary for i, s in self._runs.items()}, limit)

    def differing_keys(self, run_ids: Iterable[str], ignore: Iterable[str] = IDENTITY_KEYS) -> list[str]:
        ids = [run_id for run_id in run_ids if run_id in self._runs]
        return differing_keys({run_id: self.config(run_id) for run_id in ids}, ids, ignore)

    # ---- the cache ----------------------------------------------------------------------------------------------
    def save_cache(self) -> bool:
        """Write every run's summary to the cache now (False when there is no cache or it cannot be written)."""
        if self.cache is None:
            return False
        entries = {
            run_id: {
                "location": list(state.ref.location),
                "signature": state.signature,
                "summary": state.summary.to_json(),
                "config": state.config,
                "results": state.results,
            }
            for run_id, state in self._runs.items()
            if state.signature is not None
        }
        self._cache_saved_at = self.clock()
        saved = self.cache.save(entries)
        self._cache_dirty = not saved
        return saved

    def close(self) -> None:
        """Write the cache if it changed and close the run files."""
        if self._cache_dirty:
            self.save_cache()
        for state in self._runs.values():
            _close(state.reader)
            state.reader = None
        if self.watch is not None:
            self.watch.close()
            self.watch = self.finder.watch = None

    def __enter__(self) -> "Sweep":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(reader: Any) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()


def _cache_key(path: str, fs: FileSystem) -> str:
    if isinstance(fs, LocalFileSystem):
        return "local:" + os.path.realpath(path)
    return f"{type(fs).__module__}.{type(fs).__qualname__}:{path}"


def run_flat_config(ref: RunRef, config: Mapping[str, Any], root_name: str = "run") -> dict[str, Any]:
    """A run's configuration as flat keys, with the `name.<key>` parameters of its names when `config` has no
    training arguments ("args")."""
    flat = flatten_config(config)
    if not any(key.startswith("args.") for key in flat):
        parts = [p for p in ref.rel.split("/") if p] or ([] if ref.source == "rldk" else [root_name])
        if ref.file_stem:
            parts.append(ref.file_stem)
        for key, value in parse_path_params(parts).items():
            flat.setdefault(f"name.{key}", value)
    return flat


def default_selection(runs: Iterable[RunRef], summaries: Mapping[str, RunSummary], limit: int = 10) -> list[str]:
    """The runs charts show by default: all of them up to `limit`, else the `limit` with the most recent activity
    (newest record or file change; runs without any come last), in their order."""
    refs = list(runs)
    if len(refs) <= limit:
        return [ref.run_id for ref in refs]

    def activity(ref: RunRef) -> float:
        summary = summaries.get(ref.run_id)
        value = summary.last_activity if summary is not None else None
        return value if value is not None else -math.inf

    chosen = {ref.run_id for ref in sorted(refs, key=activity, reverse=True)[:limit]}
    return [ref.run_id for ref in refs if ref.run_id in chosen]


# ---- the table --------------------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ("run_id", "name", "source", "folder", "trainer", "status", "step", "max_steps", "duration_s",
                   "started", "last_activity", "duplicate_of")
_SUMMARY_PREFIXES = ("last.", "best.", "alerts.")


def runs_table(
    runs: Iterable[RunRef],
    summaries: Mapping[str, RunSummary],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    now: float,
    stale_after: float = STALE_AFTER_S,
    metrics: Sequence[str] | None = None,
    duplicate_of: Mapping[str, str] | None = None,
) -> Any:
    """One row per run (a pure function of its arguments): run_id, name (the display name), source, folder,
    trainer, status, step, max_steps, duration_s, started, last_activity, duplicate_of, `last.<m>` and
    `best.<m>` (best only for metrics with a direction) of the key metrics of the runs' trainer kinds (or of
    `metrics`), `alerts.info` / `alerts.warning` / `alerts.critical`, then every configuration key as a column
    (sorted; a key that would shadow one of the columns above gets a `config.` prefix). `DataFrame.attrs` names
    the groups: "metric_columns", "alert_columns", "config_columns"."""
    import pandas as pd

    refs = list(runs)
    configs = configs or {}
    duplicate_of = duplicate_of or {}
    if metrics is None:
        names: dict[str, None] = {}
        for ref in refs:
            summary = summaries.get(ref.run_id)
            names.update(dict.fromkeys(key_metrics(summary.trainer_kind if summary is not None else None)))
        metrics = list(names)
    metric_columns = [c for m in metrics for c in (f"last.{m}", f"best.{m}") if c.startswith("last.")
                      or metric_direction(m) is not None]
    alert_columns = ["alerts.info", "alerts.warning", "alerts.critical"]
    fixed = set(SUMMARY_COLUMNS) | set(metric_columns) | set(alert_columns)
    rows = []
    config_keys: dict[str, None] = {}
    for ref in refs:
        summary = summaries.get(ref.run_id) or RunSummary()
        row: dict[str, Any] = {"run_id": ref.run_id, "name": ref.name, "source": ref.source, "folder": ref.folder}
        values = summary.row(now, stale_after, metrics)
        row.update({k: values.get(k) for k in ("trainer", "status", "step", "max_steps", "duration_s", "started",
                                               "last_activity")})
        row["duplicate_of"] = duplicate_of.get(ref.run_id)
        row.update({column: values.get(column) for column in metric_columns + alert_columns})
        for key, value in (configs.get(ref.run_id) or {}).items():
            column = f"config.{key}" if key in fixed or key.startswith(_SUMMARY_PREFIXES) else key
            row[column] = value
            config_keys[column] = None
        rows.append(row)
    config_columns = sorted(config_keys)
    columns = [*SUMMARY_COLUMNS, *metric_columns, *alert_columns, *config_columns]
    table = pd.DataFrame(rows, columns=columns)
    for column in metric_columns + ["duration_s", "started", "last_activity"]:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    for column in ("step", "max_steps", *alert_columns):
        table[column] = pd.array(table[column].tolist(), dtype="Int64") if len(table) else table[column]
    table.attrs.update(metric_columns=metric_columns, alert_columns=alert_columns, config_columns=config_columns)
    return table


_MISSING = object()


def differing_keys(
    configs: Mapping[str, Mapping[str, Any]],
    run_ids: Iterable[str] | None = None,
    ignore: Iterable[str] = IDENTITY_KEYS,
) -> list[str]:
    """For two or more runs, the flat configuration keys whose values differ between them (a key some of them
    lack counts as differing: for training arguments, a missing key is the default), sorted; [] for fewer than
    two runs. `ignore`: keys that name a run rather than configure it (output_dir, run_name, ...)."""
    ids = list(configs if run_ids is None else run_ids)
    if len(ids) < 2:
        return []
    skipped = set(ignore)
    keys = sorted({key for run_id in ids for key in configs.get(run_id, {})} - skipped)
    out = []
    for key in keys:
        values = [configs.get(run_id, {}).get(key, _MISSING) for run_id in ids]
        first = values[0]
        if any(not _same(first, value) for value in values[1:]):
            out.append(key)
    return out


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
        and not isinstance(b, bool) and a == b
    )
