"""Issue 17: a sweep of many runs in one dashboard — a synthetic sweep of 500 runs × 5k steps × 10 metrics, laid
out flat (our run files side by side) and nested (one folder per run, as a Hugging Face sweep is): the first
display (discovery, the runs table and the default selection's series) with a cold and a warm per-sweep summary
cache, beside the full load of every series; an `update_data()` pass with nothing new; one run appending while the
others sit still, against the same append in a one-run folder; the synced state's size; kernel memory. Baselines
in the same process: the full load (every series read), and the one-run folder.

    .venv/bin/python benchmarks/sweep.py [--quick]
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "sweep"
FULL = dict(runs=500, steps=5_000, passes=60, appends=60)
QUICK = dict(runs=60, steps=300, passes=5, appends=5)

TARGET_FIRST_DISPLAY_S = 3.0
TARGET_IDLE_PASS_S = 0.050
TARGET_APPEND_RATIO = 1.5  # one run appending among many ÷ the same in a one-run folder (per pass)
TARGET_STATE_BYTES = 1_000_000


def write_sweep(root: Path, runs: int, steps: int, nested: bool) -> list[str]:
    """`runs` runs of `steps` records each: flat (`root/run042_metrics.json`) or nested (`root/lr_1e-05_s2/…`)."""
    names = []
    for index in range(runs):
        lr, seed = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4)[index % 5], index // 5
        stem = f"lr_{lr:g}_s{seed}"
        folder = root / stem if nested else root
        run = "run" if nested else f"run{index:03d}"
        make = c.RecordMaker(run_id=run, seed=index, t0=1_780_000_000.0 + index)
        c.write_metrics_file(folder / f"{run}_metrics.json", steps, make)
        (folder / f"{run}_run_info.json").write_text(json.dumps(
            {"run_id": run, "trainer": "grpo", "max_steps": steps, "started": 1_780_000_000.0 + index,
             "writer": "RLDKCallback", "config": {"args": {"learning_rate": lr, "seed": seed}}}
        ))
        names.append(f"{stem}/{run}" if nested else run)
    return names


def state_bytes(dash) -> int:
    state = dash.get_state()
    return len(json.dumps({key: value for key, value in state.items() if key != "_esm"}))


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_layout(tmp: Path, cfg: dict, nested: bool) -> dict:
    from rldk_widget import RLDKDashboard

    root = tmp / ("nested" if nested else "flat")
    t = c.now()
    write_sweep(root, cfg["runs"], cfg["steps"], nested)
    out = {"layout": "nested" if nested else "flat", "runs": cfg["runs"], "steps": cfg["steps"],
           "written_in_s": c.now() - t, "bytes_on_disk": sum(p.stat().st_size for p in root.rglob("*") if p.is_file())}
    cache = tmp / f"cache_{out['layout']}"
    os.environ["RLDK_WIDGET_CACHE_DIR"] = str(cache)

    gc.collect()
    before = rss_mb()
    t = c.now()
    dash = RLDKDashboard.from_dir(root, auto_refresh=False)
    out["first_display_cold_s"] = c.now() - t
    out["rss_growth_mb"] = rss_mb() - before
    out["state_bytes"] = state_bytes(dash)
    out["selected"] = len(dash.selected)
    out["table_rows"] = len(dash.runs_table.get("rows", []))
    idle = c.time_calls(dash.update_data, cfg["passes"])
    out["idle_pass"] = c.summary(idle)
    t = c.now()
    table = dash.runs()
    out["runs_frame_s"] = c.now() - t
    out["runs_frame_rows"] = len(table)
    out["append_pass"] = c.summary(append_passes(dash, dash.selected[0], cfg["steps"], cfg["appends"]))
    dash._sweep.save_cache()
    dash.close()

    gc.collect()
    t = c.now()
    warm = RLDKDashboard.from_dir(root, auto_refresh=False)
    out["first_display_warm_s"] = c.now() - t
    warm.close()

    gc.collect()
    t = c.now()
    full = RLDKDashboard.from_dir(root, auto_refresh=False)
    full.to_dataframe()  # every run's series read
    out["full_load_s"] = c.now() - t
    full.close()
    return out


def append_passes(dash, run_id: str, first_step: int, count: int) -> list[float]:
    """One run appending while the others sit still: its own writer appends a record, then one update_data() pass
    (timed), `count` times; after the health checks of what was loaded are done and three passes, so that every row
    is timed in the same steady state (a just-opened run's checks would compete for the GIL with the first ones)."""
    from rldk_widget.store import RunStore

    dash._health.drain()
    for _ in range(3):
        dash.update_data()
    ref = dash._readers.refs[run_id]
    writer = RunStore(ref.folder, ref.file_stem)
    make = c.RecordMaker(run_id=ref.file_stem, seed=9)
    passes = []
    for step in range(first_step, first_step + count):
        writer.append_metrics(make(step))
        t = c.now()
        dash.update_data()
        passes.append(c.now() - t)
    return passes


@contextlib.contextmanager
def change_notifications(on: bool):
    """Without them (RLDK_WIDGET_NO_WATCH=1) a dashboard reads its folder as on a network file system, macOS or
    Windows: every pass stats its share of the runs' files."""
    if not on:
        os.environ["RLDK_WIDGET_NO_WATCH"] = "1"
    try:
        yield
    finally:
        os.environ.pop("RLDK_WIDGET_NO_WATCH", None)


def measure_single(tmp: Path, cfg: dict) -> dict:
    """The baseline for a pass's cost: the same appends in a folder holding one run of the same length, with and
    without change notifications, in the order A B B A (a mode's passes pooled)."""
    from rldk_widget import RLDKDashboard

    root = tmp / "single"
    c.write_metrics_file(root / "run000_metrics.json", cfg["steps"], c.RecordMaker(run_id="run000", seed=0))
    passes: dict[bool, list[float]] = {True: [], False: []}
    for turn, watched in enumerate((True, False, False, True)):
        with change_notifications(watched):
            dash = RLDKDashboard.from_dir(root, auto_refresh=False)
            passes[watched] += append_passes(dash, "run000", cfg["steps"] + turn * cfg["appends"], cfg["appends"])
            dash.close()
    return {"append_pass": c.summary(passes[True]), "polled_append_pass": c.summary(passes[False])}


def measure_polled(tmp: Path, cfg: dict) -> dict:
    """The idle and appending passes of the sweep's folders again, without change notifications."""
    from rldk_widget import RLDKDashboard

    out: dict = {}
    with change_notifications(False):
        for layout in ("flat", "nested"):
            dash = RLDKDashboard.from_dir(tmp / layout, auto_refresh=False)
            out[f"{layout}_idle_pass"] = c.summary(c.time_calls(dash.update_data, cfg["passes"]))
            out[f"{layout}_append_pass"] = c.summary(
                append_passes(dash, dash.selected[0], cfg["steps"] + cfg["appends"], cfg["appends"]))
            dash.close()
    return out


def main(argv: list[str] | None = None) -> None:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {cfg['runs']} runs × {cfg['steps']:,} steps; "
          f"{c.load_note()}", flush=True)
    saved_cache = os.environ.get("RLDK_WIDGET_CACHE_DIR")
    with c.temp_dir(NAME) as tmp:
        try:
            layouts = [measure_layout(tmp, cfg, nested) for nested in (False, True)]
            single = measure_single(tmp, cfg)
            polled = measure_polled(tmp, cfg)
        finally:
            if saved_cache is None:
                os.environ.pop("RLDK_WIDGET_CACHE_DIR", None)
            else:
                os.environ["RLDK_WIDGET_CACHE_DIR"] = saved_cache
        shutil.rmtree(tmp, ignore_errors=True)

    table = c.Table(
        f"A sweep of {cfg['runs']} runs × {cfg['steps']:,} steps × 10 metrics",
        ["layout", "first display, cold cache", "first display, warm cache", "full load (every series)",
         "update_data(), nothing new", "one run appending (per pass)", "synced state", "kernel RSS growth",
         "runs() DataFrame"],
    )
    for r in layouts:
        table.add(r["layout"], c.fmt_time(r["first_display_cold_s"]), c.fmt_time(r["first_display_warm_s"]),
                  c.fmt_time(r["full_load_s"]), c.fmt_time(r["idle_pass"]["median"]),
                  c.fmt_time(r["append_pass"]["median"]), c.fmt_bytes(r["state_bytes"]),
                  f"{r['rss_growth_mb']:.0f} MiB", c.fmt_time(r["runs_frame_s"]))
    table.add("one run alone", "-", "-", "-", "-", c.fmt_time(single["append_pass"]["median"]), "-", "-", "-")
    for layout in ("flat", "nested"):
        table.add(f"{layout}, polled", "-", "-", "-", c.fmt_time(polled[f"{layout}_idle_pass"]["median"]),
                  c.fmt_time(polled[f"{layout}_append_pass"]["median"]), "-", "-", "-")
    table.add("one run alone, polled", "-", "-", "-", "-", c.fmt_time(single["polled_append_pass"]["median"]), "-",
              "-", "-")
    table.note("first display: RLDKDashboard.from_dir() returning, with discovery, every run's summary for the runs "
               "table, the default selection (the ten runs with the newest records) read and the bounded snapshot "
               "built; cold: no summary cache yet (every run's records are read once for its summary); warm: the "
               "per-sweep summary cache of an earlier session is used (no run file is read but the selected runs').")
    table.note("full load: the same folder with every run's series read (to_dataframe()), what showing all runs costs.")
    table.note("one run appending: a writer appends one record to a selected run, then one update_data() pass; "
               "the same in a folder holding only that run is the baseline.")
    table.note("polled: the same folders without change notifications (RLDK_WIDGET_NO_WATCH=1), as a network file "
               "system, macOS or Windows is read: each pass stats the loaded runs' files and, in turns, 24 other runs'.")

    checks = c.Checks()
    for r in layouts:
        checks.add(f"first display, {r['layout']}, warm cache", r["first_display_warm_s"], TARGET_FIRST_DISPLAY_S, "s")
        checks.add(f"update_data() with nothing new, {r['layout']}", r["idle_pass"]["median"], TARGET_IDLE_PASS_S, "s")
        ratio = r["append_pass"]["median"] / single["append_pass"]["median"]
        checks.add(f"one run appending ÷ a one-run folder, {r['layout']}", ratio, TARGET_APPEND_RATIO, "ratio")
        checks.add(f"synced state (without the bundle), {r['layout']}", r["state_bytes"], TARGET_STATE_BYTES, "bytes")
    c.write_results(NAME, args, [table], checks,
                    {"layouts": layouts, "single": single, "polled": polled, "config": cfg}, started)


if __name__ == "__main__":
    main()
