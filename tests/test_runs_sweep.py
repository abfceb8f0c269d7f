"""Sweep (rldk_widget.runs): every run of a folder with its status, configuration and summary, read incrementally
(nothing read when nothing changed), the per-run summary cache of a reopened sweep, runs_table and
differing_keys."""

from __future__ import annotations

import json
import math
import os
import time

import pandas as pd
import pytest

from rldk_widget.fs import LocalFileSystem
from rldk_widget.run_summary import RunSummary, SummaryCache
from rldk_widget.runs import RunRef, Sweep, differing_keys, runs_table
from rldk_widget.store import RunStore

from test_run_config import hf_folder, live_payload, refuse_pickles

T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_WIDGET_CACHE_DIR", str(tmp_path / "user-cache"))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingFS(LocalFileSystem):
    def __init__(self) -> None:
        self.reads: list[str] = []

    def read(self, path, start, limit=16 << 20):
        self.reads.append(os.path.basename(os.fspath(path)))
        return super().read(path, start, limit)


def write_run(folder, stem, steps, t0=T0, info=None, start=0, alerts=()):
    with RunStore(folder, stem) as store:
        store.append_metrics_many([
            {"step": s, "reward_mean": 0.1 * s, "loss": 1.0 / (s + 1), "kl_mean": 0.01, "timestamp": t0 + s}
            for s in range(start, start + steps)
        ])
        for alert in alerts:
            store.append_alert(alert)
        if info is not None:
            store.write_info(info)


def grpo_info(lr, seed, finished=None, max_steps=100):
    info = {"max_steps": max_steps, "trainer": "grpo", "started": T0,
            "config": {"trainer_class": "GRPOTrainer", "args_class": "GRPOConfig", "model": "tiny",
                       "args": {"learning_rate": lr, "seed": seed, "output_dir": f"out/{lr}_{seed}"},
                       "versions": {"trl": "1.16.0"}}}
    if finished is not None:
        info.update(finished=finished, train_runtime=finished - T0)
    return info


def test_table_of_a_sweep(tmp_path):
    write_run(tmp_path / "lr_1e-5" / "s0", "grpo", 10, info=grpo_info(1e-5, 0, finished=T0 + 20),
              alerts=[{"type": "kl", "message": "high", "severity": "critical", "step": 3}])
    write_run(tmp_path / "lr_1e-4" / "s0", "grpo", 5, info=grpo_info(1e-4, 0))
    hf_folder(tmp_path / "hf" / "beta=0.04_s1")
    with Sweep(tmp_path, clock=Clock(T0 + 6)) as sweep:
        update = sweep.refresh()
        assert len(update.added) == 3 and update.removed == [] and update.problems == []
        table = sweep.table().set_index("name")
    assert list(table.index) == ["hf/beta=0.04_s1", "lr_1e-4/s0/grpo", "lr_1e-5/s0/grpo"]
    first = table.loc["lr_1e-5/s0/grpo"]
    assert (first["trainer"], first["status"], first["step"], first["max_steps"]) == ("grpo", "finished", 9, 100)
    assert first["duration_s"] == 20.0 and first["alerts.critical"] == 1 and first["alerts.warning"] == 0
    assert first["last.reward_mean"] == pytest.approx(0.9) and first["best.loss"] == pytest.approx(0.1)
    assert first["args.learning_rate"] == 1e-5 and first["versions.trl"] == "1.16.0"
    assert first["source"] == "rldk" and first["folder"] == str(tmp_path / "lr_1e-5" / "s0")
    assert "name.lr" not in table.columns  # recorded arguments: the folder names are not needed
    second = table.loc["lr_1e-4/s0/grpo"]
    assert second["status"] == "running" and second["step"] == 4 and second["duration_s"] == 4.0
    hf = table.loc["hf/beta=0.04_s1"]
    assert (hf["source"], hf["step"], hf["max_steps"]) == ("hf", 3, 6)
    assert hf["name.beta"] == 0.04 and hf["name.s"] == 1 and hf["model"] == "base/x" and hf["status"] == "finished"
    assert hf["state.train_batch_size"] == 8 and hf["trial.lr"] == 0.5 and hf["duration_s"] == 12.5
    assert table["step"].dtype == "Int64" and table["last.loss"].dtype == "float64"


def test_columns_and_attrs():
    ref = RunRef("r", "r", "rldk", "/x", "", "r")
    summary = RunSummary()
    summary.add_records([{"step": 1, "loss": 0.5, "reward_mean": 1.0}])
    table = runs_table([ref], {"r": summary}, {"r": {"args.beta": 0.1, "status": "odd", "last.loss": 3}}, now=T0)
    assert list(table.columns[:12]) == ["run_id", "name", "source", "folder", "trainer", "status", "step",
                                        "max_steps", "duration_s", "started", "last_activity", "duplicate_of"]
    assert table.attrs["metric_columns"] == ["last.reward_mean", "best.reward_mean", "last.kl_mean",
                                             "last.entropy_mean", "last.loss", "best.loss"]
    assert table.attrs["alert_columns"] == ["alerts.info", "alerts.warning", "alerts.critical"]
    assert table.attrs["config_columns"] == ["args.beta", "config.last.loss", "config.status"]  # never shadowing
    assert table.loc[0, "status"] == "stopped" and table.loc[0, "config.status"] == "odd"
    empty = runs_table([], {}, now=T0)
    assert len(empty) == 0 and "run_id" in empty.columns
    custom = runs_table([ref], {"r": summary}, now=T0, metrics=["loss"])
    assert custom.attrs["metric_columns"] == ["last.loss", "best.loss"]


def test_differing_keys():
    configs = {
        "a": {"args.learning_rate": 1e-5, "args.seed": 0, "model": "m", "args.output_dir": "a", "x": math.nan},
        "b": {"args.learning_rate": 1e-4, "args.seed": 0, "model": "m", "args.output_dir": "b", "x": math.nan},
        "c": {"args.learning_rate": 1e-5, "args.seed": 1, "model": "m", "args.output_dir": "c", "x": math.nan,
              "args.beta": 0.1},
    }
    assert differing_keys(configs, ["a", "b"]) == ["args.learning_rate"]
    assert differing_keys(configs, ["a", "c"]) == ["args.beta", "args.seed"]  # a missing key is the default
    assert differing_keys(configs) == ["args.beta", "args.learning_rate", "args.seed"]
    assert differing_keys(configs, ["a"]) == []
    assert differing_keys(configs, ["a", "b"], ignore=()) == ["args.learning_rate", "args.output_dir"]
    assert differing_keys({"a": {"k": 1}, "b": {"k": 1.0}}) == []
    assert differing_keys({"a": {"k": True}, "b": {"k": 1}}) == ["k"]


def test_status_transitions_through_the_files(tmp_path):
    clock = Clock(T0 + 5)
    write_run(tmp_path, "r", 5, info={"max_steps": 50, "started": T0, "timestamp": T0})
    sweep = Sweep(tmp_path, clock=clock, stale_after=600)
    sweep.refresh()
    assert sweep.status("r") == "running"
    clock.now = T0 + 4 + 600
    sweep.refresh()
    assert sweep.status("r") == "stopped"
    write_run(tmp_path, "r", 3, t0=T0 + 1000, start=5)
    clock.now = T0 + 1010
    sweep.refresh()
    assert sweep.status("r") == "running" and sweep.summary("r").step == 7
    info = RunStore(tmp_path, "r").read_info()
    RunStore(tmp_path, "r").write_info({**info, "train_runtime": 1007.0, "finished": T0 + 1008})
    sweep.refresh()
    assert sweep.status("r") == "finished"
    RunStore(tmp_path, "r").write_info({"max_steps": 50, "started": T0 + 2000, "timestamp": T0 + 2000})  # run again
    clock.now = T0 + 2001
    sweep.refresh()
    assert sweep.status("r") == "running"
    sweep.close()


def test_nothing_is_read_when_nothing_changed_and_only_the_appending_run_otherwise(tmp_path):
    for i in range(20):
        write_run(tmp_path / f"run{i}", "r", 50)
    fs = CountingFS()
    sweep = Sweep(tmp_path, fs=fs, cache=False)
    sweep.refresh()
    assert len(fs.reads) >= 20
    fs.reads.clear()
    assert sweep.refresh().changed == [] and fs.reads == []
    write_run(tmp_path / "run7", "r", 5, start=50)
    update = sweep.refresh()
    # only the file that grew is read; the others (missing, or unchanged) cost a stat
    assert len(update.changed) == 1 and set(fs.reads) == {"r_metrics.json"}
    assert sweep.summary(update.changed[0]).step == 54 and sweep.summary(update.changed[0]).records == 55
    sweep.close()


def test_runs_appearing_and_deleted_and_files_replaced(tmp_path):
    sweep = Sweep(tmp_path, cache=False)
    write_run(tmp_path / "a", "r", 3)
    assert len(sweep.refresh().added) == 1
    write_run(tmp_path / "b", "r", 3)
    update = sweep.refresh()
    assert len(update.added) == 1 and len(sweep.runs) == 2
    (run_id,) = [rid for rid, ref in sweep.runs.items() if ref.rel == "a"]
    path = tmp_path / "a" / "r_metrics.json"
    replacement = tmp_path / "a" / "new.json"
    replacement.write_text('[\n{"step": 0, "loss": 9.0}\n]\n')
    os.replace(replacement, path)
    sweep.refresh()
    assert sweep.summary(run_id).step == 0 and sweep.summary(run_id).last("loss") == 9.0
    for file in (tmp_path / "b").iterdir():
        file.unlink()
    update = sweep.refresh()
    assert len(update.removed) == 1 and len(sweep.table()) == 1
    sweep.close()


def test_damaged_files_are_reported(tmp_path):
    write_run(tmp_path / "a", "r", 3)
    with open(tmp_path / "a" / "r_metrics.json", "ab") as f:
        f.write(b"\x00garbage{{{\n")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "trainer_state.json").write_text("{not json")
    with Sweep(tmp_path, cache=False) as sweep:
        update = sweep.refresh()
        problems = sweep.problems()
    assert any("a/r:" in p for p in update.problems) and any("hf" in p and "unreadable" in p for p in update.problems)
    assert len(problems) == 2
    assert sweep.table().set_index("name").loc["a/r", "step"] == 2  # the complete records are kept


def test_a_reopened_sweep_reads_no_run_file(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for i in range(6):
        write_run(sweep_dir / f"lr_{i}", "grpo", 200, info=grpo_info(i * 1e-5, 0, finished=T0 + 300))
    hf_folder(sweep_dir / "hf_run")
    before = sorted(p.relative_to(sweep_dir) for p in sweep_dir.rglob("*"))
    with Sweep(sweep_dir, clock=Clock(T0 + 400)) as first:
        first.refresh()
        expected = first.table()
    fs = CountingFS()
    with Sweep(sweep_dir, fs=fs, clock=Clock(T0 + 400)) as again:
        again.refresh()
        table = again.table()
    assert fs.reads == []  # every summary and configuration came from the cache
    pd.testing.assert_frame_equal(table, expected)
    assert sorted(p.relative_to(sweep_dir) for p in sweep_dir.rglob("*")) == before  # nothing written there
    cache_files = list((tmp_path / "user-cache" / "summaries").iterdir())
    assert len(cache_files) == 1
    cached = json.loads(cache_files[0].read_text())
    assert cached["root"] == "local:" + os.path.realpath(sweep_dir) and len(cached["runs"]) == 7

    write_run(sweep_dir / "lr_2", "grpo", 5, start=200)  # changed since: read again, whole
    fs = CountingFS()
    with Sweep(sweep_dir, fs=fs, clock=Clock(T0 + 400)) as third:
        third.refresh()
        changed = third.table().set_index("name").loc["lr_2/grpo"]
    assert set(fs.reads) == {"grpo_metrics.json", "grpo_run_info.json"}  # the files that are there (the others: a stat)
    assert changed["step"] == 204 and changed["args.learning_rate"] == 2e-5


def test_a_damaged_or_foreign_cache_is_ignored(tmp_path):
    write_run(tmp_path / "s", "a", 3)
    with Sweep(tmp_path / "s") as sweep:
        sweep.refresh()
    (path,) = (tmp_path / "user-cache" / "summaries").iterdir()
    document = json.loads(path.read_text())
    entry = next(iter(document["runs"].values()))
    entry["summary"]["series"]["loss"] = ["garbage"]
    path.write_text(json.dumps(document))
    fs = CountingFS()
    with Sweep(tmp_path / "s", fs=fs) as sweep:
        sweep.refresh()
        assert sweep.table()["step"].tolist() == [2] and fs.reads  # read again
    path.write_text("not json at all")
    with Sweep(tmp_path / "s") as sweep:
        update = sweep.refresh()
        assert sweep.table()["step"].tolist() == [2] and any("cache" in p for p in update.problems)


def test_no_cache_when_asked(tmp_path):
    write_run(tmp_path / "s", "a", 3)
    with Sweep(tmp_path / "s", cache=False) as sweep:
        sweep.refresh()
    assert not (tmp_path / "user-cache").exists()
    explicit = SummaryCache("mine", tmp_path / "elsewhere")
    with Sweep(tmp_path / "s", cache=explicit) as sweep:
        sweep.refresh()
    assert explicit.path.exists()


def test_a_malicious_training_args_bin_is_never_loaded_by_a_sweep(tmp_path, monkeypatch):
    marker, payload = live_payload(tmp_path)
    sweep_dir = tmp_path / "sweep"
    for name in ("lr_1e-5_s0", "lr_1e-4_s0"):
        hf_folder(sweep_dir / name)
        for where in (sweep_dir / name, sweep_dir / name / "checkpoint-3"):
            (where / "training_args.bin").write_bytes(payload)
    refuse_pickles(monkeypatch)
    for attempt in range(2):  # read, then from the cache
        fs = CountingFS()
        with Sweep(sweep_dir, fs=fs) as sweep:
            sweep.refresh()
            table = sweep.table()
        assert len(table) == 2 and set(table["name.lr"]) == {1e-5, 1e-4}
        assert table["model"].tolist() == ["base/x", "base/x"] and table["status"].tolist() == ["finished"] * 2
        assert not [name for name in fs.reads if name.endswith(".bin")]
    assert not marker.exists()


def test_hf_folder_status_from_its_history(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    state = {"max_steps": 4, "log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]}
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps(state))
    clock = Clock(time.time())
    sweep = Sweep(tmp_path, clock=clock, cache=False)
    sweep.refresh()
    (run_id,) = sweep.runs
    assert sweep.status(run_id) == "running"  # just written (modification time)
    clock.now += 601
    assert sweep.status(run_id) == "stopped"
    state["log_history"] += [{"step": 3, "loss": 0.4}, {"step": 3, "train_runtime": 7.5, "train_loss": 0.6}]
    (run / "trainer_state.json").write_text(json.dumps(state))
    sweep.refresh()
    assert sweep.status(run_id) == "finished" and sweep.summary(run_id).duration == 7.5
    assert sweep.summary(run_id).step == 3 and sweep.summary(run_id).max_steps == 4
    sweep.close()


def test_a_checkpoint_state_written_after_its_folder_is_read(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-1").mkdir(parents=True)
    sweep = Sweep(run, cache=False)
    sweep.refresh()
    assert sweep.summary("hf_run").step is None
    (run / "checkpoint-1" / "trainer_state.json").write_text(json.dumps(
        {"max_steps": 9, "log_history": [{"step": 1, "loss": 1.0}]}))
    sweep.refresh()
    assert sweep.summary("hf_run").step == 1
    sweep.close()


def test_duplicate_of_links_an_hf_folder_to_the_run_recorded_from_it(tmp_path):
    out = tmp_path / "out"
    hf_folder(out)
    info = grpo_info(1e-5, 0)
    info["config"]["output_path"] = str(out)
    write_run(out / "rldk_logs", "grpo", 3, info=info)
    with Sweep(tmp_path, cache=False) as sweep:
        sweep.refresh()
        table = sweep.table().set_index("name")
    assert table.loc["out", "duplicate_of"] == table.loc["out/rldk_logs/grpo", "run_id"]
    assert pd.isna(table.loc["out/rldk_logs/grpo", "duplicate_of"])


def test_default_selection():
    refs = [RunRef(f"r{i}", f"r{i}", "rldk", "/x", "", f"r{i}") for i in range(14)]
    summaries = {}
    for i, ref in enumerate(refs):
        summary = RunSummary()
        if i != 3:
            summary.add_records([{"step": 1, "timestamp": T0 + (i * 7) % 14}])
        summaries[ref.run_id] = summary
    from rldk_widget.runs import default_selection

    assert default_selection(refs[:10], summaries) == [f"r{i}" for i in range(10)]
    newest = sorted((i for i in range(14) if i != 3), key=lambda i: (i * 7) % 14, reverse=True)[:10]
    assert default_selection(refs, summaries) == [f"r{i}" for i in sorted(newest)]
    assert "r3" not in default_selection(refs, summaries, limit=13)


def test_a_hostile_run_info_config_stays_bounded(tmp_path):
    deep: dict = {}
    node = deep
    for _ in range(900):
        node["k"] = {}
        node = node["k"]
    config = {"run_id": "evil", "deep": deep, "nested_list": [[[[1]]]], "args": {f"a{i}": i for i in range(5000)}}
    write_run(tmp_path, "r", 2)
    (tmp_path / "r_run_info.json").write_text(json.dumps({"config": config}))
    with Sweep(tmp_path, cache=False) as sweep:
        sweep.refresh()
        table = sweep.table()
    assert len(table.columns) < 600 and table.loc[0, "config.run_id"] == "evil" and table.loc[0, "run_id"] == "r"
    assert table.loc[0, "nested_list"] == "[[[[1]]]]" and not [c for c in table.columns if c.count(".") > 8]
