"""RunSummary: the cheap, incremental statistics of one run a runs table shows — trainer kind, step and planned
steps, duration, status, the last and best value of every series, alert counts by severity — and SummaryCache,
which keeps them on disk so a reopened sweep need not read every series again.

Feeding: whoever reads a run's records passes them on as it ingests them — `add_records` (flat records as the run
files hold them, O(keys) per record) or `add_points` (the columns `RunSeries.add_records` returns, vectorised) —
plus `add_alerts`, `set_info` (run info) and `touch` (a file's modification time). Nothing is kept per record:
per series a count, the last value and its step, and the smallest and largest finite value. A file read again
whole (`RunData.reset`) is `reset(kind)` first.

Status (`status`): "finished" when the run info or the trainer's end-of-training summary says so (`finished`,
`train_runtime`) or the last step reached the planned steps; "running" when the newest record (its timestamp, or
for files without timestamps the newest file modification) is less than `stale_after` seconds old (10 minutes by
default); "stopped" otherwise.

Key metrics (`key_metrics(kind)`): the first four of the trainer's default charts (`trl_keys.default_charts`)
other than the learning rate and the gradient norm. "Best" (`metric_direction`) is the largest value for rewards,
accuracies, margins and scores (not of rejected completions), the smallest for losses; other metrics (KL, entropy,
lengths) have a last value only. Non-finite values count for "last" (a NaN loss shows as NaN) but never for "best".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from . import formats
from .metrics import as_number
from .series import read_step
from .trl_keys import default_charts, detect_trainer_kind, normalize_kind

SOURCES = {"metrics": "", "ppo_metrics": "ppo:", "checkpoint_summary": "ckpt:"}
"""Series name prefix per run-file kind (as the dashboard names the series of each file)."""
SEVERITIES = ("info", "warning", "critical")
STALE_AFTER_S = 600.0
KEY_METRIC_COUNT = 4
_NOT_KEY = frozenset({"learning_rate", "grad_norm"})
_NON_SERIES = frozenset({"step", "run_id"})
SUMMARY_FORMAT = 1


def key_metrics(trainer_kind: str | None) -> list[str]:
    """The metrics a runs table shows for a trainer kind (see the module docstring)."""
    return [name for name in default_charts(trainer_kind) if name not in _NOT_KEY][:KEY_METRIC_COUNT]


def metric_direction(name: str) -> str | None:
    """"max" when a larger value is better, "min" when a smaller one is, None when neither (see module doc)."""
    base = name.split(":", 1)[-1].removeprefix("eval_").lower()
    if "loss" in base:
        return "min"
    if "rejected" in base:
        return None
    if any(word in base for word in ("reward", "accurac", "margin", "score")):
        return "max"
    return None


class RunSummary:
    """Statistics of one run, fed incrementally; `row()` gives the runs table's values."""

    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {}
        """Per series: [count, last value, step of the last value, smallest finite, largest finite] (±inf when no
        finite value was seen)."""
        self.step: float | None = None
        self.records = 0
        self.alert_counts: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        self.info: dict[str, Any] = {}
        self.record_time: float | None = None
        """The newest record or run-info timestamp (the writer's clock)."""
        self.file_time: float | None = None
        """The newest file modification time a reader noted (for runs whose records carry no timestamp)."""
        self._previous_step: dict[str, float] = {}

    # ---- feeding ------------------------------------------------------------------------------------------------
    def add_records(self, records: Iterable[Mapping[str, Any]], prefix: str = "") -> None:
        """Flat records of one file (`prefix` as in SOURCES). A record without a usable step counts at the previous
        record's step + 1, as the dashboard places it."""
        series = self.series
        previous = self._previous_step.get(prefix, -1.0)
        highest = -1.0
        count = 0
        for record in records:
            raw = record.get("step")
            if type(raw) is int and raw >= 0:
                step: float = raw
            else:
                usable, _exact = read_step(raw)
                step = previous + 1 if usable is None else usable
            previous = step
            if step > highest:
                highest = step
            count += 1
            for key, value in record.items():
                if key in _NON_SERIES:
                    continue
                if type(value) is not float:
                    if value is None or isinstance(value, str):
                        continue
                    value = as_number(value)
                    if value is None:
                        continue
                name = prefix + key if prefix else key
                stats = series.get(name)
                if stats is None:
                    stats = series[name] = [0, math.nan, step, math.inf, -math.inf]
                stats[0] += 1
                stats[1] = value
                stats[2] = step
                if value - value == 0.0:  # finite
                    if value < stats[3]:
                        stats[3] = value
                    if value > stats[4]:
                        stats[4] = value
        self._previous_step[prefix] = previous
        if count:
            if not prefix:
                self.records += count
                self._note_step(highest)
            self._note_timestamp()

    def add_points(self, points: Mapping[str, tuple[Any, Any]]) -> None:
        """The new points of one ingest, by series name (prefixed), as `RunSeries.add_records(...).points` gives
        them: arrays of steps and values. Vectorised: a few numpy calls per series, whatever the number of points."""
        most = 0
        for name, (xs, ys) in points.items():
            steps = np.asarray(xs, dtype="f8")
            values = np.asarray(ys, dtype="f8")
            if not len(values):
                continue
            stats = self.series.get(name)
            if stats is None:
                stats = self.series[name] = [0, math.nan, float(steps[-1]), math.inf, -math.inf]
            stats[0] += len(values)
            stats[1] = float(values[-1])
            stats[2] = float(steps[-1])
            finite = values[np.isfinite(values)]
            if len(finite):
                stats[3] = min(stats[3], float(finite.min()))
                stats[4] = max(stats[4], float(finite.max()))
            if ":" not in name:
                most = max(most, len(values))
                self._note_step(float(steps.max()))
        self.records += most
        self._note_timestamp()

    def add_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        for alert in alerts:
            severity = alert.get("severity") if isinstance(alert, Mapping) else None
            self.alert_counts[severity if severity in SEVERITIES else "warning"] += 1

    def set_info(self, info: Mapping[str, Any], replace: bool = False) -> None:
        """Run info (`{run_id}_run_info.json`, or what a trainer_state.json says): max_steps, trainer, started,
        finished, train_runtime, timestamp. Later values replace earlier ones; None keeps what was known.
        `replace=True`: `info` is the whole run info now (the file was replaced: a new run under the same id forgets
        that the old one finished)."""
        if replace:
            self.info = {}
        for key, value in info.items():
            if value is not None and key != "config":
                self.info[key] = value
        for key in ("timestamp", "finished", "started"):
            stamp = _finite(info.get(key))
            if stamp is not None:
                self.record_time = stamp if self.record_time is None else max(self.record_time, stamp)

    def touch(self, mtime: float | None) -> None:
        """A run file was modified at `mtime` (seconds since the epoch)."""
        stamp = _finite(mtime)
        if stamp is not None:
            self.file_time = stamp if self.file_time is None else max(self.file_time, stamp)

    def reset(self, kind: str) -> None:
        """Forget what one file kind gave ("metrics", "ppo_metrics", "checkpoint_summary", "alerts"; "all": all)."""
        if kind in ("alerts", "all"):
            self.alert_counts = dict.fromkeys(SEVERITIES, 0)
        for file_kind, prefix in SOURCES.items():
            if kind not in (file_kind, "all"):
                continue
            for name in [n for n in self.series if (n.startswith(prefix) if prefix else not _prefixed(n))]:
                del self.series[name]
            self._previous_step.pop(prefix, None)
            if not prefix:
                self.step = None
                self.records = 0
        if kind == "all":
            self.info = {}
            self.record_time = self.file_time = None

    def _note_step(self, step: float) -> None:
        if math.isfinite(step) and (self.step is None or step > self.step):
            self.step = step

    def _note_timestamp(self) -> None:
        stats = self.series.get("timestamp")
        if stats is not None and stats[4] > -math.inf:
            self.record_time = stats[4] if self.record_time is None else max(self.record_time, stats[4])

    # ---- reading --------------------------------------------------------------------------------------------------
    @property
    def trainer_kind(self) -> str | None:
        return normalize_kind(self.info.get("trainer")) or detect_trainer_kind(
            name for name in self.series if not _prefixed(name)
        )

    @property
    def max_steps(self) -> int | None:
        value = self.info.get("max_steps")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    @property
    def last_activity(self) -> float | None:
        """When the run last wrote something: its newest record or run-info timestamp, else the newest file
        modification noted (a copied folder gets new modification times; its records keep their own)."""
        return self.record_time if self.record_time is not None else self.file_time

    @property
    def finished(self) -> bool:
        if self.info.get("finished") is not None or self.info.get("train_runtime") is not None:
            return True
        return self.max_steps is not None and self.step is not None and self.step >= self.max_steps

    def status(self, now: float, stale_after: float = STALE_AFTER_S) -> str:
        if self.finished:
            return "finished"
        activity = self.last_activity
        return "running" if activity is not None and now - activity < stale_after else "stopped"

    @property
    def started(self) -> float | None:
        started = _finite(self.info.get("started"))
        if started is not None:
            return started
        stats = self.series.get("timestamp")
        return stats[3] if stats is not None and stats[3] < math.inf else None

    @property
    def duration(self) -> float | None:
        """Seconds of training: the trainer's train_runtime when it finished, else from the start to the newest
        record (a stopped run's duration stops growing)."""
        runtime = _finite(self.info.get("train_runtime"))
        if runtime is not None:
            return runtime
        started = self.started
        end = _finite(self.info.get("finished")) or self.record_time
        return max(0.0, end - started) if started is not None and end is not None else None

    def last(self, name: str) -> float | None:
        stats = self.series.get(name)
        return stats[1] if stats is not None else None

    def best(self, name: str) -> float | None:
        """The best finite value of a series by `metric_direction`, None when it has no direction or no value."""
        stats = self.series.get(name)
        direction = metric_direction(name)
        if stats is None or direction is None:
            return None
        value = stats[3] if direction == "min" else stats[4]
        return value if math.isfinite(value) else None

    def row(self, now: float, stale_after: float = STALE_AFTER_S, metrics: Iterable[str] | None = None) -> dict[str, Any]:
        """The runs-table values of this run: trainer, status, step, max_steps, duration_s, started,
        last_activity, `last.<m>` / `best.<m>` of the key metrics (or of `metrics`), `alerts.<severity>`."""
        row: dict[str, Any] = {
            "trainer": self.trainer_kind,
            "status": self.status(now, stale_after),
            "step": _int_or_none(self.step),
            "max_steps": self.max_steps,
            "duration_s": self.duration,
            "started": self.started,
            "last_activity": self.last_activity,
        }
        for name in key_metrics(self.trainer_kind) if metrics is None else metrics:
            row[f"last.{name}"] = self.last(name)
            if metric_direction(name) is not None:
                row[f"best.{name}"] = self.best(name)
        for severity in SEVERITIES:
            row[f"alerts.{severity}"] = self.alert_counts[severity]
        return row

    # ---- cache form -------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form (non-finite floats as the strings "nan", "inf", "-inf")."""
        return {
            "series": {name: [int(s[0]), *(_encode_float(v) for v in s[1:])] for name, s in self.series.items()},
            "step": _encode_float(self.step),
            "records": self.records,
            "alerts": dict(self.alert_counts),
            "info": {k: v for k, v in self.info.items() if _json_scalar(v)},
            "record_time": _encode_float(self.record_time),
            "file_time": _encode_float(self.file_time),
            "previous_step": {k: _encode_float(v) for k, v in self._previous_step.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> "RunSummary":
        """The summary `to_json` gave; ValueError if `data` is not one (a cache entry is checked, never trusted)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("series"), Mapping):
            raise ValueError("not a run summary")
        summary = cls()
        for name, stats in data["series"].items():
            if not isinstance(name, str) or not isinstance(stats, list) or len(stats) != 5:
                raise ValueError("bad series statistics")
            values = [_decode_float(v) for v in stats[1:]]
            if not isinstance(stats[0], int) or stats[0] < 0 or any(v is None for v in values):
                raise ValueError("bad series statistics")
            summary.series[name] = [stats[0], *values]  # type: ignore[list-item]
        summary.step = _decode_float(data.get("step"))
        records = data.get("records")
        summary.records = records if isinstance(records, int) and records >= 0 else 0
        alerts = data.get("alerts")
        if isinstance(alerts, Mapping):
            for severity in SEVERITIES:
                count = alerts.get(severity)
                summary.alert_counts[severity] = count if isinstance(count, int) and count >= 0 else 0
        info = data.get("info")
        if isinstance(info, Mapping):
            summary.info = {k: v for k, v in info.items() if isinstance(k, str) and _json_scalar(v)}
        summary.record_time = _decode_float(data.get("record_time"))
        summary.file_time = _decode_float(data.get("file_time"))
        previous = data.get("previous_step")
        if isinstance(previous, Mapping):
            summary._previous_step = {
                k: v for k, raw in previous.items() if isinstance(k, str) and (v := _decode_float(raw)) is not None
            }
        return summary


def _prefixed(name: str) -> bool:
    return ":" in name and name.split(":", 1)[0] in ("ppo", "ckpt")


def _finite(value: Any) -> float | None:
    number = as_number(value) if not isinstance(value, bool) else None
    return number if number is not None and math.isfinite(number) else None


def _int_or_none(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == int(value) and abs(value) < 2**53 else value


def _encode_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    return value


def _decode_float(value: Any) -> float | None:
    if isinstance(value, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


# ---- the on-disk cache --------------------------------------------------------------------------------------------
CACHE_ENV = "RLDK_WIDGET_CACHE_DIR"
CACHE_FORMAT = "rldk_widget.run_summaries"
CACHE_MAX_BYTES = 64 << 20


def default_cache_dir() -> Path:
    """`$RLDK_WIDGET_CACHE_DIR`, else `$XDG_CACHE_HOME/rldk_widget`, else `~/.cache/rldk_widget`: the user's own
    cache, never a run folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rldk_widget"


class SummaryCache:
    """Per-run summaries of one sweep folder, in one JSON file of the user's cache directory:
    `<cache dir>/summaries/<sha256 of the folder's key>[:32].json`, where the key is the folder's real path (or the
    file system's URL of it). Nothing is ever written into a run folder.

    File: `{"format": "rldk_widget.run_summaries", "version": 1, "root": key, "runs": {run_id: entry}}`; an entry
    holds the run's `location` (source, relative folder, file stem), the `signature` of the files the summary was
    computed from (per file name: size, modification time in ns, identity), the `summary` (`RunSummary.to_json`),
    its `config` and `results`. A reader uses an entry only when the run's files have exactly that signature now
    (so an append, a replacement or a deletion since makes it read the run again); everything loaded is checked
    (it is plain JSON, bounded in size, never unpickled), and a damaged, foreign or newer-version file counts as
    empty. Writes are atomic (a temporary file in the same folder, then a rename), mode 0600; two processes
    writing the same cache lose at most each other's newest entries, which are only hints."""

    VERSION = 1

    def __init__(self, root_key: str, directory: str | os.PathLike[str] | None = None) -> None:
        self.root_key = root_key
        self.directory = Path(directory) if directory is not None else default_cache_dir() / "summaries"
        digest = hashlib.sha256(root_key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.path = self.directory / f"{digest}.json"
        self.problem: str | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """The entries on disk ({} when there are none or the file is not a cache of this folder)."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(CACHE_MAX_BYTES + 1)
            if len(data) > CACHE_MAX_BYTES:
                raise ValueError("too large")
            cache = formats.loads(data)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            self.problem = f"summary cache {self.path} ignored ({err})"
            return {}
        if (
            not isinstance(cache, dict)
            or cache.get("format") != CACHE_FORMAT
            or cache.get("version") != self.VERSION
            or cache.get("root") != self.root_key
            or not isinstance(cache.get("runs"), dict)
        ):
            return {}
        return {run_id: entry for run_id, entry in cache["runs"].items() if isinstance(entry, dict)}

    def save(self, entries: Mapping[str, Mapping[str, Any]]) -> bool:
        """Replace the cache file with `entries`; False (and `problem` set) when it cannot be written."""
        document = {"format": CACHE_FORMAT, "version": self.VERSION, "root": self.root_key, "runs": dict(entries)}
        try:
            data = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
                "utf-8", "surrogateescape"
            )
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(prefix=".summaries.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except (OSError, TypeError, ValueError) as err:
            self.problem = f"summary cache {self.path} not written ({err})"
            return False
        self.problem = None
        return True
