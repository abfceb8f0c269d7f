"""Issue 7.1: bytes and messages leaving the kernel per `add_metrics` when the widget already holds 100, 10k and
100k steps — this widget's throttled deltas against a naive full-list-sync anywidget and the seed's
rewrite-per-add (the whole metrics file, which its Streamlit page re-read and re-sent), all measured in this
process. Also the `metrics` snapshot size.

    .venv/bin/python benchmarks/wire.py [--quick]
"""

from __future__ import annotations

import base64
import gc
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "wire"
RUN = "bench_run"

FULL = dict(
    sizes=(100, 10_000, 100_000),
    steady_appends=200,
    steady_rate=50.0,
    burst_seconds=2.0,
    naive_appends={100: 100, 10_000: 50, 100_000: 5},
    seed_appends={100: 100, 10_000: 20, 100_000: 3},
    snapshot_sizes=(1_000, 100_000),
)
QUICK = dict(
    sizes=(100, 10_000),
    steady_appends=30,
    steady_rate=50.0,
    burst_seconds=0.3,
    naive_appends={100: 10, 10_000: 3},
    seed_appends={100: 10, 10_000: 3},
    snapshot_sizes=(1_000, 10_000),
)

TARGET_FLAT_RATIO = 1.2  # bytes per appended step at the largest size / at 100 steps
TARGET_MAX_MESSAGES_PER_S = 10  # in any 1-second window, at any add rate
TARGET_TAIL_S = 0.3  # the last step reaches the views this soon after the last add, with no further call
SETTLE_S = 0.35  # wait after the last add for the throttle timer's final flush (interval 0.1 s)


def make_naive_widget_class():
    import anywidget
    import traitlets

    class NaiveListWidget(anywidget.AnyWidget):
        """The naive design the DESIGN note warns about: every row in one synced List, reassigned per append,
        so ipywidgets re-sends the whole list each time (ipywidgets#2922)."""

        _esm = "export default { render({ model, el }) { el.textContent = `${model.get('rows').length} rows`; } };"
        rows = traitlets.List().tag(sync=True)

    return NaiveListWidget


def paced(add, records, rate: float | None, seconds: float | None = None):
    """Call `add(record)` at `rate` per second (None: as fast as possible, for `seconds` or all records).
    Returns (start time, end time, number added, per-call durations)."""
    durations = []
    start = time.monotonic()
    added = 0
    for i, record in enumerate(records):
        if rate is not None:
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elif seconds is not None and time.monotonic() - start >= seconds:
            break
        t = time.perf_counter()
        add(record)
        durations.append(time.perf_counter() - t)
        added += 1
    return start, time.monotonic(), added, durations


def delivered_steps(tap: c.CommTap) -> list[float]:
    import numpy as np

    steps: list[float] = []
    for data in tap.data:
        if data.get("method") == "custom":
            loss = data["content"]["metrics"].get(RUN, {}).get("loss")
            if loss:
                steps.extend(np.frombuffer(base64.b64decode(loss["x"]), dtype="<f8").tolist())
    return steps


def tail_latency(tap: c.CommTap, end: float) -> float:
    """Seconds from the end of the adds to the delta that carried the last of them (0 if the last add sent it)."""
    last = max(t for t, method, _ in tap.messages if method == "custom")
    return max(0.0, last - end)


def traffic(messages: list[tuple[float, str, int]], start: float, end: float, added: int,
            durations: list[float]) -> dict:
    """What left per appended step, from (time, kind, bytes) per message."""
    times = sorted(m[0] for m in messages)
    total = sum(m[2] for m in messages)
    # mean rate between the first and the last message (n - 1 intervals); None with fewer than 2 messages
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else None
    return {
        "appends": added,
        "add_rate_per_s": added / max(end - start, 1e-9),
        "messages": len(messages),
        "messages_custom": sum(1 for m in messages if m[1] == "custom"),
        "messages_update": sum(1 for m in messages if m[1] == "update"),
        "bytes_total": total,
        "bytes_per_appended_step": total / max(added, 1),
        "messages_per_append": len(messages) / max(added, 1),
        "add_span_s": end - start,
        "messages_per_s_avg": rate,
        "messages_max_in_1s": c.max_in_window(times, 1.0),
        "largest_message_bytes": max((m[2] for m in messages), default=0),
        "kernel_time_per_append": c.summary(durations) if durations else None,
    }


def bench_widget(tmp: Path, size: int, cfg: dict, make: c.RecordMaker) -> dict:
    from rldk_widget import RLDKDashboard

    run_dir = tmp / f"widget_{size}"
    c.write_metrics_file(run_dir / f"{RUN}_metrics.json", size, make)
    widget = RLDKDashboard(run_dir, run_id=RUN, auto_refresh=False)
    tap = c.CommTap(widget, keep_data=True)
    out = {"rows_before": size}

    records = make.many(size, cfg["steady_appends"])
    gc.collect()
    start, end, added, durations = paced(widget.add_metrics, records, cfg["steady_rate"])
    time.sleep(SETTLE_S)
    out["steady"] = traffic(tap.messages, start, end, added, durations)
    out["steady"]["tail_s"] = tail_latency(tap, end)
    steps = delivered_steps(tap)
    assert steps == [float(s) for s in range(size, size + added)], "steady: views did not get every step once"

    tap.reset()
    first = size + added
    records = make.many(first, 200_000)
    gc.collect()
    start, end, added, durations = paced(widget.add_metrics, records, None, cfg["burst_seconds"])
    time.sleep(SETTLE_S)
    out["burst"] = traffic(tap.messages, start, end, added, durations)
    out["burst"]["tail_s"] = tail_latency(tap, end)
    steps = delivered_steps(tap)
    assert steps == [float(s) for s in range(first, first + added)], "burst: views did not get every step once"
    widget.close()
    shutil.rmtree(run_dir)
    return out


def bench_naive(size: int, appends: int, rate: float, make: c.RecordMaker) -> dict:
    cls = make_naive_widget_class()
    widget = cls()
    widget.rows = make.many(0, size)
    tap = c.CommTap(widget)

    def add(record):
        widget.rows = [*widget.rows, record]

    gc.collect()
    start, end, added, durations = paced(add, make.many(size, appends), rate)
    result = traffic(tap.messages, start, end, added, durations)
    assert result["messages_update"] == added, "naive: expected one full-list update per append"
    widget.close()
    return result


def bench_seed(tmp: Path, size: int, appends: int, rate: float, make: c.RecordMaker) -> dict:
    """The seed's add_metrics on a file already holding `size` rows: each add rewrites the whole metrics file
    (json.load + append + json.dump), which is also what its Streamlit page re-read and re-sent per refresh.
    One rewrite per add, no batching; its bytes are the bytes the add wrote."""
    path = tmp / f"seed_{size}.json"
    path.write_text(json.dumps(make.many(0, size)))
    writes: list[tuple[float, str, int]] = []

    def add(record):
        written = c.seed_append(path, record)
        writes.append((time.monotonic(), "rewrite", written))

    gc.collect()
    start, end, added, durations = paced(add, make.many(size, appends), rate)
    path.unlink()
    return traffic(writes, start, end, added, durations)


def bench_snapshot(tmp: Path, size: int, make: c.RecordMaker) -> dict:
    import numpy as np

    from rldk_widget import RLDKDashboard

    run_dir = tmp / f"snapshot_{size}"
    c.write_metrics_file(run_dir / f"{RUN}_metrics.json", size, make)
    widget = RLDKDashboard(run_dir, run_id=RUN, auto_refresh=False)
    t = c.now()
    state = widget.get_state("metrics")
    build = c.now() - t
    metrics = state["metrics"]
    series = metrics["runs"][RUN]
    points = {name: len(np.frombuffer(base64.b64decode(col["x"]), dtype="<f8")) for name, col in series.items()}
    widget.close()
    shutil.rmtree(run_dir)
    return {
        "rows": size,
        "metrics_json_bytes": c.wire_size(metrics),
        "series": len(series),
        "points_per_series_max": max(points.values()),
        "build_s": build,
    }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    make = c.RecordMaker(RUN)
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; sizes {cfg['sizes']}; {c.load_note()}")

    widget, naive, seed, snapshots = {}, {}, {}, {}
    with c.temp_dir(NAME) as tmp:
        for size in cfg["sizes"]:
            widget[size] = bench_widget(tmp, size, cfg, make)
            print(f"  widget at {size:,}: steady {widget[size]['steady']['bytes_per_appended_step']:.0f} B/step, "
                  f"burst {widget[size]['burst']['appends']:,} appends", flush=True)
            naive[size] = bench_naive(size, cfg["naive_appends"][size], cfg["steady_rate"], make)
            print(f"  naive at {size:,}: {naive[size]['bytes_per_appended_step']:,.0f} B/append", flush=True)
            seed[size] = bench_seed(tmp, size, cfg["seed_appends"][size], cfg["steady_rate"], make)
            print(f"  seed at {size:,}: {seed[size]['bytes_per_appended_step']:,.0f} B/append", flush=True)
            gc.collect()
        for size in cfg["snapshot_sizes"]:
            snapshots[size] = bench_snapshot(tmp, size, make)

    rate = cfg["steady_rate"]
    table = c.Table(
        "Bytes and messages leaving the kernel per appended step",
        ["approach", "steps held", "appends (add rate)", "messages", "msg/append", "msg/s avg (max in 1 s)",
         "bytes/appended step", "vs at 100 steps", "÷ this widget (steady)", "kernel time/append median / p90"],
    )
    base_steady = widget[cfg["sizes"][0]]["steady"]["bytes_per_appended_step"]
    base_burst = widget[cfg["sizes"][0]]["burst"]["bytes_per_appended_step"]
    base_naive = naive[cfg["sizes"][0]]["bytes_per_appended_step"]
    base_seed = seed[cfg["sizes"][0]]["bytes_per_appended_step"]
    for label, results, key, base in (
        (f"this widget, steady ~{rate:.0f} steps/s", widget, "steady", base_steady),
        ("this widget, burst (as fast as possible)", widget, "burst", base_burst),
        ("naive anywidget: List trait reassigned", naive, None, base_naive),
        ("seed: whole metrics file rewritten per add", seed, None, base_seed),
    ):
        for size in cfg["sizes"]:
            r = results[size][key] if key else results[size]
            ours = widget[size]["steady"]["bytes_per_appended_step"]
            kt = r["kernel_time_per_append"]
            table.add(
                label, c.fmt_int(size), f"{r['appends']:,} ({r['add_rate_per_s']:,.0f}/s)",
                r["messages"], f"{r['messages_per_append']:.3f}",
                f"{_rate(r['messages_per_s_avg'])} ({r['messages_max_in_1s']})",
                c.fmt_bytes(r["bytes_per_appended_step"]), c.fmt_ratio(r["bytes_per_appended_step"] / base),
                c.fmt_ratio(r["bytes_per_appended_step"] / ours),
                f"{c.fmt_time(kt['median'])} / {c.fmt_time(kt['p90'])}" if kt else "-",
            )
    table.note("Bytes: json.dumps of each comm message body as jupyter_client packs it (+ binary buffers, none "
               "here), captured by wrapping widget.comm.send; the Jupyter envelope (~0.5 KiB/message) is not counted.")
    table.note(f"steady: {cfg['steady_appends']} add_metrics calls paced at {rate:.0f}/s; burst: add_metrics in a "
               f"tight loop for {cfg['burst_seconds']} s; then {SETTLE_S} s for the throttle timer's last flush. "
               "Every appended step was checked to reach the views exactly once.")
    table.note("naive: an anywidget with `rows = List().tag(sync=True)`, `w.rows = [*w.rows, row]` per append, paced "
               f"at {rate:.0f}/s when it can keep up (n = {', '.join(f'{n}' for n in cfg['naive_appends'].values())} "
               "appends); one 'update' message with the whole list each time.")
    table.note("seed: its add_metrics as it was — json.load of the whole metrics file, append, json.dump of the whole "
               "list — on a file holding the steps, paced like naive (n = "
               f"{', '.join(f'{n}' for n in cfg['seed_appends'].values())}); a 'message' is one rewrite and its bytes "
               "are the file it wrote, which its Streamlit page re-read and re-sent whole on the next refresh (no "
               "comm: the seed was a separate server).")
    table.note("msg/s avg: (messages − 1) / time from the first to the last message; max in 1 s: most messages in any "
               "1-second window.")
    table.note("kernel time/append: median and 90th percentile add call incl. the serialisation in the tap (and, for this widget, the "
               "disk append and any delta sent from the caller's thread).")

    snap_table = c.Table(
        "Snapshot: the `metrics` trait as JSON (sent on display / reload / request_snapshot, saved in notebooks)",
        ["steps held", "series", "points per series (max)", "metrics JSON", "build time"],
    )
    for size in cfg["snapshot_sizes"]:
        s = snapshots[size]
        snap_table.add(c.fmt_int(size), s["series"], c.fmt_int(s["points_per_series_max"]),
                       c.fmt_bytes(s["metrics_json_bytes"]), c.fmt_time(s["build_s"]))

    checks = c.Checks()
    largest = cfg["sizes"][-1]
    checks.add(f"steady bytes/appended step: {largest:,} ÷ 100 steps held",
               widget[largest]["steady"]["bytes_per_appended_step"] / base_steady, TARGET_FLAT_RATIO, "ratio")
    worst_mode, worst_size = max(((m, s) for s in cfg["sizes"] for m in ("steady", "burst")),
                                 key=lambda ms: widget[ms[1]][ms[0]]["messages_max_in_1s"])
    worst = widget[worst_size][worst_mode]
    checks.add(f"messages in any 1 s (worst: {worst_mode}, {worst_size:,} steps, "
               f"{worst['add_rate_per_s']:,.0f} adds/s)", worst["messages_max_in_1s"], TARGET_MAX_MESSAGES_PER_S,
               "msgs", shown=f"{worst['messages_max_in_1s']} msgs")

    tails = {(mode, size): widget[size][mode]["tail_s"] for size in cfg["sizes"] for mode in ("steady", "burst")}
    (tail_mode, tail_size), tail = max(tails.items(), key=lambda item: item[1])
    checks.add(f"last step reaches the views after the last add, no further call (worst: {tail_mode}, "
               f"{tail_size:,} steps)", tail, TARGET_TAIL_S, "s")

    data = {"config": {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
                       for k, v in cfg.items()},
            "widget": {str(k): v for k, v in widget.items()}, "naive": {str(k): v for k, v in naive.items()},
            "seed": {str(k): v for k, v in seed.items()},
            "snapshot": {str(k): v for k, v in snapshots.items()}}
    c.write_results(NAME, args, [table, snap_table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
