"""Readers that catch another process's append half-written: every prefix of the write, then the whole of it, must
give exactly the records written, each once, whole, with no damage reported (readers take no lock, so a poll
can land in the middle of a 1 MB append; the Samples tab once lost such a record for good)."""

import orjson
import pytest

from rldk_widget.sample_index import TEXTS_START, SampleIndex
from rldk_widget.samples import RawBatch, SampleSettings, batch_records
from rldk_widget.store import RunStore
from rldk_widget.tailfile import RECORD_AT, RECORD_HEAD, CsvFile, IndexedJsonArrayFile, JsonArrayFile

NESTED = [
    {"step": 2, "config": {"lr": 1e-5, "sched": {"kind": "cos"}}, "note": "a } and a { and ] in text", "loss": 0.5},
    {"step": 3, "tags": ["x", "y"], "nested": [{"a": 1}, {"b": [2, 3]}], "loss": 0.25},
]
TEXTS = ["plain", "ends with a brace }", '{"step": 99, "fake": "record"}', "] and [ and }, {"]


def states_of_an_append(before: bytes, after: bytes) -> list[bytes]:
    """The file as a reader can find it while a writer turns `before` into `after` with one positioned write (what
    `_commit_write` does: the payload overwrites the old closing bracket, then runs past it): byte by byte."""
    position = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), len(before))
    return [after[:end] + before[end:] for end in range(position, len(after) + 1)]


def without_offsets(records):
    return [{k: v for k, v in r.items() if k not in (RECORD_AT, RECORD_HEAD)} for r in records]


def write_twice(tmp_path, kind, first, second):
    """The file after `first` was appended, and after `second` was appended too, by RunStore."""
    store = RunStore(tmp_path, "w")
    append = store.append_metrics_many if kind == "metrics" else (lambda rows: store.append(kind, rows))
    append(first)
    path = next(tmp_path.glob(f"w_{kind}*"))
    before = path.read_bytes()
    append(second)
    return path.name, before, path.read_bytes()


def read_through(reader_factory, path, states):
    """For each state: a reader that had read the state before the write reads the state, then the finished file.
    Returns each reader's records and problems."""
    outcomes = []
    for state in states:
        path.write_bytes(states[0])
        reader = reader_factory(path)
        records = list(reader.read_new().records)
        path.write_bytes(state)
        read = reader.read_new()
        records += read.records
        problems = list(read.problems)
        path.write_bytes(states[-1])
        read = reader.read_new()
        outcomes.append((state, records + read.records, problems + read.problems))
    return outcomes


@pytest.mark.parametrize("factory", [
    lambda path: JsonArrayFile(path, follow=False),
    lambda path: IndexedJsonArrayFile(path, follow=False),
], ids=["array", "indexed"])
def test_a_half_written_append_of_nested_records_is_read_whole_once_it_ends(tmp_path, factory):
    first = [{"step": 1, "loss": 1.0, "config": {"a": {"b": 1}}}]
    name, before, after = write_twice(tmp_path / "w", "metrics", first, NESTED)
    states = states_of_an_append(before, after)
    path = tmp_path / name
    for state, records, problems in read_through(factory, path, states):
        assert without_offsets(records) == first + NESTED, state[len(before) - 2:]
        assert not [p for p in problems if "damaged" in p or "skipped" in p], (state[len(before) - 2:], problems)


def test_a_half_written_samples_append_keeps_every_sample_with_its_byte_range(tmp_path):
    def batch(step, texts):
        n = len(texts)
        return batch_records(RawBatch(step=step, prompts=["p {x}"] * n, completions=texts,
                                      rewards={"r": [float(i) for i in range(n)]}, advantages=[0.0] * n),
                             SampleSettings(), "w", 0.0)

    first, second = batch(1, ["a", "b"]), batch(2, TEXTS)
    name, before, after = write_twice(tmp_path / "w", "samples", first, second)
    path = tmp_path / name
    states = states_of_an_append(before, after)
    whole = IndexedJsonArrayFile(path, follow=False)
    path.write_bytes(after)
    expected = whole.read_new().records
    for state, records, problems in read_through(
            lambda p: IndexedJsonArrayFile(p, follow=False, head_until=TEXTS_START), path, states):
        assert [r[RECORD_AT] for r in records] == [r[RECORD_AT] for r in expected], state[len(before) - 2:]
        assert [r["step"] for r in records] == [1, 1] + [2] * len(TEXTS)
        assert not [p for p in problems if "damaged" in p or "skipped" in p], problems


def test_the_samples_index_shows_a_sample_appended_while_it_read(tmp_path):
    """The flake of the Samples tab's browser test, made exact: the index polls while a 1 MB completion is half
    on disk; once the write ends the step has all of its samples, the 1 MB text whole."""
    store = RunStore(tmp_path, "r")
    big = "A" * (1 << 20)
    batch = RawBatch(step=2, prompts=["q"] * 3, completions=["x", "y {z}", big],
                     rewards={"r": [0.0, 1.0, -42.0]}, advantages=[0.1, 0.2, 0.3])
    store.append("samples", batch_records(RawBatch(step=1, prompts=["q"], completions=["w"], rewards={"r": [0.0]},
                                                   advantages=[0.0]), SampleSettings(), "r", 0.0))
    path = tmp_path / "r_samples.json"
    before = path.read_bytes()
    store.append("samples", batch_records(batch, SampleSettings(text_cap_bytes=2 << 20), "r", 0.0))
    after = path.read_bytes()
    for cut in (len(before) + 300, len(after) - (1 << 19), len(after) - 3):
        path.write_bytes(before)
        index = SampleIndex.for_store(RunStore(tmp_path, "r"))
        index.update_all()
        path.write_bytes(after[:cut] + before[cut:])
        index.update_all()
        path.write_bytes(after)
        index.update_all()
        rows = index.page(step=2, group=False)["rows"]
        assert sorted(r["completion_chars"] for r in rows) == [1, 5, 1 << 20], cut
        assert not index.problems or all("incomplete" in p for p in index.problems), index.problems


def test_a_half_written_csv_row_is_read_once_whole(tmp_path):
    path = tmp_path / "w.csv"
    reader_path = tmp_path / "r.csv"
    writer = CsvFile(path, follow=False)
    writer.append([{"step": 1, "loss": 0.5, "note": "a, \"quoted\" cell"}])
    before = path.read_bytes()
    writer.append([{"step": 2, "loss": 0.123456, "note": "multi\nline"}, {"step": 3, "loss": 0.25, "note": "x"}])
    after = path.read_bytes()
    for state in states_of_an_append(before, after):
        reader_path.write_bytes(before)
        reader = CsvFile(reader_path, follow=False)
        rows = list(reader.read_new().records)
        reader_path.write_bytes(state)
        rows += reader.read_new().records
        reader_path.write_bytes(after)
        rows += reader.read_new().records
        assert [(r["step"], r["loss"], r["note"]) for r in rows] == [
            (1, 0.5, 'a, "quoted" cell'), (2, 0.123456, "multi\nline"), (3, 0.25, "x")], state[len(before):]


def test_a_complete_one_line_file_with_damage_keeps_its_records_after_the_damage(tmp_path):
    """A hand-written file on one line (json.dump without indent) ends with its `]`: complete, not a write in
    progress, so damage inside it is stepped over as anywhere else."""
    path = tmp_path / "x_metrics.json"
    path.write_bytes(b'[{"step": 1, "loss": 1}, {"step": 2, "loss": }, {"step": 3, "loss": 3, "c": {"k": 1}}]')
    read = JsonArrayFile(path, follow=False).read_new()
    assert [r["step"] for r in read.records] == [1, 3] and any("damaged" in p for p in read.problems)
    path.write_bytes(orjson.dumps([{"step": 1}, {"step": 2, "c": {"k": 1}}])[:-8])
    read = JsonArrayFile(path, follow=False).read_new()
    assert [r["step"] for r in read.records] == [1] and "incomplete" in read.condition
