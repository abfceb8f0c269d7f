"""Discovery of runs in a folder and its sub-folders (rldk_widget.runs.RunFinder): our run files and Hugging Face
output folders, nested, checkpoint-* folders belonging to their run, runs appearing and disappearing, the depth
limit, symbolic link loops, unreadable folders, thousands of folders; run ids for nested runs."""

from __future__ import annotations

import json
import os
import time

import pytest

from rldk_widget.fs import LocalFileSystem
from rldk_widget.runs import RunFinder, run_id_for
from rldk_widget.store import RUN_ID_PATTERN, RunStore, validate_run_id


class CountingFS(LocalFileSystem):
    """The local file system, counting calls and failing the folders in `refuse` with a permission error."""

    def __init__(self) -> None:
        self.calls = {"listdir": 0, "stat": 0, "read": 0}
        self.reads: list[str] = []
        self.refuse: set[str] = set()

    def listdir(self, folder):
        self.calls["listdir"] += 1
        if os.fspath(folder) in self.refuse:
            raise PermissionError(13, "Permission denied", os.fspath(folder))
        return super().listdir(folder)

    def stat(self, path):
        self.calls["stat"] += 1
        return super().stat(path)

    def read(self, path, start, limit=16 << 20):
        self.calls["read"] += 1
        self.reads.append(os.fspath(path))
        return super().read(path, start, limit)


def ours(folder, stem, step=1):
    with RunStore(folder, stem) as store:
        store.append_metrics({"step": step, "loss": 0.5, "timestamp": time.time()})


def hf(folder, history=({"step": 1, "loss": 1.0},), checkpoint=None, max_steps=10):
    target = folder / checkpoint if checkpoint else folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "trainer_state.json").write_text(json.dumps({"max_steps": max_steps, "log_history": list(history)}))


def age(root, seconds=60):
    """Set every folder's modification time `seconds` into the past (as a folder nobody changed recently)."""
    past = time.time() - seconds
    for dirpath, dirnames, _ in os.walk(root):
        os.utime(dirpath, (past, past))


def names(result):
    return sorted(ref.name for ref in result.runs.values())


def test_flat_folder_keeps_the_file_stems_as_run_ids(tmp_path):
    ours(tmp_path, "run_a")
    ours(tmp_path, "run-b")
    RunStore(tmp_path, "only_info").write_info({"max_steps": 5})  # run info alone: a run that just started
    (tmp_path / "notes_metrics.txt").write_text("not a run file")
    result = RunFinder(tmp_path).scan()
    assert list(result.runs) == ["only_info", "run-b", "run_a"]
    for run_id, ref in result.runs.items():
        assert (ref.name, ref.source, ref.rel, ref.file_stem, ref.folder) == (run_id, "rldk", "", run_id, str(tmp_path))
        assert ref.writable
    assert result.problems == []


def test_nested_runs_have_display_names_valid_ids_and_their_folder(tmp_path):
    ours(tmp_path, "top")
    ours(tmp_path / "sweep" / "lr_1e-5_s0", "grpo")
    hf(tmp_path / "sweep" / "beta=0.04")
    result = RunFinder(tmp_path).scan()
    by_name = {ref.name: ref for ref in result.runs.values()}
    assert sorted(by_name) == ["sweep/beta=0.04", "sweep/lr_1e-5_s0/grpo", "top"]
    nested = by_name["sweep/lr_1e-5_s0/grpo"]
    assert nested.run_id.startswith("sweep__lr_1e-5_s0__grpo-") and "/" not in nested.run_id
    assert validate_run_id(nested.run_id) == nested.run_id
    assert (nested.folder, nested.file_stem, nested.rel) == (str(tmp_path / "sweep" / "lr_1e-5_s0"), "grpo",
                                                             "sweep/lr_1e-5_s0")
    assert not nested.writable and by_name["top"].writable
    with RunStore(nested.folder, nested.file_stem, follow=True) as store:  # readers read where the files are
        assert [r["loss"] for r in store.read_new().metrics] == [0.5]
    beta = by_name["sweep/beta=0.04"]
    assert (beta.source, beta.file_stem, beta.folder) == ("hf", None, str(tmp_path / "sweep" / "beta=0.04"))
    assert beta.run_id.startswith("sweep__beta_0.04-")


def test_run_ids_are_stable_distinct_and_always_valid():
    assert run_id_for("rldk", "a", "b") == run_id_for("rldk", "a", "b")
    locations = [("rldk", "a", "b"), ("hf", "a/b", None), ("rldk", "a_b", None), ("hf", "a b", None),
                 ("hf", "a_b", None), ("hf", "a=b", None), ("rldk", "x" * 300, "y" * 128), ("hf", "é/ü/☃", None),
                 ("hf", "a/b/c", None), ("hf", "a__b/c", None), ("hf", "a/b__c", None)]
    ids = [run_id_for(*location) for location in locations]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        assert RUN_ID_PATTERN.fullmatch(run_id) and run_id not in (".", "..")
    assert run_id_for("rldk", "", "mine") == "mine"
    assert run_id_for("hf", "", None, "grpo-out") == "hf_grpo-out"  # as TrainerStateReader names it


def test_same_ids_in_another_process(tmp_path):
    import subprocess
    import sys

    ours(tmp_path / "a" / "b", "c")
    hf(tmp_path / "d")
    here = sorted(RunFinder(tmp_path).scan().runs)
    code = "import sys; from rldk_widget.runs import RunFinder; print(sorted(RunFinder(sys.argv[1]).scan().runs))"
    there = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == str(here)


def test_checkpoint_folders_belong_to_their_run(tmp_path):
    run = tmp_path / "grpo-out"
    hf(run, checkpoint="checkpoint-2")
    hf(run, checkpoint="checkpoint-4")
    ours(run / "checkpoint-4", "copied")  # files inside a checkpoint are never a run of their own
    in_progress = tmp_path / "started"
    (in_progress / "checkpoint-1").mkdir(parents=True)  # no trainer_state.json anywhere yet: still a run
    result = RunFinder(tmp_path).scan()
    assert names(result) == ["grpo-out", "started"]
    assert {ref.source for ref in result.runs.values()} == {"hf"}
    assert RunFinder(run).scan().runs.keys() == {"hf_grpo-out"}  # the folder itself is the run


def test_a_folder_with_our_files_is_those_runs_only(tmp_path):
    hf(tmp_path / "out")
    ours(tmp_path / "out", "recorded")
    result = RunFinder(tmp_path).scan()
    assert names(result) == ["out/recorded"]


def test_runs_appearing_later_and_deleted_ones(tmp_path):
    finder = RunFinder(tmp_path / "sweep")
    assert finder.scan().runs == {}  # the folder does not exist yet: no runs, no problem
    ours(tmp_path / "sweep" / "a", "r")
    first = finder.scan()
    assert [ref.name for ref in first.added] == ["a/r"] and first.removed == []
    ours(tmp_path / "sweep" / "a", "r2")
    hf(tmp_path / "sweep" / "b" / "c")
    second = finder.scan()
    assert sorted(ref.name for ref in second.added) == ["a/r2", "b/c"] and second.removed == []
    assert finder.scan().added == []
    for path in (tmp_path / "sweep" / "a").glob("r2_*"):
        path.unlink()
    import shutil

    shutil.rmtree(tmp_path / "sweep" / "b")
    third = finder.scan()
    assert sorted(ref.name for ref in third.removed) == ["a/r2", "b/c"] and third.added == []
    assert names(third) == ["a/r"]


def test_one_listing_per_changed_folder_and_one_stat_per_unchanged_one(tmp_path):
    for i in range(5):
        ours(tmp_path / f"run{i}", "r")
        ours(tmp_path / f"run{i}", "s", step=2)
    age(tmp_path)
    fs = CountingFS()
    finder = RunFinder(tmp_path, fs=fs)
    finder.scan()
    assert fs.calls["listdir"] == 6 and fs.calls["read"] == 0  # discovery lists, never reads a file
    fs.calls.update(listdir=0, stat=0)
    for step in range(3, 10):  # appends do not change a folder
        with RunStore(tmp_path / "run0", "r") as store:
            store.append_metrics({"step": step, "loss": 0.1})
    result = finder.scan()
    assert result.added == result.removed == []
    assert (fs.calls["listdir"], fs.calls["stat"], result.folders_listed) == (0, 6, 0)
    ours(tmp_path / "run3", "new")
    result = finder.scan()
    assert [ref.name for ref in result.added] == ["run3/new"] and fs.calls["listdir"] == 1


def test_depth_limit(tmp_path):
    ours(tmp_path / "a" / "b" / "c", "three")
    ours(tmp_path / "a" / "b" / "c" / "d", "four")
    assert names(RunFinder(tmp_path).scan()) == ["a/b/c/three"]
    assert names(RunFinder(tmp_path, max_depth=4).scan()) == ["a/b/c/d/four", "a/b/c/three"]
    ours(tmp_path, "root")
    assert names(RunFinder(tmp_path, max_depth=0).scan()) == ["root"]
    with pytest.raises(ValueError):
        RunFinder(tmp_path, max_depth=-1)


def test_symbolic_link_loops_and_second_links_are_skipped_and_reported(tmp_path):
    ours(tmp_path / "a", "r")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a", tmp_path / "again")
    os.symlink(tmp_path / "missing", tmp_path / "broken")
    started = time.monotonic()
    result = RunFinder(tmp_path, max_depth=50).scan()
    assert time.monotonic() - started < 5
    assert names(result) == ["a/r"]
    assert any("a/loop" in p and "symbolic link loop" in p for p in result.problems)
    assert any("again" in p for p in result.problems)


def test_unreadable_folder_is_reported_and_its_runs_are_kept(tmp_path):
    ours(tmp_path / "a", "r")
    ours(tmp_path / "b", "r")
    fs = CountingFS()
    finder = RunFinder(tmp_path, fs=fs)
    assert names(finder.scan()) == ["a/r", "b/r"]
    fs.refuse.add(str(tmp_path / "b"))
    ours(tmp_path / "b", "later")  # changes b, so it is listed again, which fails
    result = finder.scan()
    assert result.removed == [] and names(result) == ["a/r", "b/r"]
    assert any("cannot list b: Permission denied" in p for p in result.problems)
    fresh = RunFinder(tmp_path, fs=fs).scan()  # never readable: the others are still found
    assert names(fresh) == ["a/r"] and any("Permission denied" in p for p in fresh.problems)
    fs.refuse.clear()
    assert names(finder.scan()) == ["a/r", "b/later", "b/r"]


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not stop root (the fake file system above covers it)")
def test_really_unreadable_folder(tmp_path):
    ours(tmp_path / "a", "r")
    (tmp_path / "locked").mkdir()
    os.chmod(tmp_path / "locked", 0)
    try:
        result = RunFinder(tmp_path).scan()
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert names(result) == ["a/r"] and any("locked" in p for p in result.problems)


def test_thousands_of_folders_no_hang_and_a_folder_budget(tmp_path):
    for i in range(3000):
        (tmp_path / f"d{i // 100}" / f"e{i}").mkdir(parents=True)
    ours(tmp_path / "d7" / "e700", "r")
    started = time.monotonic()
    finder = RunFinder(tmp_path)
    result = finder.scan()
    first = time.monotonic() - started
    assert names(result) == ["d7/e700/r"] and result.folders_seen == 3031 and first < 10
    age(tmp_path)
    finder.scan()
    started = time.monotonic()
    again = finder.scan()
    assert again.folders_listed == 0 and time.monotonic() - started < first
    limited = RunFinder(tmp_path, max_folders=500).scan()
    assert any("stopped after 500 folders" in p for p in limited.problems)


def test_hidden_and_cache_folders_are_not_searched(tmp_path):
    ours(tmp_path / ".ipynb_checkpoints", "r")
    ours(tmp_path / "__pycache__", "r")
    ours(tmp_path / "ok", "r")
    assert names(RunFinder(tmp_path).scan()) == ["ok/r"]


def test_an_id_two_locations_would_share_goes_to_the_root_run_and_is_reported(tmp_path):
    ours(tmp_path / "a", "x")
    nested_id = run_id_for("rldk", "a", "x")
    ours(tmp_path, nested_id)  # a root run named like the nested run's id
    result = RunFinder(tmp_path).scan()
    assert result.runs[nested_id].rel == ""
    other = next(ref for ref in result.runs.values() if ref.rel == "a")
    assert other.run_id == f"{nested_id}-2" and RUN_ID_PATTERN.fullmatch(other.run_id)
    assert any("is another run's" in p for p in result.problems)


def test_the_searched_path_being_a_file_is_reported(tmp_path):
    (tmp_path / "file").write_text("x")
    result = RunFinder(tmp_path / "file").scan()
    assert result.runs == {} and any("not a folder" in p for p in result.problems)
