"""RunReaders: the runs a dashboard reads, each run's reader, and reading what the readers gained into the dashboard.

Runs come from the folder's Sweep (nested folders too) or are the one run a dashboard with a run_id shows, plus the
runs of connected callbacks and of `add_metrics`. A folder of up to LOAD_ALL_RUNS runs has every run read on each
pass; a larger sweep reads the loaded runs (selected, written to, connected, or read from Python) and loads the
others on demand. A run's reader is its RunStore (RLDK run files, followed as they grow) or its TrainerStateReader (a
Hugging Face output folder); what a reader gains goes to the dashboard's `ingest`, chunk by chunk. Reading never
raises: what cannot be read is noted in the ProblemLog.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from .discovery import RunRef
from .folder_watch import FolderWatch
from .fs import LOCAL, FileSystem
from .health import CALLBACK_WRITER
from .hf_state import TrainerStateReader
from .problems import ProblemLog
from .run_summary import RunSummary
from .runs import Sweep
from .sample_service import SampleService
from .series import RunSeries
from .store import SAMPLES_KIND, RunData, RunStore
from .trl_samples import completions_folder

LOAD_ALL_RUNS = 50
"""A folder with up to this many runs has every run's series loaded (and health-checked); a larger sweep loads
the selected runs (and any run Python reads), the others are summarised by the runs table only."""

logger = logging.getLogger(__name__)


class RunReaders:
    """The dashboard's run discovery and readers. Call it holding the dashboard's `lock` (`load` takes it itself);
    it calls back into the dashboard with that lock held:

    - `ingest(run_id, data, write_errors)`: a chunk of the run's records (RunData) for its series and the views;
    - `add_run(run_id)`: a run the dashboard did not know yet;
    - `set_run_info(run_id, max_steps, trainer, started, name=...)`: what a run's files say about it;
    - `recorded_by_callback(run_id)`: the run's info says RLDKCallback wrote it (it has alerts of its own).
    """

    def __init__(
        self,
        output_dir: Path,
        fs: FileSystem,
        sweep: Sweep | None,
        single_ref: RunRef | None,
        lock: threading.RLock,
        series: Mapping[str, RunSeries],
        samples: SampleService,
        problems: ProblemLog,
        *,
        ingest: Callable[[str, RunData, list[str]], None],
        add_run: Callable[[str], object],
        set_run_info: Callable[..., None],
        recorded_by_callback: Callable[[str], None],
    ) -> None:
        """`sweep`: the folder's runs (None when the dashboard shows `single_ref`, its one run); `series`: the
        dashboard's series per run (their columns seed an adopted run's summary, their order is the reading order)."""
        self._output_dir = output_dir
        self._fs = fs
        self._sweep = sweep
        self._single_ref = single_ref
        self._lock = lock
        self._series = series
        self._samples = samples
        self._problems = problems
        self._ingest = ingest
        self._add_run = add_run
        self._set_run_info = set_run_info
        self._recorded_by_callback = recorded_by_callback
        self.stores: dict[str, RunStore] = {}
        """The RunStore of each run with RLDK run files (the folder's, a callback's, add_metrics')."""
        self._hf_readers: dict[str, TrainerStateReader] = {}
        self.refs: dict[str, RunRef] = {}
        """The runs discovered in the folder (or the one run asked for), in discovery order."""
        self._loaded: set[str] = set()
        self._reading: list[str] = []
        self._polled_at: dict[str, int] = {}  # run id -> the watch's pass when a pass last polled it
        self._reading_key: tuple[int, int] = (0, 0)
        self.summaries: dict[str, RunSummary] = {}
        """Runs table summaries the dashboard feeds (the runs it reads: Sweep.adopt)."""

    def discover(self) -> bool:
        """Runs in the folder (the Sweep: nested folders too) or the one run asked for; new ones get a series.
        True when the sweep's runs were added, removed or changed (the runs table is due)."""
        changed = False
        if self._sweep is None:
            refs = {self._single_ref.run_id: self._single_ref} if self._single_ref is not None else {}
        else:
            try:
                update = self._sweep.refresh(before_reading=self._adopt_new_runs)
            except Exception as err:  # noqa: BLE001 - discovery must not break the caller
                self._reading_failed(str(self._output_dir), err)
                return False
            scan_problems = {problem: problem for problem in self._sweep.scan_problems}  # the folders' state now
            self._problems.note(str(self._output_dir), [], [], conditions=scan_problems, all_conditions=True)
            for run_id in update.problem_runs:
                if run_id not in self._loaded:  # a loaded run's own reads report its files
                    problems, conditions = self._sweep.run_problems(run_id)
                    self._problems.note(run_id, problems, [], conditions=conditions, all_conditions=True)
            changed = bool(update.added or update.removed or update.changed)
            if not (update.added or update.removed) and len(self.refs) >= len(self._sweep.runs):
                return changed  # the runs are those of the last pass
            refs = self._sweep.runs
        for run_id, ref in refs.items():
            if run_id not in self.refs:
                self.refs[run_id] = ref
                self._add_run(run_id)
                if ref.name != run_id:
                    self._set_run_info(run_id, name=ref.name)
        return changed

    def read_new(self, selected: list[str]) -> None:
        """A pass's reads (after `discover`): what every run to read gained, records a write error kept in memory
        written first. `selected`: the runs the charts show (a large sweep reads them, and the loaded runs)."""
        watch = self._sweep.watch if self._sweep is not None else None
        for run_id in self._runs_to_read(selected):
            store = self.stores.get(run_id)
            if store is not None:
                store.retry_unwritten()
                if watch is not None and self._unchanged(run_id, store, watch):
                    continue
            self.poll_safely(run_id)
            if watch is not None and run_id in self.stores:  # (the poll may have opened its store)
                self._polled_at[run_id] = watch.seq

    def _unchanged(self, run_id: str, store: RunStore, watch: FolderWatch) -> bool:
        """The watch tells that none of the run's files (nor its TRL completions folders) changed since its last
        poll: a pass skips it. A run with records kept in memory after a write error is polled (to retry)."""
        seen = self._polled_at.get(run_id)
        if seen is None or store.write_errors or store.fs.remote:
            return False
        folder = str(store.output_dir)
        if not watch.watch(folder, pin=True) or watch.changed_since(folder, store.file_names(), seen):
            return False
        for completions in self._samples.completions_dirs(run_id):
            path = str(completions)
            if not watch.watch(path, pin=True) or watch.changed_since(path, None, seen):
                return False
        return True

    def load(self, run_id: str) -> None:
        """Read a run the dashboard knows but has not read yet (a large sweep loads runs on demand)."""
        with self._lock:
            if run_id in self._loaded or run_id not in self.refs:
                return
            self._loaded.add(run_id)
            self._adopt(run_id)
            self.poll_safely(run_id)

    def load_all(self) -> None:
        for run_id in list(self.refs):
            self.load(run_id)

    def store(self, run_id: str, folder: Path | str, file_stem: str | None = None, fs: FileSystem = LOCAL) -> RunStore:
        """The run's RunStore, opened on `folder` (its files `{file_stem}_*`) the first time."""
        store = self.stores.get(run_id)
        if store is None:
            store = self.stores[run_id] = RunStore(folder, file_stem or run_id, follow=True, fs=fs)
            self._loaded.add(run_id)
            self._add_run(run_id)
            self._samples.watch(run_id, samples_path=store.path(SAMPLES_KIND), fs=fs)
        return store

    def writable_store(self, run_id: str) -> RunStore:
        """The store add_metrics / add_alert write to: `{output_dir}/{run_id}_*`, never a nested run's folder."""
        if self._fs.remote:
            raise ValueError(
                f"{self._output_dir} is a remote folder: the dashboard only reads it (add_metrics and add_alert write "
                "local run files). Record the run locally and upload it with RLDKCallback(output_dir=..., "
                "mirror_to=...), or use a dashboard of a local folder"
            )
        ref = self.refs.get(run_id)
        if ref is not None and not ref.writable:
            raise ValueError(
                f"run {run_id!r} ({ref.name}) is read from {ref.folder}; add_metrics and add_alert write only runs "
                f"directly in {self._output_dir}: use another run_id"
            )
        return self.store(run_id, self._output_dir)

    def reader(self, run_id: str) -> RunStore | TrainerStateReader | None:
        """The run's reader: its RunStore (our files, where they are) or its TrainerStateReader."""
        store = self.stores.get(run_id)
        if store is not None:
            return store
        reader = self._hf_readers.get(run_id)
        if reader is not None:
            return reader
        ref = self.refs.get(run_id)
        if ref is None:
            return None
        if ref.source == "hf":
            return self._hf_reader(run_id)
        return self.store(run_id, ref.folder, ref.file_stem, self._fs)

    def poll(self, run_id: str, kinds: tuple[str, ...] | None = None) -> None:
        """Ingest what the run's files (or the files named in `kinds`) gained since the last poll, chunk by chunk."""
        reader = self.reader(run_id)
        if isinstance(reader, TrainerStateReader):
            self._poll_trainer_state(run_id, reader)
            return
        if reader is None:
            return
        store = reader
        while True:
            data = store.read_new(kinds)
            data.problems.extend(
                f"{run_id}: {store.path(kind).name} was replaced, truncated or deleted; the view shows what it holds now"
                for kind in sorted(data.reset)
            )
            self._ingest(run_id, data, store.write_errors)
            if not data.more:
                break
        self._samples.touch(run_id)
        info = store.read_info()
        if info is not None:
            if isinstance(info.get("completions_dir"), str) and not store.fs.remote:  # else a path of another machine
                self._samples.watch(run_id, completions_dir=info["completions_dir"])
            if info.get("writer") == CALLBACK_WRITER:
                self._recorded_by_callback(run_id)
            self._set_run_info(run_id, info.get("max_steps"), info.get("trainer"), info.get("started"))

    def poll_safely(self, run_id: str, kinds: tuple[str, ...] | None = None) -> None:
        """`poll`, with anything unexpected reported instead of raised (the reader's own errors are problems
        already; this is the net for a bug, so that no file can break the caller)."""
        try:
            self.poll(run_id, kinds)
        except Exception as err:  # noqa: BLE001 - a reader bug must not reach the caller or the training loop
            self._reading_failed(run_id, err)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()

    def _adopt_new_runs(self, run_ids: list[str]) -> None:
        """New runs of the sweep that this dashboard will read: it feeds their summaries (no second read)."""
        if len(self._sweep.runs) > LOAD_ALL_RUNS:
            return
        for run_id in run_ids:
            self._adopt(run_id)

    def _adopt(self, run_id: str) -> None:
        if self._sweep is None or run_id in self.summaries or run_id not in self._sweep.runs:
            return
        reader = self._hf_reader(run_id) if self._sweep.runs[run_id].source == "hf" else None
        self.summaries[run_id] = self._sweep.adopt(run_id, reader)
        series = self._series.get(run_id)
        if series is not None and series.columns:
            self.summaries[run_id].add_points(series.columns)

    def _runs_to_read(self, selected: list[str]) -> list[str]:
        """The runs whose files each pass reads: every run of a folder of up to LOAD_ALL_RUNS, else the loaded ones
        (selected, written to, connected, or read from Python); plus runs of connected callbacks elsewhere."""
        if len(self.refs) <= LOAD_ALL_RUNS:
            fresh = set(self.refs) - self._loaded
        else:
            fresh = {run for run in selected if run in self.refs} - self._loaded
        for run_id in fresh:
            self._loaded.add(run_id)
            self._adopt(run_id)
        key = (len(self._series), len(self._loaded))  # both only grow (a store's run is loaded too)
        if key != self._reading_key:
            self._reading_key = key
            self._reading = [run for run in self._series if run in self._loaded]
        return self._reading

    def _hf_reader(self, run_id: str) -> TrainerStateReader:
        """A Hugging Face folder's reader (its trainer_state.json files), and its completions indexed."""
        reader = self._hf_readers.get(run_id)
        if reader is None:
            folder = self.refs[run_id].folder if run_id in self.refs else self._sweep.runs[run_id].folder
            reader = self._hf_readers[run_id] = TrainerStateReader(folder, self._fs)
            self._samples.watch(run_id, completions_dir=completions_folder(folder), fs=self._fs)
        return reader

    def _poll_trainer_state(self, run_id: str, reader: TrainerStateReader) -> None:
        """A Hugging Face output folder: its trainer_state.json log history."""
        self._samples.touch(run_id)
        records, reset, conditions = reader.read_new()
        if not (records or reset or conditions):
            return
        if reader.max_steps is not None or reader.trainer_kind is not None:
            self._set_run_info(run_id, reader.max_steps, reader.trainer_kind)
        data = RunData(metrics=records, reset={"metrics"} if reset else set(), conditions=conditions)
        self._ingest(run_id, data, [])

    def _reading_failed(self, run_id: str, err: BaseException) -> None:
        logger.exception("reading run %s failed", run_id)
        self._problems.note(run_id, [f"{run_id}: reading failed ({type(err).__name__}: {err})"], [])
