"""Issue 18: the cost of one update of the dashboard's static picture (rldk_widget/static_view.py: the PNG of the
charts and the HTML summary a saved notebook shows) — kernel CPU time per update at 1k … 100k steps, 1 to 10 runs,
how long it holds the GIL against a training thread, and the bytes it adds to a notebook's output.

    .venv/bin/python benchmarks/static_view.py [--quick]
"""

from __future__ import annotations

import gc
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "static_view"
ALERTS = 20  # alerts of the kl_mean chart, as notebook_size.py
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

FULL = dict(cases=((1_000, 1), (10_000, 1), (100_000, 1), (100_000, 3), (100_000, 10)), reps=12, gil_s=3.0)
QUICK = dict(cases=((1_000, 1), (10_000, 1), (10_000, 3)), reps=2, gil_s=0.5)

TARGET_CPU_S = 0.200  # one picture update at 100k steps (issue 18), CPU of the thread that renders
TARGET_OUTPUT_BYTES = 250_000  # bytes one dashboard output adds to the .ipynb (issue 18)
TARGET_PNG_BYTES = 200_000
TARGET_HTML_BYTES = 20_000
CHECKED_CASE = (100_000, 1)


def load_dashboard(tmp: Path, steps: int, runs: int):
    """A dashboard over `runs` run files of `steps` GRPO records each (10 metrics), with run info (trainer grpo,
    max_steps 2 × steps) and ALERTS alerts on the first run, as a user's dashboard holds them."""
    import orjson

    from rldk_widget import RLDKDashboard

    folder = tmp / f"runs_{steps}_{runs}"
    for index in range(runs):
        run_id = f"grpo_seed_{index}"
        c.write_metrics_file(folder / f"{run_id}_metrics.json", steps, c.RecordMaker(run_id, seed=index))
        (folder / f"{run_id}_run_info.json").write_bytes(orjson.dumps(
            {"run_id": run_id, "max_steps": 2 * steps, "trainer": "grpo", "started": 1_780_000_000.0}))
    dash = RLDKDashboard(folder, run_id=None, auto_refresh=False)
    for i in range(ALERTS):
        step = (i + 1) * steps // (ALERTS + 1)
        dash.add_alert({"type": "high_kl", "message": f"KL 0.12 above 0.1 at step {step}", "step": step,
                        "severity": "warning", "metric": "kl_mean", "value": 0.12, "threshold": 0.1,
                        "run_id": "grpo_seed_0"})
    dash.flush()
    return dash


def picture_update(dash):
    """One update as the dashboard would make it: copy (under the dashboard's lock, as the lead may choose), then
    render off the lock. Returns (picture, charts drawn, seconds copying, CPU seconds of the process — every thread,
    numpy's included; nothing else runs meanwhile —, wall seconds)."""
    from rldk_widget.static_view import StaticData, render

    cpu, wall = time.process_time(), time.perf_counter()
    with dash._lock:
        data = StaticData.collect(dash._runs, list(dash.run_ids), list(dash.default_charts), dash._alerts,
                                  dict(dash.info), dict(dash.status))
    copied = time.perf_counter() - wall
    picture = render(data)
    return picture, len(data.charts), copied, time.process_time() - cpu, time.perf_counter() - wall


def output_bytes(model_id: str, bundle: dict) -> tuple[int, int]:
    """(bytes of the .ipynb holding one display_data output with `bundle` beside the widget view, minus the same
    notebook whose output has only the widget view and text/plain; bytes of the update_display_data message body
    the kernel sends, serialised as jupyter_client does)."""
    import nbformat

    def notebook(data: dict) -> int:
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("dash", execution_count=1)
        cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
        nb.cells = [cell]
        return len(nbformat.writes(nb).encode("utf-8"))

    base = {WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 0, "model_id": model_id},
            "text/plain": "RLDKDashboard(...)"}
    added = notebook({**base, **bundle}) - notebook(base)
    message = c.wire_size({"data": {**base, **bundle}, "metadata": {}, "transient": {"display_id": "x" * 32}})
    return added, message


def gil_probe(work, seconds: float) -> dict:
    """A training-like thread doing pure-Python steps of ~1 ms while `work` (None: nothing) runs on another thread
    in a loop: steps per second and the longest gap between two steps (how long the other thread held the GIL)."""
    stop = threading.Event()

    def background():
        while not stop.is_set():
            work()

    thread = threading.Thread(target=background, daemon=True) if work else None
    if thread:
        thread.start()
        time.sleep(0.05)
    gaps, steps = [], 0
    end = time.perf_counter() + seconds
    last = time.perf_counter()
    while last < end:
        total = 0
        for i in range(4000):  # ≈ 1 ms of bytecode
            total += i * i
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        steps += 1
    stop.set()
    if thread:
        thread.join()
    gaps.sort()
    return {"steps_per_s": steps / seconds, "median_step_s": statistics.median(gaps), "max_gap_s": gaps[-1],
            "p99_gap_s": gaps[int(0.99 * (len(gaps) - 1))]}


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    import matplotlib
    import PIL

    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; cases (steps, runs) {cfg['cases']}; "
          f"{cfg['reps']} updates each, interleaved; matplotlib {matplotlib.__version__}, Pillow {PIL.__version__}; "
          f"{c.load_note()}", flush=True)
    results: dict[tuple[int, int], dict] = {}
    with c.temp_dir(NAME) as tmp:
        dashes = {}
        for case in cfg["cases"]:
            t = c.now()
            dashes[case] = load_dashboard(tmp, *case)
            print(f"  loaded {case[0]:,} steps × {case[1]} runs in {c.now() - t:.1f} s", flush=True)
        cold_picture, _, _, cold_cpu, cold_wall = picture_update(dashes[cfg["cases"][0]])  # imports, fonts
        samples = {case: [] for case in cfg["cases"]}
        pictures, charts = {}, {}
        for _ in range(cfg["reps"]):  # round-robin over the cases: load changes hit all of them
            for case in cfg["cases"]:
                gc.collect()
                picture, charts[case], copied, cpu, wall = picture_update(dashes[case])
                samples[case].append({"cpu_s": cpu, "wall_s": wall, "copy_s": copied, **picture.timings})
                pictures[case] = picture
        checked = CHECKED_CASE if CHECKED_CASE in dashes else cfg["cases"][-1]
        gil = {"idle": gil_probe(None, cfg["gil_s"]),
               "rendering": gil_probe(lambda: picture_update(dashes[checked]), cfg["gil_s"])}
        for case in cfg["cases"]:
            picture = pictures[case]
            model_id = dashes[case].model_id
            png_html = output_bytes(model_id, picture.mime_bundle())
            both = output_bytes(model_id, picture.mime_bundle(image_in_html=True))
            html_only = output_bytes(model_id, {"text/html": picture.html_with_image()})
            results[case] = {
                "steps": case[0], "runs": case[1], "charts": charts[case],
                "cpu": c.summary([s["cpu_s"] for s in samples[case]]),
                "wall": c.summary([s["wall_s"] for s in samples[case]]),
                "copy": c.summary([s["copy_s"] for s in samples[case]]),
                "phases_median_s": {k: statistics.median(s[k] for s in samples[case])
                                    for k in ("collect", "prepare", "draw", "text", "png", "html")
                                    if k in samples[case][0]},
                "png_bytes": len(picture.png), "html_bytes": len(picture.html.encode("utf-8")),
                "png_size": [picture.width, picture.height],
                "notebook_bytes": {"png+html": png_html[0], "png+html_with_image": both[0],
                                   "html_with_image": html_only[0]},
                "message_bytes": {"png+html": png_html[1], "png+html_with_image": both[1],
                                  "html_with_image": html_only[1]},
            }
        for dash in dashes.values():
            dash.close()
        shutil.rmtree(tmp, ignore_errors=True)

    table = c.Table("One picture update (copy under the dashboard's lock, then render): kernel CPU time",
                    ["steps × runs", "charts", "CPU median", "CPU p90", "wall median", "wall max", "of which copy",
                     "prepare / draw / text / png (median)", "PNG", "HTML"])
    for case in cfg["cases"]:
        r = results[case]
        p = r["phases_median_s"]
        table.add(f"{case[0]:,} × {case[1]}", r["charts"], c.fmt_time(r["cpu"]["median"]), c.fmt_time(r["cpu"]["p90"]),
                  c.fmt_time(r["wall"]["median"]), c.fmt_time(r["wall"]["max"]), c.fmt_time(r["copy"]["median"]),
                  " / ".join(c.fmt_time(p.get(k)) for k in ("prepare", "draw", "text", "png")),
                  c.fmt_bytes(r["png_bytes"]), c.fmt_bytes(r["html_bytes"]))
    table.note(f"First update in the process (imports matplotlib and Pillow, loads the fonts): {c.fmt_time(cold_cpu)} "
               f"CPU, {c.fmt_time(cold_wall)} wall ({cfg['cases'][0][0]:,} steps); every later one as in the table.")
    table.note("prepare: decimation and EMA of every drawn series (numpy); draw: matplotlib Agg (lines, bands, "
               "markers on a Figure without Axes); text: Pillow; png: 8-bit palette encoding. 10 GRPO metrics per "
               f"record, the grpo default charts, {ALERTS} alerts on kl_mean.")
    sizes = c.Table("Bytes per dashboard output (display_data beside the widget view)",
                    ["steps × runs", "image/png + text/html (summary)", "+ the image inside the HTML too",
                     "text/html with the image only", "update_display_data message (png + html)"])
    for case in cfg["cases"]:
        r = results[case]
        nb = r["notebook_bytes"]
        sizes.add(f"{case[0]:,} × {case[1]}", c.fmt_bytes(nb["png+html"]), c.fmt_bytes(nb["png+html_with_image"]),
                  c.fmt_bytes(nb["html_with_image"]), c.fmt_bytes(r["message_bytes"]["png+html"]))
    sizes.note("Notebook bytes: nbformat.writes of a one-cell notebook with the output, minus the same notebook whose "
               "output holds only the widget view and text/plain (base64 PNG, JSON-escaped HTML, nbformat's "
               "line splitting). The picture replaces itself on update: the notebook holds the last one only.")
    gil_table = c.Table("A training thread while pictures are rendered back to back on another thread (the GIL)",
                        ["other thread", "1 ms steps done per s", "median step", "p99 gap", "longest gap"])
    for key, label in (("idle", "idle"), ("rendering", f"rendering {checked[0]:,} × {checked[1]}")):
        g = gil[key]
        gil_table.add(label, f"{g['steps_per_s']:,.0f}", c.fmt_time(g["median_step_s"]), c.fmt_time(g["p99_gap_s"]),
                      c.fmt_time(g["max_gap_s"]))
    gil_table.note("Rendering on another thread still takes the GIL: numpy, Agg and Pillow release it only in parts. "
                   "The longest gap is the longest the training thread waited; a throttled update (one per cell, "
                   "or one per N seconds) pays this once per update, not per step.")

    checks = c.Checks()
    r = results[checked]
    label = f"{checked[0]:,} steps × {checked[1]} run"
    checks.add(f"one picture update, {label} (CPU median)", r["cpu"]["median"], TARGET_CPU_S, "s")
    checks.add(f"bytes one dashboard output adds to the .ipynb (image/png + text/html), {label}",
               r["notebook_bytes"]["png+html"], TARGET_OUTPUT_BYTES, "bytes")
    checks.add(f"… with the image inside the HTML instead (text/html only), {label}",
               r["notebook_bytes"]["html_with_image"], TARGET_OUTPUT_BYTES, "bytes")
    checks.add("PNG, largest of all cases", max(x["png_bytes"] for x in results.values()), TARGET_PNG_BYTES, "bytes")
    checks.add("HTML summary, largest of all cases", max(x["html_bytes"] for x in results.values()),
               TARGET_HTML_BYTES, "bytes")
    data = {"config": {"cases": [list(k) for k in cfg["cases"]], "reps": cfg["reps"], "alerts": ALERTS},
            "cold_first_update": {"cpu_s": cold_cpu, "wall_s": cold_wall, "png_bytes": len(cold_picture.png)},
            "results": {f"{k[0]}x{k[1]}": v for k, v in results.items()},
            "gil": gil,
            "versions": c.package_versions(["matplotlib", "pillow", "numpy"])}
    c.write_results(NAME, args, [table, sizes, gil_table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
