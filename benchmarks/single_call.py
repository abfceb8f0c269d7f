"""Issue 14 §5: `dash.add_metrics(row)` one call at a time into a run that already holds 100k rows, against the
old path (an add followed by its immediate read-back), the store alone (`RunStore.append_metrics`) and trackio
(`trackio.log`, local mode, no server), all in this process on the same rows; what another process can read right
after the last call (writer alive, and writer SIGKILLed); and how long each one's reader takes to load the run.

    .venv/bin/python benchmarks/single_call.py [--quick]      (trackio rows need: pip install -e ".[bench]")
"""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "single_call"
RUN = "bench_run"
PROJECT = "bench"  # the trackio project (one SQLite file, TRACKIO_DIR/bench.db)

FULL = dict(
    rows=100_000,  # already in the run before the first timed call
    block=10_000,  # calls per timed block (≥ 0.2 s at the target: every block spans the deferred read-back's lag)
    reps=8,  # blocks per writer, A B B A across the writers
    warmup=500,
    child_seconds=1.5,  # of calls, one at a time, by each writer process in the durability test (≥ 2 trackio writes)
    child_reps=3,  # writer processes per (writer, mode), each starting at another phase of trackio's 0.5 s timer
    load_reps=5,
)
QUICK = dict(rows=2_000, block=300, reps=2, warmup=20, child_seconds=0.3, child_reps=1, load_reps=2)

TARGET_CALLS_PER_S = 50_000  # issue 14 §5: add_metrics one call at a time, 100k rows in the run, 2 cores
TARGET_DURABLE_FRACTION = 1.0  # every row logged is readable by another process once add_metrics returns
TARGET_VIEW_LAG_S = 0.25  # issue 14 §5: the deferred read-back reaches the views within ~0.2 s (+ a thread wake-up)
LAG_TIMEOUT_S = 3.0  # give up waiting for the views (or trackio's queue) after this; the check then MISSes
POLL_S = 0.002
CHILD_CHUNK = 1_000  # records built per chunk between a writer process's calls

NOT_INSTALLED = 'trackio not installed (pip install -e ".[bench]")'


# ---- the records -------------------------------------------------------------------------------------------------
def trackio_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The same 10 numbers for trackio.log: `step` goes in its own argument, `run_id` is the run's, and `timestamp`
    (a reserved key in trackio, which stamps rows itself) is logged as `wall_time`."""
    out = {k: v for k, v in record.items() if k not in ("step", "run_id", "timestamp")}
    out["wall_time"] = record["timestamp"]
    return out


# ---- trackio -----------------------------------------------------------------------------------------------------
def import_trackio(trackio_dir: Path) -> Any | None:
    """trackio reads TRACKIO_DIR at import; None when it is not installed."""
    os.environ["TRACKIO_DIR"] = str(trackio_dir)
    os.environ.setdefault("TRACKIO_STORAGE_MODE", "sqlite")  # its default on a local disk ("auto" picks it here)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import trackio  # noqa: F401
            from trackio import server  # noqa: F401  (the dashboard's read functions)
            from trackio.sqlite_storage import SQLiteStorage  # noqa: F401
    except ImportError:
        return None
    return sys.modules["trackio"]


def trackio_init() -> Any:
    """Continue the existing run (resume="must"), local mode, no dashboard, no CPU/GPU monitor threads."""
    import trackio

    with contextlib.redirect_stdout(io.StringIO()):
        return trackio.init(project=PROJECT, name=RUN, resume="must", embed=False, auto_log_cpu=False,
                            auto_log_gpu=False)


def trackio_count() -> int:
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_log_count(PROJECT, RUN)


def trackio_queue_empty(run: Any) -> bool:
    """Nothing queued and no batch being written (trackio's Run internals, read only)."""
    return not run._queued_logs and run._sending_batch is None


def seed_trackio_db(rows: int, make: c.RecordMaker) -> float:
    """The same `rows` records, written as trackio writes a batch (SQLiteStorage.bulk_log, one transaction)."""
    from trackio.sqlite_storage import SQLiteStorage

    t = c.now()
    for start in range(0, rows, 50_000):
        records = make.many(start, min(50_000, rows - start))
        SQLiteStorage.bulk_log(PROJECT, RUN, [trackio_metrics(r) for r in records], steps=[r["step"] for r in records],
                               run_id=RUN)
    assert trackio_count() == rows
    return c.now() - t


def copy_trackio_db(src_dir: Path, dst_dir: Path) -> None:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = src_dir / f"{PROJECT}.db{suffix}"
        if src.exists():
            shutil.copyfile(src, dst_dir / src.name)


# ---- what reaches the views --------------------------------------------------------------------------------------
def last_delivered_step(tap: c.CommTap) -> float:
    """The last step of `loss` in the newest delta message (deltas are sent in order); -1 if none yet."""
    import numpy as np

    for data in reversed(tap.data):
        if isinstance(data, dict) and data.get("method") == "custom":
            loss = data["content"]["metrics"].get(RUN, {}).get("loss")
            if loss:
                xs = np.frombuffer(base64.b64decode(loss["x"]), dtype="<f8")
                if len(xs):
                    return float(xs[-1])
    return -1.0


def wait_until(ready: Callable[[], bool], timeout: float = LAG_TIMEOUT_S) -> float | None:
    """Seconds until `ready()` (polled every 2 ms, nothing else called), None after `timeout`."""
    t = c.now()
    while not ready():
        if c.now() - t > timeout:
            return None
        time.sleep(POLL_S)
    return c.now() - t


# ---- one call at a time, in this process -------------------------------------------------------------------------
class Steps:
    """The next step of a run (rldk_widget and the old path share one: they write to the same run)."""

    def __init__(self, first: int) -> None:
        self.next = first

    def take(self, n: int) -> range:
        out = range(self.next, self.next + n)
        self.next += n
        return out


class Writer:
    name: str
    call: str

    def __init__(self, steps: Steps, make: c.RecordMaker) -> None:
        self.steps = steps
        self.make = make
        self.per_call: list[float] = []
        self.cpu_per_call: list[float] = []
        self.lags: list[float | None] = []
        self.calls = 0

    def records(self, steps: range) -> list[Any]:
        return [self.make(s) for s in steps]

    def run(self, items: list[Any]) -> None:
        raise NotImplementedError

    def settle(self, last_step: int) -> float | None:
        """After a block: seconds until its rows are where the writer promises them (views, SQLite)."""
        return 0.0

    def block(self, n: int, timed: bool = True) -> None:
        steps = self.steps.take(n)
        items = self.records(steps)
        last_step = steps[-1]
        gc.collect()
        cpu0, t0 = time.process_time(), c.now()
        self.run(items)
        wall = c.now() - t0
        lag = self.settle(last_step)
        cpu = time.process_time() - cpu0
        self.calls += n
        if timed:
            self.per_call.append(wall / n)
            self.cpu_per_call.append(cpu / n)
            self.lags.append(lag)


class OursWriter(Writer):
    name, call = "rldk_widget", "dash.add_metrics(row)"

    def __init__(self, dash: Any, tap: c.CommTap, steps: Steps, make: c.RecordMaker) -> None:
        super().__init__(steps, make)
        self.dash, self.tap = dash, tap

    def run(self, items: list[Any]) -> None:
        add = self.dash.add_metrics
        for row in items:
            add(row)

    def settle(self, last_step: int) -> float | None:
        lag = wait_until(lambda: last_delivered_step(self.tap) >= last_step)
        self.dash.update_data()  # then make sure (untimed) the next block starts with nothing pending
        self.dash.flush()
        self.tap.reset()
        return lag


class OldPathWriter(OursWriter):
    name, call = "old path", "dash.add_metrics(row); dash.update_data()"

    def run(self, items: list[Any]) -> None:
        add, read_back = self.dash.add_metrics, self.dash.update_data
        for row in items:
            add(row)
            read_back()


class StoreWriter(Writer):
    name, call = "RunStore alone", "store.append_metrics(row)"

    def __init__(self, store: Any, steps: Steps, make: c.RecordMaker) -> None:
        super().__init__(steps, make)
        self.store = store

    def run(self, items: list[Any]) -> None:
        append = self.store.append_metrics
        for row in items:
            append(row)


class TrackioWriter(Writer):
    name, call = "trackio", "trackio.log(metrics, step=s)"

    def __init__(self, run: Any, steps: Steps, make: c.RecordMaker) -> None:
        super().__init__(steps, make)
        self.trackio_run = run

    def records(self, steps: range) -> list[Any]:
        return [(trackio_metrics(r), r["step"]) for r in super().records(steps)]

    def run(self, items: list[Any]) -> None:
        import trackio

        log = trackio.log
        for metrics, step in items:
            log(metrics, step=step)

    def settle(self, last_step: int) -> float | None:
        return wait_until(lambda: trackio_queue_empty(self.trackio_run))


def bench_calls(writers: list[Writer], cfg: dict) -> None:
    for writer in writers:
        writer.block(cfg["warmup"], timed=False)
    for rep in range(cfg["reps"]):
        order = writers if rep % 2 == 0 else writers[::-1]  # A B C D, D C B A, ...
        for writer in order:
            writer.block(cfg["block"])
        print(f"  block {rep + 1}/{cfg['reps']}: " + ", ".join(
            f"{w.name} {1 / w.per_call[-1]:,.0f}/s" for w in writers), flush=True)


def writer_result(w: Writer) -> dict:
    lags = [x for x in w.lags if x is not None]
    return {
        "writer": w.name,
        "call": w.call,
        "per_call_s": c.summary(w.per_call),
        "calls_per_s": c.summary([1 / x for x in w.per_call]),
        "cpu_per_call_s": c.summary(w.cpu_per_call),
        "settle_s": c.summary(lags) if lags else None,
        "settle_timeouts": sum(1 for x in w.lags if x is None),
        "calls_total": w.calls,
    }


# ---- what another process reads right after the last call ---------------------------------------------------------
def child_main(argv: list[str]) -> int:
    """A writer process: continue the run of `--rows` rows in `--dir` and log one call at a time for `--seconds` of
    calls (records built in chunks of 1,000 between them, untimed); print `done <calls> <unix time> <seconds in
    calls>` the moment the last call returns, then SIGKILL itself (`kill`) or wait for a line on stdin and exit
    normally (`live`). `--delay` seconds pass between opening the run and the first call (trackio's writer thread
    starts at init and writes every 0.5 s: the delay sets the phase)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("writer", choices=("ours", "trackio"))
    parser.add_argument("mode", choices=("live", "kill"))
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    c.quiet_logging()
    make = c.RecordMaker(RUN, seed=1)
    if args.writer == "ours":
        from rldk_widget import RLDKDashboard

        dash = RLDKDashboard(args.dir, run_id=RUN, auto_refresh=False)
        call = dash.add_metrics

        def chunk(start: int) -> list[Any]:
            return make.many(start, CHILD_CHUNK)

        def run(items: list[Any]) -> None:
            for row in items:
                call(row)
    else:
        import_trackio(args.dir)
        import trackio

        trackio_init()
        log = trackio.log

        def chunk(start: int) -> list[Any]:
            return [(trackio_metrics(r), r["step"]) for r in make.many(start, CHILD_CHUNK)]

        def run(items: list[Any]) -> None:
            for metrics, step in items:
                log(metrics, step=step)
    time.sleep(args.delay)
    calls, in_calls, step = 0, 0.0, args.rows
    while in_calls < args.seconds:
        items = chunk(step)
        step += CHILD_CHUNK
        t = c.now()
        run(items)
        in_calls += c.now() - t
        calls += CHILD_CHUNK
    sys.stdout.write(f"done {calls} {time.time()!r} {in_calls!r}\n")
    sys.stdout.flush()
    if args.mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()
    return 0  # a normal exit: atexit handlers run (trackio.finish writes its queue)


def child_delays(cfg: dict) -> list[float]:
    """Pauses before the first call, spread evenly over trackio's 0.5 s write interval."""
    return [0.5 * (rep + 0.5) / cfg["child_reps"] for rep in range(cfg["child_reps"])]


def count_rows(writer: str, where: Path) -> int:
    """Rows of the run as a separate reader sees them now (this process is not the writer)."""
    if writer == "ours":
        from rldk_widget.store import RunStore

        return len(RunStore(where, RUN).read_all().metrics)
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_log_count(PROJECT, RUN)  # TRACKIO_DIR of this process is `where` (see bench_durable)


def bench_durable(tmp: Path, writer: str, cfg: dict, pristine: Path) -> list[dict]:
    results = []
    for rep in range(cfg["child_reps"]):
        delay = child_delays(cfg)[rep]
        for mode in ("live", "kill"):
            where = tmp / f"child_{writer}_{mode}_{rep}"
            if writer == "ours":
                where.mkdir(parents=True)
                shutil.copyfile(pristine, where / f"{RUN}_metrics.json")
            else:
                copy_trackio_db(pristine, where)
                _point_trackio_at(where)
            os.sync()  # the copy's writeback is not the writer's: its first appends would wait for it (~2 s here)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(c.REPO), env.get("PYTHONPATH")) if p)
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child", writer, mode, "--dir", str(where),
                 "--rows", str(cfg["rows"]), "--seconds", str(cfg["child_seconds"]), "--delay", f"{delay:.3f}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )
            line = proc.stdout.readline().split()
            assert line and line[0] == "done", f"{writer} writer process: {line!r}"
            calls, last_call_unix, loop_s = int(line[1]), float(line[2]), float(line[3])
            out = {"writer": writer, "mode": mode, "calls": calls, "delay_s": delay, "loop_s": loop_s,
                   "writer_calls_per_s": calls / loop_s}
            if mode == "live":
                out["read_started_after_last_call_s"] = time.time() - last_call_unix
                out["readable_right_after"] = count_rows(writer, where) - cfg["rows"]
                out["read_done_after_last_call_s"] = time.time() - last_call_unix
                proc.stdin.write("\n")
                proc.stdin.flush()
                out["exit_code"] = proc.wait(timeout=60)
                out["readable_after_normal_exit"] = count_rows(writer, where) - cfg["rows"]
            else:
                out["exit_code"] = proc.wait(timeout=60)
                out["readable_after_sigkill"] = count_rows(writer, where) - cfg["rows"]
            proc.stdin.close()
            proc.stdout.close()
            results.append(out)
            shutil.rmtree(where, ignore_errors=True)
    return results


def _point_trackio_at(where: Path) -> None:
    """Make this process's trackio read the project in `where` (TRACKIO_DIR is a module constant, read at import)."""
    import trackio.sqlite_storage as storage
    import trackio.utils as utils

    utils.TRACKIO_DIR = storage.TRACKIO_DIR = where


# ---- loading the run back ------------------------------------------------------------------------------------------
def bench_load(tmp: Path, rows: int, reps: int, have_trackio: bool) -> dict:
    from rldk_widget import RLDKDashboard

    run_dir = tmp / "load"
    samples: dict[str, list[float]] = {"ours_from_dir": [], "ours_snapshot": []}
    if have_trackio:
        from trackio import server
        from trackio.sqlite_storage import SQLiteStorage

        samples.update(trackio_get_logs=[], trackio_dashboard_batch=[])
    shown: dict[str, int] = {}
    for rep in range(reps):
        gc.collect()
        t = c.now()
        dash = RLDKDashboard.from_dir(run_dir, auto_refresh=False)
        samples["ours_from_dir"].append(c.now() - t)
        t = c.now()
        state = dash.get_state("metrics")
        samples["ours_snapshot"].append(c.now() - t)
        if rep == 0:
            loaded = len(dash.to_dataframe())
            assert loaded == rows, f"from_dir loaded {loaded} rows, expected {rows}"
            loss = state["metrics"]["runs"][RUN]["loss"]
            shown["ours_snapshot_points_loss"] = len(base64.b64decode(loss["x"])) // 8
        dash.close()
        del dash, state
        if not have_trackio:
            continue
        gc.collect()
        t = c.now()
        logs = SQLiteStorage.get_logs(PROJECT, RUN)
        samples["trackio_get_logs"].append(c.now() - t)
        if rep == 0:
            assert len(logs) == rows, f"trackio get_logs returned {len(logs)} rows, expected {rows}"
        del logs
        gc.collect()
        t = c.now()
        batch = server.get_logs_batch(PROJECT, [{"run": RUN}], scalar_only=True)
        samples["trackio_dashboard_batch"].append(c.now() - t)
        if rep == 0:
            shown["trackio_dashboard_rows"] = len(batch[0]["logs"])
        del batch
    return {"rows": rows, "shown": shown, **{k: c.summary(v) for k, v in samples.items()}}


# ---- main ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict | int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    make = c.RecordMaker(RUN)
    rows = cfg["rows"]
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {rows:,} rows in each run, "
          f"{cfg['reps']} blocks of {cfg['block']:,} calls per writer; {c.load_note()}", flush=True)

    from rldk_widget import RLDKDashboard
    from rldk_widget.store import RunStore

    with c.temp_dir(NAME) as tmp:
        trackio_dir = tmp / "trackio"
        trackio = import_trackio(trackio_dir)
        have_trackio = trackio is not None
        versions = c.package_versions(["trackio", "orjson", "anywidget"])
        setup: dict[str, float] = {}

        t = c.now()
        pristine = tmp / "pristine" / f"{RUN}_metrics.json"
        file_bytes = c.write_metrics_file(pristine, rows, make)
        for sub in ("load", "ours", "store"):
            (tmp / sub).mkdir()
            shutil.copyfile(pristine, tmp / sub / f"{RUN}_metrics.json")
        setup["ours_files_s"] = c.now() - t
        if have_trackio:
            setup["trackio_bulk_log_s"] = seed_trackio_db(rows, c.RecordMaker(RUN))
            copy_trackio_db(trackio_dir, tmp / "trackio_pristine")
            setup["trackio_db_bytes"] = (trackio_dir / f"{PROJECT}.db").stat().st_size
        print("  loading the run back", flush=True)
        load = bench_load(tmp, rows, cfg["load_reps"], have_trackio)

        print("  one call at a time", flush=True)
        dash = RLDKDashboard(tmp / "ours", run_id=RUN, auto_refresh=False)
        tap = c.CommTap(dash, keep_data=True)
        store = RunStore(tmp / "store", RUN)
        shared = Steps(rows)  # one run, one step sequence for both
        ours = OursWriter(dash, tap, shared, make)
        old = OldPathWriter(dash, tap, shared, make)
        writers: list[Writer] = [ours, old, StoreWriter(store, Steps(rows), c.RecordMaker(RUN, seed=2))]
        trackio_writer = None
        if have_trackio:
            trackio_writer = TrackioWriter(trackio_init(), Steps(rows), c.RecordMaker(RUN, seed=3))
            writers.append(trackio_writer)
        bench_calls(writers, cfg)

        expected = rows + ours.calls + old.calls
        dash.update_data()
        frame = dash.to_dataframe()
        assert len(frame) == expected and frame["step"].is_unique, \
            f"dashboard holds {len(frame)} rows, expected {expected}"
        on_disk = len(RunStore(tmp / "ours", RUN).read_all().metrics)
        assert on_disk == expected, f"{RUN}_metrics.json holds {on_disk} rows, expected {expected}"
        store.close()
        dash.close()
        del frame
        if trackio_writer is not None:
            wait_until(lambda: trackio_queue_empty(trackio_writer.trackio_run), timeout=30)
            held = trackio_count()
            want = rows + trackio_writer.calls
            assert held == want, f"trackio holds {held} rows, expected {want}"
            with contextlib.redirect_stdout(io.StringIO()):
                trackio.finish()

        print("  what another process reads right after the last call", flush=True)
        durable = bench_durable(tmp, "ours", cfg, pristine)
        if have_trackio:
            durable += bench_durable(tmp, "trackio", cfg, tmp / "trackio_pristine")
            _point_trackio_at(trackio_dir)

    calls = [writer_result(w) for w in writers]
    by_name = {r["writer"]: r for r in calls}
    store_median = by_name["RunStore alone"]["per_call_s"]["median"]
    ours_median = by_name["rldk_widget"]["per_call_s"]["median"]

    call_table = c.Table(
        f"One call at a time into a run of {rows:,} rows ({cfg['reps']} blocks of {cfg['block']:,} calls per writer)",
        ["writer", "call", "per call, median (min … max)", "calls/s", "CPU per call, incl. deferred work",
         "after the last call of a block", "÷ rldk_widget"],
    )
    for r in calls:
        pc, cpu = r["per_call_s"], r["cpu_per_call_s"]
        if r["writer"] in ("rldk_widget", "old path"):
            after = "on disk at return; views: " + _lag_text(r)
        elif r["writer"] == "trackio":
            after = "queued; all in SQLite: " + _lag_text(r)
        else:
            after = "on disk at return (no views)"
        call_table.add(r["writer"], f"`{r['call']}`",
                       f"{c.fmt_time(pc['median'])} ({c.fmt_time(pc['min'])} … {c.fmt_time(pc['max'])})",
                       f"{1 / pc['median']:,.0f}", c.fmt_time(cpu["median"]), after,
                       c.fmt_ratio(pc["median"] / ours_median))
    if not have_trackio:
        call_table.add("trackio", NOT_INSTALLED, "-", "-", "-", "-", "-")
    call_table.note("Every writer appends to its own run that holds "
                    f"{rows:,} rows at the start (rldk_widget and the old path share one dashboard and its run, which "
                    f"ends at {expected:,} rows). Records are built before timing; per call = a block's wall time ÷ "
                    "its calls, on the calling thread; blocks run A B C D, D C B A, … after "
                    f"{cfg['warmup']} untimed calls per writer.")
    call_table.note("old path: the add followed by its immediate read-back, as add_metrics did before issue 14 §5. "
                    "Before that change it is add_metrics (which then read its own append back) plus one "
                    "update_data() that finds nothing new; after it, the append plus the read-back of that row.")
    call_table.note("CPU per call: process CPU time (all threads) from a block's first call until its rows are in "
                    "the views (rldk_widget; waiting without calling anything, then update_data() + flush()) or in "
                    "SQLite (trackio: its background thread writes the queue every 0.5 s), ÷ calls.")
    call_table.note(f"RunStore alone: RunStore.append_metrics on a writer-only store (the store's speed, "
                    f"{c.fmt_time(store_median)} per call here; benchmarks/store.py)."
                    + (f" trackio {versions['trackio']}: local mode (SQLite in TRACKIO_DIR), the run resumed with "
                       "resume='must', embed=False, CPU/GPU monitors off; the same 10 numbers per row (`timestamp` "
                       "as `wall_time`: trackio reserves the name)." if have_trackio else ""))

    durable_table = c.Table(
        f"Rows another process reads right after the last call (a writer process calling for {cfg['child_seconds']} s "
        f"into a {rows:,}-row run)",
        ["writer", "rows logged", "read while the writer lives", "after SIGKILL right after the last call",
         "after a normal exit", "writer's calls/s"],
    )
    durable_rows: dict[str, dict] = {}
    for writer in ("ours", "trackio"):
        runs = [d for d in durable if d["writer"] == writer]
        label = "rldk_widget" if writer == "ours" else "trackio"
        if not runs:
            durable_table.add(label, NOT_INSTALLED, "-", "-", "-", "-")
            continue
        live = [d for d in runs if d["mode"] == "live"]
        kill = [d for d in runs if d["mode"] == "kill"]
        durable_rows[writer] = {
            "live": [(d["readable_right_after"], d["calls"]) for d in live],
            "kill": [(d["readable_after_sigkill"], d["calls"]) for d in kill],
            "exit": [(d["readable_after_normal_exit"], d["calls"]) for d in live],
        }
        logged = sorted(d["calls"] for d in runs)
        read_delay = max(d["read_done_after_last_call_s"] for d in live)
        durable_table.add(
            label, f"{logged[0]:,} … {logged[-1]:,}",
            f"{_readable(durable_rows[writer]['live'])} (read done ≤ {c.fmt_time(read_delay)} after)",
            _readable(durable_rows[writer]["kill"]), _readable(durable_rows[writer]["exit"]),
            f"{statistics.median([d['writer_calls_per_s'] for d in runs]):,.0f}",
        )
    durable_table.note(f"{cfg['child_reps']} writer processes per column, each on a fresh copy of the {rows:,}-row run, "
                       f"pausing {', '.join(f'{d:.2f}' for d in child_delays(cfg))} s after opening it (so trackio's "
                       "0.5 s write timer is met at another phase by each), then calling one at a time for "
                       f"{cfg['child_seconds']} s (records built between chunks of {CHILD_CHUNK:,} calls, untimed). "
                       "The writer prints a line the moment its last call returns; this process then counts the rows "
                       "beyond the first {rows:,} (RunStore.read_all; trackio's SQLiteStorage.get_log_count) while "
                       "the writer waits, or the writer SIGKILLs itself at once (as the OOM killer or a crashed kernel "
                       "would). Readable ÷ logged as min / median / max over the processes. Neither fsyncs: both "
                       "survive the process, not a power cut.".replace("{rows:,}", f"{rows:,}"))

    load_table = c.Table(
        f"Loading the run back ({rows:,} rows, the same records), in this process",
        ["reader", "returns", "n", "median", "min", "max"],
    )
    shown = load["shown"]
    load_rows = [
        ("`RLDKDashboard.from_dir(dir, auto_refresh=False)`", "every point, as the widget's series", "ours_from_dir"),
        ("`dash.get_state('metrics')` after it",
         f"the snapshot a view gets ({shown.get('ours_snapshot_points_loss', 0):,} points per series)", "ours_snapshot"),
    ]
    if have_trackio:
        load_rows += [
            ("`SQLiteStorage.get_logs(project, run)`", "every row as a dict (what `trackio get` reads)",
             "trackio_get_logs"),
            ("`trackio.server.get_logs_batch(project, [run], scalar_only=True)`",
             f"what its dashboard's Metrics page fetches ({shown.get('trackio_dashboard_rows', 0):,} rows, "
             "max_points 3000 per key group)", "trackio_dashboard_batch"),
        ]
    for label, returns, key in load_rows:
        s = load[key]
        load_table.add(label, returns, s["n"], c.fmt_time(s["median"]), c.fmt_time(s["min"]), c.fmt_time(s["max"]))
    if not have_trackio:
        load_table.add("trackio", NOT_INSTALLED, "-", "-", "-", "-")
    load_table.note("Readers alternate (ours, trackio, ours, …), each from scratch (a new dashboard; trackio caches "
                    "reads only on Spaces). trackio's dashboard calls get_logs_batch over HTTP; its HTTP and JSON "
                    f"costs are not included. File sizes: {c.fmt_bytes(file_bytes)} (rldk_widget)"
                    + (f", {c.fmt_bytes(setup['trackio_db_bytes'])} (trackio's SQLite)" if have_trackio else "") + ".")

    checks = c.Checks()
    ours_r = by_name["rldk_widget"]
    checks.add(f"dash.add_metrics calls/s, one at a time, {rows:,}-row run (median of {cfg['reps']} blocks)",
               1 / ours_r["per_call_s"]["median"], TARGET_CALLS_PER_S, "/s", higher_is_better=True)
    ours_d = durable_rows["ours"]["live"] + durable_rows["ours"]["kill"]
    checks.add(f"rows another process reads right after the last add_metrics ÷ rows added (worst of {len(ours_d)} "
               "writer processes, alive and SIGKILLed)", min(n / logged for n, logged in ours_d),
               TARGET_DURABLE_FRACTION, "ratio", higher_is_better=True)
    lags = ours_r["settle_s"]
    worst_lag = float("inf") if ours_r["settle_timeouts"] or lags is None else lags["max"]
    checks.add(f"last row of a block in the views after the last add_metrics, no further call (worst of "
               f"{cfg['reps']} blocks)", worst_lag, TARGET_VIEW_LAG_S, "s",
               shown="timed out" if worst_lag == float("inf") else None)

    data = {"config": cfg, "versions": versions, "setup": setup, "calls": calls, "durable": durable,
            "load": load, "trackio_installed": have_trackio}
    c.write_results(NAME, args, [call_table, durable_table, load_table], checks, data, started)
    return data


def _lag_text(r: dict) -> str:
    s = r["settle_s"]
    if s is None:
        return "timed out"
    text = f"{c.fmt_time(s['median'])} (max {c.fmt_time(s['max'])})"
    if r["settle_timeouts"]:
        text += f", {r['settle_timeouts']} timed out"
    return text


def _readable(pairs: list[tuple[int, int]]) -> str:
    """(readable, logged) per process as 'all' or min / median / max of the fraction, with the rows missing."""
    if all(n == logged for n, logged in pairs):
        return "all"
    fractions = sorted(n / logged for n, logged in pairs)
    missing = sorted(logged - n for n, logged in pairs)
    shown = " / ".join(f"{100 * f:.0f}%" for f in (fractions[0], fractions[len(fractions) // 2], fractions[-1]))
    return f"{shown} ({missing[0]:,} … {missing[-1]:,} rows missing)"


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
