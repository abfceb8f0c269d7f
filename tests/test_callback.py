"""RLDKCallback driven by hand (no training): store records, listener API, alerts, checkpoint and PPO rows,
rank zero only, and no exception ever reaching the training loop."""

from __future__ import annotations

import errno
import math
import os
import re
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl, TrainerState

import rldk_widget.inbox
import rldk_widget.store as store_module
from rldk_widget.alerts import AlertRules
from rldk_widget.callback import RLDKCallback, parameter_stats
from rldk_widget.store import RunStore

from helpers import CommTap, CountingEvent, FakeClock, wait_until
from trl_logs import HEALTHY_GRPO_LOG as GRPO_LOG  # a real TRL 1.16 GRPO log that raises no alert by itself


class GRPOConfig(SimpleNamespace):
    """Stands in for trl.GRPOConfig: the callback reads the trainer kind from the class name."""


class PPOConfig(SimpleNamespace):
    pass


class Collector:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind: str, record: dict) -> None:
        self.events.append((kind, record))

    def of(self, kind: str) -> list[dict]:
        return [record for k, record in self.events if k == kind]


def make_state(step: int = 0, max_steps: int = 10, rank_zero: bool = True) -> TrainerState:
    state = TrainerState(max_steps=max_steps, is_world_process_zero=rank_zero)
    state.global_step = step
    return state


@pytest.fixture
def args(tmp_path):
    return GRPOConfig(output_dir=str(tmp_path / "trainer_out"))


@pytest.fixture
def cb(tmp_path):
    return RLDKCallback(output_dir=tmp_path / "logs", run_id="run-1")


def train(cb: RLDKCallback, args, logs: list[dict], start: int = 1) -> None:
    """on_train_begin, one on_log per entry, then the queued logs written (as a save or the end of training
    would)."""
    control = TrainerControl()
    cb.on_train_begin(args, make_state(), control)
    for offset, entry in enumerate(logs):
        cb.on_log(args, make_state(start + offset), control, logs=dict(entry))
    cb.flush()


def stored(cb: RLDKCallback):
    cb.flush()
    return RunStore(cb.output_dir, cb.run_id).read_all()


def test_on_log_maps_and_appends(cb, args):
    train(cb, args, [GRPO_LOG, GRPO_LOG])
    records = stored(cb).metrics
    assert [r["step"] for r in records] == [1, 2]
    first = records[0]
    assert (first["reward_mean"], first["kl_mean"], first["entropy_mean"], first["reward_std"]) == (
        GRPO_LOG["reward"], GRPO_LOG["kl"], GRPO_LOG["entropy"], GRPO_LOG["reward_std"])
    assert first["reward"] == GRPO_LOG["reward"]
    assert first["completions/mean_length"] == GRPO_LOG["completions/mean_length"]
    assert first["run_id"] == "run-1" and isinstance(first["timestamp"], float)
    assert cb.trainer_kind == "grpo" and cb.max_steps == 10


def test_listener_called_after_append_with_the_same_record(cb, args):
    seen = []

    def listener(kind, record):
        if kind == "metrics":
            seen.append((record, stored(cb).metrics[-1]))

    cb.add_listener(listener)
    train(cb, args, [GRPO_LOG])
    ((record, on_disk),) = seen
    assert record == on_disk


def test_run_info_at_begin_and_summary_not_a_step(cb, args):
    events = Collector()
    cb.add_listener(events)
    train(cb, args, [GRPO_LOG, {"train_runtime": 12.5, "train_loss": 0.3, "train_steps_per_second": 0.8,
                                "epoch": 0.2}])
    begin, end = events.of("run_info")
    assert (begin["max_steps"], begin["trainer"], begin["run_id"]) == (10, "grpo", "run-1")
    assert end["train_runtime"] == 12.5 and end["step"] == 2
    assert [r["step"] for r in stored(cb).metrics] == [1]
    assert cb.run_info["train_runtime"] == 12.5 and cb.run_info["max_steps"] == 10


def test_eval_logs_are_their_own_records_and_raise_no_alerts(cb, args):
    events = Collector()
    cb.add_listener(events)
    train(cb, args, [GRPO_LOG])
    cb.on_log(args, make_state(1), TrainerControl(), logs={"eval_loss": math.nan, "eval_reward": 0.1, "epoch": 0.1})
    train_record, eval_record = stored(cb).metrics
    assert eval_record["step"] == train_record["step"] == 1
    assert eval_record["eval_reward"] == 0.1 and "reward_mean" not in eval_record
    assert events.of("alert") == []


def test_nan_reward_gives_critical_alert_in_store_and_listener(cb, args):
    events = Collector()
    cb.add_listener(events)
    train(cb, args, [GRPO_LOG] * 4 + [{**GRPO_LOG, "reward": None, "rewards/bad/mean": None}] + [GRPO_LOG] * 3)
    (alert,) = [a for a in stored(cb).alerts if a["type"] == "nonfinite"]
    assert (alert["step"], alert["severity"], alert["metric"], alert["run_id"]) == (5, "critical", "reward_mean",
                                                                                     "run-1")
    assert isinstance(alert["timestamp"], float) and math.isnan(alert["value"])
    assert [a["type"] for a in events.of("alert")] == ["nonfinite"]
    assert math.isnan(stored(cb).metrics[4]["reward_mean"])


def test_alert_rules_are_used(tmp_path, args):
    cb = RLDKCallback(tmp_path, run_id="r", alert_rules=AlertRules(kl_max=GRPO_LOG["kl"] / 2))
    train(cb, args, [GRPO_LOG])
    assert [a["type"] for a in stored(cb).alerts] == ["kl_high"]


def test_log_interval_thins_metrics_but_alerts_see_every_log(tmp_path, args):
    cb = RLDKCallback(tmp_path, run_id="r", log_interval=2)
    train(cb, args, [GRPO_LOG, GRPO_LOG, {**GRPO_LOG, "loss": math.nan}, GRPO_LOG])
    assert [r["step"] for r in stored(cb).metrics] == [2, 4]
    assert [a["step"] for a in stored(cb).alerts] == [3]


def test_on_save_writes_checkpoint_rows(cb, args):
    events = Collector()
    cb.add_listener(events)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.0)
    state = make_state(5)
    state.epoch = 0.5
    cb.on_save(args, state, TrainerControl(), model=model)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias[0] = math.nan
    cb.on_save(args, make_state(10), TrainerControl(), model=model)
    first, second = stored(cb).checkpoint_summary
    assert first["step"] == 5 and first["epoch"] == 0.5 and first["param_count"] == 8
    assert first["checkpoint_dir"].endswith("checkpoint-5")
    assert first["weight_norm"] == pytest.approx(math.sqrt(6)) and "weight_norm_delta" not in first
    assert first["size_mb"] == pytest.approx(8 * 4 / 2**20) and first["nonfinite_params"] == 0
    assert second["nonfinite_params"] == 1 and math.isnan(second["weight_norm"])
    assert [r["step"] for r in events.of("checkpoint_summary")] == [5, 10]
    assert events.of("checkpoint_summary")[0]["run_id"] == "run-1"


def test_parameter_stats_matches_torch():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)).to(torch.bfloat16)
    stats = parameter_stats(model)
    expected = torch.cat([p.float().flatten() for p in model.parameters()]).norm().item()
    assert stats["weight_norm"] == pytest.approx(expected, rel=1e-5)
    assert stats["param_count"] == 25 and stats["size_mb"] == pytest.approx(50 / 2**20)


def test_ppo_logs_write_ppo_rows(tmp_path):
    cb = RLDKCallback(tmp_path, run_id="ppo")
    events = Collector()
    cb.add_listener(events)
    logs = {"objective/kl": 0.5, "objective/rlhf_reward": 1.0, "loss/value_avg": 0.2, "policy/clipfrac_avg": 0.1,
            "lr": 1e-6, "eps": 3, "episode": 8, "epoch": 0.1}
    train(cb, PPOConfig(output_dir=str(tmp_path)), [logs, logs])
    rows = stored(cb).ppo_metrics
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["objective/kl"] == 0.5 and rows[0]["episode"] == 8 and "epoch" not in rows[0]
    assert stored(cb).metrics[0]["value_loss"] == 0.2 and cb.trainer_kind == "ppo"
    assert len(events.of("ppo_metrics")) == 2


def test_grpo_logs_write_no_ppo_rows(cb, args):
    train(cb, args, [GRPO_LOG])
    assert stored(cb).ppo_metrics == []


def test_run_info_file_reaches_a_dashboard_in_another_process(cb, args, dashboards):
    watcher = dashboards(output_dir=cb.output_dir, run_id=None)
    train(cb, args, [GRPO_LOG])
    on_disk = RunStore(cb.output_dir, cb.run_id).read_info()
    assert (on_disk["max_steps"], on_disk["trainer"]) == (10, "grpo") and on_disk["started"] > 0
    watcher.update_data()  # no callback connected: it sees the run only through the files
    assert watcher.info["run-1"]["max_steps"] == 10 and watcher.info["run-1"]["trainer"] == "grpo"
    assert "reward_mean" in watcher.default_charts
    cb.on_log(args, make_state(2), TrainerControl(), logs={"train_runtime": 3.0, "train_loss": 0.1})
    assert RunStore(cb.output_dir, cb.run_id).read_info()["train_runtime"] == 3.0


def test_other_ranks_write_and_emit_nothing_even_to_a_connected_dashboard(tmp_path, args, dashboards):
    """Every hook on a rank that is not world process zero: no file, no listener call, nothing in a dashboard or its
    view, not even at the end of training or of the process."""
    from rldk_widget.callback import _write_queued_logs_at_exit

    logs = tmp_path / "logs"
    dash = dashboards(output_dir=logs, run_id="run-1")
    tap = CommTap(dash, view=True)
    cb = dash.callback(write_interval=60)
    events = Collector()
    cb.add_listener(events)
    control = TrainerControl()
    cb.on_train_begin(args, make_state(rank_zero=False), control)
    for step in range(1, 6):  # rank zero would write these, and an alert at step 3
        cb.on_log(args, make_state(step, rank_zero=False), control,
                  logs={**GRPO_LOG, "loss": math.nan} if step == 3 else dict(GRPO_LOG))
    cb.on_save(args, make_state(5, rank_zero=False), control, model=torch.nn.Linear(1, 1))
    cb.on_log(args, make_state(5, rank_zero=False), control, logs={"train_runtime": 1.0, "train_loss": 0.1})
    cb.on_train_end(args, make_state(5, rank_zero=False), control)
    cb.flush()
    _write_queued_logs_at_exit()
    assert events.events == []
    assert not logs.exists() or list(logs.iterdir()) == []
    dash.update_data()
    assert dash.to_dataframe().empty and dash.alerts_dataframe().empty and dash.info == {}
    assert dash.messages_sent == 0 and tap.view.point_count() == 0 and tap.view.alerts == []
    assert cb.max_steps is None and cb.trainer_kind is None and cb.run_info == {"run_id": "run-1"}


def test_train_end_writes_the_records_kept_in_memory_after_a_write_error(tmp_path, args, monkeypatch):
    cb = RLDKCallback(tmp_path, run_id="r", write_interval=0)
    events = Collector()
    cb.add_listener(events)
    cb.on_train_begin(args, make_state(), TrainerControl())
    real_pwrite = store_module.os.pwrite

    def disk_full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "pwrite", disk_full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, 4):
            cb.on_log(args, make_state(step), TrainerControl(),
                      logs={**GRPO_LOG, "loss": math.nan} if step == 2 else dict(GRPO_LOG))
    assert [str(w.message) for w in caught if "No space left" in str(w.message)], [str(w.message) for w in caught]
    assert RunStore(tmp_path, "r").read_all().metrics == [] and RunStore(tmp_path, "r").read_all().alerts == []
    # kept in memory: the listeners (a dashboard) were told, so nothing shown is lost
    assert [r["step"] for r in events.of("metrics")] == [1, 2, 3] and len(events.of("alert")) == 1
    monkeypatch.setattr(store_module.os, "pwrite", real_pwrite)
    cb.on_train_end(args, make_state(3), TrainerControl())  # no log after the disk came back: the end retries
    data = RunStore(tmp_path, "r").read_all()
    assert [r["step"] for r in data.metrics] == [1, 2, 3] and [a["step"] for a in data.alerts] == [2]
    assert [r["step"] for r in events.of("metrics")] == [1, 2, 3], "the retry told the listeners again"


def test_trainer_kind_detected_from_logs_without_known_args(tmp_path):
    cb = RLDKCallback(tmp_path, run_id="r")
    train(cb, SimpleNamespace(output_dir=str(tmp_path)), [{"loss": 0.6, "rewards/margins": 0.2,
                                                            "rewards/chosen": 0.1}])
    assert cb.trainer_kind == "dpo" and stored(cb).metrics[0]["reward_mean"] == 0.2


def test_failing_listener_does_not_break_training_or_others(cb, args):
    events = Collector()

    def broken(kind, record):
        raise RuntimeError("boom")

    cb.add_listener(broken)
    cb.add_listener(events)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cb, args, [GRPO_LOG] * 3)
    assert len(events.of("metrics")) == 3
    assert len([w for w in caught if "boom" in str(w.message)]) == 1


def test_listener_gets_its_own_copy(cb, args):
    def mutating(kind, record):
        record.clear()

    events = Collector()
    cb.add_listener(mutating)
    cb.add_listener(events)
    train(cb, args, [GRPO_LOG])
    assert events.of("metrics")[0]["reward_mean"] == GRPO_LOG["reward"]


def test_hook_failure_is_warned_once_and_never_raised(cb, args, monkeypatch):
    def fail(self, kind, records):
        raise OSError("disk on fire")

    monkeypatch.setattr(RunStore, "append", fail)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cb, args, [GRPO_LOG] * 3)
        cb.on_save(args, make_state(3), TrainerControl(), model=None)
    messages = [str(w.message) for w in caught]
    assert len([m for m in messages if "disk on fire" in m]) == 1
    assert len([m for m in messages if "no model" in m]) == 1


def test_add_remove_listener(cb, args):
    events = Collector()
    cb.add_listener(events)
    cb.add_listener(events)
    train(cb, args, [GRPO_LOG])
    cb.remove_listener(events)
    cb.remove_listener(events)
    cb.on_log(args, make_state(2), TrainerControl(), logs=dict(GRPO_LOG))
    assert len(events.of("metrics")) == 1
    with pytest.raises(TypeError):
        cb.add_listener("not callable")


def test_constructor_validation(tmp_path):
    assert re.fullmatch(r"[A-Za-z0-9._-]+", RLDKCallback(tmp_path).run_id)
    with pytest.raises(ValueError):
        RLDKCallback(tmp_path, run_id="../escape")
    with pytest.raises(ValueError):
        RLDKCallback(tmp_path, log_interval=0)
    with pytest.raises(TypeError):
        RLDKCallback(tmp_path, alert_rules={"kl_max": 1})
    for bad in (-0.1, math.nan, True, "0.1", 61):
        with pytest.raises(ValueError, match="write_interval"):
            RLDKCallback(tmp_path, write_interval=bad)


def test_public_attributes(tmp_path):
    cb = RLDKCallback(tmp_path / "x", run_id="abc")
    assert (cb.output_dir, cb.run_id, cb.max_steps, cb.trainer_kind) == (tmp_path / "x", "abc", None, None)


# ---- when queued logs are written ----------------------------------------------------------------------------
def count_appends(monkeypatch) -> list[tuple[str, int]]:
    """(file kind, records) of every RunStore.append from now on."""
    calls: list[tuple[str, int]] = []
    append = RunStore.append

    def counting(self, kind, records):
        records = list(records)
        calls.append((kind, len(records)))
        return append(self, kind, records)

    monkeypatch.setattr(RunStore, "append", counting)
    return calls


def test_a_burst_of_logs_is_written_in_one_append_and_its_tail_without_another_call(tmp_path, args, monkeypatch):
    clock = FakeClock()  # the inbox's clock: the burst below takes no time, however slow this machine is
    monkeypatch.setattr(rldk_widget.inbox, "time", clock)
    cb = RLDKCallback(tmp_path, run_id="r", write_interval=0.5)
    looks = cb._queued_logs._closed = CountingEvent()  # counts the worker's looks at the queue
    events = Collector()
    cb.add_listener(events)
    appends = count_appends(monkeypatch)
    cb.on_train_begin(args, make_state(), TrainerControl())
    for step in range(1, 11):
        cb.on_log(args, make_state(step), TrainerControl(), logs=dict(GRPO_LOG))
    on_disk = RunStore(tmp_path, "r").read_all().metrics
    assert [r["step"] for r in on_disk] == [1]  # the first log at once; the others wait for the interval
    # the worker writes the tail once no pass ran for two intervals, and not before: a whole look after the burst
    seen = looks.timed_waits
    wait_until(lambda: looks.timed_waits >= seen + 2 or not cb._queued_logs._pending, what="the worker to look")
    assert [r["step"] for r in RunStore(tmp_path, "r").read_all().metrics] == [1], "the tail was written too early"
    clock.advance(1.0)
    wait_until(lambda: len(events.of("metrics")) == 10, what="the tail of the burst to be written")
    assert [r["step"] for r in RunStore(tmp_path, "r").read_all().metrics] == list(range(1, 11))
    assert [r["step"] for r in events.of("metrics")] == list(range(1, 11))
    assert appends == [("metrics", 1), ("metrics", 9)]


def test_write_interval_zero_writes_every_log_before_on_log_returns(tmp_path, args):
    cb = RLDKCallback(tmp_path, run_id="r", write_interval=0)
    cb.on_train_begin(args, make_state(), TrainerControl())
    for step in range(1, 4):
        cb.on_log(args, make_state(step), TrainerControl(), logs={**GRPO_LOG, "loss": math.nan})
        assert [r["step"] for r in RunStore(tmp_path, "r").read_all().metrics] == list(range(1, step + 1))
    assert [a["step"] for a in RunStore(tmp_path, "r").read_all().alerts] == [1]


def test_save_and_train_end_write_the_queued_logs_first(tmp_path, args):
    cb = RLDKCallback(tmp_path, run_id="r", write_interval=60)
    order = Collector()
    cb.add_listener(order)
    cb.on_train_begin(args, make_state(), TrainerControl())
    for step in range(1, 4):
        cb.on_log(args, make_state(step), TrainerControl(), logs=dict(GRPO_LOG))
    cb.on_save(args, make_state(3), TrainerControl(), model=torch.nn.Linear(2, 2))
    assert [k for k, _ in order.events if k != "run_info"] == ["metrics"] * 3 + ["checkpoint_summary"]
    cb.on_log(args, make_state(4), TrainerControl(), logs=dict(GRPO_LOG))
    cb.on_train_end(args, make_state(4), TrainerControl())
    assert [r["step"] for r in RunStore(tmp_path, "r").read_all().metrics] == [1, 2, 3, 4]


def test_a_record_that_cannot_be_stored_is_refused_alone(tmp_path, args):
    cb = RLDKCallback(tmp_path, run_id="r", write_interval=60)
    bad = {**GRPO_LOG, "rewards/\ud800/mean": 0.5}  # a lone surrogate: no JSON encoder writes it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cb, args, [GRPO_LOG, GRPO_LOG, bad, GRPO_LOG])
    assert [r["step"] for r in stored(cb).metrics] == [1, 2, 4]
    assert len([w for w in caught if "refused" in str(w.message)]) == 1


def test_a_script_that_ends_without_on_train_end_leaves_every_log_on_disk(tmp_path):
    script = f"""
import math
from types import SimpleNamespace
from transformers import TrainerControl, TrainerState
from rldk_widget.callback import RLDKCallback
cb = RLDKCallback({str(tmp_path)!r}, run_id="r", write_interval=60)
for step in range(1, 21):
    state = TrainerState(max_steps=20)
    state.global_step = step
    cb.on_log(SimpleNamespace(output_dir="x"), state, TrainerControl(), logs={{"loss": 0.1, "reward": 0.5}})
raise RuntimeError("the training loop failed")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "the training loop failed" in done.stderr
    assert [r["step"] for r in RunStore(tmp_path, "r").read_all().metrics] == list(range(1, 21))
