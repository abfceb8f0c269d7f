"""Issue 7.3: per-update cost of the live displays people use today — transformers' NotebookProgressCallback
(re-renders an HTML table) and livelossplot (redraws a matplotlib figure) — against this widget's
`add_metrics`, all in this process, with 100, 1k and 10k steps already logged.

    .venv/bin/python benchmarks/peers.py [--quick]
"""

from __future__ import annotations

import contextlib
import gc
import io
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "peers"
RUN = "bench_run"
# The 8 training metrics given to all three per step (the widget also stores the `timestamp` it adds).
TRAIN_KEYS = ("learning_rate", "loss", "grad_norm", "reward_mean", "reward_std", "kl_mean", "entropy_mean",
              "clip_frac")

WARMUP = 20  # untimed rldk_widget updates first (imports, first writes), as the peers' setup warms them

FULL = dict(
    sizes=(100, 1_000, 10_000),
    widget_reps={100: 200, 1_000: 200, 10_000: 200},
    hf_reps={100: 50, 1_000: 50, 10_000: 20},
    llp_reps={100: 3, 1_000: 3, 10_000: 3},
)
QUICK = dict(
    sizes=(100, 1_000),
    widget_reps={100: 20, 1_000: 20},
    hf_reps={100: 5, 1_000: 5},
    llp_reps={100: 1, 1_000: 1},
)


class DisplaySink:
    """Stands in for IPython's display machinery (no frontend): records the size of every display_data /
    update_display_data message body a peer would send, serialised as jupyter_client does."""

    def __init__(self) -> None:
        self.messages: list[int] = []

    def record(self, data: dict) -> None:
        self.messages.append(c.wire_size({"data": data, "metadata": {}}))

    def html(self, obj) -> None:
        self.record({"text/html": obj.data, "text/plain": repr(obj)})

    def reset(self) -> int:
        total = sum(self.messages)
        self.messages = []
        return total


class FakeClock:
    """transformers.utils.notebook's `time`: each simulated training step takes `step_s` seconds, so the
    progress bar re-renders every step, as it does for RL steps slower than its update_every (0.2 s)."""

    def __init__(self, step_s: float = 1.0) -> None:
        self.t = 1_000_000.0
        self.step_s = step_s

    def time(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t += self.step_s


def logs_of(record: dict) -> dict:
    return {k: record[k] for k in TRAIN_KEYS}


def bench_hf(size: int, reps: int, make: c.RecordMaker) -> dict:
    from IPython.display import HTML
    from transformers.trainer_callback import TrainerControl, TrainerState
    from transformers.trainer_utils import IntervalStrategy
    from transformers.utils import notebook as nb

    sink = DisplaySink()

    class Handle:
        def update(self, obj) -> None:
            sink.html(obj)

    def display(obj, display_id=None, **_kwargs):
        sink.html(obj)
        return Handle()

    clock = FakeClock()
    saved = nb.disp, nb.time
    nb.disp = SimpleNamespace(display=display, HTML=HTML)
    nb.time = clock
    try:
        args = SimpleNamespace(eval_strategy=IntervalStrategy.NO)  # the only TrainingArguments field it reads
        total = size + reps + 10
        state = TrainerState(max_steps=total, num_train_epochs=1)
        state.epoch = 0.0
        control = TrainerControl()
        callback = nb.NotebookProgressCallback()
        callback.on_train_begin(args, state, control)
        callback.on_step_end(args, state, control)  # first render, creates the display
        # `size` logged steps, in the rows write_line would have appended (building them through on_log would
        # cost O(n²) renders of setup).
        table = callback.training_tracker.inner_table
        for step in range(1, size + 1):
            table.append([step, make(step)["loss"]])
        state.global_step = size
        clock.t += size * clock.step_s  # those steps took their time: the bar's rate stays 1 step/s
        sink.reset()

        times = []
        gc.collect()
        for _ in range(reps):
            step = state.global_step + 1
            logs = logs_of(make(step))
            clock.tick()
            t = c.now()
            state.global_step = step
            state.epoch = step / total
            callback.on_step_end(args, state, control)
            callback.on_log(args, state, control, logs=logs)
            times.append(c.now() - t)
        renders = len(sink.messages)
        out_bytes = sink.reset()
        rows = len(callback.training_tracker.inner_table) - 1
        assert rows == size + reps, f"HF table has {rows} rows, expected {size + reps}"
        assert renders == reps, f"HF re-rendered {renders} times in {reps} updates"
    finally:
        nb.disp, nb.time = saved
    return {"per_update": c.summary(times), "bytes_per_update": out_bytes / reps, "renders": renders}


def bench_livelossplot(size: int, reps: int, make: c.RecordMaker) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import livelossplot.outputs.matplotlib_plot as mpl_output
    import matplotlib.pyplot as plt
    from IPython.core.pylabtools import print_figure
    from livelossplot import PlotLosses

    sink = DisplaySink()

    def inline_show(*_args, **_kwargs):
        """What the notebook's inline backend does on plt.show(): each open figure as a PNG display_data
        (IPython's print_figure, bbox_inches='tight'), then close them."""
        for number in plt.get_fignums():
            png = print_figure(plt.figure(number), "png", base64=True)
            if png:
                sink.record({"image/png": png, "text/plain": "<Figure>"})
        plt.close("all")

    saved = mpl_output.clear_output, plt.show
    mpl_output.clear_output = lambda wait=False: sink.record({})  # an empty clear_output message
    plt.show = inline_show
    try:
        plot = PlotLosses(mode="notebook")  # default outputs: MatplotlibPlot + ExtremaPrinter
        for step in range(size):
            plot.update(logs_of(make(step)), current_step=step)
        times = []
        printed = 0
        for i in range(reps):
            step = size + i
            logs = logs_of(make(step))
            buffer = io.StringIO()
            gc.collect()
            t = c.now()
            with contextlib.redirect_stdout(buffer):
                plot.update(logs, current_step=step)
                plot.send()
            times.append(c.now() - t)
            printed += c.wire_size({"name": "stdout", "text": buffer.getvalue()})
        groups = len(plot.logger.grouped_log_history())
        out_bytes = sink.reset() + printed
    finally:
        mpl_output.clear_output, plt.show = saved
        plt.close("all")
    return {"per_update": c.summary(times), "bytes_per_update": out_bytes / reps, "subplots": groups}


def bench_widget(tmp: Path, size: int, reps: int, make: c.RecordMaker) -> dict:
    from rldk_widget import RLDKDashboard

    run_dir = tmp / f"widget_{size}"
    c.write_metrics_file(run_dir / f"{RUN}_metrics.json", size, make)
    widget = RLDKDashboard(run_dir, run_id=RUN, auto_refresh=False)
    tap = c.CommTap(widget)
    for step in range(size, size + WARMUP):
        widget.add_metrics({"step": step, **logs_of(make(step))})
        widget.flush()
    tap.reset()
    times = []
    gc.collect()
    for i in range(reps):
        step = size + WARMUP + i
        record = {"step": step, **logs_of(make(step))}
        t = c.now()
        widget.add_metrics(record)
        widget.flush()
        times.append(c.now() - t)
    messages = tap.count()
    out_bytes = tap.total_bytes()
    widget.close()
    shutil.rmtree(run_dir)
    assert messages == reps, f"widget sent {messages} messages for {reps} flushed updates"
    return {"per_update": c.summary(times), "bytes_per_update": out_bytes / reps}


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    make = c.RecordMaker(RUN)
    versions = c.package_versions(["transformers", "livelossplot", "matplotlib", "anywidget", "ipywidgets"])
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; sizes {cfg['sizes']}; {versions}; "
          f"{c.load_note()}")

    results: dict[str, dict[int, dict]] = {"widget": {}, "hf": {}, "livelossplot": {}}
    with c.temp_dir(NAME) as tmp:
        for size in cfg["sizes"]:
            results["widget"][size] = bench_widget(tmp, size, cfg["widget_reps"][size], make)
            results["hf"][size] = bench_hf(size, cfg["hf_reps"][size], make)
            results["livelossplot"][size] = bench_livelossplot(size, cfg["llp_reps"][size], make)
            print(f"  {size:,} steps: widget {c.fmt_time(results['widget'][size]['per_update']['median'])}, "
                  f"HF {c.fmt_time(results['hf'][size]['per_update']['median'])}, livelossplot "
                  f"{c.fmt_time(results['livelossplot'][size]['per_update']['median'])}", flush=True)
            gc.collect()

    labels = {
        "widget": "rldk_widget: add_metrics() + flush()",
        "hf": "transformers NotebookProgressCallback: on_step_end + on_log",
        "livelossplot": "livelossplot PlotLosses: update() + send()",
    }
    table = c.Table(
        "Per-update cost in the kernel, and bytes sent to the notebook per update",
        ["display", "steps logged", "n", "per update median (min / max)", "÷ rldk_widget (median)",
         "bytes out per update"],
    )
    for key in ("widget", "hf", "livelossplot"):
        for size in cfg["sizes"]:
            r = results[key][size]
            s = r["per_update"]
            ours = results["widget"][size]["per_update"]["median"]
            table.add(labels[key], c.fmt_int(size), s["n"],
                      f"{c.fmt_time(s['median'])} ({c.fmt_time(s['min'])} / {c.fmt_time(s['max'])})",
                      c.fmt_ratio(s["median"] / ours), c.fmt_bytes(r["bytes_per_update"]))
    subplots = next(iter(results["livelossplot"].values()))["subplots"]
    table.note(f"Same {len(TRAIN_KEYS)} training metrics per step to all three ({', '.join(TRAIN_KEYS)}). "
               "Peers measured in this process with the versions printed above.")
    table.note(f"rldk_widget: each update is sent at once (flush), as when steps are slower than its 100 ms "
               f"throttle; includes the disk append and the comm send (serialised in the tap); after {WARMUP} "
               "untimed updates.")
    table.note("NotebookProgressCallback: prefilled with the logged steps in its table; a fake clock makes each "
               "step last 1 s so the bar re-renders every step (as for RL steps slower than update_every = 0.2 s); "
               "display / update_display are captured (HTML size counted). It tables only the training loss.")
    table.note(f"livelossplot: default outputs (MatplotlibPlot + ExtremaPrinter), mode='notebook', Agg backend; "
               f"plt.show() replaced by what the inline backend does (PNG via IPython's print_figure, then close); "
               f"{subplots} subplots. Few repetitions (n column): each update redraws every point.")
    table.note("gc.collect() once before each row's timed loop (every repetition for livelossplot); records are "
               "built outside the timed region.")
    table.note("bytes out: serialized display_data / update_display_data / stream (peers) or comm message "
               "(rldk_widget) bodies; a PNG is counted base64-encoded as it travels.")

    data = {"config": {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
                       for k, v in cfg.items()},
            "versions": versions,
            "results": {k: {str(s): r for s, r in v.items()} for k, v in results.items()}}
    checks = c.Checks()  # issue 7.3 sets no target; the ratios are the result
    c.write_results(NAME, args, [table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
