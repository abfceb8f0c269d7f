"""Issue 7.4: how much a saved notebook grows because of the dashboard — the
`application/vnd.jupyter.widget-state+json` entry (every synced trait of the widget and the widgets it refers
to, from `get_state()`) after 1k … 100k steps × 10 metrics, and the .ipynb written by nbformat.

    .venv/bin/python benchmarks/notebook_size.py [--quick]
"""

from __future__ import annotations

import base64
import gc
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "notebook_size"
RUN = "bench_run"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
ALERTS = 20  # a constant number of alerts, so only the step count varies

FULL = dict(sizes=(1_000, 10_000, 100_000))
QUICK = dict(sizes=(1_000, 10_000))

TARGET_BYTES = 2_000_000  # 2 MB
TARGET_GROWTH = 1.05  # largest size ÷ the first size whose snapshot is at its point budget: "not growing beyond
# the bounded snapshot" (below the budget the snapshot holds every point and grows with the run, by design)


def widget_state_entry(widget) -> dict:
    """What a notebook stores under metadata.widgets: the embed state of the widget and of every widget it
    refers to (its Layout), full state (drop_defaults=False), binary buffers as base64 — ipywidgets.embed's
    format, which is also the notebook's."""
    from ipywidgets.embed import dependency_state

    return {"version_major": 2, "version_minor": 0, "state": dependency_state([widget], drop_defaults=False)}


def notebook_bytes(widget, entry: dict) -> int:
    """Size of a one-cell .ipynb (nbformat.writes, as Jupyter saves it) showing the widget, with the state."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("dash = RLDKDashboard('./rldk_logs')\ndash.show()", execution_count=1)
    cell.outputs = [nbformat.v4.new_output(
        "display_data",
        data={WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 0, "model_id": widget.model_id},
              "text/plain": "RLDKDashboard(...)"},
    )]
    nb.cells = [cell]
    nb.metadata["widgets"] = {WIDGET_STATE_MIME: entry}
    return len(nbformat.writes(nb).encode("utf-8"))


def measure(tmp: Path, size: int, make: c.RecordMaker) -> dict:
    from rldk_widget import RLDKDashboard

    run_dir = tmp / f"run_{size}"
    c.write_metrics_file(run_dir / f"{RUN}_metrics.json", size, make)
    widget = RLDKDashboard(run_dir, run_id=RUN, auto_refresh=False)
    for i in range(ALERTS):
        widget.add_alert({"type": "high_kl", "message": f"KL above 0.1 at step {i * size // ALERTS}",
                          "step": i * size // ALERTS, "severity": "warning", "kl_mean": 0.12})
    widget.flush()
    t = c.now()
    entry = widget_state_entry(widget)
    build = c.now() - t
    entry_bytes = c.wire_size(entry)
    own = entry["state"][widget.model_id]["state"]
    per_trait = {key: c.wire_size(value) for key, value in own.items()}
    others = {mid: c.wire_size(s) for mid, s in entry["state"].items() if mid != widget.model_id}
    nb_bytes = notebook_bytes(widget, entry)
    series = own["metrics"]["runs"][RUN]
    points = max(len(base64.b64decode(column["x"])) // 8 for column in series.values())
    widget.close()
    shutil.rmtree(run_dir)
    gc.collect()
    return {
        "steps": size,
        "metrics": len(series),
        "points_per_series_max": points,
        "entry_bytes": entry_bytes,
        "ipynb_bytes": nb_bytes,
        "per_trait_bytes": per_trait,
        "other_models_bytes": others,
        "build_s": build,
    }


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    make = c.RecordMaker(RUN)
    from rldk_widget import dashboard, snapshot

    bundle = Path(dashboard.__file__).parent / "static" / "widget.js"
    bundle_bytes = bundle.stat().st_size if bundle.exists() else None
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; sizes {cfg['sizes']}; front-end bundle "
          f"{'built, ' + c.fmt_bytes(bundle_bytes) if bundle_bytes else 'NOT built (placeholder _esm)'}; "
          f"{c.load_note()}")

    results = {}
    with c.temp_dir(NAME) as tmp:
        for size in cfg["sizes"]:
            results[size] = measure(tmp, size, make)
            print(f"  {size:,} steps: widget state {c.fmt_bytes(results[size]['entry_bytes'])}", flush=True)

    table = c.Table(
        "Saved-notebook size: the widget-state entry (application/vnd.jupyter.widget-state+json)",
        ["steps × metrics", "points per series (max)", "widget-state entry", "of which `metrics`", "`alerts`", "`_esm` (+`_css`)",
         "other traits + Layout model", "one-cell .ipynb", "vs 1k steps"],
    )
    base = results[cfg["sizes"][0]]["entry_bytes"]
    for size in cfg["sizes"]:
        r = results[size]
        traits = r["per_trait_bytes"]
        esm = traits.get("_esm", 0) + traits.get("_css", 0)
        rest = r["entry_bytes"] - traits["metrics"] - traits["alerts"] - esm
        table.add(f"{size:,} × {r['metrics']}", c.fmt_int(r["points_per_series_max"]), c.fmt_bytes(r["entry_bytes"]), c.fmt_bytes(traits["metrics"]),
                  c.fmt_bytes(traits["alerts"]), c.fmt_bytes(esm), c.fmt_bytes(rest), c.fmt_bytes(r["ipynb_bytes"]),
                  c.fmt_ratio(r["entry_bytes"] / base))
    table.note("State from ipywidgets.embed.dependency_state(widget, drop_defaults=False) (the dashboard's "
               "get_state() plus its Layout model), serialised with json.dumps as jupyter_client does; .ipynb: "
               f"nbformat.writes of one cell displaying the widget. {ALERTS} alerts in every run.")
    table.note(f"The `metrics` snapshot carries at most {snapshot.SNAPSHOT_POINT_BUDGET:,} points "
               "(snapshot.SNAPSHOT_POINT_BUDGET; long series are decimated keeping first, last, extremes and NaN): "
               "below that it holds every point and grows with the run, above it stays the same size.")
    table.note("Series are the 10 numeric keys of a GRPO record (epoch, learning_rate, loss, grad_norm, reward_mean, "
               "reward_std, kl_mean, entropy_mean, clip_frac, timestamp).")
    if bundle_bytes is None:
        table.note("The front-end bundle rldk_widget/static/widget.js was not built when this ran, so `_esm` is the "
                   "placeholder text; anywidget syncs `_esm`, so a saved notebook also holds the built bundle once "
                   "per widget: add its size to every row.")
    else:
        table.note(f"`_esm` holds the built bundle ({c.fmt_bytes(bundle_bytes)}); anywidget syncs it, so every saved "
                   "notebook holds it once per widget.")

    checks = c.Checks()
    largest = cfg["sizes"][-1]
    worst = max(cfg["sizes"], key=lambda s: results[s]["entry_bytes"])
    checks.add(f"widget-state entry (2 MB), largest ({worst:,} steps)", results[worst]["entry_bytes"], TARGET_BYTES,
               "bytes")
    bounded = next(s for s in cfg["sizes"] if results[s]["points_per_series_max"] < s)
    checks.add(f"not growing beyond the bounded snapshot: {largest:,} ÷ {bounded:,} steps",
               results[largest]["entry_bytes"] / results[bounded]["entry_bytes"], TARGET_GROWTH, "ratio")
    data = {"config": {"sizes": list(cfg["sizes"]), "alerts": ALERTS},
            "bundle_bytes": bundle_bytes,
            "results": {str(k): v for k, v in results.items()}}
    c.write_results(NAME, args, [table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
