"""Issue 5: what recording and showing a run costs the training loop. A tiny GRPO run (TRL, CPU, the offline
tiny Llama of rldk_widget.demo_models), same seed and data, without and with `trainer.add_callback(dash.callback())`
(an RLDKDashboard with its defaults, auto-refresh on, delta messages serialised as a kernel would); runs
alternate A B B A … so a change in machine load hits both alike. Step time: the interval between consecutive
`on_step_begin` events (generation, rewards, backward, optimizer, logging and every callback).

    .venv/bin/python benchmarks/overhead.py [--quick]
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "overhead"
RUN = "overhead_run"

FULL = dict(steps=100, warmup=5, blocks=16, control_blocks=8)  # blocks of four runs, A B B A then B A A B
QUICK = dict(steps=8, warmup=2, blocks=1, control_blocks=1)
# Control blocks run the trainer alone twice (A/A, same order): their ratio is the noise floor of this
# measurement on this machine in this run, printed next to the with ÷ without ratio.

TARGET_RATIO = 1.02  # median step time with ÷ without
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


def train_once(assets: dict, tmp: Path, index: int, with_dashboard: bool, cfg: dict) -> dict:
    import trl
    from transformers import AutoTokenizer, PrinterCallback

    from rldk_widget import RLDKDashboard
    from rldk_widget.demo_models import grpo_prompts, reward_len, reward_words

    timer = make_step_timer()
    args = trl.GRPOConfig(
        output_dir=str(tmp / f"out_{index}"), max_steps=cfg["steps"], logging_steps=1, learning_rate=1e-3,
        report_to=[], use_cpu=True, bf16=False, save_strategy="no", seed=0, dataloader_num_workers=0,
        disable_tqdm=True, per_device_train_batch_size=4, num_generations=2, max_completion_length=8, beta=0.1,
    )
    trainer = trl.GRPOTrainer(
        model=str(assets["causal_lm"]), reward_funcs=[reward_len, reward_words], args=args,
        train_dataset=grpo_prompts(64, seed=1), processing_class=AutoTokenizer.from_pretrained(assets["tokenizer"]),
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # no console printing in either variant
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
        # means, not medians: about one call in seven also runs the dashboard's batched read-back pass
        out["on_log_s"] = sum(hook_times) / len(hook_times)
        out["listener_s"] = sum(listener_times) / len(listener_times)
        dash.close()
    skip = cfg["warmup"]
    out["step_wall"] = [b - a for a, b in zip(timer.wall[skip:], timer.wall[skip + 1:])]
    out["step_cpu"] = [b - a for a, b in zip(timer.cpu[skip:], timer.cpu[skip + 1:])]
    return out


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
    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {cfg['blocks'] * 2} runs per variant × "
          f"{cfg['steps']} steps; torch threads {torch.get_num_threads()}; {versions}; {c.load_note()}", flush=True)

    runs: list[dict] = []
    with c.temp_dir(NAME) as tmp:
        assets = build_tiny_assets(tmp / "assets")
        for with_dashboard in (False, True):  # untimed: first-run costs (imports, kernels, file cache)
            train_once(assets, tmp, -1 - with_dashboard, with_dashboard, cfg)
        order = []  # (block, variant); a control block after every second main block (and after the last)
        control = 0
        for block in range(cfg["blocks"]):
            order += [(block, v) for v in (("without", "with", "with", "without") if block % 2 == 0
                                           else ("with", "without", "without", "with"))]
            if (block % 2 == 1 or block == cfg["blocks"] - 1) and control < cfg["control_blocks"]:
                order += [(f"control {control}", v) for v in (("control A", "control B", "control B", "control A")
                                                               if control % 2 == 0 else
                                                               ("control B", "control A", "control A", "control B"))]
                control += 1
        for index, (block, variant) in enumerate(order):
            run = train_once(assets, tmp, index, variant == "with", cfg)
            run.update(block=block, variant=variant)
            runs.append(run)
            print(f"  run {index + 1}/{len(order)} {variant:9s}: median step "
                  f"{c.fmt_time(c.summary(run['step_wall'])['median'])}", flush=True)
    return report(args, cfg, runs, versions, torch.get_num_threads(), started)


def block_ratios(runs: list[dict], numerator: str, denominator: str) -> list[float]:
    """Per block of four runs: mean run median of `numerator` ÷ mean run median of `denominator`."""
    ratios = []
    for block in dict.fromkeys(r["block"] for r in runs if r["variant"] in (numerator, denominator)):
        medians = {numerator: [], denominator: []}
        for r in runs:
            if r["block"] == block:
                medians[r["variant"]].append(c.summary(r["step_wall"])["median"])
        ratios.append(statistics.mean(medians[numerator]) / statistics.mean(medians[denominator]))
    return ratios


def pooled_ratio(runs: list[dict], numerator: str, denominator: str) -> float:
    def median(variant: str) -> float:
        return statistics.median([x for r in runs if r["variant"] == variant for x in r["step_wall"]])

    return median(numerator) / median(denominator)


def report(args, cfg: dict, runs: list[dict], versions: dict, threads: int, started: float) -> dict:
    without = [r for r in runs if r["variant"] == "without"]
    with_ = [r for r in runs if r["variant"] == "with"]
    pooled = {
        key: {variant: c.summary([x for r in group for x in r[key]]) for variant, group in
              (("without", without), ("with", with_))}
        for key in ("step_wall", "step_cpu")
    }
    blocks = block_ratios(runs, "with", "without")
    control_blocks = block_ratios(runs, "control B", "control A")
    control_ratio = pooled_ratio(runs, "control B", "control A")
    ratio_wall = pooled_ratio(runs, "with", "without")
    ratio_cpu = pooled["step_cpu"]["with"]["median"] / pooled["step_cpu"]["without"]["median"]
    # the least disturbed run of each variant: other processes on the machine only ever add time
    quietest = {variant: min(c.summary(r["step_wall"])["median"] for r in group)
                for variant, group in (("without", without), ("with", with_))}
    hook = c.summary([r["on_log_s"] for r in with_])
    listener = c.summary([r["listener_s"] for r in with_])
    background = c.summary([r["background_cpu_s"] / cfg["steps"] for r in with_])
    base_step = pooled["step_wall"]["without"]["median"]

    table = c.Table(
        f"GRPO step time without and with callback + dashboard ({cfg['steps']} steps per run, first "
        f"{cfg['warmup']} not counted, runs A B B A …)",
        ["variant", "runs", "steps timed", "step wall median (p90)", "÷ without", "step CPU median", "÷ without"],
    )
    for variant, group in (("without: GRPOTrainer alone", without),
                           ("with: + trainer.add_callback(dash.callback())", with_)):
        key = "with" if group is with_ else "without"
        wall, cpu = pooled["step_wall"][key], pooled["step_cpu"][key]
        table.add(variant, len(group), wall["n"], f"{c.fmt_time(wall['median'])} ({c.fmt_time(wall['p90'])})",
                  c.fmt_ratio(wall["median"] / pooled["step_wall"]["without"]["median"]),
                  c.fmt_time(cpu["median"]), c.fmt_ratio(cpu["median"] / pooled["step_cpu"]["without"]["median"]))
    table.note(f"Per block of four runs, mean 'with' median ÷ mean 'without' median: "
               f"{', '.join(f'{b:.3f}' for b in blocks)} (median {statistics.median(blocks):.3f}, spread "
               f"{min(blocks):.3f} … {max(blocks):.3f}).")
    table.note(f"Control, the trainer alone in both arms (A/A, {len(control_blocks)} blocks interleaved with the "
               f"above): pooled {control_ratio:.3f}×, blocks {min(control_blocks):.3f} … {max(control_blocks):.3f} "
               f"(median {statistics.median(control_blocks):.3f}): how far apart two identical variants land here, "
               "so the resolution of the ratio above.")
    table.note(f"Quietest run of each variant (lowest run median): with {c.fmt_time(quietest['with'])} ÷ without "
               f"{c.fmt_time(quietest['without'])} = {quietest['with'] / quietest['without']:.3f}×.")
    table.note(f"RLDKCallback.on_log per logged step (mean per call, then median / min / max over the runs): "
               f"{c.fmt_time(hook['median'])} ({c.fmt_time(hook['min'])} / {c.fmt_time(hook['max'])}) = "
               f"{100 * hook['median'] / base_step:.2f}% of the median step without; 2% of a step of "
               f"{c.fmt_time(hook['median'] / (TARGET_RATIO - 1))} or longer. on_log queues the log; about every "
               "100 ms one call also writes the queued logs (key mapping, alert rules, one append per file) and "
               f"runs the dashboard's listener ({c.fmt_time(listener['median'])} per record: it queues the record; "
               "one pass per ~100 ms reads the new rows back, updates the series and sends a delta).")
    table.note(f"Dashboard read-back passes and delta sends, CPU time per training step, on whichever thread ran "
               f"them (mostly the training thread, inside on_log; the inbox and flusher threads take the tail of "
               f"a burst): {c.fmt_time(background['median'])} (median over the runs; "
               f"{100 * background['median'] / base_step:.2f}% of the median step without).")
    table.note(f"Messages to the views per run: {', '.join(str(r['messages']) for r in with_)} "
               f"(≈ {sum(r['bytes'] for r in with_) / len(with_) / cfg['steps']:,.0f} B per step, serialised as "
               "jupyter_client would). Step CPU: process CPU time (all threads) between the same events.")
    table.note(f"torch {versions['torch']} with {threads} thread(s) (TORCH_THREADS: steady step times on a shared "
               f"2-core machine; the dashboard's own threads can then use the other core), transformers "
               f"{versions['transformers']}, trl "
               f"{versions['trl']}; tiny 2-layer Llama (hidden 32) from rldk_widget.demo_models, batch 4, 2 "
               "generations of 8 tokens, logging every step. Absolute step times move with the machine's load; the "
               "ratios compare runs interleaved in this process; one untimed run of each variant first.")

    checks = c.Checks()
    checks.add("GRPO median step time, with ÷ without (wall)", ratio_wall, TARGET_RATIO, "ratio",
               shown=f"{ratio_wall:.3f}× (blocks {min(blocks):.3f} … {max(blocks):.3f})")
    data = {"config": cfg, "versions": versions, "torch_threads": threads, "ratio_wall": ratio_wall,
            "ratio_cpu": ratio_cpu, "block_ratios": blocks, "block_ratio_median": statistics.median(blocks),
            "control_ratio": control_ratio, "control_block_ratios": control_blocks, "quietest_run_median_s": quietest, "on_log_s": hook,
            "listener_s": listener, "background_cpu_per_step_s": background, "pooled": pooled, "runs": runs}
    c.write_results(NAME, args, [table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
