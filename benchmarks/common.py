"""Shared helpers of the benchmark scripts: command line, timing, realistic TRL records, fast file
generation, a comm tap that measures what leaves the kernel, tables with PASS/MISS verdicts, JSON results.

Every number a script prints is measured in that script's process; targets are constants written next to the
checks, never results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOAD_AT_START = os.getloadavg()

# Benchmark the checkout this file lives in, whether or not the package is installed in the venv.
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ---- command line -------------------------------------------------------------------------------------------
def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repetitions: a smoke run, not a measurement"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where to write <name>.json (default benchmarks/results; --quick writes <name>.quick.json there)",
    )
    return parser.parse_args(argv)


def start(doc: str, argv: Sequence[str] | None, full: dict[str, Any], quick: dict[str, Any]
          ) -> tuple[argparse.Namespace, dict[str, Any], float]:
    """The common opening of a benchmark's main: its arguments, the config for the mode (full or --quick), quiet
    library logging, and the start time."""
    args = parse_args(doc.splitlines()[0], argv)
    quiet_logging()
    return args, quick if args.quick else full, now()


# ---- timing ---------------------------------------------------------------------------------------------------
def now() -> float:
    return time.perf_counter()


def time_calls(fn: Callable[[], Any], reps: int, setup: Callable[[], Any] | None = None) -> list[float]:
    """Seconds per call of `fn`, one sample per repetition (`setup` runs untimed before each)."""
    samples = []
    for _ in range(reps):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: Sequence[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "median": statistics.median(ordered),
        "min": ordered[0],
        "p90": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
        "max": ordered[-1],
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- formatting -----------------------------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.2f} MiB"


def fmt_ratio(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f}×"
    return f"{x:.2f}×"


def fmt_int(n: int) -> str:
    return f"{n:,}"


class Table:
    """A plain-text table; also kept as rows of strings for the JSON result."""

    def __init__(self, title: str, columns: Sequence[str]) -> None:
        self.title = title
        self.columns = list(columns)
        self.rows: list[list[str]] = []
        self.notes: list[str] = []

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |"

        out = [f"### {self.title}", "", line(self.columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}


class Checks:
    """Targets next to measured values, each PASS or MISS."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, measured: float, target: float, unit: str, higher_is_better: bool = False,
            shown: str | None = None) -> bool:
        ok = measured >= target if higher_is_better else measured <= target
        self.items.append(
            {
                "name": name,
                "measured": measured,
                "target": target,
                "unit": unit,
                "comparison": ">=" if higher_is_better else "<=",
                "shown": shown or _fmt_value(measured, unit),
                "verdict": "PASS" if ok else "MISS",
            }
        )
        return ok

    def table(self, title: str = "Targets") -> Table:
        table = Table(title, ["check", "measured", "target", "verdict"])
        for item in self.items:
            table.add(
                item["name"], item["shown"], f"{item['comparison']} {_fmt_value(item['target'], item['unit'])}",
                item["verdict"],
            )
        return table


def _fmt_value(value: float, unit: str) -> str:
    if unit == "s":
        return fmt_time(value)
    if unit == "bytes":
        return fmt_bytes(value)
    if unit == "ratio":
        return fmt_ratio(value)
    if unit == "/s":
        return f"{value:,.1f}/s"
    return f"{value:,.3g} {unit}".strip()


# ---- results ----------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1_5_15min": list(os.getloadavg()),
    }


def load_note() -> str:
    """The machine's load average: other processes on the same cores make absolute times slower (ratios
    measured in one process are less affected)."""
    one, five, _ = os.getloadavg()
    cpus = os.cpu_count() or 1
    busy = " — the machine is busy, absolute times are pessimistic" if one > 0.5 * cpus else ""
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {cpus} CPUs{busy}"


def package_versions(names: Iterable[str]) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision() -> str | None:
    """The checkout's HEAD commit, read from .git without running git (uncommitted edits are not detected). A git
    worktree's `.git` is a file naming its git dir, whose branch refs live in the main repository's (commondir)."""
    git = REPO / ".git"
    try:
        if git.is_file():
            git = Path(git.read_text().split(":", 1)[1].strip())
        commondir = git / "commondir"
        common = (git / commondir.read_text().strip()).resolve() if commondir.exists() else git
        ref = (git / "HEAD").read_text().strip()
        if ref.startswith("ref: "):
            for base in (git, common):
                ref_path = base / ref[5:]
                if ref_path.exists():
                    return ref_path.read_text().strip()
            packed = common / "packed-refs"
            for line in packed.read_text().splitlines():
                if line.endswith(ref[5:]):
                    return line.split()[0]
            return None
        return ref
    except (OSError, IndexError):
        return None


def write_results(name: str, args: argparse.Namespace, tables: Sequence[Table], checks: Checks,
                  data: dict[str, Any], started: float) -> Path:
    """Print every table and the targets, and write benchmarks/results/<name>.json (or .quick.json)."""
    all_tables = [*tables, checks.table(f"{name}: targets")] if checks.items else list(tables)
    for table in all_tables:
        print()
        print(table.render())
    elapsed = time.perf_counter() - started
    print(f"\n{name}: {'quick smoke run, ' if args.quick else ''}finished in {elapsed:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MiB; {load_note()}")
    out_dir = args.results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (f"{name}.quick.json" if args.quick else f"{name}.json")
    payload = {
        "benchmark": name,
        "quick": bool(args.quick),
        "created_unix": time.time(),
        "elapsed_s": elapsed,
        "peak_rss_mib": peak_rss_mb(),
        "machine": machine(),
        "load_average_at_start": list(LOAD_AT_START),
        "git_head": git_revision(),
        "checks": checks.items,
        "tables": [t.to_json() for t in all_tables],
        "data": data,
    }
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    print(f"results written to {path}")
    return path


# ---- temp dirs ------------------------------------------------------------------------------------------------------
@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"rldk_bench_{prefix}_", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- realistic TRL records ------------------------------------------------------------------------------------
METRIC_KEYS = (
    "epoch", "learning_rate", "loss", "grad_norm", "reward_mean", "reward_std", "kl_mean", "entropy_mean",
    "clip_frac", "timestamp",
)  # 10 numeric series per step


class RecordMaker:
    """Flat records as RLDKDashboard.add_metrics / RLDKCallback write them for a GRPO run: `step`, `run_id` and
    10 numeric metrics with full float precision (12 keys, ~320 bytes of JSON)."""

    def __init__(self, run_id: str = "bench_run", seed: int = 0, t0: float = 1_780_000_000.0) -> None:
        self.run_id = run_id
        self.rng = random.Random(seed)
        self.t0 = t0

    def __call__(self, step: int) -> dict[str, Any]:
        r = self.rng.random
        return {
            "step": step,
            "run_id": self.run_id,
            "epoch": step / 1250,
            "learning_rate": 1e-6 * (1 - step / 2_000_000),
            "loss": 0.05 + 0.1 * r(),
            "grad_norm": 0.5 + 2.5 * r(),
            "reward_mean": 0.2 + 0.6 * r(),
            "reward_std": 0.1 + 0.2 * r(),
            "kl_mean": 0.01 * r(),
            "entropy_mean": 0.5 + r(),
            "clip_frac": 0.1 * r(),
            "timestamp": self.t0 + step * 0.5,
        }

    def many(self, start: int, count: int) -> list[dict[str, Any]]:
        return [self(step) for step in range(start, start + count)]


def write_metrics_file(path: Path, rows: int, make: RecordMaker, chunk: int = 50_000) -> int:
    """Write `rows` records as RunStore writes them (`[\\n{..},\\n{..}\\n]\\n`, one per line) in one pass with
    orjson, instead of `rows` appends. Returns the file size in bytes."""
    import orjson

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"[\n")
        for start in range(0, rows, chunk):
            count = min(chunk, rows - start)
            if start:
                f.write(b",\n")
            f.write(b",\n".join(orjson.dumps(make(step)) for step in range(start, start + count)))
        f.write(b"\n]\n")
    return path.stat().st_size


def seed_append(path: Path, record: dict[str, Any]) -> int:
    """The seed's (the original RLDK dashboard's) add: read the whole metrics file, json.load, append, json.dump
    the whole list. Returns the bytes it wrote: the whole file, every time."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data.append(record)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return path.stat().st_size


# ---- what leaves the kernel -----------------------------------------------------------------------------------
def wire_size(data: Any, buffers: Sequence[Any] | None = None) -> int:
    """Bytes of a comm message body as jupyter_client's default packer serialises it (`json.dumps` with
    ensure_ascii=False, allow_nan=False, utf-8), plus binary buffers. The Jupyter envelope (header,
    parent_header, metadata; a few hundred bytes per message) is not included."""
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN in a naive payload: jupyter_client would fail; count it as Python writes it
        text = json.dumps(data, ensure_ascii=False)
    size = len(text.encode("utf-8", errors="surrogateescape"))
    for buffer in buffers or ():
        size += memoryview(buffer).nbytes
    return size


class CommTap:
    """Wraps `widget.comm.send` (as tests/test_dashboard.py does) and records, per message, the monotonic time,
    its method (`custom` delta or `update` trait sync), its serialized size and its data."""

    def __init__(self, widget: Any, keep_data: bool = False) -> None:
        self.messages: list[tuple[float, str, int]] = []
        self.data: list[Any] = []
        self.keep_data = keep_data
        self._lock = threading.Lock()
        original = widget.comm.send

        def send(data=None, metadata=None, buffers=None):
            size = wire_size(data, buffers)
            method = data.get("method", "?") if isinstance(data, dict) else "?"
            with self._lock:
                self.messages.append((time.monotonic(), method, size))
                if self.keep_data:
                    self.data.append(data)
            return original(data=data, metadata=metadata, buffers=buffers)

        widget.comm.send = send

    def reset(self) -> None:
        with self._lock:
            self.messages = []
            self.data = []

    def count(self) -> int:
        return len(self.messages)

    def total_bytes(self) -> int:
        return sum(m[2] for m in self.messages)

    def times(self) -> list[float]:
        return [m[0] for m in self.messages]


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The largest number of events in any half-open time window [t, t + window)."""
    ordered = sorted(times)
    best = 0
    j = 0
    for i in range(len(ordered)):
        while ordered[i] - ordered[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def quiet_logging() -> None:
    import logging
    import warnings

    logging.getLogger("rldk_widget").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
