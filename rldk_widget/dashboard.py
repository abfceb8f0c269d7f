"""RLDKDashboard: the anywidget that shows one or many RL fine-tuning runs live in a notebook.

Data path (docs/protocol.md): every record goes to the run's files first (`RunStore`), and the dashboard
ingests what its stores read back — its own appends, a connected callback's, another process's — through one
path, so nothing is shown twice and nothing shown is missing from disk. Views get a bounded snapshot through the
`metrics` / `alerts` traitlets (computed when state is sent, never reassigned per append) and the appended
points as numbered delta messages, at most ~10 per second. In Python the same traits read the complete data
(traits.py). Reading never raises: what cannot be read is reported in `load_report` and the status line.

The dashboard owns its helpers and wires them together under one lock (`_lock`): RunReaders finds the runs and reads
them (run_readers.py), ProblemLog keeps what could not be read or written (problems.py), snapshot.py builds the
bounded snapshots, auto_refresh.py runs the refresh thread, DeltaChannel sends the deltas (transport.py).
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import anywidget
import pandas as pd
import traitlets

from .alerts import AlertRules
from .arguments import reject_unknown
from .auto_refresh import checked_interval, refresh_thread
from .discovery import RunRef
from .fs import LOCAL, FileSystem, RemotePath, is_url
from .health import HealthChecks
from .hf_state import TrainerStateReader, trainer_state_run_id
from .inbox import EventInbox
from .metrics import RLDKMetrics
from .notebook import in_widget_kernel, register_post_run_cell, say_outside_notebook, unregister_post_run_cell
from .pages import PageServer
from .problems import ProblemLog
from .records import alert_from_file, alert_record, as_list, encode_or_raise, group_by_run, metrics_record
from .run_colors import colour_slots
from .run_readers import RunReaders
from .run_summary import RunSummary
from .runs import Sweep, runs_table
from .runs_payload import table_page, table_payload
from .sample_service import SampleService
from .series import Points, RunSeries
from .snapshot import (
    HTML_POINT_BUDGET, SNAPSHOT_ALERTS, SNAPSHOT_POINT_BUDGET, metrics_snapshot, newest_alerts, series_cap,
)
from .static_output import MAX_PNG_BYTES as PICTURE_PNG_BYTES
from .static_output import StaticOutput, static_output_wanted
from .store import SAMPLES_KIND, RunData, RunStore, default_run_id, validate_run_id
from .subshell import SubshellRoute
from .traits import LiveTrait, MetricsView
from .transport import DeltaChannel

_BUNDLE = Path(__file__).parent / "static" / "widget.js"
_MISSING_BUNDLE = """
export default { render({ el }) {
  el.textContent = "rldk_widget: the front-end bundle is missing (rldk_widget/static/widget.js). " +
    "Install the package with `pip install .` (it runs the npm build) or run `npm run build` in js/.";
} };
"""
_SOURCES = {"metrics": "", "ppo_metrics": "ppo:", "checkpoint_summary": "ckpt:"}
_FILE_OF_EVENT = {"alert": "alerts"}
"""RLDKCallback event kinds whose run file has another name (the others are named as the event)."""
_DEFAULT_PORT = 8501
_CONSTRUCTOR_ARGS = (
    "output_dir", "port", "auto_refresh", "run_id", "refresh_interval", "alert_rules", "static_picture",
    "storage_options", "remote_timeout",
)
WIDGET_KWARGS = ("layout", "tabbable", "tooltip", "_dom_classes")
"""ipywidgets layout arguments users pass to any widget; they go to the widget unchanged."""
APPEND_READ_BACK_S = 0.1
"""`add_metrics` writes at once and reads its records back into the views in passes this far apart; the last
records of a burst are read back within about 1.5 times this after the burst ends."""
DEFAULT_SELECTED = 10
"""Runs the charts show by default: all runs up to this many, else this many with the newest records."""
RUNS_TABLE_INTERVAL_S = 2.0
"""The runs table travels to the views at most this often while runs change."""
RUNS_TABLE_ROWS = 1000
"""Rows of the runs table in the synced state; a larger sweep's table is paged (request "runs.page")."""


def _metrics_snapshot(_value: Any, widget: "RLDKDashboard") -> dict[str, Any]:
    return widget._snapshot_metrics()


def _alerts_snapshot(_value: Any, widget: "RLDKDashboard") -> list[dict[str, Any]]:
    return widget._snapshot_alerts()


class RLDKDashboard(anywidget.AnyWidget):
    """Live charts, header tiles and an alert panel for RL fine-tuning runs.

    `RLDKDashboard(output_dir, port, auto_refresh, run_id)` keeps the signature of the original Streamlit
    dashboard. `port` does nothing in a notebook (the dashboard is a widget, not a server); it is accepted so old
    code runs, and a non-default value gets a warning. With `run_id=None` every run in `output_dir` is shown,
    runs appearing later included, and records added without a run id go to a new `rldk_run_<UTC time>` run.

    `dash.metrics` (run id → {series → pandas Series by step}) and `dash.alerts` (oldest first) read everything
    the dashboard holds; the views get the same through a bounded snapshot plus deltas. `metrics_data` and
    `alerts_data` are the original dashboard's names (flat records as the run files hold them).
    """

    _esm = _BUNDLE if _BUNDLE.exists() else _MISSING_BUNDLE

    metrics = LiveTrait().tag(sync=True, to_json=_metrics_snapshot)
    alerts = LiveTrait().tag(sync=True, to_json=_alerts_snapshot)
    run_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    status = traitlets.Dict({"level": "ok", "message": ""}).tag(sync=True)
    info = traitlets.Dict().tag(sync=True)
    default_charts = traitlets.List(traitlets.Unicode()).tag(sync=True)
    runs_table = traitlets.Dict().tag(sync=True)
    """The runs table (folder mode): {"columns": [{"key", "label", "kind", "group"}], "rows": [[...]], "total"}."""
    samples = traitlets.Dict().tag(sync=True)
    """Per run with completions: its samples' summary (steps, first and last step, reward functions); the pages
    travel on request (sample_service.py)."""
    samples_recent = traitlets.Dict().tag(sync=True)
    """The newest steps' pages of samples (≤ 256 KB), refreshed after each cell: what a saved notebook shows."""
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """The runs the charts show (every view of the widget shows the same); see `select`."""
    run_colors = traitlets.Dict().tag(sync=True)
    """Selected run → its palette slot: a run keeps its colour while it stays selected (run_colors.py)."""

    def __init__(
        self,
        output_dir: str | os.PathLike[str] = "./rldk_logs",
        port: int = _DEFAULT_PORT,
        auto_refresh: bool = True,
        run_id: str | None = None,
        refresh_interval: float = 5.0,
        alert_rules: AlertRules | None = None,
        static_picture: bool | None = None,
        storage_options: Mapping[str, Any] | None = None,
        remote_timeout: float = 10.0,
        **widget_kwargs: Any,
    ) -> None:
        """`alert_rules`: thresholds of the health checks the dashboard runs on runs without alerts of their own
        (default: `AlertRules.for_trainer` of each run's trainer kind). `static_picture`: put a picture of the
        charts and a summary under the live view when it is displayed, kept current, so a saved notebook shows the
        run where widgets cannot (default: yes, except in Colab; static_output.py). `output_dir` may be an fsspec URL
        (`s3://bucket/sweep/`, `gs://`, `hf://`, `memory://`, ...: a remote folder, read through remote_fs.py and never
        written to); `storage_options` go to its file system (credentials, endpoint) and a local folder does not use
        them; `remote_timeout` bounds each read of a remote folder (from_dir, update_data, auto-refresh passes).
        `widget_kwargs`: ipywidgets layout arguments (layout, tabbable, tooltip); anything else is a TypeError."""
        reject_unknown("RLDKDashboard()", widget_kwargs, [*_CONSTRUCTOR_ARGS, *WIDGET_KWARGS])
        self._local = threading.local()
        self._lock = threading.RLock()
        self._refresh_stop: threading.Event | None = None
        self._refresh_thread: threading.Thread | None = None
        self._callbacks: list[Any] = []
        self._table_sent_at = -math.inf
        self._table_dirty = False
        if port != _DEFAULT_PORT:
            warnings.warn(
                "RLDKDashboard(port=...) is ignored: the dashboard is a notebook widget, not a web server.",
                stacklevel=2,
            )
        remote = is_url(output_dir)
        if storage_options and not remote:
            warnings.warn("RLDKDashboard(storage_options=...) is used for remote folders; a local folder ignores it.",
                          stacklevel=2)
        if run_id is not None:
            validate_run_id(run_id)
        checked_interval("refresh_interval", refresh_interval)
        if alert_rules is not None and not isinstance(alert_rules, AlertRules):
            raise TypeError(f"alert_rules must be an AlertRules or None, got {type(alert_rules).__name__}")
        self._fs: FileSystem = LOCAL
        if remote:  # a missing fsspec package raises here, naming what to install
            from .remote_fs import FsspecFileSystem

            self._fs = FsspecFileSystem(str(output_dir), storage_options, timeout=remote_timeout)
        self._runs: dict[str, RunSeries] = {}
        self._alerts: list[dict[str, Any]] = []
        self._changed_since_snapshot = False
        self._snapshot_replaces = False
        self._loading = True
        self._selection_explicit = False
        super().__init__(**widget_kwargs)
        # a remote folder is shown and read by its URL without credentials (remote_fs.redact_url)
        self.output_dir = RemotePath(self._fs.root_url) if self._fs.remote else Path(output_dir)
        self.port = port
        self.run_id = run_id
        self.storage_options = dict(storage_options or {})
        self.refresh_interval = float(refresh_interval)
        self._writer_run_id = run_id or default_run_id()
        self._sweep = Sweep(self.output_dir, fs=self._fs) if run_id is None else None
        self._single_ref = None if run_id is None else _single_run_ref(self.output_dir, run_id)
        self._health = HealthChecks(
            self._runs, self._lock, self._report_computed_alerts, alert_rules,
            trainer_kind=lambda run_id: self.info.get(run_id, {}).get("trainer"),
        )
        self._channel = DeltaChannel(self.send, self._lock)
        self._inbox = EventInbox(self._handle_callback_events, name="rldk-callback-events")
        self._appends = EventInbox(
            self._read_back_appends, name="rldk-append-read-back", coalesce_s=APPEND_READ_BACK_S,
            tail_look_s=APPEND_READ_BACK_S / 2, quiet_s=APPEND_READ_BACK_S,
        )
        self._static_picture = static_output_wanted() if static_picture is None else bool(static_picture)
        self._static = StaticOutput(self._render_picture, self._picture_version)
        self.pages = PageServer(self.send, name="rldk-pages")
        self.pages.register("runs.page", self._runs_page)
        self._samples = SampleService(self.pages, self._samples_grew, self._note_sample_problems)
        self._problems = ProblemLog(self, remote=self._fs.remote)
        self._readers = RunReaders(
            self.output_dir, self._fs, self._sweep, self._single_ref, self._lock, self._runs, self._samples,
            self._problems, ingest=self._ingest, add_run=self._ensure_run, set_run_info=self.set_run_info,
            recorded_by_callback=self._recorded_by_callback,
        )
        self._samples_sent_at = -math.inf
        self._samples_timer: threading.Timer | None = None
        self._closed = False
        self._route = SubshellRoute()
        self._route.open(self.comm)
        self.on_msg(self._on_view_message)
        self._cell_end_hook = register_post_run_cell(self, RLDKDashboard._refresh_saved_state)
        with self.hold_sync():  # the load's run ids, infos and selection go out once, not once per run found
            self.update_data()  # what the folder holds goes to the views as one bounded snapshot, not as deltas
            self._summarise_loaded()
            if not self._selection_explicit:
                self._select_default()  # now that the records are in: the newest runs
                for run_id in self.selected:  # a large sweep's newest runs that were not read yet
                    self._readers.load(run_id)
                self._summarise_loaded()
        self._loading = False
        self._refresh_runs_table(force=True)  # with the summaries the load just completed
        if self._changed_since_snapshot:
            self._send_snapshot(replace=True)
        if auto_refresh:
            self.enable_auto_refresh(refresh_interval)
        self._health.start()  # the loaded runs' checks, after the load they would slow down

    def _summarise_loaded(self) -> None:
        """While loading, reads compute no points: summarise the loaded runs' columns once instead."""
        with self._lock:
            for run_id, summary in self._readers.summaries.items():
                series = self._runs.get(run_id)
                if series is not None and series.columns and not summary.series:
                    summary.add_points(series.columns)

    # ---- public API ------------------------------------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **kwargs: Any) -> "RLDKDashboard":
        """A dashboard over every run in `path` (RLDK run files, or a Hugging Face output folder); keyword
        arguments as for `RLDKDashboard` (run_id defaults to None: every run)."""
        reject_unknown("RLDKDashboard.from_dir()", kwargs, [a for a in _CONSTRUCTOR_ARGS if a != "output_dir"]
                       + list(WIDGET_KWARGS))
        kwargs.setdefault("run_id", None)
        return cls(output_dir=path, **kwargs)

    def add_metrics(self, metrics: RLDKMetrics | Mapping[str, Any] | Iterable[RLDKMetrics | Mapping[str, Any]]) -> None:
        """Append one step's metrics (RLDKMetrics or a flat mapping with `step`), or a list of them. Each record is
        in `{run_id}_metrics.json` when the call returns; the views show it within ~0.2 s (read back in batches,
        at most ten messages a second), `flush()`, `to_dataframe()` and the other readers at once. Bad input
        raises before anything is stored; a storage failure does not raise (the status line says it, the
        records are kept in memory and written once writing works)."""
        now = time.time()
        if type(metrics) is dict:  # one step's metrics: the common case
            record = metrics_record(metrics, self._writer_run_id, now)
            self._append_metrics(record["run_id"], [(record, encode_or_raise(record))])
            return
        encoded = []
        for item in as_list(metrics, "metrics"):
            record = metrics_record(item, self._writer_run_id, now)
            encoded.append((record, encode_or_raise(record)))
        for run_id, pairs in group_by_run(encoded).items():
            self._append_metrics(run_id, pairs)

    def _append_metrics(self, run_id: str, pairs: list[tuple[dict[str, Any], bytes]]) -> None:
        """Write one run's validated records, show a write error (or its end) at once, queue the read-back."""
        with self._lock:
            store = self._readers.writable_store(run_id)
        store.append_encoded("metrics", pairs)
        if store.write_errors or self.status.get("level") == "error":
            with self._lock:
                self._problems.note(run_id, [], store.write_errors)
        self._appends.put(run_id)

    def add_alert(self, alert: Mapping[str, Any]) -> None:
        """Append an alert: `type` and `message` (text), optional `step`, `severity` (info / warning /
        critical, default warning) and `run_id`; a `timestamp` is added when missing. Persisted and shown."""
        record = alert_record(alert, self._writer_run_id)
        line = encode_or_raise(record)
        with self._lock:
            store = self._readers.writable_store(record["run_id"])
            store.append_encoded("alerts", [(record, line)])
            self._readers.poll_safely(record["run_id"], ("alerts",))

    def update_data(self) -> None:
        """Read what was added to the run files since the last call (all runs of `output_dir`, in sub-folders too,
        when run_id is None); a file that shrank or was replaced is read again whole. Never raises: a file or
        folder that cannot be read is reported in `load_report` and the status line, and everything read before
        stays shown. A remote folder's pass is bounded by `remote_timeout`; a remote that does not answer is shown in
        the status line ("remote read 40 s ago: timeout — retrying in 8 s") and auto-refresh backs off."""
        if self._fs.remote:
            self._remote_pass()
            return
        self._update_data()

    def _update_data(self) -> None:
        with self._lock:
            if self._readers.discover():
                self._table_dirty = True
            self._readers.read_new(list(self.selected))
            self._refresh_runs_table()

    def _remote_pass(self, auto: bool = False) -> None:
        """One refresh pass over a remote folder within the timeout (auto-refresh: only once the backoff after a
        failure is over), then the remote's state in the status line."""
        fs = self._fs
        if not auto or fs.health.due():
            with self._lock, fs.deadline():
                fs.begin_pass()
                self._update_data()
        with self._lock:
            self._problems.set_remote_note(fs.health.status())

    def _auto_refresh(self) -> None:
        """An auto-refresh pass (on the refresh thread)."""
        if self._fs.remote:
            self._remote_pass(auto=True)
        else:
            self.update_data()

    def enable_auto_refresh(self, interval: float | None = None) -> None:
        """Call `update_data()` every `interval` seconds on a background thread (stops on `close()`)."""
        if interval is not None:
            self.refresh_interval = checked_interval("interval", interval)
        self.disable_auto_refresh()
        self._refresh_stop, self._refresh_thread = refresh_thread(self)
        self._refresh_thread.start()

    def disable_auto_refresh(self) -> None:
        stop, thread = self._refresh_stop, self._refresh_thread
        self._refresh_stop = self._refresh_thread = None
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def auto_refresh(self) -> bool:
        return self._refresh_thread is not None and self._refresh_thread.is_alive()

    def connect_callback(self, callback: Any) -> None:
        """Show what an `RLDKCallback` records, live: the dashboard subscribes to the callback's listener API
        and reads the run files the callback writes."""
        if not hasattr(callback, "add_listener"):
            raise TypeError(f"expected an RLDKCallback (with add_listener), got {type(callback).__name__}")
        with self._lock:
            self._readers.store(callback.run_id, Path(callback.output_dir))
            self._recorded_by_callback(callback.run_id)
            if callback not in self._callbacks:
                self._callbacks.append(callback)
                callback.add_listener(self._on_callback_event)
            self._readers.poll(callback.run_id)

    def disconnect_callback(self, callback: Any) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
                callback.remove_listener(self._on_callback_event)

    def callback(self, **kwargs: Any) -> Any:
        """A new `RLDKCallback` writing to this dashboard's folder and run, already connected:
        `trainer.add_callback(dash.callback())`."""
        from .callback import RLDKCallback

        if self._fs.remote and "output_dir" not in kwargs:
            raise ValueError(
                f"{self.output_dir} is a remote folder, which the dashboard only reads: write the run locally and "
                f"upload it, dash.callback(output_dir='./rldk_logs', mirror_to='{self.output_dir}')"
            )
        kwargs.setdefault("output_dir", self.output_dir)
        kwargs.setdefault("run_id", self._writer_run_id)
        callback = RLDKCallback(**kwargs)
        self.connect_callback(callback)
        return callback

    def show(self, sidebar: bool = False, title: str = "RLDK") -> None:
        """Display the dashboard in the cell, or with `sidebar=True` in JupyterLab's right sidebar (another
        live view of the same widget)."""
        from IPython.display import display

        if not in_widget_kernel():
            say_outside_notebook(self.output_dir)
            return
        if not sidebar:
            display(self)
            return
        from sidecar import Sidecar

        panel = Sidecar(title=title, anchor="right")
        with panel:
            display(self)

    def _ipython_display_(self, **kwargs: Any) -> None:
        """Displayed in a cell: the live view, and under it the picture that a saved notebook keeps (static_output)."""
        bundle = self._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        if self._static_picture:
            self._static.display(bundle)
        else:
            from IPython.display import display

            display(bundle, raw=True)

    def freeze(self) -> None:
        """Replace the live views displayed in cells by a picture of the charts and a summary (what a notebook shared
        on GitHub or converted with nbconvert shows). `save_html` is the full interactive export; `dash` in a cell
        shows the live view again."""
        self._catch_up()
        self._static.freeze()

    def _picture_version(self) -> Any:
        """Changes whenever what the picture shows may have changed."""
        return (self._channel.seq, len(self._alerts), tuple(self.selected), tuple(self.run_colors.items()),
                tuple(self.default_charts))

    def _picture_data(self) -> Any:
        """What the picture draws: the selected runs in their colours, as the charts show them."""
        from .static_view import StaticData

        with self._lock:
            shown = {run: self._runs[run] for run in self.selected if run in self._runs}
            return StaticData.collect(
                shown, list(shown), list(self.default_charts) or None, newest_alerts(self._alerts),
                dict(self.info), dict(self.status), colour_slots=dict(self.run_colors),
            )

    def _render_picture(self) -> dict[str, Any]:
        from .static_view import render

        picture = render(self._picture_data(), max_png_bytes=PICTURE_PNG_BYTES)
        return {
            "image/png": picture.png_base64(),
            "text/html": picture.html_with_image(),
            "text/plain": f"RLDK dashboard picture at step {picture.step} (the live view is the widget above)",
        }

    def start_dashboard(self) -> None:
        """The original dashboard's entry point: displays the widget in the current cell (outside a notebook it
        says, in one line, what to do instead)."""
        self.show()

    def to_dataframe(self, run_id: str | None = None) -> pd.DataFrame:
        """Metrics as a DataFrame, one row per (run, step), all runs unless `run_id` is given (a large sweep's
        runs not read yet are read now)."""
        self._catch_up()
        if run_id is None:
            self._readers.load_all()
        else:
            self._readers.load(run_id)
        with self._lock:
            if run_id is not None:
                runs = {run_id: self._runs[run_id]} if run_id in self._runs else {}
            else:
                runs = dict(self._runs)
            frames = [series.to_dataframe(name) for name, series in runs.items()]
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return RunSeries().to_dataframe("")
        return pd.concat(frames, ignore_index=True)

    def alerts_dataframe(self) -> pd.DataFrame:
        """The alerts as a DataFrame, oldest first (the rows of `dash.alerts`)."""
        return pd.DataFrame(self.alerts)

    @property
    def metrics_data(self) -> list[dict[str, Any]]:
        """The original dashboard's name: one flat dict per metrics record, as the run files hold it (per run in
        file order, runs in `run_ids` order; records kept in memory after a write error last; `run_id` added
        where a file's records lack it). Reads the files, so it costs a full read of every run."""
        self._catch_up()
        with self._lock:
            order = list(self.run_ids)
        records: list[dict[str, Any]] = []
        for run_id in order:
            reader = self._readers.reader(run_id)
            if isinstance(reader, RunStore):
                run_records = reader.read_all(("metrics",)).metrics + reader.unwritten("metrics")
            elif isinstance(reader, TrainerStateReader):
                run_records = TrainerStateReader(reader.output_dir, reader.fs).read_new()[0]
            else:
                continue
            records.extend(record if "run_id" in record else {**record, "run_id": run_id} for record in run_records)
        return records

    def completions(self, step: int | None = None, run_id: str | None = None) -> pd.DataFrame:
        """The samples behind the rewards: one row per completion (step, prompt, completion, reward, one column per
        reward function, advantage, completion_length, truncated, empty, cut, ...), of every step or one, of every
        run (with a run_id column) or one; each sample once, at the first step it appeared."""
        self._catch_up()
        return self._samples.completions(step=step, run_id=run_id)

    def _samples_grew(self) -> None:
        """A run's samples gained steps (on the samples worker): the views' summary, at most once a second (a change
        within the second is sent when it ends)."""
        wait = self._samples_sent_at + 1.0 - time.monotonic()
        if wait > 0:
            with self._lock:
                if self._samples_timer is None and not self._closed:
                    self._samples_timer = threading.Timer(wait, self._send_samples_summary)
                    self._samples_timer.name = "rldk-samples-summary"
                    self._samples_timer.daemon = True
                    self._samples_timer.start()
            return
        self._send_samples_summary()

    def _note_sample_problems(self, run_id: str, problems: list[str], conditions: dict[str, str | None]) -> None:
        """What reading a run's samples found (on the samples worker): reported like any other file's problems."""
        with self._lock:
            if not self._closed:
                self._problems.note(run_id, problems, [], conditions=conditions)

    def _send_samples_summary(self) -> None:
        with self._lock:
            self._samples_timer = None
            if self._closed:
                return
            self._samples_sent_at = time.monotonic()
            summaries = self._samples.summaries()
            if summaries != self.samples:
                self.samples = summaries

    def runs(self) -> pd.DataFrame:
        """The runs table as a DataFrame: one row per run — id, display name, trainer kind, status (running /
        finished / stopped), step and max steps, duration, last and best values of the trainer's key metrics,
        alert counts by severity (computed alerts included) and the configuration flattened into columns."""
        self._catch_up()
        with self._lock:
            return self._runs_frame()

    def _runs_frame(self) -> pd.DataFrame:
        if self._sweep is not None:
            table = self._sweep.table()
        else:
            refs = [self._single_ref] if self._single_ref is not None else []
            summaries = {}
            for ref in refs:
                summary = summaries[ref.run_id] = RunSummary()
                series = self._runs.get(ref.run_id)
                if series is not None:
                    summary.add_points(series.columns)
                summary.set_info({k: v for k, v in self.info.get(ref.run_id, {}).items() if v is not None})
                summary.add_alerts(a for a in self._alerts if a.get("run_id") == ref.run_id and not a.get("computed"))
            table = runs_table(refs, summaries, now=time.time())
        computed: dict[tuple[str, str], int] = {}
        for alert in self._alerts:
            if alert.get("computed"):
                key = (alert["run_id"], f"alerts.{alert.get('severity', 'warning')}")
                computed[key] = computed.get(key, 0) + 1
        for (run_id, column), count in computed.items():
            if column in table.columns:
                rows = table["run_id"] == run_id
                table.loc[rows, column] = table.loc[rows, column].fillna(0) + count
        return table

    def _refresh_runs_table(self, force: bool = False) -> None:
        """Send the runs table to the views when runs changed (at most every RUNS_TABLE_INTERVAL_S; once a minute
        anyway, as a run's status moves from running to stopped with time)."""
        if self._sweep is None:
            return
        now = time.monotonic()
        due = now - self._table_sent_at >= (RUNS_TABLE_INTERVAL_S if self._table_dirty else 60.0)
        if not (force or due):
            return
        self._table_dirty = False
        self._table_sent_at = now
        self.runs_table = table_payload(self._runs_frame(), RUNS_TABLE_ROWS)

    def _runs_page(self, params: dict[str, Any], _progress: Any) -> dict[str, Any]:
        """A view's "runs.page" request (on the page server's worker): one page of the runs table, sorted and
        filtered (runs_payload.table_page) — how a view shows a sweep of more than RUNS_TABLE_ROWS runs."""
        with self._lock:
            table = self._runs_frame()
        return table_page(table, params, RUNS_TABLE_ROWS)

    @property
    def alerts_data(self) -> list[dict[str, Any]]:
        """The original dashboard's name for `dash.alerts`: every alert, oldest first."""
        return self.alerts

    def figure(self, metrics: list[str] | None = None) -> Any:
        """A plotly `go.Figure` of the same charts (static export, nbconvert, reports)."""
        from .figures import build_figure

        self._catch_up()
        with self._lock:
            return build_figure(self._runs, list(self.run_ids), metrics or list(self.default_charts), list(self._alerts),
                                colour_slots=dict(self.run_colors))

    def save_html(self, path: str | os.PathLike[str], max_points: int = HTML_POINT_BUDGET) -> Path:
        """Write one self-contained HTML file (front-end bundle and data inline, no network needed) that shows
        these charts and alerts in any browser, with no kernel. Series longer than their share of `max_points`
        are decimated keeping first, last, minima, maxima and NaN. Returns the file's path."""
        from .export import write_html

        if not _BUNDLE.exists():
            raise RuntimeError(f"the front-end bundle {_BUNDLE} is missing: install the package with `pip install .`")
        if not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points must be a positive int, got {max_points!r}")
        self._catch_up()
        with self._lock:
            kept_alerts = max(SNAPSHOT_ALERTS, max_points // 100)
            traits = {
                "metrics": metrics_snapshot(0, self._runs, list(self.selected), self._alerts, max_points, kept_alerts),
                "alerts": newest_alerts(self._alerts, kept_alerts),
                "run_ids": list(self.run_ids),
                "status": dict(self.status),
                "info": dict(self.info),
                "default_charts": list(self.default_charts),
                "selected": list(self.selected),
                "run_colors": dict(self.run_colors),
                "samples": dict(self.samples),
                "samples_recent": self._samples.recent_pages(),
            }
            shown = list(self.selected)
            runs = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "") or "no runs"
            if len(self.run_ids) > len(shown):
                runs += f" ({len(shown)} of {len(self.run_ids)} runs)"
            table_note = ""
            if self._sweep is not None:  # the Runs tab, as far as the file holds it (no kernel pages the rest)
                table = traits["runs_table"] = table_payload(self._runs_frame(), RUNS_TABLE_ROWS)
                if table["total"] > len(table["rows"]):
                    table_note = f"; its runs table holds the first {len(table['rows']):,} of {table['total']:,} runs"
                    table["total"] = len(table["rows"])
        saved = time.strftime("%Y-%m-%d %H:%M:%S")
        return write_html(
            path,
            _BUNDLE.read_text(encoding="utf-8"),
            traits,
            title=f"RLDK dashboard: {runs}",
            note=f"RLDK dashboard of {runs}, saved {saved} from {self.output_dir}{table_note}",
        )

    @property
    def load_report(self) -> dict[str, list[str]]:
        """Per run (or folder), what could not be read or written (the same text the status line shows)."""
        self._catch_up()
        with self._lock:
            return self._problems.report(str(self.output_dir))

    @property
    def messages_sent(self) -> int:
        """Delta messages sent to the views so far."""
        return self._channel.messages_sent

    def flush(self) -> None:
        """Send queued points to the views now instead of at the next throttle tick (after reading what a
        connected callback wrote)."""
        self._catch_up()
        self._channel.flush()

    def close(self) -> None:
        """Stop auto-refresh and the background threads, disconnect callbacks, close the run files and the
        widget's comm (what was added is on disk already)."""
        if not hasattr(self, "_appends"):  # a constructor that raised: only the widget itself exists
            super().close()
            return
        with self._lock:
            self._closed = True
            if self._samples_timer is not None:
                self._samples_timer.cancel()
        self.disable_auto_refresh()
        for callback in list(self._callbacks):
            self.disconnect_callback(callback)
        self._appends.drain()
        self._appends.close()
        self._inbox.close()
        self._channel.close()
        self.pages.close()
        self._samples.close()
        self._route.close()
        self._health.close()
        self._static.close()
        unregister_post_run_cell(self._cell_end_hook)
        with self._lock:
            self._readers.close()
            if self._sweep is not None:
                self._sweep.close()
        if self._fs.remote:
            self._fs.close()
        super().close()

    # ---- selection ---------------------------------------------------------------------------------------
    def select(self, run_ids: Iterable[str] | None) -> None:
        """Show these runs on the charts (every view), in this order; None: back to the default (all runs up to
        ten, else the ten with the newest records, following new runs)."""
        with self._lock:
            if run_ids is None:
                self._selection_explicit = False
                self._select_default()
                return
            wanted = list(dict.fromkeys(run_ids))
            unknown = [run for run in wanted if run not in self._runs]
            if unknown:
                raise ValueError(f"unknown run ids {unknown[:5]}; known: {list(self.run_ids)[:20]}")
            self._selection_explicit = True
            self.selected = wanted

    def _select_default(self) -> None:
        runs = list(self.run_ids)
        if len(runs) > DEFAULT_SELECTED:
            runs = sorted(runs, key=self._recency, reverse=True)
            runs = sorted(runs[:DEFAULT_SELECTED], key=list(self.run_ids).index)
        if runs != list(self.selected):
            self.selected = runs

    def _recency(self, run_id: str) -> float:
        """When the run last logged (its newest timestamp); a run with no records yet is a new one: the newest."""
        if self._sweep is not None and self._sweep.knows(run_id):  # read or not: the run's summary knows
            activity = self._sweep.summary(run_id).last_activity
            if activity is not None:
                return activity
        series = self._runs[run_id]
        if not series.record_count:
            return math.inf
        latest = series.latest("timestamp")
        return latest if latest is not None and math.isfinite(latest) else -math.inf

    @traitlets.validate("selected")
    def _valid_selection(self, proposal: Any) -> list[str]:
        """What a view asks for is kept to known runs (a view may hold a stale list)."""
        return [run for run in dict.fromkeys(proposal["value"]) if isinstance(run, str) and run in self._runs]

    @traitlets.observe("selected")
    def _keep_colours(self, change: Any) -> None:
        self.run_colors = colour_slots(self.run_colors, change["new"])

    @traitlets.observe("selected")
    def _on_selection(self, change: Any) -> None:
        """Runs that became selected travel to the views whole (bounded), in order with the deltas; runs no longer
        selected are dropped from the views and get no more deltas."""
        if getattr(self, "_loading", True) or not hasattr(self, "_channel"):
            return
        with self._lock:
            if self._local_selection_change():
                self._selection_explicit = True
            old, new = set(change["old"]), list(change["new"])
            added = [run for run in new if run not in old]
            for run in added:
                self._readers.load(run)  # a large sweep's run not read yet: read it now, so its series travel at once
            cap = series_cap(self._runs, new, SNAPSHOT_POINT_BUDGET)
            for run in added:
                self._channel.replace_run(run, self._runs[run].encoded(cap))
            for run in old - set(new):
                self._channel.drop_run(run)
            self._channel.flush()  # someone chose these runs: no throttle wait (one message per choice)
            self._changed_since_snapshot = True

    def _local_selection_change(self) -> bool:
        """The change came from a view (ipywidgets sets traits from the views while holding `_property_lock`)."""
        return "selected" in getattr(self, "_property_lock", {})

    def set_run_info(
        self, run_id: str, max_steps: int | None = None, trainer_kind: str | None = None, started: float | None = None,
        name: str | None = None,
    ) -> None:
        """Tell the view a run's planned steps (for the ETA tile), its trainer kind (for the default charts) and its
        start time. RLDKCallback and trainer_state.json provide these; call this for runs logged another way.
        Values of the wrong type are ignored and keep what was known before."""
        info = dict(self.info)
        previous = info.get(run_id, {})

        def usable(value: Any, kind: type) -> bool:  # a bool is no count or time; NaN / inf cannot travel
            return isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value) and value > 0

        entry = {
            "max_steps": max_steps if usable(max_steps, int) else previous.get("max_steps"),
            "trainer": trainer_kind if isinstance(trainer_kind, str) else previous.get("trainer"),
            "started": float(started) if usable(started, (int, float)) else previous.get("started"),
            "name": name if isinstance(name, str) and name else previous.get("name"),
        }
        if entry["name"] is None:
            del entry["name"]
        if entry != previous:
            info[run_id] = entry
            self.info = info
        self._update_default_charts(entry["trainer"])

    # ---- ingestion ---------------------------------------------------------------------------------------
    def _ensure_run(self, run_id: str) -> RunSeries:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = RunSeries()
            self.run_ids = [*self.run_ids, run_id]
            if not self._selection_explicit and not self._loading:  # a load selects once, when it is done
                self._select_default()
        return run

    def _ingest(self, run_id: str, data: RunData, write_errors: list[str]) -> None:
        run = self._runs[run_id]
        problems = list(data.problems)
        counted: dict[str, str] = {}
        summary = self._readers.summaries.get(run_id)
        for kind in data.reset:
            if summary is not None:
                summary.reset(kind)
            if kind == "alerts":
                self._alerts = [a for a in self._alerts if a.get("run_id") != run_id or a.get("computed")]
            else:
                run.drop_prefix(_SOURCES[kind])
            if kind == "metrics":
                self._health.restart(run_id)
                self._drop_computed_alerts(run_id)
        points: Points = {}
        for kind, prefix in _SOURCES.items():
            records = getattr(data, kind)
            if not records:
                continue
            added = run.add_records(records, prefix, want_points=not self._loading)
            points.update(added.points)
            if summary is not None:
                self._table_dirty = True
                if not self._loading:
                    summary.add_points(added.points)
            self._problems.count_step_notes(run_id, kind, added.fallback_steps, added.inexact_steps, counted)
        alerts = []
        for item in data.alerts:
            alert, inexact = alert_from_file(item, run_id)
            alerts.append(alert)
            self._problems.count_step_notes(run_id, "alerts", 0, int(inexact), counted)
        self._alerts.extend(alerts)
        if summary is not None and alerts:
            summary.add_alerts(alerts)
        if data.metrics:
            self._health.touch(run_id)
        if self._loading:
            loaded = bool(alerts or data.reset) or any(getattr(data, kind) for kind in _SOURCES)
            self._changed_since_snapshot = self._changed_since_snapshot or loaded
        elif data.reset:
            self._send_snapshot(replace=True)
        elif points or alerts:
            self._channel.push(run_id, points if run_id in self.selected else {}, alerts)
            self._changed_since_snapshot = True
        self._problems.note(run_id, problems, write_errors, counted, data.conditions)

    def _recorded_by_callback(self, run_id: str) -> None:
        """The run has alerts of its own (RLDKCallback wrote it): no health checks, no computed alerts."""
        if not self._health.is_recorded(run_id):
            self._health.recorded_by_callback(run_id)
            self._drop_computed_alerts(run_id)

    def _drop_computed_alerts(self, run_id: str) -> None:
        kept = [a for a in self._alerts if not (a.get("computed") and a.get("run_id") == run_id)]
        if len(kept) != len(self._alerts):
            self._alerts = kept
            self._send_snapshot(replace=True)

    def _report_computed_alerts(self, run_id: str, alerts: list[dict[str, Any]]) -> None:
        """New alerts of the health checks (health.py), under the lock: shown like the others, never written."""
        alerts = [alert_from_file(alert, run_id)[0] for alert in alerts]  # JSON-safe values, as alerts from files
        self._alerts.extend(alerts)
        self._table_dirty = True
        if self._loading:
            self._changed_since_snapshot = True
            return
        self._channel.push(run_id, {}, alerts)
        self._changed_since_snapshot = True

    def _on_callback_event(self, kind: str, record: Mapping[str, Any]) -> None:
        """RLDKCallback's listener, on the training thread: run info (twice per run) is applied at once; for a
        written record a key goes to the inbox, which reads the file back in one pass per ~100 ms (inbox.py)."""
        callback_run = record.get("run_id") if isinstance(record, Mapping) else None
        run_id = callback_run if isinstance(callback_run, str) else None
        if kind == "run_info":
            with self._lock:
                run_id = run_id or next((cb.run_id for cb in self._callbacks), None)
                if run_id is not None:
                    self._ensure_run(run_id)
                    self.set_run_info(run_id, record.get("max_steps"), record.get("trainer"), record.get("started"))
                    if isinstance(record.get("completions_dir"), str):
                        self._samples.watch(run_id, completions_dir=record["completions_dir"])
            return
        for callback in tuple(self._callbacks):
            if run_id is None or callback.run_id == run_id:
                self._inbox.put((callback.run_id, _FILE_OF_EVENT.get(kind, kind)))

    def _catch_up(self) -> None:
        """Before a reader: connected callbacks write the logs they queued, then the inboxes read back what they and
        add_metrics wrote (call without holding the dashboard's lock)."""
        for callback in tuple(self._callbacks):
            callback.flush()
        self._inbox.drain()
        self._appends.drain()
        self._health.drain()
        self._samples.drain()

    def _handle_callback_events(self, events: list[Any]) -> None:
        """The callback inbox's pass (on the training thread when due, else on its worker): read what connected
        callbacks wrote (`events`: (run_id, file kind) pairs, repeated once per record)."""
        with self._lock:
            for run_id, kind in sorted(set(events)):
                callback = next((cb for cb in self._callbacks if cb.run_id == run_id), None)
                if callback is None:
                    continue
                self._readers.store(run_id, Path(callback.output_dir))
                if kind == SAMPLES_KIND:
                    self._samples.touch(run_id)  # the index reads them (sample_service.py), not the series
                    continue
                self._readers.poll_safely(run_id, (kind,))
                self.set_run_info(run_id, callback.max_steps, callback.trainer_kind)

    def _read_back_appends(self, run_ids: list[str]) -> None:
        """The add_metrics inbox's pass: read back the runs add_metrics appended to since the last pass."""
        with self._lock:
            for run_id in dict.fromkeys(run_ids):
                if run_id in self._readers.stores:
                    self._readers.poll_safely(run_id, ("metrics",))
            if self._appends.on_worker():
                self._channel.send_tail()

    def _live_value(self, name: str) -> Any:
        """The Python value of the `metrics` / `alerts` traits (traits.py): everything held now. While the widget
        builds its state for the views (`get_state`), nothing is read back (the caller may hold the lock)."""
        owned = getattr(self._lock, "_is_owned", lambda: False)()  # reading back under the lock could deadlock
        if not getattr(self._local, "serializing", False) and hasattr(self, "_appends") and not owned:
            self._catch_up()
        with self._lock:
            if name == "alerts":
                return [dict(alert) for alert in self._alerts]
            # a run is read when first asked for; `_readers` is looked up then (get_state reads this trait before
            # __init__ has built the readers)
            return MetricsView(self._runs, list(self.run_ids), self._lock, lambda run_id: self._readers.load(run_id))

    def get_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        previous = getattr(self._local, "serializing", False)
        self._local.serializing = True
        try:
            return super().get_state(*args, **kwargs)
        finally:
            self._local.serializing = previous

    def _update_default_charts(self, trainer_kind: Any) -> None:
        if not isinstance(trainer_kind, str) or self.default_charts:
            return
        try:
            from .trl_keys import default_charts
        except ImportError:
            return
        self.default_charts = list(default_charts(trainer_kind))

    # ---- transport ---------------------------------------------------------------------------------------
    def send_state(self, key: str | list[str] | None = None) -> None:
        with self._lock:
            super().send_state(key)

    def _send_snapshot(self, replace: bool) -> None:
        with self._lock:
            self._snapshot_replaces = replace
            self.send_state(["metrics", "alerts"])
            self._snapshot_replaces = False
            self._changed_since_snapshot = False

    def _snapshot_metrics(self) -> dict[str, Any]:
        with self._lock:
            replace = getattr(self, "_snapshot_replaces", False)
            seq = self._channel.snapshot_seq(replace) if hasattr(self, "_channel") else 0
            return metrics_snapshot(seq, self._runs, list(self.selected), self._alerts)

    def _refresh_saved_state(self, *_args: Any) -> None:
        """After each cell: bring the traitlet snapshot up to date, so a notebook saved now holds the run
        (bounded by SNAPSHOT_POINT_BUDGET). Views already in sync ignore it and keep their full data."""
        self._catch_up()
        self._static.after_cell()
        if self.samples:
            recent = self._samples.recent_pages()
            if recent != self.samples_recent:
                self.samples_recent = recent
        with self._lock:
            if not self._changed_since_snapshot or self.comm is None:
                return
            self._channel.flush()
            self._send_snapshot(replace=False)

    def _snapshot_alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return newest_alerts(self._alerts)

    def _on_view_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """A view's message (on the kernel's main thread between cells, or on the widget's subshell while a cell
        runs: subshell.py): a snapshot after a gap, or a page request (pages.py)."""
        if not isinstance(content, Mapping):
            return
        if content.get("type") == "request_snapshot":
            self._catch_up()
            self._send_snapshot(replace=False)
        elif content.get("type") == "request":
            self.pages.submit(content)


def _single_run_ref(output_dir: Path, run_id: str) -> RunRef:
    """The one run a dashboard with a run_id shows: its files in output_dir, or the folder's trainer_state.json
    when the id is the folder's (`hf_<folder name>`)."""
    if run_id == trainer_state_run_id(output_dir):
        return RunRef(run_id, run_id, "hf", str(output_dir), "")
    return RunRef(run_id, run_id, "rldk", str(output_dir), "", run_id)
