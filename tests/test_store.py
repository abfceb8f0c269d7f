"""RunStore: formats, O(1) appends that keep the file valid, damaged files, incremental reads, run ids."""

import json
import math
import os
import threading

import pytest

from rldk_widget import tailfile
from rldk_widget.store import RunStore, default_run_id, discover_runs, validate_run_id


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_appends_keep_a_valid_json_array_after_every_record(tmp_path):
    store = RunStore(tmp_path, "run")
    for step in range(5):
        store.append_metrics({"step": step, "loss": 1 / (step + 1)})
        assert [r["step"] for r in read_json(tmp_path / "run_metrics.json")] == list(range(step + 1))


def test_nan_and_infinity_round_trip(tmp_path):
    store = RunStore(tmp_path, "run")
    store.append_metrics({"step": 1, "loss": math.nan, "kl": math.inf, "x": -math.inf, "z": -0.0})
    (record,) = RunStore(tmp_path, "run").read_all().metrics
    assert math.isnan(record["loss"]) and record["kl"] == math.inf and record["x"] == -math.inf
    assert math.copysign(1, record["z"]) == -1


def test_legacy_pretty_printed_file_loads_and_accepts_appends(tmp_path):
    path = tmp_path / "old_metrics.json"
    path.write_text(json.dumps([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], indent=2) + "\n\n")
    store = RunStore(tmp_path, "old", follow=True)
    assert [r["step"] for r in store.read_new().metrics] == [1, 2]
    store.append_metrics({"step": 3, "loss": 1.0})
    assert [r["step"] for r in read_json(path)] == [1, 2, 3]
    assert [r["step"] for r in store.read_new().metrics] == [3]


def test_single_object_file_is_read_and_becomes_an_array_on_append(tmp_path):
    (tmp_path / "one_alerts.json").write_text('{"type": "x", "message": "m", "step": 1}')
    store = RunStore(tmp_path, "one", follow=True)
    first = store.read_new()
    assert first.alerts == [{"type": "x", "message": "m", "step": 1}]
    assert any("single object" in p for p in first.problems)
    assert store.read_new().alerts == []
    store.append_alert({"type": "y", "message": "n", "step": 2})
    assert [a["type"] for a in read_json(tmp_path / "one_alerts.json")] == ["x", "y"]
    assert [a["type"] for a in store.read_new().alerts] == ["y"]


@pytest.mark.parametrize(
    ("content", "steps", "problem"),
    [
        (b"", [], None),
        (b"   \n\t", [], None),
        (b"\xef\xbb\xbf[\n{\"step\": 1}\n]", [1], None),
        (b'[\n{"step": 1},\n{"step": 2},\n{"step": 3, "lo', [1, 2], "incomplete last record"),
        (b'[\n{"step": 1},\n{"step": 2}', [1, 2], None),
        (b'[\n{"step": 1},', [1], None),
        (b'[\n{"step": 1},]', [1], None),
        (b'[\n{"step": 1, "loss": NaN},\n{"step": 2, "loss": Infinity}\n]', [1, 2], None),
        (b'[\n{"step": 1},\n7,\n"text",\n[1],\n{"step": 2}\n]', [1, 2], "not objects"),
        (b'[\n{"step": 2},\n{"step": 1},\n{"step": 1}\n]', [2, 1, 1], None),
        (b'[\n{"step": 1, "name": "caf\xe9"},\n{"step": 2}\n]', [1, 2], None),
        (b"not json at all", [], "not a JSON array"),
    ],
)
def test_damaged_files_keep_every_complete_record(tmp_path, content, steps, problem):
    (tmp_path / "r_metrics.json").write_bytes(content)
    data = RunStore(tmp_path, "r").read_all()
    assert [record["step"] for record in data.metrics] == steps
    if problem:
        said = data.problems + [c for c in data.conditions.values() if c]
        assert any(problem in p for p in said), said


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    (tmp_path / "r_alerts.json").write_bytes(b'[\n{"step": 1, "message": "bad \xff byte"}\n]')
    (alert,) = RunStore(tmp_path, "r").read_all().alerts
    assert alert["message"] == "bad \ufffd byte"


@pytest.mark.parametrize(
    "torn",
    [b'[\n{"step": 1},\n{"step": 2},\n{"st', b'[\n{"step": 1},\n{"step": 2},', b'[\n{"step": 1},\n{"step": 2}],'],
)
def test_next_append_repairs_a_torn_tail(tmp_path, torn):
    path = tmp_path / "r_metrics.json"
    path.write_bytes(torn)
    RunStore(tmp_path, "r").append_metrics({"step": 3})
    assert [r["step"] for r in read_json(path)] == [1, 2, 3]


@pytest.mark.parametrize(
    "torn",
    [b'[\n{"step": 1},\n{"step": 2},\n{"st', b'[\n{"step": 1},\n{"step": 2},', b'[\n{"step": 1},\n{"step": 2}],'],
)
def test_writer_finds_the_end_of_a_large_file_without_reading_it(tmp_path, monkeypatch, torn):
    """A writer-only store skips to the end of a large, cleanly ended file (no parse of the records); a torn end
    still gets the full read and the repair."""
    monkeypatch.setattr(tailfile, "WRITER_SKIP_BYTES", 0)
    parsed: list[int] = []
    parse = tailfile.JsonArrayFile._parse

    def counting_parse(self, chunk, at_start, final):
        parsed.append(len(chunk))
        return parse(self, chunk, at_start, final)

    monkeypatch.setattr(tailfile.JsonArrayFile, "_parse", counting_parse)
    clean, damaged = tmp_path / "clean", tmp_path / "damaged"
    with RunStore(clean, "r") as first:
        first.append_metrics_many([{"step": i, "note": "}\n]"} for i in range(1000)])
    parsed.clear()
    with RunStore(clean, "r") as resumed:
        resumed.append_metrics({"step": 1000})
        resumed.append_metrics({"step": 1001})
    assert sum(parsed) < 100
    assert [r["step"] for r in read_json(clean / "r_metrics.json")] == list(range(1002))

    damaged.mkdir()
    (damaged / "r_metrics.json").write_bytes(torn)
    RunStore(damaged, "r").append_metrics({"step": 3})
    assert [r["step"] for r in read_json(damaged / "r_metrics.json")] == [1, 2, 3]


def test_incremental_reads_return_only_new_records(tmp_path):
    writer, reader = RunStore(tmp_path, "r"), RunStore(tmp_path, "r", follow=True)
    writer.append_metrics_many([{"step": i} for i in range(100)])
    assert len(reader.read_new().metrics) == 100
    assert reader.read_new().metrics == []
    writer.append_metrics({"step": 100})
    data = reader.read_new()
    assert [r["step"] for r in data.metrics] == [100] and not data.reset


def test_replaced_or_shrunk_file_is_read_again_whole(tmp_path):
    writer, reader = RunStore(tmp_path, "r"), RunStore(tmp_path, "r", follow=True)
    writer.append_metrics_many([{"step": i} for i in range(10)])
    reader.read_new()
    replacement = tmp_path / "tmp.json"
    replacement.write_text(json.dumps([{"step": 0}, {"step": 1}]))
    os.replace(replacement, tmp_path / "r_metrics.json")
    data = reader.read_new()
    assert "metrics" in data.reset and [r["step"] for r in data.metrics] == [0, 1]


def test_rewritten_in_place_with_same_size_is_detected(tmp_path):
    path = tmp_path / "r_metrics.json"
    writer, reader = RunStore(tmp_path, "r"), RunStore(tmp_path, "r", follow=True)
    writer.append_metrics_many([{"step": i, "v": 1} for i in range(3)])
    reader.read_new()
    text = path.read_text().replace('"v":1', '"v":2')
    with open(path, "r+") as handle:
        handle.write(text)
        handle.write('\n')
    data = reader.read_new()
    assert "metrics" in data.reset and [r["v"] for r in data.metrics] == [2, 2, 2]


def test_own_appends_and_foreign_appends_are_each_delivered_once(tmp_path):
    mine, other = RunStore(tmp_path, "r", follow=True), RunStore(tmp_path, "r")
    mine.append_metrics({"step": 1})
    other.append_metrics({"step": 2})
    mine.append_metrics({"step": 3})
    other.append_metrics({"step": 4})
    assert sorted(r["step"] for r in mine.read_new().metrics) == [1, 2, 3, 4]
    assert mine.read_new().metrics == []
    assert [r["step"] for r in read_json(tmp_path / "r_metrics.json")] == [1, 2, 3, 4]


def test_csv_header_written_once_and_widened_when_new_columns_appear(tmp_path):
    store = RunStore(tmp_path, "r")
    store.append_csv("ppo_metrics", {"step": 1, "objective/kl": 0.5})
    store.append_csv("ppo_metrics", {"step": 2, "objective/kl": 0.25, "loss/value_avg": 3})
    lines = (tmp_path / "r_ppo_metrics.csv").read_text().splitlines()
    assert lines == ["step,objective/kl,loss/value_avg", "1,0.5,", "2,0.25,3"]
    rows = RunStore(tmp_path, "r").read_all().ppo_metrics
    assert rows == [{"step": 1, "objective/kl": 0.5}, {"step": 2, "objective/kl": 0.25, "loss/value_avg": 3}]


def test_csv_damage_is_reported_and_complete_rows_kept(tmp_path):
    (tmp_path / "r_checkpoint_summary.csv").write_text("step,size_mb\n1,2.5\n2,3.0,extra\n3\n4,5.")
    data = RunStore(tmp_path, "r").read_all()
    assert [row["step"] for row in data.checkpoint_summary] == [1, 2, 3]
    assert any("missing or extra" in p for p in data.problems)
    assert data.conditions["r_checkpoint_summary.csv"].startswith("r_checkpoint_summary.csv: incomplete last line")
    assert not any("incomplete" in p for p in data.problems)  # a state of the file, not damage said once


def test_csv_without_step_column_uses_the_row_number(tmp_path):
    (tmp_path / "r_ppo_metrics.csv").write_text("kl,loss\n0.1,1\n0.2,2\n")
    data = RunStore(tmp_path, "r").read_all()
    assert [row["step"] for row in data.ppo_metrics] == [0, 1]
    assert any("no 'step' column" in p for p in data.problems)


def test_csv_torn_tail_repaired_by_next_append(tmp_path):
    path = tmp_path / "r_ppo_metrics.csv"
    path.write_text("step,kl\n1,0.1\n2,0.")
    RunStore(tmp_path, "r").append_csv("ppo_metrics", {"step": 3, "kl": 0.3})
    assert path.read_text() == "step,kl\n1,0.1\n3,0.3\n"


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a*", "x" * 129, "run id", "ü"])
def test_unsafe_run_ids_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError):
        RunStore(tmp_path, bad)


def test_run_id_type_checked_and_default_is_timestamped():
    with pytest.raises(TypeError):
        validate_run_id(None)
    assert validate_run_id(default_run_id()).startswith("rldk_run_")


def test_discovery_uses_exact_file_names(tmp_path):
    for name in ["a_metrics.json", "a_ppo_metrics.csv", "x_ppo_alerts.json", "b_checkpoint_summary.csv",
                 "None_metrics.json.bak", "notes.txt", "c_metrics.jsonl"]:
        (tmp_path / name).write_text("")
    assert discover_runs(tmp_path) == ["a", "b", "x_ppo"]
    assert discover_runs(tmp_path / "missing") == []


def test_symlinked_run_file_is_not_followed_for_writing(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("[]")
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    (run_dir / "r_metrics.json").symlink_to(outside)
    store = RunStore(run_dir, "r")
    store.append_metrics({"step": 1})
    assert outside.read_text() == "[]"
    assert store.write_errors


def test_write_error_keeps_records_and_flushes_them_later(tmp_path, monkeypatch):
    import errno

    import rldk_widget.store as store_module

    real_pwrite = os.pwrite

    def disk_full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    store = RunStore(tmp_path, "r", follow=True)
    store.append_metrics({"step": 0})
    monkeypatch.setattr(store_module.os, "pwrite", disk_full)
    store.append_metrics({"step": 1})
    assert store.write_errors == ["cannot write r_metrics.json: No space left on device"]
    assert [r["step"] for r in store.read_new().metrics] == [0, 1]
    assert [r["step"] for r in read_json(tmp_path / "r_metrics.json")] == [0]
    monkeypatch.setattr(store_module.os, "pwrite", real_pwrite)
    store.append_metrics({"step": 2})
    assert not store.write_errors
    assert [r["step"] for r in read_json(tmp_path / "r_metrics.json")] == [0, 1, 2]
    assert [r["step"] for r in store.read_new().metrics] == [2]


def test_eight_threads_appending_at_once_lose_nothing(tmp_path):
    stores = [RunStore(tmp_path, "r") for _ in range(2)]

    def work(thread_index):
        store = stores[thread_index % 2]
        for i in range(500):
            store.append_metrics({"step": thread_index * 1000 + i, "thread": thread_index})
            if i % 50 == 0:
                store.append_alert({"type": "t", "message": str(i), "step": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = read_json(tmp_path / "r_metrics.json")
    assert sorted(r["step"] for r in records) == sorted(t * 1000 + i for t in range(8) for i in range(500))
    assert len(read_json(tmp_path / "r_alerts.json")) == 8 * 10


def test_run_info_is_replaced_whole_and_read_when_changed(tmp_path):
    writer, reader = RunStore(tmp_path, "run"), RunStore(tmp_path, "run")
    assert reader.read_info() is None  # no file yet
    writer.write_info({"max_steps": 100, "trainer": "grpo"})
    assert reader.read_info() == {"max_steps": 100, "trainer": "grpo"}
    assert reader.read_info() is None  # unchanged since the last call
    writer.write_info({"max_steps": 100, "trainer": "grpo", "train_runtime": 12.5})
    assert reader.read_info()["train_runtime"] == 12.5
    assert [p.name for p in tmp_path.iterdir()] == ["run_run_info.json"]  # no temporary file left behind
    writer.info_path.write_text('{"max_steps": 1')  # torn by a foreign writer: skipped, not raised
    assert reader.read_info() is None
