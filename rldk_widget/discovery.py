"""Discovery: the runs in a folder and its sub-folders, their run ids, display names and the folder their files
are in.

Discovery (`RunFinder`) goes through the `FileSystem` of fs.py only. A run is either

- our run files: `{stem}_metrics.json`, `_alerts.json`, `_ppo_metrics.csv`, `_checkpoint_summary.csv` or
  `_run_info.json` (written at the start of training, so a run shows before its first record) in a folder;
- a Hugging Face output folder: one with a `trainer_state.json` file or a `checkpoint-<N>` folder (whose
  `trainer_state.json` is that run's: a `checkpoint-*` folder is never searched for runs of its own). A folder
  holding our run files is those runs only (its trainer_state.json is the same training, recorded by the callback).

`path` and its sub-folders are searched up to `max_depth` levels below it (default 3). Folders whose name starts
with `.` and `__pycache__` are skipped. Each `scan()` lists a folder only if it changed since the last scan (its
identity or modification time differ, or it was listed within `RACY_S` of being changed), else it costs one
`stat`: files being appended to do not change their folder, runs appearing, disappearing or being renamed do. A
folder reached a second time in one scan (a symbolic link loop, or two links to one folder) is skipped and
reported, as is a folder that cannot be listed (its runs as found before are kept) and a scan that stops at
`max_folders` folders.

Run ids (`run_id_for`): run ids stay `[A-Za-z0-9._-]{1,128}`, never a path. Runs directly in `path` keep their file
stem as id (a writer's `{output_dir}/{run_id}_*` files are that run) and a Hugging Face folder that is `path`
itself is `hf_<folder name>` (as `TrainerStateReader` names it). A nested run's id is a readable slug of its
relative location followed by `-` and the first 12 hex digits of the SHA-256 of that exact location
(`"rldk:" + rel + "/" + stem`, or `"hf:" + rel`): `lr_1e-5_s0__grpo-3f9c2a41b7d0`. The slug joins path parts with
`__`, turns other characters that are not allowed into `_` and keeps the last 115 characters. The id is a pure
function of the run's location, so it is the same in every process and session; two locations that give the same
id (a 48-bit hash collision, or a root run named like a nested run's id) are told apart within a finder: the root
run and then the first one found keep it, later ones get `-2`, `-3`, ... and a problem says so. `RunRef.name` is
what a user sees (the relative path, `rel/stem` for our files). `RunRef.folder` is where the run's files are:
readers read `RunStore(ref.folder, ref.file_stem)` or `TrainerStateReader(ref.folder)`; only a run with
`ref.writable` (our files directly in `path`) may be written to, by `RunStore(path, ref.run_id)` — nothing is
ever written into a nested folder.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .folder_watch import FolderWatch
from .fs import LOCAL, FileStat, FileSystem, LocalFileSystem, describe_error
from .hf_state import STATE_FILE, trainer_state_run_id
from .store import FILE_SUFFIXES, RUN_INFO_SUFFIX

DEFAULT_MAX_DEPTH = 3
DEFAULT_MAX_FOLDERS = 10_000
RACY_S = 2.0
"""A folder listed less than this long after it was modified is listed again at the next scan (a change in the same
clock tick as the listing would leave the modification time as it was)."""
RUN_SUFFIXES = (*FILE_SUFFIXES.values(), RUN_INFO_SUFFIX)
_RUN_FILE = re.compile(
    r"(?P<stem>[A-Za-z0-9._-]{1,128})_(?P<suffix>" + "|".join(re.escape(s) for s in RUN_SUFFIXES) + r")"
)
CHECKPOINT_FOLDER = re.compile(r"checkpoint-\d{1,18}")
_SLUG_MAX = 128 - 13
_SKIPPED = frozenset({"__pycache__"})
FOLDER_CHECKS_PER_PASS = 24
"""Kept folders a scan stats at most (the searched folder and new ones always): a larger tree is looked at in
turns, each folder every ceil(folders / FOLDER_CHECKS_PER_PASS) scans."""
COMPLETIONS_FOLDER = "completions"
"""Where TRL's GRPOTrainer writes completions_{step}.parquet (trl_samples.COMPLETIONS_FOLDER)."""


@dataclass(frozen=True)
class RunRef:
    """One run found in a folder. `folder` is where its files are; `file_stem` the prefix of our run files there
    (None for a Hugging Face folder, whose files are `folder/trainer_state.json` and its checkpoints')."""

    run_id: str
    name: str
    source: str
    """"rldk" (our run files) or "hf" (a Hugging Face output folder)."""
    folder: str
    rel: str
    """The folder relative to the searched path, with `/` ("" for the path itself)."""
    file_stem: str | None = None

    @property
    def writable(self) -> bool:
        """Only our files directly in the searched folder may be written to (as `RunStore(path, run_id)`)."""
        return self.source == "rldk" and self.rel == ""

    @property
    def location(self) -> tuple[str, str, str | None]:
        return (self.source, self.rel, self.file_stem)


def run_id_for(source: str, rel: str, stem: str | None, root_name: str = "run") -> str:
    """The run id of a run at a location (see the module docstring); `root_name` names a Hugging Face folder that
    is the searched folder itself."""
    if rel == "":
        if source == "rldk" and stem is not None:
            return stem
        return trainer_state_run_id(Path(root_name))
    key = f"rldk:{rel}/{stem}" if source == "rldk" else f"hf:{rel}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    parts = rel.split("/") + ([stem] if source == "rldk" and stem else [])
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts))[-_SLUG_MAX:].lstrip("._-") or "run"
    return f"{slug}-{digest}"


def display_name(source: str, rel: str, stem: str | None, root_name: str) -> str:
    if source == "rldk":
        return f"{rel}/{stem}" if rel else str(stem)
    return rel or root_name


@dataclass
class _Folder:
    signature: tuple[Any, int]
    listed_at: float
    entries: dict[str, FileStat]
    subfolders: list[str]
    stems: list[str]
    hf: bool

    def is_current(self, info: FileStat) -> bool:
        """The folder (stat'ed now as `info`) is as this listing found it: the same folder and modification time,
        which was RACY_S older than the listing (else a change in the same clock tick could hide in it)."""
        return (
            self.signature == (info.identity, info.mtime_ns)
            and bool(info.mtime_ns)
            and self.listed_at - info.mtime_ns / 1e9 >= RACY_S
        )


@dataclass
class ScanResult:
    runs: dict[str, RunRef]
    """Every run found, by run id (in the order found: the searched folder first, then sub-folders by name)."""
    added: list[RunRef]
    removed: list[RunRef]
    problems: list[str]
    folders_listed: int = 0
    """Folders listed in this scan (the others were unchanged: one stat each)."""
    folders_seen: int = 0


class RunFinder:
    """Finds the runs in `path` and its sub-folders, incrementally (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        fs: FileSystem = LOCAL,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_folders: int = DEFAULT_MAX_FOLDERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
            raise ValueError(f"max_depth must be an int >= 0, got {max_depth!r}")
        if isinstance(max_folders, bool) or not isinstance(max_folders, int) or max_folders < 1:
            raise ValueError(f"max_folders must be an int >= 1, got {max_folders!r}")
        self.path = os.fspath(path)
        self.fs = fs
        self.max_depth = max_depth
        self.max_folders = max_folders
        self.clock = clock
        self.root_name = _root_name(self.path, fs)
        self.runs: dict[str, RunRef] = {}
        self._folders: dict[str, _Folder] = {}
        self._ids: dict[tuple[str, str, str | None], str] = {}
        self._pass = 0
        self._last_locations: list[tuple[str, str, str | None]] | None = None
        self._id_problems: list[str] = []
        self._settled: tuple[list[str], list[str], int, int] | None = None
        """After a walk that met no problem but run ids': the sub-folders it saw, those problems, the number of
        folders and the watch's pass when every folder was watched (else -1), for `_unchanged_scan`."""
        self.watch: FolderWatch | None = None
        """Change notifications for the folders walked (set by the Sweep on a local file system): a scan after
        which no name appeared or went away in any of them costs nothing."""

    def folder_path(self, rel: str) -> str:
        return self.path if not rel else f"{self.path.rstrip('/')}/{rel}"

    def entries(self, rel: str) -> dict[str, FileStat]:
        """The folder's listing as of the last scan that listed it ({} when unknown)."""
        folder = self._folders.get(rel)
        return folder.entries if folder is not None else {}

    def scan(self) -> ScanResult:
        """Find the runs now: what appeared and what is gone since the last scan, and the problems met."""
        begin_pass = getattr(self.fs, "begin_pass", None)
        if begin_pass is not None:
            begin_pass()  # a remote file system lists each folder again now, once for the whole pass
        self._pass += 1
        unchanged = self._unchanged_scan()
        if unchanged is not None:
            return unchanged
        self._settled = None
        problems: list[str] = []
        visited: dict[Any, str] = {}
        seen: set[str] = set()
        unreadable: set[str] = set()
        locations: list[tuple[str, str, str | None]] = []
        listed = 0
        try:
            root_stat: FileStat | None = self.fs.stat(self.path)
            if root_stat.kind != "directory":
                problems.append(f"{self.path} is a {root_stat.kind}, not a folder")
                root_stat = None
        except (FileNotFoundError, NotADirectoryError):
            root_stat = None
        except OSError as err:
            problems.append(f"cannot read {self.path}: {describe_error(err)}")
            root_stat, unreadable = None, {""}
        pending: deque[tuple[str, int, FileStat | None]] = deque([("", 0, root_stat)] if root_stat is not None else [])
        period = max(1, math.ceil(len(self._folders) / FOLDER_CHECKS_PER_PASS))
        position = -1
        while pending:
            rel, depth, info = pending.popleft()
            position += 1
            if len(seen) >= self.max_folders:
                problems.append(
                    f"stopped after {self.max_folders} folders (max_folders): {len(pending) + 1} more not searched"
                )
                unreadable.update(item[0] for item in [(rel, depth, info), *pending])
                break
            kept = self._folders.get(rel)
            if info is None and kept is not None and period > 1 and position % period != self._pass % period:
                # a large tree looks at each kept folder every `period` scans: this one is taken as it was
                seen.add(rel)
                locations.extend(("rldk", rel, stem) for stem in kept.stems)
                if kept.hf and not kept.stems:
                    locations.append(("hf", rel, None))
                if depth < self.max_depth:
                    pending.extend((f"{rel}/{name}" if rel else name, depth + 1, None) for name in kept.subfolders)
                continue
            if info is None:  # a sub-folder of a listing kept from before: what is it now?
                try:
                    info = self.fs.stat(self.folder_path(rel))
                except FileNotFoundError:
                    continue
                except OSError as err:
                    problems.append(f"cannot read {rel}: {describe_error(err)}")
                    unreadable.add(rel)
                    continue
                if info.kind != "directory":
                    continue
            if info.identity is not None:
                if info.identity in visited:
                    problems.append(
                        f"{rel}: the same folder as {visited[info.identity] or '.'} (a symbolic link loop or a second "
                        "link to it), skipped"
                    )
                    continue
                visited[info.identity] = rel
            seen.add(rel)
            folder, fresh = self._folder(rel, info, problems)
            if folder is None:
                if fresh:  # could not be listed: keep what was found there before
                    unreadable.add(rel)
                continue
            listed += fresh
            locations.extend(("rldk", rel, stem) for stem in folder.stems)
            if folder.hf and not folder.stems:
                locations.append(("hf", rel, None))
            if depth < self.max_depth:
                for name in folder.subfolders:
                    # a new listing tells what each sub-folder is now; a kept one is stale: stat it again
                    pending.append((f"{rel}/{name}" if rel else name, depth + 1, folder.entries[name] if fresh else None))
        for ref in self.runs.values():
            if ref.location not in locations and any(_under(ref.rel, bad) for bad in unreadable):
                locations.append(ref.location)
        for rel in list(self._folders):
            if rel not in seen and not any(_under(rel, bad) for bad in unreadable):
                del self._folders[rel]
        walk_problems = len(problems)
        runs = self._assign_ids(locations, problems)
        if runs is self.runs:
            added, removed = [], []
        else:
            added = [ref for run_id, ref in runs.items() if self.runs.get(run_id) != ref]
            removed = [ref for run_id, ref in self.runs.items() if runs.get(run_id) != ref]
        self.runs = runs
        watched_at, rewalk = -1, False
        if self.watch is not None:
            watched, rewalk = self.watch.watch_only({self.folder_path(rel) for rel in seen})
            watched_at = self.watch.seq if watched else -1
        if not walk_problems and root_stat is not None and not unreadable and not rewalk:
            # (a folder watched only now is listed once more, under its watch, by the next scan)
            self._settled = (sorted(seen - {""}), problems[walk_problems:], len(seen), watched_at)
        return ScanResult(runs, added, removed, problems, listed, len(seen))

    def _unchanged_scan(self) -> ScanResult | None:
        """The common pass: after a walk without problems, the runs found before — when the watch saw no name
        appear or go away in any folder since (no system call at all), or else when the searched folder and the
        folders whose turn it is (FOLDER_CHECKS_PER_PASS of them, as a walk would stat; every folder in the watch's
        recheck) are as they were listed. None when anything differs: the walk then looks again."""
        if self._settled is None:
            return None
        subfolders, id_problems, count, watched_at = self._settled
        watch = self.watch
        distrusted = watch is not None and watch.lost_seq == watch.seq  # the recheck: every folder, once
        if watch is not None and watched_at >= 0 and watch.entries_seq <= watched_at and not distrusted:
            return ScanResult(self.runs, [], [], list(id_problems), 0, count)  # no listing changed since the walk
        period = 1 if distrusted else max(1, math.ceil(len(subfolders) / FOLDER_CHECKS_PER_PASS))
        for rel in ["", *subfolders[self._pass % period :: period]]:
            kept = self._folders.get(rel)
            try:
                info = self.fs.stat(self.folder_path(rel))
            except OSError:
                return None
            if kept is None or info.kind != "directory" or not kept.is_current(info):
                return None
        return ScanResult(self.runs, [], [], list(id_problems), 0, count)

    def _folder(self, rel: str, info: FileStat, problems: list[str]) -> tuple[_Folder | None, bool]:
        """The folder's listing and whether it is new: the one kept from before when the folder is unchanged, else
        a new one (None if it is gone or cannot be listed)."""
        kept = self._folders.get(rel)
        if kept is not None and kept.is_current(info):
            return kept, False
        now = self.clock()
        try:
            entries = self.fs.listdir(self.folder_path(rel))
        except (FileNotFoundError, NotADirectoryError):
            self._folders.pop(rel, None)
            return None, False
        except OSError as err:
            problems.append(f"cannot list {rel or self.path}: {describe_error(err)}")
            return None, True
        stems: set[str] = set()
        subfolders: list[str] = []
        hf = False
        for name, entry in entries.items():
            match = _RUN_FILE.fullmatch(name)
            if match and match["stem"] not in (".", ".."):
                # named like a run file, whatever it is: a directory or FIFO there is the run's problem to report
                stems.add(match["stem"])
                continue
            if entry.kind == "directory":
                if CHECKPOINT_FOLDER.fullmatch(name) or name == COMPLETIONS_FOLDER:
                    hf = True  # checkpoints, or TRL's completions parquet files (a run saved no checkpoint)
                elif not name.startswith(".") and name not in _SKIPPED:
                    subfolders.append(name)
                continue
            if name == STATE_FILE and entry.kind == "file":
                hf = True
        folder = _Folder((info.identity, info.mtime_ns), now, entries, sorted(subfolders), sorted(stems), hf)
        self._folders[rel] = folder
        return folder, True

    def _assign_ids(self, locations: list[tuple[str, str, str | None]], problems: list[str]) -> dict[str, RunRef]:
        """Run ids for the locations found, in the order found. Priority for an id two locations would share: the
        searched folder's own runs (their id is what writers write), then runs that had it before, then the order
        found. The same locations as the last scan keep their runs (no work)."""
        locations = list(dict.fromkeys(locations))
        if locations == self._last_locations:
            problems.extend(self._id_problems)
            return self.runs
        self._last_locations = locations
        self._id_problems = id_problems = []
        taken: dict[str, tuple[str, str, str | None]] = {}
        ids: dict[tuple[str, str, str | None], str] = {}
        for location in sorted(locations, key=lambda loc: (loc[1] != "", loc not in self._ids)):
            source, rel, stem = location
            base = run_id_for(source, rel, stem, self.root_name)
            run_id = self._ids.get(location, base)
            if run_id in taken:
                run_id, suffix = base, 1
                while run_id in taken:
                    suffix += 1
                    run_id = f"{base[: 127 - len(str(suffix))]}-{suffix}"
                id_problems.append(
                    f"{display_name(source, rel, stem, self.root_name)}: run id {base} is another run's, shown as {run_id}"
                )
            taken[run_id] = location
            ids[location] = run_id
        self._ids = ids
        problems.extend(id_problems)
        return {
            ids[loc]: RunRef(ids[loc], display_name(*loc, self.root_name), loc[0], self.folder_path(loc[1]), loc[1], loc[2])
            for loc in locations
        }


def _under(rel: str, folder: str) -> bool:
    return folder == "" or rel == folder or rel.startswith(folder + "/")


def _root_name(path: str, fs: FileSystem) -> str:
    if isinstance(fs, LocalFileSystem):
        return Path(path).resolve().name or "run"
    return path.rstrip("/").rsplit("/", 1)[-1] or "run"
