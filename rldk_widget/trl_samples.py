"""TRL's completions, from the two places TRL keeps them: a trainer in this process (`LiveCapture`, read through one
adapter per TRL version range) and the parquet files GRPOTrainer writes with `log_completions=True`
(`CompletionsFolder`, read through the file-system layer).

Live (TRL 1.16, GRPOTrainer and RLOOTrainer alike). Each generation batch extends `trainer._logs`, a dict of deques
sized to `args.generation_batch_size` (the last batch only, gathered from all processes):

    _logs = {"prompt": deque[str | list[message]], "completion": deque[str | list[message]],
             "rewards": defaultdict(str -> deque[float]),   # one per reward function, raw score, NaN for None
             "advantages": deque[float], "extra": defaultdict(str -> deque[Any]),   # reward functions' log_extra
             "images": deque}

`Trainer.log` calls `on_log` (inside `super().log`) before GRPO writes the parquet file, so the batch is there at
`on_log`; when logging is more frequent than generation it is the same batch at several logs, which
`LiveCapture.snapshot` recognises by the identity of its advantage objects (new floats at every generation) and
skips. The private structure is read only in `LogsDequeAdapter`; a trainer whose structure does not match any adapter
disables capture with one warning, never breaking training.

Parquet (TRL 1.16 `GRPOTrainer.log`, main process): `{output_dir}/completions/completions_{global_step:05d}.parquet`,
written with pandas from the same `_logs` after every log (also the final `train_runtime` log, which rewrites the
last step's file with the same rows), not atomically. Columns: `step` int64, `prompt` and `completion`
(large_string, or list<struct<role: string, content: string>> for conversational data), one float64 column per reward
function (null where the function returned None), the reward functions' extra columns (any type), `advantage`
float64. RLOOTrainer writes none.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Protocol

from .fs import LOCAL, READ_CHUNK_BYTES, FileStat, FileSystem, as_path, describe_error, join
from .fs import signature as file_signature
from .samples import RawBatch, SampleSettings, content_text, render_text

logger = logging.getLogger(__name__)

COMPLETIONS_FOLDER = "completions"
PARQUET_NAME = re.compile(r"completions_(\d{1,19})\.parquet")
PARQUET_MAX_BYTES = 256 << 20
"""A completions parquet file larger than this is reported, not read (TRL's hold one generation batch)."""
PARQUET_MAX_ROWS = 4096
"""Rows read per parquet file at most (the rest is reported)."""
NOT_REWARDS = frozenset({"step", "prompt", "completion", "advantage", "image", "images"})


# ---- live ---------------------------------------------------------------------------------------------------
def trl_version() -> str | None:
    try:
        from importlib import metadata

        return metadata.version("trl")
    except Exception:  # noqa: BLE001
        return None


def _version_tuple(version: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (version or "").split(".")[:3]:
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


class Adapter(Protocol):
    """Reads one TRL version range's private trainer state."""

    name: str
    versions: tuple[tuple[int, ...], tuple[int, ...]]
    """[first, past) TRL versions this adapter is tested with."""

    def problem(self, trainer: Any) -> str | None:
        """Why this trainer cannot be read (None: it can)."""
        ...

    def marker(self, trainer: Any) -> tuple[Any, ...]:
        """Objects that are new whenever the trainer generated a new batch (compared by identity); () when it
        holds none yet."""
        ...

    def snapshot(self, trainer: Any, step: int, logs: dict[str, Any], rows: int) -> RawBatch | None:
        """The trainer's last generation batch (its first `rows` rows), or None when it holds none. Copies
        references only: called on the training thread at every captured log."""
        ...


class LogsDequeAdapter:
    """TRL 1.16 GRPOTrainer / RLOOTrainer: `trainer._logs` (see the module docstring)."""

    name = "trainer._logs (TRL 1.16)"
    versions = ((1, 16), (2,))

    def problem(self, trainer: Any) -> str | None:
        logs = getattr(trainer, "_logs", None)
        if not isinstance(logs, dict):
            return f"{type(trainer).__name__} has no `_logs` dict (it keeps no generated completions)"
        missing = [key for key in ("prompt", "completion", "rewards", "advantages") if key not in logs]
        if missing:
            return f"{type(trainer).__name__}._logs has no {', '.join(missing)}"
        if not isinstance(logs["rewards"], dict):
            return f"{type(trainer).__name__}._logs['rewards'] is not a dict"
        return None

    def snapshot(self, trainer: Any, step: int, logs: dict[str, Any], rows: int) -> RawBatch | None:
        state = trainer._logs
        advantages = state["advantages"]
        if not len(advantages):
            return None

        def head(values: Any) -> list[Any]:
            return list(itertools.islice(values, rows))

        args = getattr(trainer, "args", None)
        max_length = getattr(args, "max_completion_length", None)
        ratio = _number(logs.get("completions/clipped_ratio"))
        low, high = _number(logs.get("completions/min_length")), _number(logs.get("completions/max_length"))
        return RawBatch(
            step=step,
            prompts=head(state["prompt"]),
            completions=head(state["completion"]),
            rewards={name: head(values) for name, values in state["rewards"].items()},
            advantages=head(advantages),
            extra={name: head(values) for name, values in state.get("extra", {}).items()},
            reward_weights=_RewardWeights(getattr(trainer, "reward_func_names", ()), getattr(trainer, "reward_weights", ())),
            max_completion_length=max_length if isinstance(max_length, int) and not isinstance(max_length, bool)
            else None,
            clipped_ratio=ratio,
            length_range=(low, high) if low is not None and high is not None and low <= high else None,
        )

    @staticmethod
    def marker(trainer: Any) -> tuple[Any, ...]:
        """What changes when a new batch is generated: the first and last advantage objects (fresh floats from
        `tolist()` at every generation) and the batch size."""
        advantages = trainer._logs["advantages"]
        return (advantages[0], advantages[-1], len(advantages)) if len(advantages) else ()


ADAPTERS: tuple[Any, ...] = (LogsDequeAdapter(),)
"""Adapters newest first; add one per TRL version range whose private structure differs."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class _RewardWeights(Mapping):
    """Reward weights by function name, read from the trainer's tensor when first used (when the batch is written,
    not on the training thread's hot path); TRL's default of 1 for any it cannot read."""

    def __init__(self, names: Any, weights: Any) -> None:
        self._names, self._weights = names, weights
        self._resolved: dict[str, float] | None = None

    def _get(self) -> dict[str, float]:
        if self._resolved is None:
            try:
                values = self._weights.tolist() if hasattr(self._weights, "tolist") else list(self._weights)
                self._resolved = {str(n): float(w) for n, w in zip(list(self._names), values)}
            except Exception:  # noqa: BLE001
                self._resolved = {}
            self._names = self._weights = None
        return self._resolved

    def __getitem__(self, name: str) -> float:
        return self._get()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def adapter_for(trainer: Any) -> tuple[Any | None, str | None]:
    """The adapter for `trainer` (by TRL version, else the first whose structure matches), or the reason none is."""
    version = _version_tuple(trl_version())
    ranged = [a for a in ADAPTERS if a.versions[0] <= version < a.versions[1]]
    problems = []
    for adapter in ranged + [a for a in ADAPTERS if a not in ranged]:
        problem = adapter.problem(trainer)
        if problem is None:
            if adapter not in ranged:
                logger.info("rldk_widget: reading completions of TRL %s with the %s adapter (untested version)",
                            trl_version(), adapter.name)
            return adapter, None
        problems.append(problem)
    return None, problems[0] if problems else "no adapter"


class LiveCapture:
    """Reads one trainer's generation batches at its logs (the trainer is held weakly)."""

    def __init__(self, trainer: Any, settings: SampleSettings) -> None:
        self.settings = settings
        self._trainer = weakref.ref(trainer)
        self.trainer_class = type(trainer).__name__
        self.adapter, self.problem = adapter_for(trainer)
        self._marker: tuple[Any, ...] = ()
        self._logged = 0
        self._count = _token_counter(trainer) if settings.count_tokens else None

    @property
    def active(self) -> bool:
        return self.adapter is not None and self._trainer() is not None

    def snapshot(self, step: int, logs: dict[str, Any]) -> RawBatch | None:
        """The batch to record at this (training) log, or None: not every n-th log, no batch yet, or the batch
        already recorded. Raises what the adapter raises (the callback turns it into one warning and stops)."""
        trainer = self._trainer()
        if trainer is None or self.adapter is None:
            return None
        logged, self._logged = self._logged, self._logged + 1
        if logged % self.settings.every:
            return None
        marker = self.adapter.marker(trainer)
        if not marker or (len(marker) == len(self._marker) and all(a is b for a, b in zip(marker, self._marker))):
            return None
        batch = self.adapter.snapshot(trainer, step, logs, self.settings.per_step + 1)
        self._marker = marker
        return batch

    def disable(self, problem: str) -> None:
        self.adapter = None
        self.problem = problem

    def count_tokens(self) -> Callable[[list[str]], list[int]] | None:
        return self._count

    def describe(self) -> dict[str, Any]:
        """For the run info: where samples come from."""
        trainer = self._trainer()
        names = list(getattr(trainer, "reward_func_names", []) or []) if trainer is not None else []
        return {"sample_source": self.adapter.name if self.adapter else None, "reward_funcs": [str(n) for n in names]}


def _token_counter(trainer: Any) -> Callable[[list[str]], list[int]] | None:
    """Token counts of texts with the trainer's tokenizer. A fast tokenizer is cloned first (here, on the caller's
    thread): the write pass may run on a worker thread while the trainer tokenizes, and a Rust tokenizer whose
    padding or truncation transformers sets while another thread encodes with it fails with "Already borrowed"
    (huggingface/tokenizers#537, huggingface/transformers#47085) — in whichever thread, the trainer's included."""
    tokenizer = getattr(trainer, "processing_class", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        try:
            from tokenizers import Tokenizer

            clone = Tokenizer.from_str(backend.to_str())
            clone.no_truncation()
            clone.no_padding()
        except Exception:  # noqa: BLE001 - no lengths rather than a failing attach
            return None
        encode = getattr(clone, "encode_batch_fast", None) or clone.encode_batch
        return lambda texts: [len(encoding.ids) for encoding in encode(texts, add_special_tokens=False)]
    if callable(tokenizer):
        return lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return None


# ---- parquet --------------------------------------------------------------------------------------------------
@dataclass
class ParquetRow:
    prompt: str
    completion: str
    content: str
    """The completion's generated text without roles (for `empty`)."""
    rewards: dict[str, float]
    advantage: float
    extra: dict[str, Any]


@dataclass
class ParquetBatch:
    name: str
    step: int
    signature: Hashable
    rows: list[ParquetRow]
    reward_names: list[str]


def decode_completions(data: bytes, name: str, reward_names: list[str] | None = None
                       ) -> tuple[list[ParquetRow] | None, list[str], list[str]]:
    """The rows of one completions parquet file (None if it cannot be read at all), its reward columns and the
    problems found. Never raises: missing columns are empty, non-string texts are rendered, and a column that cannot
    be converted is reported and left out."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None, [], [f"{name}: pyarrow is not installed; TRL's completions files cannot be read"]
    problems: list[str] = []
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as err:  # noqa: BLE001 - pyarrow raises many kinds (ArrowInvalid, OSError, ...)
        return None, [], [f"{name}: not a readable parquet file ({_short(err)})"]
    rows = table.num_rows
    if rows > PARQUET_MAX_ROWS:
        problems.append(f"{name}: {rows} rows, the first {PARQUET_MAX_ROWS} read")
        table = table.slice(0, PARQUET_MAX_ROWS)
        rows = PARQUET_MAX_ROWS
    columns: dict[str, list[Any]] = {}
    numeric: list[str] = []
    for field in table.schema:
        try:
            columns[field.name] = table.column(field.name).to_pylist()
        except Exception as err:  # noqa: BLE001
            problems.append(f"{name}: column {field.name!r} cannot be read ({_short(err)})")
            continue
        if (pa.types.is_floating(field.type) or pa.types.is_integer(field.type)) and field.name not in NOT_REWARDS:
            numeric.append(field.name)
    for required in ("prompt", "completion"):
        if required not in columns:
            problems.append(f"{name}: no {required!r} column")
    if "advantage" not in columns:
        problems.append(f"{name}: no 'advantage' column")
    known = [n for n in (reward_names or []) if n in columns]
    rewards = known or numeric
    extras = [n for n in columns if n not in NOT_REWARDS and n not in rewards]
    empty = [None] * rows
    prompts, completions = columns.get("prompt", empty), columns.get("completion", empty)
    advantages = columns.get("advantage", empty)
    out = []
    for i in range(rows):
        out.append(ParquetRow(
            prompt=render_text(prompts[i]),
            completion=render_text(completions[i]),
            content=content_text(completions[i]),
            rewards={n: _float(columns[n][i]) for n in rewards},
            advantage=_float(advantages[i]),
            extra={n: columns[n][i] for n in extras},
        ))
    return out, rewards, problems


def _float(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


class CompletionsFolder:
    """The `completions_*.parquet` files of one TRL output folder's `completions/` (pass that folder), read through
    `fs`. `poll()` returns the files that are new or changed since the last call, oldest step first. A file that
    does not read (TRL writes it in place, so a read can meet it half written) is tried again at the next poll and
    reported if it still fails unchanged."""

    def __init__(self, folder: str | os.PathLike[str], fs: FileSystem = LOCAL) -> None:
        self.folder = as_path(folder, fs)
        self.fs = fs
        self._read: dict[str, Hashable] = {}
        self._failed: dict[str, Hashable] = {}
        self._reported: dict[str, Hashable] = {}

    def poll(self, reward_names: list[str] | None = None, max_files: int = 256
             ) -> tuple[list[ParquetBatch], list[str], bool]:
        """(new or changed files, problems, more files are waiting)."""
        problems: list[str] = []
        try:
            listing = self.fs.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):
            return [], [], False
        except OSError as err:
            return [], [f"cannot list {self.folder}: {describe_error(err)}"], False
        waiting = []
        for file_name, info in listing.items():
            match = PARQUET_NAME.fullmatch(file_name)
            if match is None:
                continue
            signature = file_signature(info)
            if self._read.get(file_name) == signature or self._reported.get(file_name) == signature:
                continue
            if info.kind != "file":
                self._reported[file_name] = signature
                problems.append(f"{file_name}: is a {info.kind}, not a regular file")
                continue
            waiting.append((int(match.group(1)), file_name, signature, info))
        waiting.sort()
        batches = []
        for step, file_name, signature, info in waiting[:max_files]:
            batch, problem = self._read_file(step, file_name, signature, info, reward_names)
            if batch is not None:
                batches.append(batch)
            if problem is not None:
                problems.extend(problem)
        return batches, problems, len(waiting) > max_files

    def _read_file(self, step: int, name: str, signature: Hashable, info: FileStat, reward_names: list[str] | None
                   ) -> tuple[ParquetBatch | None, list[str] | None]:
        if info.size > PARQUET_MAX_BYTES:
            self._reported[name] = signature
            return None, [f"{name}: {info.size:,} bytes, larger than {PARQUET_MAX_BYTES:,}: not read"]
        data = self.read_bytes(name, signature)
        if isinstance(data, str):
            return self._failure(name, signature, [data])
        rows, rewards, problems = decode_completions(data, name, reward_names)
        if rows is None:
            return self._failure(name, signature, problems)
        self._read[name] = signature
        self._failed.pop(name, None)
        return ParquetBatch(name, step, signature, rows, rewards), problems or None

    def _failure(self, name: str, signature: Hashable, problems: list[str]) -> tuple[None, list[str] | None]:
        if self._failed.get(name) == signature:
            self._reported[name] = signature
            return None, problems
        self._failed[name] = signature
        return None, None

    def read_bytes(self, name: str, signature: Hashable | None = None) -> bytes | str:
        """The file's bytes (chunk by chunk, all from the same file), or the problem text. With `signature`, a file
        that changed since is a problem too (the caller reads rows it indexed from that version)."""
        path = self.folder / name
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                info, chunk = self.fs.read(path, size, READ_CHUNK_BYTES)
                if signature is not None and file_signature(info) != signature:
                    return f"{name}: changed while being read"
                if info.size > PARQUET_MAX_BYTES:
                    return f"{name}: larger than {PARQUET_MAX_BYTES:,} bytes"
                parts.append(chunk)
                size += len(chunk)
                if not chunk or size >= info.size:
                    break
        except OSError as err:
            return f"{name}: cannot read ({describe_error(err)})"
        return b"".join(parts)

    def read_rows(self, name: str, signature: Hashable, reward_names: list[str] | None = None
                  ) -> tuple[list[ParquetRow] | None, str | None]:
        """The rows of a file as it was when indexed (None and a problem if it changed or no longer reads)."""
        data = self.read_bytes(name, signature)
        if isinstance(data, str):
            return None, data
        rows, _, problems = decode_completions(data, name, reward_names)
        return rows, (problems[0] if rows is None and problems else None)


def completions_folder(output_dir: str | os.PathLike[str]) -> Path:
    """Where TRL puts the completions parquet files of a run whose `output_dir` is given (a URL stays a URL)."""
    return join(output_dir, COMPLETIONS_FOLDER)
