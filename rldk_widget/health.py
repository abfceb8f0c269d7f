"""HealthChecks: the callback's alert rules on every run the dashboard shows that has no alerts of its own — a
trainer_state.json log history, run files written another way, metrics added with `add_metrics`.

A run counts as recorded by RLDKCallback when its run info says so (`writer`), not when it has alerts (a healthy
callback run has none); such runs are never checked here. The checks run on a worker thread from the run's series
columns (no records are kept for them): each new point is observed once, O(1) per record, in batches screened by
numpy (alert_batches.py: the same alerts as record by record, about ten times cheaper), and a run whose metrics
file was read again whole is checked again from its start. Computed alerts carry `"computed": True` and the time
their step was logged (the time they were computed when it has none); they live in memory only and are never
written to a run folder.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from .alert_batches import observe_columns
from .alerts import RULE_TYPES, AlertMonitor, AlertRules
from .series import RunSeries, same_key_runs
from .worker import KeyedWorker

logger = logging.getLogger(__name__)

CALLBACK_WRITER = "RLDKCallback"
"""The `writer` the callback puts in its run info."""
_SKIPPED = ("ppo:", "ckpt:")

Report = Callable[[str, list[dict[str, Any]]], None]

BATCH_RECORDS = 4096
"""Records screened at once (alert_batches.py): a run just read is checked in batches of this many."""
PAUSE_AFTER = 5000
PAUSE_S = 0.0001
"""On the worker, a check of more than PAUSE_AFTER records (a large run just read) pauses this long after each
batch (a few ms of rules), so that a thread doing I/O (the training loop's appends, a view's snapshot) waits for the
GIL about that long per system call, not the 5 ms switch interval: without the pauses, the backlog of a 100k-step
run made a view's snapshot 80x and add_metrics 40x slower while it lasted."""


class _RunCheck:
    def __init__(self, monitor: AlertMonitor, generation: int) -> None:
        self.monitor = monitor
        self.generation = generation
        self.observed: dict[str, int] = {}
        self.kind: str | None = None


class HealthChecks:
    """Alert rules over the runs of one dashboard. `touch(run_id)` after its series gained points (under the
    dashboard's lock); `report(run_id, alerts)` is called with new computed alerts, under that lock."""

    def __init__(
        self, runs: dict[str, RunSeries], lock: threading.RLock, report: Report, rules: AlertRules | None = None,
        trainer_kind: Callable[[str], str | None] = lambda _run: None,
    ) -> None:
        self._runs = runs
        self._lock = lock
        self._report = report
        self._rules = rules
        self._trainer_kind = trainer_kind
        self._checks: dict[str, _RunCheck] = {}
        self._generations: dict[str, int] = {}
        self._recorded: set[str] = set()
        self._worker = KeyedWorker(self._check, "rldk-health")
        self._all_disabled = rules is not None and set(RULE_TYPES) <= rules.disabled
        """`AlertRules(disabled=set(RULE_TYPES))`: no check runs (and no thread starts)."""
        self._held: set[str] | None = set()  # runs touched before `start`

    def recorded_by_callback(self, run_id: str) -> None:
        """The run has alerts of its own: never check it (and forget what was computed for it)."""
        self._recorded.add(run_id)

    def is_recorded(self, run_id: str) -> bool:
        return run_id in self._recorded

    def restart(self, run_id: str) -> None:
        """The run's metrics were read again whole: check it again from its first record."""
        self._generations[run_id] = self._generations.get(run_id, 0) + 1

    def touch(self, run_id: str) -> None:
        if run_id in self._recorded or self._all_disabled:
            return
        if self._held is not None:
            self._held.add(run_id)
        else:
            self._worker.touch(run_id)

    def start(self) -> None:
        """Begin checking (the runs touched so far first): a dashboard starts the checks once its first load is
        done, so that they do not compete with that load for the GIL."""
        held, self._held = self._held or set(), None
        for run_id in held:
            self.touch(run_id)

    def drain(self) -> None:
        """Check everything pending now, on the calling thread (call without holding the dashboard's lock)."""
        self._worker.drain()

    def close(self) -> None:
        self._worker.close()

    def _check(self, run_id: str) -> None:
        """Observe the run's new points, merged into records by step (file order within a step)."""
        with self._lock:
            series = self._runs.get(run_id)
            if series is None or run_id in self._recorded:
                return
            generation = self._generations.get(run_id, 0)
            check = self._checks.get(run_id)
            if check is None or check.generation != generation:
                kind = self._trainer_kind(run_id) or _kind_from_names(series.columns)
                check = self._checks[run_id] = _RunCheck(
                    AlertMonitor(self._rules or AlertRules.for_trainer(kind)), generation
                )
                check.kind = kind
            fresh = {}
            for name, (xs, ys) in series.columns.items():
                if name.startswith(_SKIPPED):
                    continue
                start = check.observed.get(name, 0)
                if len(xs) > start:
                    fresh[name] = (np.array(xs[start:], dtype="f8"), np.array(ys[start:], dtype="f8"))
                    check.observed[name] = len(xs)
        logged_at = fresh.pop("timestamp", None)
        if not fresh:
            return
        alerts: list[dict[str, Any]] = []
        now = time.time()
        observed = 0
        for steps, columns in _batches(fresh, check.kind):
            if observed > PAUSE_AFTER and self._worker.may_pause():
                time.sleep(PAUSE_S)  # a long backlog (a large run just read) must not starve the other threads
            observed += len(steps)
            for alert in observe_columns(check.monitor, steps, columns):
                alerts.append({**alert, "run_id": run_id, "timestamp": _logged_at(logged_at, alert.get("step"), now),
                               "computed": True})
        if alerts:
            with self._lock:
                if self._generations.get(run_id, 0) == generation and run_id not in self._recorded:
                    self._report(run_id, alerts)


def _logged_at(timestamps: tuple[np.ndarray, np.ndarray] | None, step: Any, default: float) -> float:
    """When `step` was logged (its `timestamp` point among the new ones), else `default`: a finished run's computed
    alerts are not all "now"."""
    if timestamps is None or isinstance(step, bool) or not isinstance(step, (int, float)):
        return default
    xs, ys = timestamps
    hits = np.flatnonzero(xs == step)  # steps need not be in order; the last record of the step wins
    if hits.size and math.isfinite(ys[hits[-1]]):
        return float(ys[hits[-1]])
    return default


def _kind_from_names(names: Any) -> str | None:
    from .trl_keys import detect_trainer_kind

    return detect_trainer_kind(list(names))


def _batches(fresh: dict[str, tuple[np.ndarray, np.ndarray]], kind: str | None
             ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The points of several series as records, one per step in step order (a stable merge keeps file order), with
    the trainer's mapped names (`trl_keys.mapped_record_plan`; its plan is worked out once per set of names): as
    columns (steps, values by name) of consecutive records with the same names, at most BATCH_RECORDS at once."""
    from .trl_keys import mapped_record_plan

    names = list(fresh)
    first = fresh[names[0]][0]
    if all(np.array_equal(fresh[name][0], first) for name in names[1:]) and bool(np.all(np.diff(first) > 0)):
        # every series has a point at each step, once (one record per step with the same keys): by columns
        plan = mapped_record_plan(("step", *names), kind)
        columns = {name: fresh[source][1] for name, source in plan if name != "step"}
        for start in range(0, len(first), BATCH_RECORDS):
            yield first[start : start + BATCH_RECORDS], {name: values[start : start + BATCH_RECORDS]
                                                         for name, values in columns.items()}
        return
    steps = np.concatenate([fresh[name][0] for name in names])
    values = np.concatenate([fresh[name][1] for name in names])
    which = np.concatenate([np.full(len(fresh[name][0]), index) for index, name in enumerate(names)])
    order = np.argsort(steps, kind="stable")
    steps, values, which = steps[order].tolist(), values[order].tolist(), which[order].tolist()
    records: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for step, value, index in zip(steps, values, which):
        if current is None or current["step"] != step:
            current = {"step": step}
            records.append(current)
        current[names[index]] = value
    plans: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    layouts = list(map(tuple, records))
    for start, end in same_key_runs(layouts, BATCH_RECORDS):
        plan = plans.get(layouts[start])
        if plan is None:
            plan = plans[layouts[start]] = mapped_record_plan(layouts[start], kind)
        batch = records[start:end]
        yield (np.array([record["step"] for record in batch], dtype="f8"),
               {name: np.array([record[source] for record in batch], dtype="f8") for name, source in plan
                if name != "step"})
