"""Issue 4: the run files. Per-append cost of `RunStore.append_metrics` against the original RLDK dashboard's
approach (read the whole JSON file, json.load, append, json.dump the whole list) on files that already hold
100 … 1M rows; full load of a 100k-row run by `RLDKDashboard`; incremental `update_data()` on a 1M-row run.

    .venv/bin/python benchmarks/store.py [--quick]
"""

from __future__ import annotations

import gc
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "store"
RUN = "bench_run"

FULL = dict(
    sizes=(100, 10_000, 100_000, 1_000_000),
    blocks=7,
    block=1000,
    seed_reps={100: 100, 10_000: 20, 100_000: 3, 1_000_000: 1},  # one seed append at 1M rows: ~25 s
    load_rows=100_000,
    load_reps=5,
    incr_rows=1_000_000,
    incr_reps=20,
)
QUICK = dict(
    sizes=(100, 10_000),
    blocks=3,
    block=200,
    seed_reps={100: 10, 10_000: 3},
    load_rows=10_000,
    load_reps=2,
    incr_rows=10_000,
    incr_reps=5,
)

TARGET_FLAT_RATIO = 1.5  # append cost at the largest size / at 100 rows
TARGET_APPENDS_PER_S = 50_000
TARGET_LOAD_S = 0.5  # RLDKDashboard full load of a 100k-row run
TARGET_INCREMENTAL_S = 0.005  # update_data() after +100 rows on a 1M-row run


def check_tail(path: Path, last_step: int) -> None:
    """The file still ends with a complete array whose last record is `last_step` (cheap at any size)."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read()
    assert tail.endswith(b"}\n]\n"), f"{path.name}: unexpected tail {tail[-40:]!r}"
    last = json.loads(tail.rsplit(b"\n", 3)[-3].rstrip(b","))
    assert last["step"] == last_step, f"{path.name}: last step {last['step']} != {last_step}"


def bench_appends(tmp: Path, cfg: dict, make: c.RecordMaker) -> list[dict]:
    """RunStore appends on files of every size, blocks interleaved round-robin across the sizes (so a load change
    on the machine hits every size alike); then the seed's appends on a copy of each file."""
    from rldk_widget.store import RunStore

    sizes = cfg["sizes"]
    results, stores, steps = {}, {}, {}
    for size in sizes:
        run_dir = tmp / f"append_{size}"
        t = c.now()
        file_bytes = c.write_metrics_file(run_dir / f"{RUN}_metrics.json", size, make)
        results[size] = {"rows": size, "file_bytes": file_bytes, "generated_in_s": c.now() - t}
        shutil.copyfile(run_dir / f"{RUN}_metrics.json", tmp / f"seed_{size}.json")
        # A fresh writer store (what a training callback opens) on the existing file: its first append.
        store = stores[size] = RunStore(run_dir, RUN)
        gc.collect()
        t = c.now()
        store.append_metrics(make(size))
        results[size]["first_append_s"] = c.now() - t
        for record in make.many(size + 1, 100):  # warm-up
            store.append_metrics(record)
        steps[size] = size + 101
        print(f"  {size:,}-row file ready ({c.fmt_bytes(file_bytes)})", flush=True)

    per_append: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(cfg["blocks"]):
        for size in sizes:
            records = make.many(steps[size], cfg["block"])
            steps[size] += cfg["block"]
            gc.collect()
            store = stores[size]
            t = c.now()
            for record in records:
                store.append_metrics(record)
            per_append[size].append((c.now() - t) / cfg["block"])

    for size in sizes:
        stores[size].close()
        run_dir = tmp / f"append_{size}"
        check_tail(run_dir / f"{RUN}_metrics.json", steps[size] - 1)
        if size <= 100_000:
            rows = len(RunStore(run_dir, RUN).read_all().metrics)
            assert rows == steps[size], f"RunStore file holds {rows} rows, expected {steps[size]}"
        shutil.rmtree(run_dir)
        results[size]["runstore_per_append"] = c.summary(per_append[size])
        results[size]["runstore_block"] = cfg["block"]

        seed_path = tmp / f"seed_{size}.json"
        seed_times = []
        seed_step = size
        for _ in range(cfg["seed_reps"][size]):
            record = make(seed_step)
            seed_step += 1
            gc.collect()
            t = c.now()
            c.seed_append(seed_path, record)
            seed_times.append(c.now() - t)
        results[size]["seed_per_append"] = c.summary(seed_times)
        results[size]["seed_file_bytes_after"] = seed_path.stat().st_size
        seed_path.unlink()
        gc.collect()
        print(f"  appends at {size:,} rows: RunStore {c.fmt_time(results[size]['runstore_per_append']['median'])}, "
              f"seed {c.fmt_time(results[size]['seed_per_append']['median'])}", flush=True)
    return [results[size] for size in sizes]


def bench_load(tmp: Path, rows: int, reps: int, make: c.RecordMaker) -> dict:
    from rldk_widget import RLDKDashboard
    from rldk_widget.store import RunStore

    run_dir = tmp / "load"
    file_bytes = c.write_metrics_file(run_dir / f"{RUN}_metrics.json", rows, make)
    load_times, snapshot_times = [], []
    for rep in range(reps):
        gc.collect()
        t = c.now()
        widget = RLDKDashboard(run_dir, run_id=RUN, auto_refresh=False)
        load_times.append(c.now() - t)
        if rep == 0:
            loaded = len(widget.to_dataframe())
            assert loaded == rows, f"dashboard loaded {loaded} rows, expected {rows}"
        t = c.now()
        widget.get_state("metrics")
        snapshot_times.append(c.now() - t)
        widget.close()
        del widget
    store = RunStore(run_dir, RUN)
    read_times = []
    for _ in range(reps):
        gc.collect()
        t = c.now()
        data = store.read_all()
        read_times.append(c.now() - t)
        assert len(data.metrics) == rows
        del data
    shutil.rmtree(run_dir)
    gc.collect()
    return {
        "rows": rows,
        "file_bytes": file_bytes,
        "dashboard_load": c.summary(load_times),
        "read_all": c.summary(read_times),
        "snapshot_build": c.summary(snapshot_times),
    }


def bench_incremental(tmp: Path, rows: int, reps: int, make: c.RecordMaker) -> dict:
    import base64

    import numpy as np

    from rldk_widget import RLDKDashboard
    from rldk_widget.store import RunStore

    run_dir = tmp / "incremental"
    file_bytes = c.write_metrics_file(run_dir / f"{RUN}_metrics.json", rows, make)
    gc.collect()
    t = c.now()
    widget = RLDKDashboard(run_dir, run_id=RUN, auto_refresh=False)
    full_load = c.now() - t
    tap = c.CommTap(widget, keep_data=True)
    writer = RunStore(run_dir, RUN)  # another writer (a training callback, maybe in another process)
    t = c.now()
    writer.append_metrics(make(rows))
    writer_first_append = c.now() - t
    step = rows + 1
    for record in make.many(step, 99):
        writer.append_metrics(record)
    step += 99
    widget.update_data()  # warm-up: the first 100 rows
    times = []
    gc.collect()
    for _ in range(reps):
        for record in make.many(step, 100):
            writer.append_metrics(record)
        step += 100
        t = c.now()
        widget.update_data()
        times.append(c.now() - t)
    widget.flush()
    received = []
    for data in tap.data:
        if data.get("method") == "custom":
            loss = data["content"]["metrics"].get(RUN, {}).get("loss")
            if loss:
                received.extend(np.frombuffer(base64.b64decode(loss["x"]), dtype="<f8").tolist())
    expected = list(range(rows, step))
    assert received == expected, f"views got {len(received)} new steps, expected {len(expected)}"
    writer.close()
    widget.close()
    del widget
    shutil.rmtree(run_dir)
    gc.collect()
    return {
        "rows": rows,
        "file_bytes": file_bytes,
        "full_load_s": full_load,
        "writer_first_append_s": writer_first_append,
        "update_data_after_100": c.summary(times),
        "delta_messages": sum(1 for d in tap.data if d.get("method") == "custom"),
        "rows_delivered_to_views": len(received),
    }


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    make = c.RecordMaker(RUN)
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; sizes {cfg['sizes']}; record: "
          f"{len(make(0))} keys, ~{len(json.dumps(make(0)))} bytes of JSON; {c.load_note()}")

    with c.temp_dir(NAME) as tmp:
        appends = bench_appends(tmp, cfg, make)
        load = bench_load(tmp, cfg["load_rows"], cfg["load_reps"], make)
        print(f"  full load of {load['rows']:,} rows: {c.fmt_time(load['dashboard_load']['median'])}", flush=True)
        incremental = bench_incremental(tmp, cfg["incr_rows"], cfg["incr_reps"], make)
        print(f"  update_data on {incremental['rows']:,} rows: "
              f"{c.fmt_time(incremental['update_data_after_100']['median'])}", flush=True)

    append_table = c.Table(
        "RunStore.append_metrics vs the seed's read-modify-write, per append of one 12-key record",
        ["rows in file", "file size", "RunStore median (min)", "appends/s", "seed median (min)", "seed n",
         "seed ÷ RunStore", "1st append of a fresh store"],
    )
    for r in appends:
        rs, seed = r["runstore_per_append"], r["seed_per_append"]
        append_table.add(
            c.fmt_int(r["rows"]), c.fmt_bytes(r["file_bytes"]),
            f"{c.fmt_time(rs['median'])} ({c.fmt_time(rs['min'])})", f"{1 / rs['median']:,.0f}",
            f"{c.fmt_time(seed['median'])} ({c.fmt_time(seed['min'])})", seed["n"],
            c.fmt_ratio(seed["median"] / rs["median"]), c.fmt_time(r["first_append_s"]),
        )
    append_table.note(f"RunStore: {cfg['blocks']} blocks of {cfg['block']} appends per size after 100 warm-up "
                      "appends, blocks interleaved round-robin across the sizes; median/min of the per-append mean of "
                      "each block. Records are built before timing.")
    append_table.note("seed: json.load of the whole file, list.append, json.dump of the whole list (no indent), "
                      "timed per call, n calls, in this process on a copy of the same file.")
    append_table.note("1st append of a fresh store: a new RunStore (as a training callback opens) appending once "
                      "to the existing file; 1 sample.")

    load_table = c.Table(
        "Loading and following a run",
        ["measurement", "rows", "n", "median", "min", "max"],
    )
    for label, key in (("RLDKDashboard(output_dir, run_id=..., auto_refresh=False)", "dashboard_load"),
                       ("RunStore.read_all() alone", "read_all"),
                       ("metrics snapshot build: widget.get_state('metrics')", "snapshot_build")):
        s = load[key]
        load_table.add(label, c.fmt_int(load["rows"]), s["n"], c.fmt_time(s["median"]), c.fmt_time(s["min"]),
                       c.fmt_time(s["max"]))
    load_table.add("constructor minus read_all (derived from the medians)", c.fmt_int(load["rows"]), "-",
                   c.fmt_time(load["dashboard_load"]["median"] - load["read_all"]["median"]), "-", "-")
    s = incremental["update_data_after_100"]
    load_table.add("update_data() after +100 rows by another RunStore", c.fmt_int(incremental["rows"]), s["n"],
                   c.fmt_time(s["median"]), c.fmt_time(s["min"]), c.fmt_time(s["max"]))
    load_table.add("RLDKDashboard full load (setup of the line above)", c.fmt_int(incremental["rows"]), 1,
                   c.fmt_time(incremental["full_load_s"]), "-", "-")
    load_table.add("1st append of that other RunStore", c.fmt_int(incremental["rows"]), 1,
                   c.fmt_time(incremental["writer_first_append_s"]), "-", "-")
    load_table.note(f"update_data: {incremental['rows_delivered_to_views']:,} appended rows checked to reach the "
                    f"views in {incremental['delta_messages']} delta messages.")

    checks = c.Checks()
    small, large = appends[0], appends[-1]
    checks.add(f"append cost flat: {large['rows']:,} rows ÷ {small['rows']:,} rows (medians)",
               large["runstore_per_append"]["median"] / small["runstore_per_append"]["median"],
               TARGET_FLAT_RATIO, "ratio")
    slowest = max(appends, key=lambda r: r["runstore_per_append"]["median"])
    checks.add(f"RunStore appends/s (slowest size, {slowest['rows']:,} rows)",
               1 / slowest["runstore_per_append"]["median"], TARGET_APPENDS_PER_S, "/s", higher_is_better=True)
    checks.add(f"RLDKDashboard full load, {load['rows']:,} rows", load["dashboard_load"]["median"],
               TARGET_LOAD_S, "s")
    checks.add(f"update_data() after +100 rows, {incremental['rows']:,}-row run",
               incremental["update_data_after_100"]["median"], TARGET_INCREMENTAL_S, "s")

    data = {"config": {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
                       for k, v in cfg.items()},
            "appends": appends, "load": load, "incremental": incremental}
    c.write_results(NAME, args, [append_table, load_table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
