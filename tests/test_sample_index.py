"""SampleIndex: de-duplication across repeated logs and across sources, step pages (groups, stats, sort, filters,
paging), search (order, progress, cursor), one prompt across steps, samples by id, the DataFrame, and hostile
samples and parquet files."""

from __future__ import annotations

import math
import os
import time

import orjson
import pandas as pd
import pytest

from helpers import json_packer

from rldk_widget.sample_index import SampleIndex, completions_frame
from rldk_widget.samples import RawBatch, SampleSettings, batch_records
from rldk_widget.store import RunStore

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

HOSTILE = "<img src=x onerror=alert(1)>\x00\u202eevil\u200b\x1b[31m"


def make_batch(step: int, tag: str = "", groups: int = 2, size: int = 4, rewards=None, advantages=None,
               prompts=None, completions=None) -> RawBatch:
    prompts = prompts or [f"prompt {tag}{g}" for g in range(groups) for _ in range(size)]
    n = len(prompts)
    completions = completions or [f"completion {tag}{i}" for i in range(n)]
    rewards = rewards or {"r1": [float(i % size) for i in range(n)], "r2": [1.0] * n}
    advantages = advantages if advantages is not None else [float(i % size) - 1.5 for i in range(n)]
    return RawBatch(step, prompts, completions, rewards, advantages)


def write_samples(folder, batches, run_id="run", settings=SampleSettings()) -> RunStore:
    store = RunStore(folder, run_id)
    for batch in batches:
        store.append("samples", batch_records(batch, settings, run_id, 0.0))
    return store


def write_parquet(folder, batch: RawBatch, extra=None) -> None:
    """As TRL 1.16's GRPOTrainer.log writes it (pandas DataFrame.to_parquet of the same table)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = {"step": [batch.step] * len(batch.prompts), "prompt": list(batch.prompts),
             "completion": list(batch.completions), **{k: list(v) for k, v in batch.rewards.items()},
             **(extra or {}), "advantage": list(batch.advantages)}
    pd.DataFrame(table).to_parquet(folder / f"completions_{batch.step:05d}.parquet")


def index_of(tmp_path, parquet=None, **kwargs) -> SampleIndex:
    index = SampleIndex("run", tmp_path / "run_samples.json", [parquet] if parquet else [], **kwargs)
    index.update_all()
    return index


def visible(index: SampleIndex) -> dict[int, int]:
    return {step: index.page(step)["total_rows"] for step in index.steps()}


# ---- de-duplication -------------------------------------------------------------------------------------------
def test_a_batch_logged_at_several_steps_is_shown_once_at_the_first(tmp_path):
    a, b = make_batch(1, "a"), make_batch(3, "b")
    write_samples(tmp_path, [a, make_batch(2, "a"), b, make_batch(4, "b"), make_batch(5, "b")])
    assert visible(index_of(tmp_path)) == {1: 8, 3: 8}


def test_both_sources_each_sample_once_in_any_order(tmp_path):
    batches = [make_batch(s, "a" if s < 3 else "b") for s in (1, 2, 3, 4)]
    completions = tmp_path / "out" / "completions"
    for batch in batches:
        write_parquet(completions, batch)
    only_parquet = SampleIndex("run", None, [completions])
    only_parquet.update_all()
    assert visible(only_parquet) == {1: 8, 3: 8}
    # parquet first, then our file (written after the dashboard started reading)
    index = SampleIndex("run", tmp_path / "run_samples.json", [completions])
    index.update_all()
    write_samples(tmp_path, [batches[0], batches[2]])  # our callback recorded each batch once
    index.update_all()
    assert visible(index) == {1: 8, 3: 8}
    # our file first, then the parquet files, a few bytes and one file at a time
    interleaved = SampleIndex("run", tmp_path / "run_samples.json", [completions])
    while interleaved.update(limit=500, max_files=1).more:
        pass
    assert visible(interleaved) == {1: 8, 3: 8}
    ours = {row["id"] for row in index_of(tmp_path).page(1, group=False)["rows"]}
    theirs = {row["id"] for row in only_parquet.page(1, group=False)["rows"]}
    assert ours == theirs and len(ours) == 8  # the same content keys from both sources


def test_a_sample_found_at_an_earlier_step_later_moves_there(tmp_path):
    completions = tmp_path / "completions"
    write_samples(tmp_path, [make_batch(2, "a")])  # our callback, recording every 2nd log, saw it at step 2
    index = SampleIndex("run", tmp_path / "run_samples.json", [])
    index.update_all()
    assert index.steps() == [2]
    write_parquet(completions, make_batch(1, "a"))
    write_parquet(completions, make_batch(2, "a"))
    index.add_completions_dir(completions)
    update = index.update_all()
    assert index.steps() == [1] and visible(index) == {1: 8} and update.steps == [1, 2]  # 2 lost them


def test_merged_sources_keep_what_only_one_knows(tmp_path):
    completions = tmp_path / "completions"
    batch = make_batch(1, "a")
    write_parquet(completions, batch)
    index = SampleIndex("run", tmp_path / "run_samples.json", [completions])
    index.update_all()
    assert {r["completion_length"] for r in index.page(1, group=False)["rows"]} == {None}
    store = RunStore(tmp_path, "run")  # then our records of the same samples, with token counts
    store.append("samples", batch_records(batch, SampleSettings(), "run", 0.0, lambda texts: [5] * len(texts)))
    index.update_all()
    rows = index.page(1, group=False)["rows"]
    assert len(rows) == 8 and {r["completion_length"] for r in rows} == {5} and {r["source"] for r in rows} == {"parquet"}


def test_a_prompt_answered_the_same_in_a_later_epoch_is_not_a_repeat(tmp_path):
    same = dict(prompts=["P"] * 4, completions=[""] * 4, rewards={"r": [0.0] * 4}, advantages=[0.0] * 4)
    others = [make_batch(s, f"x{s}") for s in (2, 3, 4)]
    write_samples(tmp_path, [make_batch(1, **same), *others, make_batch(5, **same)])
    shown = visible(index_of(tmp_path))
    assert shown == {1: 4, 2: 8, 3: 8, 4: 8, 5: 4}
    # at the next step, one shared sample of eight is a coincidence, not a repeat
    base = make_batch(7, "y")
    shared = make_batch(8, "z")
    shared.prompts[0], shared.completions[0], shared.advantages[0] = base.prompts[0], base.completions[0], \
        base.advantages[0]
    write_samples(tmp_path, [base, shared])
    shown = visible(index_of(tmp_path))
    assert shown[7] == 8 and shown[8] == 8


def test_identical_completions_of_a_group_are_all_kept_and_marked(tmp_path):
    batch = make_batch(1, prompts=["P"] * 4 + ["Q"] * 4, completions=["same"] * 4 + ["a", "b", "c", "d"],
                       rewards={"r": [1.0] * 4 + [0.0, 1.0, 2.0, 3.0]}, advantages=[0.0] * 4 + [-1.5, -.5, .5, 1.5])
    write_samples(tmp_path, [batch])
    groups = index_of(tmp_path).page(1)["groups"]
    assert [(g["size"], g["identical_rewards"]) for g in groups] == [(4, True), (4, False)]
    assert groups[1]["reward_mean"] == 1.5 and groups[1]["reward_std"] == pytest.approx(1.2909944)  # like TRL's std
    assert (groups[1]["reward_min"], groups[1]["reward_max"]) == (0.0, 3.0)


# ---- pages ---------------------------------------------------------------------------------------------------
def test_page_sort_filter_and_paging(tmp_path):
    batch = make_batch(4, groups=3, size=3)
    batch.rewards["r1"] = [0.0, 5.0, 1.0, 2.0, math.nan, 3.0, -1.0, 4.0, 0.5]
    batch.completions[5] = ""
    write_samples(tmp_path, [make_batch(2, "early"), batch, make_batch(9, "late")])
    index = index_of(tmp_path)
    page = index.page(4)
    assert (page["prev_step"], page["next_step"], page["total_rows"], page["total_groups"]) == (2, 9, 9, 3)
    assert [r["index"] for g in page["groups"] for r in g["rows"]] == list(range(9))
    by_reward = index.page(4, sort="r1", descending=True)
    assert [[r["rewards"]["r1"] for r in g["rows"]] for g in by_reward["groups"]] == \
        [[5.0, 1.0, 0.0], [4.0, 0.5, -1.0], [3.0, 2.0, None]]  # groups by their best row, NaN last
    ascending = index.page(4, sort="r1")
    assert [r["rewards"]["r1"] for r in ascending["groups"][0]["rows"]] == [-1.0, 0.5, 4.0]
    assert ascending["groups"][-1]["rows"][-1]["rewards"]["r1"] is None
    flat = index.page(4, group=False, sort="reward", descending=True, limit=4)
    assert [r["reward"] for r in flat["rows"]] == [6.0, 5.0, 4.0, 3.0] and flat["more"] and "prompt" in flat["rows"][0]
    assert index.page(4, group=False, offset=8)["rows"][0]["index"] == 8
    empty = index.page(4, flags={"empty": True})
    assert [r["index"] for g in empty["groups"] for r in g["rows"]] == [5] and empty["matched_rows"] == 1
    assert empty["groups"][0]["size"] == 3 and empty["groups"][0]["shown"] == 1  # stats over the whole group
    ranged = index.page(4, reward_range=(None, 1.5), reward_column="r1")
    assert sorted(r["rewards"]["r1"] for g in ranged["groups"] for r in g["rows"]) == [-1.0, 0.0, 0.5, 1.0]
    assert index.page(4, reward_range=(4.5, None))["matched_rows"] == 2  # total reward = r1 + r2 (1.0)
    paged = index.page(4, limit=2)
    assert len(paged["groups"]) == 2 and paged["more"] and index.page(4, offset=2)["groups"][0]["prompt_id"] == \
        page["groups"][2]["prompt_id"]
    means = [g["reward_mean"] for g in index.page(4, sort="group_mean", descending=True)["groups"]]
    assert means == sorted(means, reverse=True) and means[0] == 3.0  # a NaN r1 still has r2 in its total
    assert index.page(4, flags={"identical": True})["matched_rows"] == 0
    assert index.page(4, flags={"truncated": True})["matched_rows"] == 0  # unknown is neither True nor False
    missing = index.page(5)
    assert missing["total_rows"] == 0 and missing["groups"] == [] and missing["prev_step"] == 4
    with pytest.raises(ValueError):
        index.page(4, sort="nope")
    with pytest.raises(ValueError):
        index.page(4, flags={"nope": True})
    for message in (page, by_reward, flat, empty, index.summary()):
        json_packer(message)  # what the kernel sends: no NaN, text as text


def test_previews_full_samples_and_cut_marks(tmp_path):
    batch = make_batch(1, groups=1, size=2, completions=["x" * 5000 + HOSTILE, "short"])
    write_samples(tmp_path, [batch], settings=SampleSettings(text_cap_bytes=4096))
    index = index_of(tmp_path)
    rows = index.page(1, text_chars=100)["groups"][0]["rows"]
    assert rows[0]["completion"] == "x" * 100 and rows[0]["completion_more"] and rows[0]["cut"]
    assert rows[1]["completion"] == "short" and not rows[1]["completion_more"] and not rows[1]["cut"]
    full = index.sample(rows[0]["id"])
    assert full["completion"] == "x" * 4096 and full["cut_fields"] == ["completion"]
    assert full["completion_chars"] == 5000 + len(HOSTILE) and full["prompt"] == "prompt 0"
    hostile = make_batch(2, groups=1, size=1, completions=[HOSTILE], prompts=[[{"role": "user", "content": HOSTILE}]])
    write_samples(tmp_path, [hostile])
    index.update_all()
    sample = index.sample(index.page(2, group=False)["rows"][0]["id"])
    assert sample["completion"] == HOSTILE and sample["prompt"] == "user: " + HOSTILE
    json_packer(sample)
    assert index.sample("1:0000000000000000") is None and index.sample("junk") is None


def test_prompt_across_steps(tmp_path):
    batches = []
    for step in range(1, 8):
        prompts = ["P"] * 2 + [f"other {step}"] * 2
        batches.append(make_batch(step, prompts=prompts, completions=[f"answer {step}.{i}" for i in range(4)],
                                  rewards={"r": [float(step), step + 1.0, 0.0, 0.0]},
                                  advantages=[-1.0, 1.0, 0.0, 0.0]))
    write_samples(tmp_path, batches)
    index = index_of(tmp_path)
    prompt_id = index.page(1)["groups"][0]["prompt_id"]
    history = index.prompt_history(prompt_id, limit=3)
    assert history["prompt"] == "P" and history["total_steps"] == 7 and history["more"]
    assert [s["step"] for s in history["steps"]] == [1, 2, 3]
    assert [r["completion"] for r in history["steps"][1]["rows"]] == ["answer 2.0", "answer 2.1"]
    assert history["steps"][2]["reward_mean"] == 3.5
    assert [s["step"] for s in index.prompt_history(prompt_id, offset=6)["steps"]] == [7]
    assert index.prompt_history("not a key")["total_steps"] == 0
    json_packer(history)


# ---- search --------------------------------------------------------------------------------------------------
def test_search_newest_first_with_progress_and_a_cursor(tmp_path):
    batches = []
    for step in range(1, 41):
        completions = [f"plain {step}.{i}" for i in range(8)]
        if step % 5 == 0:
            completions[3] = f"a Needle in step {step}"
        batches.append(make_batch(step, f"s{step}", completions=completions))
    write_samples(tmp_path, batches)
    index = index_of(tmp_path)
    first = index.search("needle", limit=3)
    assert [m["step"] for m in first["matches"]] == [40, 35, 30]
    assert first["total_steps"] == 40 and first["searched_steps"] == 11 and not first["done"]
    match = first["matches"][0]
    assert match["in"] == ["completion"] and match["completion"]["text"][slice(*match["completion"]["match"])] == \
        "Needle"
    assert match["prompt"]["match"] is None and match["id"].startswith("40:")
    steps = [m["step"] for m in first["matches"]]
    page = first
    pages = 1
    while page["cursor"] is not None:
        page = index.search("needle", page["cursor"], limit=3)
        steps += [m["step"] for m in page["matches"]]
        pages += 1
        assert page["searched_steps"] <= page["total_steps"]
    assert steps == list(range(40, 0, -5)) and page["done"] and page["searched_steps"] == 40 and pages == 3
    with pytest.raises(ValueError):
        index.search("other", first["cursor"])
    # steps added while a search goes on are not searched by it
    write_samples(tmp_path, [make_batch(50, "new", completions=["needle"] * 8)])
    index.update_all()
    assert 50 not in [m["step"] for m in index.search("needle", first["cursor"], limit=100)["matches"]]
    assert index.search("needle", limit=1)["matches"][0]["step"] == 50


def test_search_matches_texts_only_case_insensitively(tmp_path):
    batch = make_batch(1, groups=1, size=4,
                       prompts=['Say "quoted"\n'] * 4,
                       completions=["Café ÉTÉ", "back\\slash", "rewards", "line\nbreak"])
    write_samples(tmp_path, [batch])
    index = index_of(tmp_path)

    def found(query):
        return [m["index"] for m in index.search(query)["matches"]]

    assert found("CAFÉ") == [0] and found("été") == [0]  # non-ASCII, either case
    assert found("back\\sl") == [1] and found("line\nbr") == [3]
    assert found('"quoted"') == [0, 1, 2, 3] and index.search('"quoted"')["matches"][0]["in"] == ["prompt"]
    assert found("rewards") == [2]  # a key of every record: only the text that has it matches
    assert found("prompt_id") == [] and found("zzz") == []
    empty = index.search("")
    assert empty["matches"] == [] and empty["done"]


def test_search_first_page_within_its_budget(tmp_path):
    write_samples(tmp_path, [make_batch(s, f"t{s}", groups=8, size=8) for s in range(1, 301)])
    index = index_of(tmp_path)
    started = time.perf_counter()
    page = index.search("absent", budget_s=0.0)
    assert time.perf_counter() - started < 1.0
    assert page["matches"] == [] and 1 <= page["searched_steps"] < 300 and page["cursor"] is not None


# ---- dataframe ------------------------------------------------------------------------------------------------
def test_dataframe_of_all_steps_or_one(tmp_path):
    batch = make_batch(3, groups=1, size=2)
    batch.rewards = {"reward": [1.0, math.nan], "fmt": [0.5, 0.5]}
    write_samples(tmp_path, [make_batch(1, "a", groups=1, size=2), batch])
    index = index_of(tmp_path)
    frame = index.dataframe()
    assert list(frame.columns) == ["step", "prompt", "completion", "reward", "r1", "r2", "rewards/reward", "fmt",
                                   "advantage", "completion_length", "truncated", "empty", "cut", "id", "prompt_id",
                                   "source"]
    assert frame["step"].tolist() == [1, 1, 3, 3] and frame["completion"].tolist()[2:] == ["completion 0",
                                                                                         "completion 1"]
    assert math.isnan(frame["rewards/reward"][3]) and frame["reward"][3] == 0.5 and math.isnan(frame["r1"][2])
    assert str(frame["truncated"].dtype) == "boolean" and frame["truncated"].isna().all()
    one = index.dataframe(step=3)
    assert len(one) == 2 and set(one["step"]) == {3}
    assert len(index.dataframe(step=99)) == 0
    other = tmp_path / "other"
    write_samples(other, [make_batch(5, "o", groups=1, size=3)], run_id="b")
    second = SampleIndex("b", other / "b_samples.json")
    second.update_all()
    runs = {"run": index, "b": second}
    both = completions_frame(runs)
    assert both["run_id"].tolist() == ["run"] * 4 + ["b"] * 3 and list(both.columns)[:2] == ["run_id", "step"]
    assert completions_frame(runs, step=5, run_id="b")["step"].tolist() == [5, 5, 5]
    nothing = completions_frame(runs, run_id="nope")
    assert len(nothing) == 0 and list(nothing.columns)[:3] == ["run_id", "step", "prompt"]


# ---- growth, replacement, memory ------------------------------------------------------------------------------
def test_incremental_updates_and_a_replaced_file(tmp_path):
    store = write_samples(tmp_path, [make_batch(1, "a")])
    index = index_of(tmp_path)
    store.append("samples", batch_records(make_batch(2, "b"), SampleSettings(), "run", 0.0))
    update = index.update()
    assert update.steps == [2] and not update.reset
    assert index.update().steps == []
    path = tmp_path / "run_samples.json"
    replacement = tmp_path / "new.json"
    RunStore(tmp_path, "new").append("samples", batch_records(make_batch(7, "c"), SampleSettings(), "run", 0.0))
    os.replace(tmp_path / "new_samples.json", path)
    del replacement
    update = index.update_all()
    assert update.reset and index.steps() == [7] and update.steps == [7]


def test_memory_per_sample_is_numbers_only(tmp_path):
    write_samples(tmp_path, [make_batch(s, f"m{s}", groups=8, size=8, completions=None) for s in range(1, 401)])
    index = index_of(tmp_path)
    assert len(index) == 400 * 64
    assert index.memory_bytes() / len(index) < 200


# ---- hostile files --------------------------------------------------------------------------------------------
def test_hostile_parquet_files(tmp_path):
    folder = tmp_path / "completions"
    folder.mkdir()
    write_parquet(folder, make_batch(1, "ok"))
    good = (folder / "completions_00001.parquet").read_bytes()
    (folder / "completions_00002.parquet").write_bytes(good[: len(good) // 2])  # truncated
    pq.write_table(pa.table({"completion": ["only a completion"]}), folder / "completions_00003.parquet")
    pq.write_table(pa.table({"step": [4, 4], "prompt": [1, 2], "completion": [[1, 2], None], "advantage": [0.5, None],
                             "score": [1, 2]}), folder / "completions_00004.parquet")
    chat = [[{"role": "user", "content": HOSTILE}]]
    pq.write_table(pa.table({"prompt": chat, "completion": [[{"role": "assistant", "content": "x" * 1_000_000}]],
                             "r": [math.nan], "flag": [True], "blob": [b"\xff\x00"], "advantage": [0.0]}),
                   folder / "completions_00005.parquet")
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), folder / "completions_00006.parquet")
    (folder / "completions_00007.parquet").write_bytes(b"")
    (folder / "completions_00008.parquet").mkdir()
    os.mkfifo(folder / "completions_00009.parquet")
    (folder / "completions_x.parquet").write_bytes(b"ignored")
    (folder / "notes.txt").write_text("ignored")
    index = SampleIndex("run", None, [folder])
    first = index.update_all()
    assert not any("00002" in p for p in first.problems)  # a half-written file gets another look first
    second = index.update_all()
    problems = first.problems + second.problems
    for expected in ("completions_00002.parquet: not a readable parquet file", "completions_00003.parquet: no 'prompt'",
                     "completions_00007.parquet: not a readable", "completions_00008.parquet: is a directory",
                     "completions_00009.parquet: is a FIFO"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert index.steps() == [1, 3, 4, 5]
    assert index.page(3)["groups"][0]["rows"][0]["completion"] == "only a completion"
    rows = index.page(4, group=False)["rows"]
    assert [r["prompt"] for r in rows] == ["1", "2"] and rows[0]["completion"] == "[1,2]"
    assert rows[0]["rewards"]["score"] == 1.0 and rows[1]["advantage"] is None and rows[1]["empty"]
    sample = index.sample(index.page(5, group=False)["rows"][0]["id"])
    assert sample["prompt"] == "user: " + HOSTILE and len(sample["completion"]) == 1_000_011
    assert sample["rewards"]["r"] is None and sample["extra"] == {"flag": True, "blob": "\ufffd\x00"}
    json_packer(index.page(5, text_chars=10))
    third = index.update_all()
    assert third.problems == []  # each broken file reported once, not re-read while unchanged


def test_parquet_rewritten_in_place(tmp_path):
    folder = tmp_path / "completions"
    batch = make_batch(4, "a")
    write_parquet(folder, batch)
    index = SampleIndex("run", None, [folder])
    index.update_all()
    ids = {r["id"] for r in index.page(4, group=False)["rows"]}
    time.sleep(0.01)
    write_parquet(folder, make_batch(4, "a"))  # TRL's final log rewrites the last step's file, same rows
    os.utime(folder / "completions_00004.parquet", ns=(time.time_ns(), time.time_ns() + 10**9))
    index.update_all()
    assert {r["id"] for r in index.page(4, group=False)["rows"]} == ids
    changed = make_batch(4, "b")  # rewritten with other rows (an eval log at the same step)
    write_parquet(folder, changed)
    os.utime(folder / "completions_00004.parquet", ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    index.update_all()
    rows = index.page(4, group=False)["rows"]
    assert len(rows) == 8 and {r["completion"] for r in rows} == set(changed.completions)


def test_hostile_samples_files(tmp_path):
    path = tmp_path / "run_samples.json"
    good = batch_records(make_batch(1, "a", groups=1, size=2), SampleSettings(), "run", 0.0)
    lines = [orjson.dumps(r) for r in good]
    lines.append(b'{"step": 2, "prompt": ' + orjson.dumps("h" * 200_000) + b', "completion": [1, {"a": null}], '
                 b'"rewards": {"r": "x"}}')  # hand-written: no ids, texts not capped, odd types
    lines.append(b'{"step": "three", "completion": "no step"} garbage')  # damage: the rest is read tolerantly
    lines.append(b'{"step": 4, "completion": "\\u0000' + HOSTILE.encode()[5:] + b'", "prompt": '
                 + orjson.dumps("p" * 100_000) + b'}')
    lines.append(b'{"step": 5, "completion": "broken')
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    index = SampleIndex("run", path)
    update = index.update_all()
    assert index.steps() == [1, 2, 4]
    assert any("without a usable 'step'" in p for p in update.problems)
    row = index.page(2, group=False)["rows"][0]
    assert row["completion"] == '[1,{"a":null}]' and row["rewards"]["r"] is None and row["prompt_more"]
    assert index.sample(row["id"])["prompt"] == "h" * 200_000  # as the file holds it
    held = index.page(4, group=False)["rows"][0]  # recovered from damage: held in memory, capped like on disk
    assert held["cut"] and len(index.sample(held["id"])["prompt"]) == 64 << 10
    assert HOSTILE[5:] in index.sample(held["id"])["completion"]
    json_packer(index.page(4))
    json_packer(index.search("no step"))
