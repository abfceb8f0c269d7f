"""The sample model (samples.py) and its file (`{run_id}_samples.json` through RunStore / IndexedJsonArrayFile):
texts rendered and capped with the cut marked, content keys, the records a batch gives, reading records back with
their byte ranges whatever the damage."""

from __future__ import annotations

import math
import os

import orjson
import pytest

from rldk_widget.samples import (
    BatchKeys,
    RawBatch,
    SampleSettings,
    batch_records,
    cap_text,
    content_text,
    group_prefix,
    meta_from_record,
    render_text,
    total_reward,
)
from rldk_widget.store import RECORD_KINDS, RunStore, discover_runs
from rldk_widget.tailfile import RECORD_AT, RECORD_HEAD, IndexedJsonArrayFile

HOSTILE = "<img src=x onerror=alert(1)>\x00\u202eevil\u200b\x1b[31mred\x1b[0m **bold** \ud800"


def batch(step=1, groups=2, size=2, prompt="p", completion="c", advantages=None, **kwargs) -> RawBatch:
    prompts = [f"{prompt}{g}" for g in range(groups) for _ in range(size)]
    completions = [f"{completion}{i}" for i in range(groups * size)]
    n = len(prompts)
    return RawBatch(
        step=step, prompts=prompts, completions=completions,
        rewards={"r1": [float(i) for i in range(n)], "r2": [0.5] * n},
        advantages=advantages if advantages is not None else [0.1 * i for i in range(n)], **kwargs,
    )


# ---- text ---------------------------------------------------------------------------------------------------
def test_render_text_of_strings_chat_messages_and_anything_else():
    assert render_text("plain") == "plain"
    assert render_text(None) == ""
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]
    assert render_text(chat) == "system: be brief\n\nuser: 2+2?"
    assert content_text([{"role": "assistant", "content": "4"}]) == "4"
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]}]
    assert render_text(parts) == "user: [image]what is it?"
    calls = [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}]}]
    assert render_text(calls) == 'assistant: \n[tool call] add({"a":1})'
    # parquet struct columns come back with every field, None where a message had none
    assert render_text([{"role": "user", "content": "hi", "tool_calls": None}]) == "user: hi"
    assert render_text(42) == "42" and render_text([1, 2]) == "[1,2]" and render_text({"a": 1}) == '{"a":1}'
    assert render_text(b"caf\xc3\xa9 \xff") == "café \ufffd"

    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

        def __repr__(self):
            raise RuntimeError("no")

    assert render_text(Hostile()) == "<Hostile>"


def test_hostile_text_is_kept_literally_except_lone_surrogates():
    text = render_text(HOSTILE)
    assert text == HOSTILE.replace("\ud800", "\ufffd")
    orjson.dumps(text)  # storable


def test_cap_text_cuts_at_a_character_boundary_and_says_so():
    assert cap_text("abc", 16) == ("abc", False)
    text = "é" * 100  # 200 bytes
    cut, was_cut = cap_text(text, 101)
    assert was_cut and cut == "é" * 50 and len(cut.encode()) <= 101
    assert cap_text("a" * 64, 64) == ("a" * 64, False)


def test_settings_are_validated():
    with pytest.raises(ValueError):
        SampleSettings(per_step=0)
    with pytest.raises(ValueError):
        SampleSettings(every=True)
    with pytest.raises(ValueError):
        SampleSettings(text_cap_bytes=1)


# ---- identity and records ------------------------------------------------------------------------------------
def test_keys_depend_on_content_not_on_the_step_and_identical_samples_stay_distinct():
    a, b = BatchKeys(), BatchKeys()
    first = [a.key("p", "c", 0.0), a.key("p", "c", 0.0), a.key("p", "d", 0.0)]
    assert len(set(first)) == 3  # two identical completions of one group are two samples
    assert [b.key("p", "c", 0.0), b.key("p", "c", 0.0), b.key("p", "d", 0.0)] == first  # same batch, same keys
    assert BatchKeys().key("p", "c", 0.5) != first[0]
    assert BatchKeys().key("p", "c", math.nan) == BatchKeys().key("p", "c", float("nan"))
    assert BatchKeys().key("pc", "", 0.0) != BatchKeys().key("p", "c", 0.0)  # length-prefixed parts


def test_group_prefix_keeps_whole_groups():
    prompts = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert group_prefix(prompts, 12) == 12
    assert group_prefix(prompts, 9) == 8
    assert group_prefix(prompts, 3) == 3  # a first group larger than the limit: the limit
    assert group_prefix(prompts[:9], 8) == 8  # a copy of limit + 1 rows is enough to decide


def test_batch_records_fields_and_total_reward():
    records = batch_records(batch(reward_weights={"r1": 2.0, "r2": 1.0}), SampleSettings(), "run", 100.0)
    assert len(records) == 4
    first = records[0]
    assert list(first)[-2:] == ["prompt", "completion"]  # texts last: the index parses the lines up to them
    assert first["step"] == 1 and first["run_id"] == "run" and first["index"] == 0 and first["source"] == "live"
    assert first["rewards"] == {"r1": 0.0, "r2": 0.5} and first["reward"] == 0.5
    assert records[1]["reward"] == 2.5  # weighted: 2 × 1 + 0.5
    assert first["advantage"] == 0.0 and first["empty"] is False and "cut" not in first and "extra" not in first
    assert first["prompt_id"] == records[1]["prompt_id"] != records[2]["prompt_id"]
    assert len({r["id"] for r in records}) == 4
    assert first["completion_length"] is None and first["truncated"] is None
    assert [r["id"] for r in batch_records(batch(step=7), SampleSettings(), "run", 0.0)] == [r["id"] for r in records]


def test_batch_records_bounded_per_step_by_whole_groups():
    records = batch_records(batch(groups=5, size=4), SampleSettings(per_step=10), "run", 0.0)
    assert len(records) == 8 and {r["prompt"] for r in records} == {"p0", "p1"}


def test_nan_rewards_are_null_and_all_nan_total_is_null():
    raw = batch(groups=1, size=2)
    raw.rewards = {"r1": [None, math.nan], "r2": [math.nan, 1.0]}
    raw.advantages = [math.nan, math.inf]
    records = batch_records(raw, SampleSettings(), "run", 0.0)
    assert records[0]["rewards"] == {"r1": None, "r2": None} and records[0]["reward"] is None
    assert records[1]["reward"] == 1.0
    assert records[0]["advantage"] is None and records[1]["advantage"] is None
    for record in records:
        orjson.dumps(record)  # the orjson fast path: no NaN token


def test_truncated_and_lengths_from_clipped_ratio_and_token_counts():
    def count(texts):
        return [len(t) for t in texts]

    raw = batch(groups=1, size=3, completion="x" * 7, max_completion_length=8)  # "xxxxxxx0" … 8 characters
    raw.completions = ["", "abcdefgh", "abc"]
    records = batch_records(raw, SampleSettings(), "run", 0.0, count)
    assert [r["completion_length"] for r in records] == [0, 8, 3]
    assert [r["truncated"] for r in records] == [False, True, False]
    assert [r["empty"] for r in records] == [True, False, False]
    raw.clipped_ratio = 0.0  # TRL says none was truncated
    assert [r["truncated"] for r in batch_records(raw, SampleSettings(), "run", 0.0, count)] == [False] * 3
    raw.clipped_ratio = 1.0  # all were: they stopped at max_completion_length
    records = batch_records(raw, SampleSettings(), "run", 0.0, count)
    assert [(r["truncated"], r["completion_length"]) for r in records] == [(True, 8)] * 3
    raw.clipped_ratio = 0.5
    raw.length_range = (2.0, 6.0)  # re-tokenized counts stay within the log's min / max length
    assert [r["completion_length"] for r in batch_records(raw, SampleSettings(), "run", 0.0, count)] == [2, 6, 3]

    raw.length_range = (5.0, 5.0)  # the log says every completion has 5 tokens: exact, nothing counted

    def not_called(texts):
        raise AssertionError("counted")

    assert [r["completion_length"] for r in batch_records(raw, SampleSettings(), "run", 0.0, not_called)] == [5] * 3
    raw.length_range = None

    def broken(texts):
        raise RuntimeError("tokenizer gone")

    raw.clipped_ratio = None
    assert [r["completion_length"] for r in batch_records(raw, SampleSettings(), "run", 0.0, broken)] == [None] * 3


def test_texts_capped_on_disk_with_the_cut_marked_and_keys_on_the_whole_text():
    raw = batch(groups=1, size=2)
    raw.completions = ["x" * 100_000, "y"]
    raw.prompts = ["é" * 40_000, "é" * 40_000]
    records = batch_records(raw, SampleSettings(text_cap_bytes=1000), "run", 0.0)
    assert records[0]["cut"] == ["prompt", "completion"] and records[1]["cut"] == ["prompt"]
    assert len(records[0]["completion"]) == 1000 and records[0]["completion_chars"] == 100_000
    assert len(records[0]["prompt"].encode()) <= 1000 and records[0]["prompt_chars"] == 40_000
    other = batch(groups=1, size=2)
    other.completions = ["x" * 100_000 + "z", "y"]
    other.prompts = raw.prompts
    assert batch_records(other, SampleSettings(text_cap_bytes=1000), "run", 0.0)[0]["id"] != records[0]["id"]


def test_chat_batches_and_extra_columns():
    raw = RawBatch(
        step=3,
        prompts=[[{"role": "user", "content": "hi"}]] * 2,
        completions=[[{"role": "assistant", "content": "  "}], [{"role": "assistant", "content": "hello"}]],
        rewards={"r": [1.0, 2.0]}, advantages=[-1.0, 1.0],
        extra={"golden": ["a", "b"], "score": [1.5, math.nan], "blob": [{"k": [1, 2]}, "z" * 10_000]},
    )
    records = batch_records(raw, SampleSettings(), "run", 0.0)
    assert records[0]["prompt"] == "user: hi" and records[1]["completion"] == "assistant: hello"
    assert records[0]["empty"] is True and records[1]["empty"] is False  # the content, not the role
    assert records[0]["extra"] == {"golden": "a", "score": 1.5, "blob": '{"k":[1,2]}'}
    assert records[1]["extra"]["score"] is None and len(records[1]["extra"]["blob"]) == 4096


def test_mismatched_and_hostile_batches_do_not_raise():
    raw = RawBatch(step=1, prompts=["a", "b", "c"], completions=["x", HOSTILE], rewards={"r": ["bad", True]},
                   advantages=[1.0])
    records = batch_records(raw, SampleSettings(), "run", 0.0)
    assert len(records) == 2 and records[0]["rewards"] == {"r": None} and records[1]["advantage"] is None
    assert "\ufffd" in records[1]["completion"] and "\x00" in records[1]["completion"]
    orjson.dumps(records)


def test_total_reward_like_trl():
    assert total_reward({"a": 1.0, "b": math.nan}) == 1.0
    assert math.isnan(total_reward({"a": math.nan}))
    assert total_reward({"a": 1.0, "b": 2.0}, {"a": 0.5, "b": 2.0}) == 4.5


def test_meta_from_record_fast_path_and_tolerant_path():
    record = batch_records(batch(), SampleSettings(), "run", 0.0)[1]
    fast = meta_from_record(record, strict=True)
    assert fast is not None and fast.step == 1 and fast.index == 1 and fast.rewards == {"r1": 1.0, "r2": 0.5}
    assert meta_from_record({"step": 1, "completion": "x"}, strict=True) is None
    loose = meta_from_record({"step": 2.0, "prompt": ["not", "text"], "completion": 5, "rewards": {"a": "x"},
                              "advantage": "bad", "truncated": "yes", "cut": "no", "index": -4})
    assert loose is not None and loose.step == 2 and loose.index == 0 and math.isnan(loose.rewards["a"])
    assert loose.truncated is None and loose.cut is False and math.isnan(loose.advantage)
    for bad in ({}, {"step": "1"}, {"step": True}, {"step": 1.5}, {"step": 2**70}):
        assert meta_from_record(bad) is None


# ---- the samples file ------------------------------------------------------------------------------------------
def test_samples_file_kind_in_the_store(tmp_path):
    store = RunStore(tmp_path, "run")
    records = batch_records(batch(), SampleSettings(), "run", 0.0)
    store.append("samples", records)
    store.append("metrics", [{"step": 1, "loss": 0.5}])
    assert (tmp_path / "run_samples.json").is_file()
    assert discover_runs(tmp_path) == ["run"]
    (tmp_path / "other_samples.json").write_text("[\n]\n")
    assert discover_runs(tmp_path) == ["other", "run"]
    reader = RunStore(tmp_path, "run")
    assert "samples" not in RECORD_KINDS and reader.read_new().samples == []  # not read unless asked for
    read = reader.read_new(("samples",)).samples
    assert [{k: v for k, v in r.items() if k != RECORD_AT} for r in read] == records
    data = (tmp_path / "run_samples.json").read_bytes()
    for record in read:
        offset, length = record[RECORD_AT]
        assert orjson.loads(data[offset : offset + length])["id"] == record["id"]
    assert RunStore(tmp_path, "run").read_all(("samples",)).samples[0]["id"] == records[0]["id"]


def test_indexed_reader_offsets_across_appends_and_chunks(tmp_path):
    path = tmp_path / "r_samples.json"
    writer = RunStore(tmp_path, "r")
    reader = IndexedJsonArrayFile(path, follow=False)
    expected = []
    for step in range(1, 30):
        records = batch_records(batch(step=step, completion="é" * step * 50), SampleSettings(), "r", 0.0)
        writer.append("samples", records)
        expected += [r["id"] for r in records]
    seen = []
    while True:
        read = reader.read_new(limit=5000)  # many small chunks
        assert not read.problems
        seen += read.records
        if not read.more:
            break
    data = path.read_bytes()
    assert [r["id"] for r in seen] == expected
    for record in seen:
        offset, length = record[RECORD_AT]
        assert orjson.loads(data[offset : offset + length]) == {k: v for k, v in record.items() if k != RECORD_AT}


def test_head_mode_parses_only_the_fields_before_the_texts(tmp_path):
    store = RunStore(tmp_path, "r")
    store.append("samples", batch_records(batch(), SampleSettings(), "r", 0.0))
    (tmp_path / "r_samples.json").write_bytes(
        (tmp_path / "r_samples.json").read_bytes().replace(b"\n]\n", b',\n{"step": 9, "note": "no texts"}\n]\n'))
    reader = IndexedJsonArrayFile(tmp_path / "r_samples.json", False, head_until=b',"prompt":')
    records = reader.read_new().records
    assert all(r[RECORD_HEAD] and "prompt" not in r and "completion" not in r for r in records[:4])
    assert records[4] == {"step": 9, "note": "no texts", RECORD_AT: records[4][RECORD_AT]}


def test_damaged_torn_and_foreign_samples_files(tmp_path):
    good = [orjson.dumps({"step": i, "prompt": "p", "completion": f"c{i}"}) for i in range(4)]
    path = tmp_path / "r_samples.json"

    def read(content: bytes):
        path.write_bytes(content)
        reader = IndexedJsonArrayFile(path, follow=False)
        return reader.read_new()

    # a damaged line in the middle: skipped, the lines after it keep their offsets
    out = read(b"[\n" + good[0] + b",\n{\"step\": 1, \"pro\x00\xff},\n" + good[2] + b",\n" + good[3] + b"\n]\n")
    assert [r["step"] for r in out.records] == [0, 2, 3] and all(r[RECORD_AT] for r in out.records)
    assert any("1 damaged line" in p for p in out.problems)
    # two records on one line: both kept (without offsets)
    out = read(b"[\n" + good[0] + b", " + good[1] + b",\n" + good[2] + b"\n]\n")
    assert [r["step"] for r in out.records] == [0, 1, 2] and out.records[2][RECORD_AT] is not None
    # a line that starts a record but is not one (a flipped newline): the rest of the chunk read tolerantly
    out = read(b"[\n" + good[0] + b",\n" + good[1][:12] + b"\n" + good[1][12:] + b",\n" + good[2] + b"\n]\n")
    assert [r["step"] for r in out.records] == [0, 1, 2] and out.records[1][RECORD_AT] is None
    # a torn last record (writer killed mid-append)
    out = read(b"[\n" + good[0] + b",\n" + good[1][:10])
    assert [r["step"] for r in out.records] == [0] and "incomplete" in out.condition
    # pretty-printed, and a bare object: read, without offsets
    out = read(orjson.dumps([orjson.loads(g) for g in good], option=orjson.OPT_INDENT_2))
    assert [r["step"] for r in out.records] == [0, 1, 2, 3] and all(r[RECORD_AT] is None for r in out.records)
    out = read(good[0])
    assert [r["step"] for r in out.records] == [0]
    # items that are not objects, a stray bracket, a BOM, an empty file
    out = read(b"\xef\xbb\xbf[\n" + good[0] + b",\n5,\n\"x\",\n]\n" + good[1] + b"\n]\n")
    assert [r["step"] for r in out.records] == [0, 1]
    assert read(b"").records == [] and read(b"[\n]\n").records == []


def test_writer_appends_after_a_torn_record_and_the_file_stays_line_per_record(tmp_path):
    store = RunStore(tmp_path, "r")
    store.append("samples", batch_records(batch(step=1), SampleSettings(), "r", 0.0))
    path = tmp_path / "r_samples.json"
    data = path.read_bytes()
    path.write_bytes(data[:-3] + b',\n{"step": 2, "prompt": "tor')  # a writer killed mid-append
    store = RunStore(tmp_path, "r")
    store.append("samples", batch_records(batch(step=3), SampleSettings(), "r", 0.0))
    read = RunStore(tmp_path, "r").read_new(("samples",))
    assert [r["step"] for r in read.samples] == [1] * 4 + [3] * 4 and not read.problems
    assert all(r[RECORD_AT] is not None for r in read.samples)


def test_special_file_named_like_a_samples_file(tmp_path):
    os.mkfifo(tmp_path / "r_samples.json")
    read = RunStore(tmp_path, "r").read_new(("samples",))
    assert read.samples == [] and "FIFO" in read.conditions["r_samples.json"]
