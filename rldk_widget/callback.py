"""RLDKCallback: a transformers TrainerCallback that writes TRL logs, alerts, checkpoint stats and (with the trainer
attached) the completions behind the rewards to a RunStore, and tells listeners (e.g. a dashboard) about every
record. Rank zero only; never raises into training."""

from __future__ import annotations

import atexit
import functools
import logging
import math
import os
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .alerts import AlertMonitor, AlertRules
from .arguments import reject_unknown
from .health import CALLBACK_WRITER
from .inbox import EventInbox
from .metrics import as_number
from .run_config import capture_run_config
from .samples import RawBatch, SampleSettings, batch_records
from .store import SAMPLES_KIND, RunStore, default_run_id, validate_run_id
from .trl_keys import detect_trainer_kind, is_eval_log, is_summary_log, kind_from_class, log_record, ppo_keys

logger = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
LISTENER_KINDS: tuple[str, ...] = ("metrics", "alert", "ppo_metrics", "checkpoint_summary", "run_info", "samples")
_FILE_OF_KIND = {"metrics": "metrics", "alert": "alerts", "ppo_metrics": "ppo_metrics"}
_LIVE_CALLBACKS: "weakref.WeakSet[RLDKCallback]" = weakref.WeakSet()
_ARGUMENTS = ("output_dir", "run_id", "log_interval", "alert_rules", "write_interval", "trainer", "samples", "mirror_to",
              "storage_options", "mirror_interval")


def _guarded(hook: Callable[..., None]) -> Callable[..., None]:
    """Run a hook body so that no exception reaches the training loop (logged; warned once per problem)."""

    @functools.wraps(hook)
    def wrapper(self: "RLDKCallback", *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the training loop must go on
            self._problem(
                f"{hook.__name__}:{type(err).__name__}", f"RLDKCallback.{hook.__name__} failed: {err!r}", err
            )

    return wrapper


class RLDKCallback(TrainerCallback):
    """Record a TRL run for rldk_widget: `trainer.add_callback(RLDKCallback("./rldk_logs"))`.

    Files (in `output_dir`, see `RunStore`): one metrics record per log (TRL keys mapped by `trl_keys`, raw keys
    kept), alerts from `AlertMonitor`, a checkpoint-summary row per save and, for PPO, a row of PPO keys per log.
    Listeners added with `add_listener(fn)` are called as `fn(kind, record)` after each record was written,
    kind in "metrics" | "alert" | "ppo_metrics" | "checkpoint_summary" | "run_info" | "samples" ("run_info" records
    are updates of `run_info`: max_steps, trainer, output folders and the run's configuration — `run_config.capture_run_config` — at the start, the train_runtime summary at the
    end; "samples" comes once per recorded batch as `{"run_id", "step", "count"}`, the samples being in
    `{run_id}_samples.json`).

    Completions: with `trainer=` (or `attach(trainer)`) the callback also records, at each training log, the
    trainer's last generation batch (TRL GRPO / RLOO; read through `trl_samples.LiveCapture`), bounded by `samples`
    (a `SampleSettings`: per step, every n-th log, a per-text cap; `samples=False` records none). A batch already
    recorded (logging more often than generating) is not recorded again. If the trainer's private state cannot be
    read, capture stops with one warning and training goes on.

    `on_log` only queues the log. The logs of the last `write_interval` seconds are written together (one
    append per file, see inbox.py): at once when steps are slower than that, else at the next log after the
    interval, or by a worker thread when logging pauses. `on_save`, `on_train_end`, `flush()` and the end of the
    process write what is queued; `write_interval=0` writes every log before `on_log` returns. The default of
    0.25 s keeps a view live while a pass (which also evicts the trainer's code and data from the CPU caches)
    runs at most four times a second: benchmarks/overhead.py measured 2.5% on a 15 ms toy step at 0.1 s.

    `mirror_to` (an fsspec URL, e.g. `s3://bucket/sweep/`, with `storage_options` for credentials and endpoint): the
    folder that also receives this run's files, so a dashboard elsewhere can read them (`from_dir(url)`). The local
    files stay the truth; a background thread uploads the files that changed every `mirror_interval` seconds as whole
    objects, and once more at the end of training and of the process (mirror.py). A remote that is down never slows
    or stops training: uploads are retried with backoff and catch up when it answers (one warning when they start
    failing, one when they work again).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str] = "./rldk_logs",
        run_id: str | None = None,
        log_interval: int = 1,
        alert_rules: AlertRules | None = None,
        write_interval: float = 0.25,
        trainer: Any = None,
        samples: bool | SampleSettings = True,
        mirror_to: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        mirror_interval: float = 30.0,
        **unknown: Any,
    ) -> None:
        reject_unknown("RLDKCallback()", unknown, _ARGUMENTS)
        if isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 1:
            raise ValueError(f"log_interval must be an int >= 1, got {log_interval!r}")
        if (
            isinstance(write_interval, bool)
            or not isinstance(write_interval, (int, float))
            or not 0 <= write_interval <= 60
        ):
            raise ValueError(f"write_interval must be a number of seconds from 0 to 60, got {write_interval!r}")
        if alert_rules is not None and not isinstance(alert_rules, AlertRules):
            raise TypeError(f"alert_rules must be an AlertRules or None, got {type(alert_rules).__name__}")
        if not isinstance(samples, (bool, SampleSettings)):
            raise TypeError(f"samples must be a bool or a SampleSettings, got {type(samples).__name__}")
        self.output_dir = Path(output_dir)
        self.run_id = validate_run_id(run_id) if run_id is not None else default_run_id()
        self.log_interval = log_interval
        self.alert_rules = alert_rules
        self.max_steps: int | None = None
        self.trainer_kind: str | None = None
        self.run_info: dict[str, Any] = {"run_id": self.run_id}
        self._listeners: tuple[Listener, ...] = ()
        self._store: RunStore | None = None
        self._monitor: AlertMonitor | None = None
        self._last_weight_norm: float | None = None
        self._warned: set[str] = set()
        self.sample_settings: SampleSettings | None = (
            samples if isinstance(samples, SampleSettings) else SampleSettings() if samples else None
        )
        self._capture: Any = None
        self._queued_logs = EventInbox(self._write_logs, name="rldk-callback-writes", coalesce_s=write_interval)
        self.mirror: Any = None
        """The `mirror.Mirror` uploading the run's files to `mirror_to` (None without one)."""
        if mirror_to is not None:
            from .fs import is_url
            from .mirror import Mirror

            if not is_url(mirror_to):
                raise ValueError(f"mirror_to must be an fsspec URL (s3://bucket/folder/, ...), got {mirror_to!r}")
            if is_url(str(output_dir)):
                raise ValueError("output_dir must be a local folder (the truth); mirror_to is the remote folder")
            self.mirror = Mirror(output_dir, self.run_id, mirror_to, storage_options, mirror_interval,
                                 warn=self._mirror_warning, exit_upload=False)  # the exit hook below: logs first
        elif storage_options:
            raise ValueError("storage_options are for mirror_to (the remote folder); no mirror_to was given")
        _LIVE_CALLBACKS.add(self)
        if trainer is not None:
            self._watch(trainer)

    # completions -------------------------------------------------------------------------------------------
    def attach(self, trainer: Any) -> "RLDKCallback":
        """Record the completions of `trainer` too (as `RLDKCallback(..., trainer=trainer)` does), and add this
        callback to it if it is not there yet: `dash.callback().attach(trainer)`. Returns the callback."""
        self._watch(trainer)
        handler = getattr(trainer, "callback_handler", None)
        if handler is not None and self not in getattr(handler, "callbacks", ()):
            trainer.add_callback(self)
        return self

    def _watch(self, trainer: Any) -> None:
        if self.sample_settings is None:
            return
        from .trl_samples import LiveCapture

        self._capture = LiveCapture(trainer, self.sample_settings)
        if self._capture.problem is not None:
            self._capture_failed(self._capture.problem)

    def _capture_failed(self, problem: str, error: BaseException | None = None) -> None:
        trainer_class = getattr(self._capture, "trainer_class", "the trainer")
        self._problem(
            f"samples:{problem}", f"RLDKCallback: completions of {trainer_class} are not recorded: {problem}", error
        )

    def _snapshot(self, step: int, logs: dict[str, Any]) -> RawBatch | None:
        """The trainer's batch to record at this log (references only; the records are built by the write pass)."""
        try:
            return self._capture.snapshot(step, logs)
        except Exception as err:  # noqa: BLE001 - a renamed private attribute must not break training
            self._capture.disable(f"{type(err).__name__}: {err}")
            self._capture_failed(self._capture.problem, err)
            return None

    # listeners -----------------------------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """Call `fn(kind, record)` for every record from now on (adding the same function twice is a no-op)."""
        if not callable(fn):
            raise TypeError(f"listener must be callable, got {type(fn).__name__}")
        if fn not in self._listeners:
            self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling `fn`; removing a listener that is not there is a no-op."""
        self._listeners = tuple(listener for listener in self._listeners if listener != fn)

    def _emit(self, kind: str, record: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(kind, dict(record))
            except Exception as err:  # noqa: BLE001 - one bad listener must not break training or the others
                self._problem(
                    f"listener:{getattr(listener, '__qualname__', listener)!s}:{type(err).__name__}",
                    f"RLDKCallback listener {listener!r} failed on a {kind!r} record: {err!r}",
                    err,
                )

    # hooks ---------------------------------------------------------------------------------------------------
    @_guarded
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if not state.is_world_process_zero:
            return
        if self.mirror is not None:
            self.mirror.start()
        self.max_steps = state.max_steps if state.max_steps and state.max_steps > 0 else None
        self.trainer_kind = kind_from_class(args) or self.trainer_kind
        now = time.time()
        config = capture_run_config(args, state, kwargs.get("model"), kwargs.get("processing_class"))
        info = {"max_steps": self.max_steps, "trainer": self.trainer_kind, "started": now, "timestamp": now,
                "writer": CALLBACK_WRITER, "config": config}
        info.update(_output_folders(args))
        if self._capture is not None and self._capture.active:
            info.update(self._capture.describe())
        self._update_run_info(info)

    @_guarded
    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if not state.is_world_process_zero or not logs:
            return
        batch = None
        if self._capture is not None and not is_summary_log(logs) and not is_eval_log(logs):
            batch = self._snapshot(state.global_step, logs)
        self._queued_logs.put((state.global_step, time.time(), dict(logs), batch))
        if is_summary_log(logs):  # the end of training: its run info is written at once
            self.flush()

    def flush(self) -> None:
        """Write the logs queued so far now (and tell the listeners)."""
        self._queued_logs.drain()

    @_guarded
    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if not state.is_world_process_zero:
            return
        self.flush()
        model = kwargs.get("model")
        if model is None:
            self._problem("on_save:no_model", "RLDKCallback.on_save got no model; checkpoint summary skipped")
            return
        stats = parameter_stats(model)
        delta = None if self._last_weight_norm is None else stats["weight_norm"] - self._last_weight_norm
        self._last_weight_norm = stats["weight_norm"]
        row = {
            "step": state.global_step,
            "epoch": state.epoch,
            "checkpoint_dir": os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"),
            "param_count": stats["param_count"],
            "size_mb": stats["size_mb"],
            "weight_norm": stats["weight_norm"],
            "weight_norm_delta": delta,
            "nonfinite_params": stats["nonfinite_params"],
        }
        self._write_and_tell({"checkpoint_summary": [row]})

    @_guarded
    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.flush()
        if self._store is not None:
            self._store.retry_unwritten()
            self._check_write_errors()
            self._store.close()
        self.finish_mirror()

    def finish_mirror(self, timeout: float | None = None) -> bool:
        """Upload what changed now and stop the mirror thread (the end of training, and of the process, do); waits at
        most `timeout` seconds (default mirror.FINAL_TIMEOUT_S). True if everything is uploaded (or no mirror)."""
        if self.mirror is None or not self.mirror.running:
            return True
        from .mirror import FINAL_TIMEOUT_S

        self.flush()
        return self.mirror.finish(FINAL_TIMEOUT_S if timeout is None else timeout)

    def _mirror_warning(self, message: str) -> None:
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    # internals -----------------------------------------------------------------------------------------------
    def _alert_monitor(self) -> AlertMonitor:
        if self._monitor is None:
            self._monitor = AlertMonitor(self.alert_rules or AlertRules.for_trainer(self.trainer_kind))
        return self._monitor

    def _update_run_info(self, update: dict[str, Any]) -> None:
        """Keep the run info, write it to `{run_id}_run_info.json` for dashboards in other processes, tell the
        listeners."""
        self.run_info.update(update)
        try:
            self._run_store().write_info(self.run_info)
        except (OSError, TypeError) as err:
            self._problem(f"run_info:{type(err).__name__}", f"RLDKCallback: cannot write the run info: {err}", err)
        self._emit("run_info", {"run_id": self.run_id, **update})

    def _run_store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(self.output_dir, self.run_id)
            if self.mirror is not None:  # only rank zero writes: so only rank zero uploads
                self.mirror.start()
        return self._store

    def _write_logs(self, queued: list[tuple[int, float, dict[str, Any], RawBatch | None]]) -> None:
        """The queue's pass: turn each (step, time, log, batch) into records, write each file's records in one
        append, then tell the listeners. A log that fails is reported and skipped; the others are written."""
        records: dict[str, list[dict[str, Any]]] = {"metrics": [], "alert": [], "ppo_metrics": [], SAMPLES_KIND: []}
        for step, now, logs, batch in queued:
            try:
                self._records_of_log(step, now, logs, records)
            except Exception as err:  # noqa: BLE001 - the training loop must go on
                self._problem(f"on_log:{type(err).__name__}", f"RLDKCallback.on_log failed: {err!r}", err)
            if batch is not None:
                try:
                    records[SAMPLES_KIND].extend(
                        batch_records(batch, self.sample_settings, self.run_id, now, self._capture.count_tokens())
                    )
                except Exception as err:  # noqa: BLE001
                    self._problem(f"samples:{type(err).__name__}", f"RLDKCallback: recording samples failed: {err!r}",
                                  err)
        self._write_and_tell(records)

    def _records_of_log(self, step: int, now: float, logs: dict[str, Any], records: dict[str, list]) -> None:
        """Add to `records` what one log gives: a metrics record, the alerts it raises, a PPO row (the train_runtime
        summary updates the run info instead)."""
        if is_summary_log(logs):
            summary = {key: number for key, value in logs.items() if (number := _number(value)) is not None}
            self._update_run_info({**summary, "step": step, "finished": now, "timestamp": now})
            return
        if self.trainer_kind is None:
            self.trainer_kind = detect_trainer_kind(logs)
        record = log_record(logs, step, self.trainer_kind, self.run_id, now)
        evaluation = is_eval_log(logs)
        if evaluation or step % self.log_interval == 0:
            records["metrics"].append(record)
        # evaluation records too: they update only the monitor's evaluation state (train/eval divergence)
        for alert in self._alert_monitor().observe(record):
            records["alert"].append({**alert, "run_id": self.run_id, "timestamp": now})
        if evaluation:
            return
        ppo = ppo_keys(logs)
        if ppo or self.trainer_kind == "ppo":
            records["ppo_metrics"].append({"step": step, **{key: _number(value) for key, value in ppo.items()}})

    def _write_and_tell(self, records: dict[str, list[dict[str, Any]]]) -> None:
        """Write each listener kind's records to its file, then tell the listeners about the ones written."""
        written = {kind: self._write(kind, batch) for kind, batch in records.items() if batch}
        for kind, batch in written.items():
            if kind == SAMPLES_KIND:  # one event per recorded batch, not per sample
                for step, count in _count_by_step(batch).items():
                    self._emit(kind, {"run_id": self.run_id, "step": step, "count": count})
                continue
            for record in batch:
                self._emit(kind, record if "run_id" in record else {**record, "run_id": self.run_id})

    def _write(self, kind: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append records of a listener kind in one write; if one cannot be stored (ValueError), each on its own
        so that only that one is refused. Returns the records written or kept in memory for a retry."""
        store = self._run_store()
        file_kind = _FILE_OF_KIND.get(kind, kind)
        try:
            store.append(file_kind, records)
            written = records
        except ValueError:
            written = []
            for record in records:
                try:
                    store.append(file_kind, [record])
                    written.append(record)
                except ValueError as err:
                    self._problem(f"write:{kind}:{err}", f"RLDKCallback: a {kind!r} record was refused: {err}", err)
        except Exception as err:  # noqa: BLE001 - never raise into training (or into a dashboard's flush)
            self._problem(f"write:{kind}:{type(err).__name__}", f"RLDKCallback: writing {kind!r} failed: {err!r}", err)
            written = []
        self._check_write_errors()
        return written

    def _check_write_errors(self) -> None:
        assert self._store is not None
        for error in self._store.write_errors:
            self._problem(f"write:{error}", f"RLDKCallback: {error}; records are kept in memory and retried")

    def _problem(self, key: str, message: str, error: BaseException | None = None) -> None:
        """Log every problem; warn once per distinct one."""
        if key in self._warned:
            logger.debug(message, exc_info=error)
            return
        self._warned.add(key)
        logger.error(message, exc_info=error)
        warnings.warn(f"{message} (training continues; repeats are only logged)", RuntimeWarning, stacklevel=2)


def _count_by_step(records: list[dict[str, Any]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for record in records:
        counts[record["step"]] = counts.get(record["step"], 0) + 1
    return counts


def _output_folders(args: Any) -> dict[str, Any]:
    """The trainer's output folder, and where TRL writes completions parquet files when `log_completions` is on
    (absolute paths: a dashboard in another process may run elsewhere)."""
    output_dir = getattr(args, "output_dir", None)
    if not isinstance(output_dir, (str, os.PathLike)):
        return {}
    folder = os.path.abspath(output_dir)
    completions = os.path.join(folder, "completions") if getattr(args, "log_completions", False) is True else None
    return {"trainer_output_dir": folder, "completions_dir": completions}


def _number(value: Any) -> float | None:
    """A log value as a float; None (TRL's "all NaN") as NaN; non-numeric as None."""
    return math.nan if value is None else as_number(value)


def parameter_stats(model: Any) -> dict[str, Any]:
    """One no-grad pass over the parameters: count, size in MB, L2 norm of the floating-point ones (computed in
    fp32) and their non-finite entries. Under FSDP / ZeRO-3 this describes the calling rank's shards."""
    import torch

    count = 0
    size = 0
    square_sum = 0.0
    nonfinite = 0
    with torch.no_grad():
        for param in model.parameters():
            count += param.numel()
            size += param.numel() * param.element_size()
            if param.is_floating_point():
                square_sum += float(torch.linalg.vector_norm(param, dtype=torch.float32)) ** 2
                nonfinite += int(torch.count_nonzero(~torch.isfinite(param)))
    return {
        "param_count": count,
        "size_mb": size / 2**20,
        "weight_norm": math.sqrt(square_sum),
        "nonfinite_params": nonfinite,
    }


@atexit.register
def _write_queued_logs_at_exit() -> None:
    """A script that ends (or fails) between two writes still leaves every log it got on disk."""
    for callback in list(_LIVE_CALLBACKS):
        callback.flush()
    for callback in list(_LIVE_CALLBACKS):
        try:
            callback.finish_mirror()
        except Exception:  # noqa: BLE001 - exiting anyway
            logger.exception("the last upload of %s failed", callback.run_id)
