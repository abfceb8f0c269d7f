"""Issue 5: what recording and showing a run costs the training loop. A tiny GRPO run (TRL, CPU, the offline
tiny Llama of rldk_widget.demo_models), same seed and data, without and with `trainer.add_callback(dash.callback())`
(an RLDKDashboard with its defaults, delta messages serialised as a kernel would). Step time: the interval between
consecutive `on_step_begin` events (generation, rewards, backward, optimizer, logging and every callback).
Issue 15 adds live capture of completions: `dash.callback(trainer=trainer)`, which at each log also takes the
trainer's generation batch and writes its samples (rendering, content keys, token counts with the trainer's
tokenizer, one append to `{run_id}_samples.json`), measured in the same paired design.

Two designs, each with an A/A control (the trainer alone in both arms) that prints its own noise floor:
- paired segments (the checks): in each run the callback is on for half of the 40-step segments, in a random order
  of each pair; a 'with' segment ends by writing and sending everything queued, so none of its cost lands in the
  next segment. Main runs have the callback as before, capture runs with the trainer attached (samples recorded). Slow drifts of this shared VM hit both arms alike; mean step times, so that the batched passes
  (one per `write_interval`, 0.25 s) count in full.
- separate runs: whole runs without and with the callback, alternating A B B A.

    .venv/bin/python benchmarks/overhead.py [--quick]
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "overhead"
RUN = "overhead_run"

FULL = dict(paired_runs=12, capture_runs=8, pairs=4, segment=40, paired_warmup=20, steps=100, warmup=5, blocks=8,
            control_blocks=4)
QUICK = dict(paired_runs=1, capture_runs=1, pairs=1, segment=4, paired_warmup=2, steps=8, warmup=2, blocks=1,
             control_blocks=1)
# paired_runs: runs with the callback in half the segments, as many A/A control runs, alternating, and after every
# pair of them one of `capture_runs` runs with the callback capturing completions (the trainer attached); each run has
# paired_warmup steps (callback on, not timed), then `pairs` pairs of `segment` steps. blocks / control_blocks:
# four separate runs each (A B B A), of `steps` steps of which the first `warmup` are not timed.

TARGET_RATIO = 1.02  # mean step time with ÷ without (paired segments)
BOOTSTRAP = 2000  # resamples of the runs for the 95% interval
# One torch thread: the tiny model is no faster with two (23 ms per step either way on a quiet machine), and with
# two every step waits for both cores, so any other process makes steps up to 40× slower and drowns a 2% effect.
TORCH_THREADS = 1


def make_step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall and process CPU time at every on_step_begin (in both variants, so its own cost cancels)."""

        def __init__(self) -> None:
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepTimer()


def make_alternating_gate(callback, dash, arms: list[str], forward: bool):
    """A callback in front of the RLDK callback: the k-th log reaches it when `forward` and arms[k] is not
    'without'; after the last log of such a stretch everything queued is written and sent (dash.flush), so the
    stretch pays for all of its own logs."""
    from transformers import TrainerCallback

    from rldk_widget.trl_keys import is_summary_log

    class AlternatingGate(TrainerCallback):
        def __init__(self) -> None:
            self.logs = 0

        def on_train_begin(self, args, state, control, **kwargs) -> None:
            callback.on_train_begin(args, state, control, **kwargs)

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if not logs or is_summary_log(logs):
                return
            k, self.logs = self.logs, self.logs + 1
            if not forward or k >= len(arms) or arms[k] == "without":
                return
            callback.on_log(args, state, control, logs=logs, **kwargs)
            if k + 1 == len(arms) or arms[k + 1] != arms[k]:
                dash.flush()

        def on_train_end(self, args, state, control, **kwargs) -> None:
            callback.on_train_end(args, state, control, **kwargs)

    return AlternatingGate()


def time_calls(obj, name: str, clock=time.perf_counter) -> list[float]:
    """Wrap a method of `obj` on the instance (the Trainer calls getattr(callback, event), the dashboard registers
    its bound listener when it connects); returns the list its durations on `clock` are appended to."""
    spent: list[float] = []
    method = getattr(obj, name)

    def timed(*args, **kwargs):
        t = clock()
        try:
            return method(*args, **kwargs)
        finally:
            spent.append(clock() - t)

    setattr(obj, name, timed)
    return spent


def grpo_trainer(assets: dict, out_dir: Path, steps: int, callbacks: list):
    import trl
    from transformers import AutoTokenizer, PrinterCallback

    from rldk_widget.demo_models import grpo_prompts, reward_len, reward_words

    args = trl.GRPOConfig(
        output_dir=str(out_dir), max_steps=steps, logging_steps=1, learning_rate=1e-3, report_to=[], use_cpu=True,
        bf16=False, save_strategy="no", seed=0, dataloader_num_workers=0, disable_tqdm=True,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=8, beta=0.1,
    )
    trainer = trl.GRPOTrainer(
        model=str(assets["causal_lm"]), reward_funcs=[reward_len, reward_words], args=args,
        train_dataset=grpo_prompts(64, seed=1), processing_class=AutoTokenizer.from_pretrained(assets["tokenizer"]),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # no console printing in either variant
    return trainer


def train_paired(assets: dict, tmp: Path, index: int, forward: bool, cfg: dict, capture: bool = False) -> dict:
    """One run of paired segments; `forward=False` is the A/A control (the same arms, the callback never called);
    `capture`: the callback records the trainer's completions too."""
    from rldk_widget import RLDKDashboard
    from rldk_widget.sample_index import SampleIndex

    rng = random.Random(index)
    arms = ["warmup"] * cfg["paired_warmup"]
    for _ in range(cfg["pairs"]):
        for arm in rng.sample(("with", "without"), 2):
            arms += [arm] * cfg["segment"]
    dash = RLDKDashboard(tmp / f"logs_{index}", run_id=RUN)
    tap = c.CommTap(dash)
    timer = make_step_timer()
    trainer = grpo_trainer(assets, tmp / f"out_{index}", len(arms) + 1, [timer])
    callback = dash.callback(trainer=trainer if capture else None)
    hook_times = time_calls(callback, "on_log")  # the training thread's share: on_log (with its passes) ...
    flush_times = time_calls(dash, "flush")  # ... and the flush ending each 'with' segment
    trainer.add_callback(make_alternating_gate(callback, dash, arms, forward))
    gc.collect()
    trainer.train()
    dash.flush()
    rows = len(dash.to_dataframe())
    expected = len(arms) - arms.count("without") if forward else 0
    assert rows == expected, f"the dashboard shows {rows} steps of the {expected} logged to it"
    if capture:
        samples = SampleIndex(RUN, tmp / f"logs_{index}" / f"{RUN}_samples.json")
        samples.update_all()
        assert len(samples.steps()) == expected, f"samples of {len(samples.steps())} steps of {expected}"
    dash.close()
    step_wall: dict[str, list[float]] = {"with": [], "without": []}
    for arm, seconds in zip(arms, [b - a for a, b in zip(timer.wall, timer.wall[1:])]):
        if arm != "warmup":
            step_wall[arm].append(seconds)
    logged = len(arms) - arms.count("without")
    thread_s = (sum(hook_times) + sum(flush_times[:-1])) / logged if forward and logged else 0.0
    return {"step_wall": step_wall, "messages": tap.count(), "thread_per_log_s": thread_s}


def train_separately(assets: dict, tmp: Path, index: int, with_dashboard: bool, cfg: dict) -> dict:
    """One run of the separate-runs design, the whole run without or with the callback."""
    from rldk_widget import RLDKDashboard

    timer = make_step_timer()
    trainer = grpo_trainer(assets, tmp / f"out_{index}", cfg["steps"], [timer])
    out: dict = {}
    dash = tap = hook_times = listener_times = background = None
    if with_dashboard:
        dash = RLDKDashboard(tmp / f"logs_{index}", run_id=RUN)
        tap = c.CommTap(dash)
        listener_times = time_calls(dash, "_on_callback_event")  # before connecting: it registers this one
        # the dashboard's batched read-back passes (inbox) and delta sends (channel), on any thread
        background = [time_calls(dash._inbox, "drain", time.thread_time),
                      time_calls(dash._channel, "_flush_when_due", time.thread_time)]
        callback = dash.callback()
        hook_times = time_calls(callback, "on_log")
        trainer.add_callback(callback)
    gc.collect()
    trainer.train()
    if dash is not None:
        out["background_cpu_s"] = sum(sum(spent) for spent in background)
        dash.flush()
        rows = len(dash.to_dataframe())
        assert rows == cfg["steps"], f"the dashboard shows {rows} steps of {cfg['steps']}"
        out["messages"] = tap.count()
        out["bytes"] = tap.total_bytes()
        # means, not medians: about one call in sixteen (one per write_interval) also runs the batched passes
        out["on_log_s"] = sum(hook_times) / len(hook_times)
        out["listener_s"] = sum(listener_times) / len(listener_times)
        dash.close()
    skip = cfg["warmup"]
    out["step_wall"] = [b - a for a, b in zip(timer.wall[skip:], timer.wall[skip + 1:])]
    out["step_cpu"] = [b - a for a, b in zip(timer.cpu[skip:], timer.cpu[skip + 1:])]
    return out


def separate_order(cfg: dict) -> list[tuple[object, str]]:
    """(block, variant) of every separate run: A B B A / B A A B blocks, an A/A control block after every second
    main block (and after the last)."""
    order: list[tuple[object, str]] = []
    control = 0
    for block in range(cfg["blocks"]):
        order += [(block, v) for v in (("without", "with", "with", "without") if block % 2 == 0
                                       else ("with", "without", "without", "with"))]
        if (block % 2 == 1 or block == cfg["blocks"] - 1) and control < cfg["control_blocks"]:
            order += [(f"control {control}", v) for v in (("control A", "control B", "control B", "control A")
                                                           if control % 2 == 0 else
                                                           ("control B", "control A", "control A", "control B"))]
            control += 1
    return order


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    import torch
    import transformers

    from rldk_widget.demo_models import build_tiny_assets

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' own deprecations inside TRL
    torch.set_num_threads(TORCH_THREADS)
    versions = c.package_versions(["torch", "transformers", "trl"])
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {cfg['paired_runs']} paired-segment runs "
          f"and as many A/A controls, {cfg['blocks'] * 2} separate runs per variant; torch threads "
          f"{torch.get_num_threads()}; {versions}; {c.load_note()}", flush=True)

    paired: list[dict] = []
    separate: list[dict] = []
    with c.temp_dir(NAME) as tmp:
        assets = build_tiny_assets(tmp / "assets")
        for with_dashboard in (False, True):  # untimed: first-run costs (imports, kernels, file cache)
            train_separately(assets, tmp, -1 - with_dashboard, with_dashboard, cfg)
        index = 0
        variants = []
        for pair in range(cfg["paired_runs"]):
            variants += ["paired", "paired control"] if pair % 2 == 0 else ["paired control", "paired"]
            if pair < cfg["capture_runs"]:
                variants.append("paired capture")
        for variant in variants:
            run = train_paired(assets, tmp, index, variant != "paired control", cfg, variant == "paired capture")
            run["variant"] = variant
            paired.append(run)
            index += 1
            print(f"  paired run {len(paired)}/{len(variants)} {run['variant']:14s}: mean step "
                  f"with ÷ without {paired_ratio([run]):.3f}", flush=True)
        order = separate_order(cfg)
        for block, variant in order:
            run = train_separately(assets, tmp, index, variant == "with", cfg)
            run.update(block=block, variant=variant)
            separate.append(run)
            index += 1
            print(f"  separate run {len(separate)}/{len(order)} {variant:9s}: median step "
                  f"{c.fmt_time(c.summary(run['step_wall'])['median'])}", flush=True)
    return report(args, cfg, paired, separate, versions, torch.get_num_threads(), started)


def paired_ratio(runs: list[dict]) -> float:
    """Mean step time of all 'with' segments ÷ that of all 'without' segments of `runs`."""
    return (statistics.fmean([x for r in runs for x in r["step_wall"]["with"]])
            / statistics.fmean([x for r in runs for x in r["step_wall"]["without"]]))


def bootstrap_interval(runs: list[dict], rng: random.Random) -> tuple[float, float]:
    """95% interval of `paired_ratio`, resampling whole runs."""
    ratios = sorted(paired_ratio([rng.choice(runs) for _ in runs]) for _ in range(BOOTSTRAP))
    return ratios[int(0.025 * BOOTSTRAP)], ratios[int(0.975 * BOOTSTRAP) - 1]


def block_ratios(runs: list[dict], numerator: str, denominator: str) -> list[float]:
    """Per block of four separate runs: mean run median of `numerator` ÷ mean run median of `denominator`."""
    ratios = []
    for block in dict.fromkeys(r["block"] for r in runs if r["variant"] in (numerator, denominator)):
        medians = {numerator: [], denominator: []}
        for r in runs:
            if r["block"] == block:
                medians[r["variant"]].append(c.summary(r["step_wall"])["median"])
        ratios.append(statistics.mean(medians[numerator]) / statistics.mean(medians[denominator]))
    return ratios


def pooled_ratios(runs: list[dict], numerator: str, denominator: str) -> dict[str, float]:
    """Mean and median step time of every step of the `numerator` runs ÷ those of the `denominator` runs."""
    steps = {v: [x for r in runs if r["variant"] == v for x in r["step_wall"]] for v in (numerator, denominator)}
    return {"mean": statistics.fmean(steps[numerator]) / statistics.fmean(steps[denominator]),
            "median": statistics.median(steps[numerator]) / statistics.median(steps[denominator])}


def report(args, cfg: dict, paired: list[dict], separate: list[dict], versions: dict, threads: int,
           started: float) -> dict:
    rng = random.Random(0)
    main_runs = [r for r in paired if r["variant"] == "paired"]
    control_runs = [r for r in paired if r["variant"] == "paired control"]
    capture_runs = [r for r in paired if r["variant"] == "paired capture"]
    ratio, control_ratio = paired_ratio(main_runs), paired_ratio(control_runs)
    interval, control_interval = bootstrap_interval(main_runs, rng), bootstrap_interval(control_runs, rng)
    capture_ratio, capture_interval = paired_ratio(capture_runs), bootstrap_interval(capture_runs, rng)
    run_ratios = [paired_ratio([r]) for r in main_runs]
    control_run_ratios = [paired_ratio([r]) for r in control_runs]
    capture_run_ratios = [paired_ratio([r]) for r in capture_runs]

    paired_table = c.Table(
        f"Paired segments: GRPO step time with and without callback + dashboard in the same runs ({cfg['pairs']} "
        f"pairs of {cfg['segment']} steps per run, random order in each pair, after {cfg['paired_warmup']} "
        "untimed steps)",
        ["runs", "arm", "steps timed", "step mean", "step median (p90)", "mean ÷ without"],
    )
    for label, runs in (("callback on in 'with' segments", main_runs),
                        ("callback + live capture of completions on", capture_runs),
                        ("A/A control: callback never called", control_runs)):
        without_mean = statistics.fmean([x for r in runs for x in r["step_wall"]["without"]])
        for arm in ("without", "with"):
            steps = [x for r in runs for x in r["step_wall"][arm]]
            s = c.summary(steps)
            paired_table.add(f"{label} ({len(runs)})" if arm == "without" else "", arm, s["n"],
                             c.fmt_time(statistics.fmean(steps)),
                             f"{c.fmt_time(s['median'])} ({c.fmt_time(s['p90'])})",
                             f"{statistics.fmean(steps) / without_mean:.3f}×")
    paired_table.note(f"With ÷ without, mean step time: {ratio:.3f}× (95% interval {interval[0]:.3f} … "
                      f"{interval[1]:.3f}, {BOOTSTRAP} resamples of the runs); per run "
                      f"{', '.join(f'{x:.3f}' for x in run_ratios)}.")
    paired_table.note(f"With live capture of completions (`dash.callback(trainer=trainer)`: each log's generation "
                      f"batch of 4 samples recorded, token counts with the trainer's tokenizer), with ÷ without: "
                      f"{capture_ratio:.3f}× (95% interval {capture_interval[0]:.3f} … {capture_interval[1]:.3f}); "
                      f"per run {', '.join(f'{x:.3f}' for x in capture_run_ratios)}.")
    main_thread = c.summary([r["thread_per_log_s"] for r in main_runs])["median"]
    capture_thread = c.summary([r["thread_per_log_s"] for r in capture_runs])["median"]
    base_step = statistics.fmean([x for r in main_runs + capture_runs for x in r["step_wall"]["without"]])
    paired_table.note(f"Training-thread time per logged step in the 'with' segments (RLDKCallback.on_log with the "
                      f"batched passes it runs, and the segment-end flush; median over the runs): callback "
                      f"{c.fmt_time(main_thread)}, with live capture {c.fmt_time(capture_thread)} = "
                      f"{100 * main_thread / base_step:.2f}% and {100 * capture_thread / base_step:.2f}% of the mean "
                      f"step without: the capture's own cost, resolved below the step-time noise.")
    paired_table.note(f"A/A control, the same arms with the callback never called: {control_ratio:.3f}× (95% "
                      f"interval {control_interval[0]:.3f} … {control_interval[1]:.3f}); per run "
                      f"{', '.join(f'{x:.3f}' for x in control_run_ratios)}: the resolution of the ratio above.")
    paired_table.note("A 'with' segment ends with dash.flush() (the queued logs written, read back and sent), so "
                      "it pays for every one of its logs, and for more passes than a run with the callback "
                      "throughout (one per segment end besides the one per 250 ms). Messages to the views per run: "
                      f"{', '.join(str(r['messages']) for r in main_runs)}.")

    without = [r for r in separate if r["variant"] == "without"]
    with_ = [r for r in separate if r["variant"] == "with"]
    separate_ratio = pooled_ratios(separate, "with", "without")
    separate_control = pooled_ratios(separate, "control B", "control A")
    blocks = block_ratios(separate, "with", "without")
    control_blocks = block_ratios(separate, "control B", "control A")
    hook = c.summary([r["on_log_s"] for r in with_])
    listener = c.summary([r["listener_s"] for r in with_])
    background = c.summary([r["background_cpu_s"] / cfg["steps"] for r in with_])
    base_step = statistics.fmean([x for r in without for x in r["step_wall"]])

    separate_table = c.Table(
        f"Separate runs: GRPO without and with callback + dashboard ({cfg['steps']} steps per run, first "
        f"{cfg['warmup']} not counted, runs A B B A …)",
        ["variant", "runs", "steps timed", "step mean", "step median (p90)", "mean ÷ without", "step CPU median"],
    )
    for variant, group in (("without: GRPOTrainer alone", without),
                           ("with: + trainer.add_callback(dash.callback())", with_)):
        steps = [x for r in group for x in r["step_wall"]]
        wall, cpu = c.summary(steps), c.summary([x for r in group for x in r["step_cpu"]])
        separate_table.add(variant, len(group), wall["n"], c.fmt_time(statistics.fmean(steps)),
                           f"{c.fmt_time(wall['median'])} ({c.fmt_time(wall['p90'])})",
                           f"{statistics.fmean(steps) / base_step:.3f}×", c.fmt_time(cpu["median"]))
    separate_table.note(f"With ÷ without: mean {separate_ratio['mean']:.3f}×, median "
                        f"{separate_ratio['median']:.3f}×; per block of four runs (mean of run medians) "
                        f"{min(blocks):.3f} … {max(blocks):.3f}.")
    separate_table.note(f"A/A control ({len(control_blocks)} blocks of the trainer alone in both arms, interleaved): "
                        f"mean {separate_control['mean']:.3f}×, median {separate_control['median']:.3f}×, blocks "
                        f"{min(control_blocks):.3f} … {max(control_blocks):.3f}: whole runs on this VM differ by "
                        "this much, more than the 2% to resolve; hence the paired design above.")
    separate_table.note(f"RLDKCallback.on_log per logged step (mean per call, then median / min / max over the runs): "
                        f"{c.fmt_time(hook['median'])} ({c.fmt_time(hook['min'])} / {c.fmt_time(hook['max'])}) = "
                        f"{100 * hook['median'] / base_step:.2f}% of the mean step without. on_log queues the log; "
                        "about every 250 ms one call also writes the queued logs (key mapping, alert rules, one "
                        f"append per file) and runs the dashboard's listener ({c.fmt_time(listener['median'])} per "
                        "record: it queues the record; the same pass reads the new rows back, updates the series "
                        "and sends a delta).")
    separate_table.note(f"Dashboard read-back passes and flusher-thread sends, CPU time per training step on "
                        f"whichever thread ran them (the training thread inside on_log, except the tail of a burst): "
                        f"{c.fmt_time(background['median'])} (median over the runs).")
    separate_table.note(f"Messages to the views per run: {', '.join(str(r['messages']) for r in with_)} "
                        f"(≈ {sum(r['bytes'] for r in with_) / len(with_) / cfg['steps']:,.0f} B per step, "
                        "serialised as jupyter_client would). Step CPU: process CPU time (all threads).")
    separate_table.note(
        f"torch {versions['torch']} with {threads} thread(s) (TORCH_THREADS: steady step times on a shared 2-core "
        f"machine), transformers {versions['transformers']}, trl {versions['trl']}; tiny 2-layer Llama (hidden 32) "
        "from rldk_widget.demo_models, batch 4, 2 generations of 8 tokens, logging every step. One untimed run of "
        "each variant first.")

    checks = c.Checks()
    checks.add("GRPO mean step time, with ÷ without (paired segments)", ratio, TARGET_RATIO, "ratio",
               shown=f"{ratio:.3f}× (95% {interval[0]:.3f} … {interval[1]:.3f}; A/A {control_ratio:.3f}×)")
    checks.add("GRPO mean step time with live capture of completions, with ÷ without (paired segments)",
               capture_ratio, TARGET_RATIO, "ratio",
               shown=f"{capture_ratio:.3f}× (95% {capture_interval[0]:.3f} … {capture_interval[1]:.3f})")
    data = {"config": cfg, "versions": versions, "torch_threads": threads,
            "paired": {"ratio": ratio, "interval": interval, "run_ratios": run_ratios,
                       "control_ratio": control_ratio, "control_interval": control_interval,
                       "control_run_ratios": control_run_ratios, "capture_ratio": capture_ratio,
                       "capture_interval": capture_interval, "capture_run_ratios": capture_run_ratios,
                       "thread_per_log_s": {"callback": main_thread, "capture": capture_thread}},
            "separate": {"ratio": separate_ratio, "control_ratio": separate_control, "block_ratios": blocks,
                         "control_block_ratios": control_blocks, "on_log_s": hook, "listener_s": listener,
                         "background_cpu_per_step_s": background},
            "paired_runs": paired, "separate_runs": separate}
    c.write_results(NAME, args, [paired_table, separate_table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
