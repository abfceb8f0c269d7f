"""Issue 16: do the alert rules name what goes wrong in RL fine-tuning runs, fast, once, and stay quiet otherwise?

Measured on three kinds of history, each fed record by record to `AlertMonitor(AlertRules.for_trainer(kind))`
exactly as RLDKCallback records it (`trl_keys.log_record`; evaluation logs too):

- real runs: tiny-model TRL 1.16 runs of every trainer this TRL has (grpo rloo dpo sft reward, orpo and cpo from
  `trl.experimental`, kto), trained here on the offline tiny Llama of `rldk_widget.demo_models` and cached in a
  temp dir for this run. They are made healthy on purpose: GRPO / RLOO get two dense rewards of similar scale and a
  generation length penalty so that completions end before max_completion_length (a tiny random model otherwise
  truncates every completion and gets a sparse reward); the supervised ones train on 2,000 lines (less than an
  epoch, no overfitting) and evaluate on 32 held-out ones. PPO is not in TRL 1.16 (`make test-ppo` runs TRL 1.12):
  synthetic only.
- synthetic healthy runs (`rldk_widget.synthetic_runs`): 10,000 steps of every kind, warm-up, cosine or linear
  learning-rate decay, learning curves driven by the cumulative learning rate, noise from sampled batches (GRPO's
  rewards per completion and group, preference pairs' margins) and heavy-tailed grad norms.
- injected faults (`synthetic_runs.FAULTS`): every rule's condition at several onsets and sizes, injected into the
  real tiny runs and into synthetic runs. Splits: "tuning" (synthetic seed 100, the tuning sizes and onsets),
  "held-out" (synthetic seeds 0-1, other sizes and onsets), the real tiny runs (every size, the held-out onsets).
  How held out they are: the thresholds were set looking at the issue's patterns, healthy synthetic runs (seeds
  0-4) and the tuning split; the held-out sizes and onsets were not used, but their seeds were seen as healthy
  runs, and the real runs were looked at once (their RLOO logs a signed KL, which is why kl_spike has a scatter
  term).

A fault is detected when an alert of a type that names it comes within 5 steps of the onset (within 2 evaluations
for `eval_divergence`). A fault whose injected value stays under the rule's absolute floor (a KL spike under
`kl_spike_min`, a grad-norm spike under `grad_norm_floor`) is not a fault by the rule's definition: those cases are
counted apart (the rule must stay silent there), not in the detection rate. Every alert on a healthy run is a
false alarm. Lasting faults last 100 steps (when the run is long enough), and the alerts of the types naming them
during those 100 steps are counted.

    .venv/bin/python benchmarks/alert_eval.py [--quick] [--save-runs DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "alert_eval"
TINY_KINDS = ("grpo", "rloo", "dpo", "sft", "reward", "orpo", "kto", "cpo")

FULL = dict(tiny_kinds=TINY_KINDS, tiny_steps=240, tiny_eval_steps=20, synthetic_kinds=None, synthetic_steps=10_000,
            synthetic_seeds=(0,), inject_steps=1000, tune_seeds=(100,), test_seeds=(0, 1),
            tune_onsets=(0.35, 0.6), test_onsets=(0.25, 0.5, 0.65), pattern_seeds=tuple(range(5)))
QUICK = dict(tiny_kinds=("grpo", "sft"), tiny_steps=30, tiny_eval_steps=6, synthetic_kinds=None,
             synthetic_steps=2_000, synthetic_seeds=(0,), inject_steps=300, tune_seeds=(100,), test_seeds=(0,),
             tune_onsets=(0.5,), test_onsets=(0.5,), pattern_seeds=(0,))
# onsets: fractions of a run's training steps (the tuning split's differ from the held-out ones)

# Sizes around each rule's threshold, on the held-out synthetic runs: where detection stops (not in the targets).
BOUNDARY = {
    "kl_spike": ((3.0, 5.0, 8.0, 12.0), "KL > 5x its median (and 8 sd of its scatter, >= 0.02)"),
    "grad_spike_with_loss": ((2.0, 3.0, 4.5, 6.0), "grad norm > 4x its median with a loss jump, >= 1.0"),
    "grad_explosion": ((5.0, 8.0, 11.0, 15.0), "grad norm > 10x its median, >= 1.0"),
    "entropy_collapse": ((0.2, 0.12, 0.09, 0.05), "entropy < 0.1 x its peak"),
    "reward_collapse": ((0.25, 0.5, 0.75, 1.0), "a drop > max(half its best, 4 noise sd)"),
    "zero_variance": ((0.8, 0.87, 0.9, 0.92), "median frac_reward_zero_std >= 0.9"),
    "completions_clipped": ((0.4, 0.48, 0.55, 0.7), "clipped_ratio > 0.5 for 3 logs"),
    "fn_dominant": ((2.0, 3.0, 4.0, 6.0), "share of the variance >= 0.95"),
    "eval_divergence": ((0.002, 0.005, 0.01, 0.02), "2 rises, > 1% of its best, train not rising"),
}
TARGET_DETECTION = 0.95  # share of injected faults detected in time (issue 16)
TARGET_FALSE_ALARMS_PER_1K = 1.0  # alerts per 1,000 healthy steps
TARGET_ALERTS_PER_CONDITION = 2  # alerts for one condition that lasts 100 steps
DETECT_WITHIN_STEPS = 5
DETECT_WITHIN_EVALS = 2
LASTING_STEPS = 100
TINY_SEED = 0
TORCH_THREADS = 1


# ---- real tiny-model TRL runs -----------------------------------------------------------------------------------
def reward_letters(completions: list[str], **kwargs: Any) -> list[float]:
    """Dense toy reward for the healthy tiny GRPO / RLOO runs: the share of letters and spaces in the completion,
    scaled to a spread like `reward_len`'s (so neither function dominates the reward's variance)."""
    return [3.0 * sum(ch.isalpha() or ch == " " for ch in text) / max(1, len(text)) for text in completions]


def tiny_trainer(kind: str, assets: dict[str, Path], out_dir: Path, steps: int, eval_steps: int):
    """A healthy tiny TRL 1.16 run of `kind` (see the module docstring) and the config values set."""
    import importlib

    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    from rldk_widget.demo_models import grpo_prompts, reward_len, synthetic_lines

    tokenizer = AutoTokenizer.from_pretrained(assets["tokenizer"])
    lines, held_out = synthetic_lines(2000, seed=1), synthetic_lines(32, seed=2)
    values: dict[str, Any] = dict(
        max_steps=steps, logging_steps=1, learning_rate=5e-4, warmup_steps=max(1, steps // 30),
        lr_scheduler_type="cosine", report_to=[], use_cpu=True, bf16=False, save_strategy="no", seed=TINY_SEED,
        dataloader_num_workers=0, disable_tqdm=True, per_device_train_batch_size=8,
    )
    evaluated = kind not in ("grpo", "rloo")
    if evaluated:
        values.update(eval_strategy="steps", eval_steps=eval_steps, per_device_eval_batch_size=8)
    pairs = lambda texts: Dataset.from_dict({  # noqa: E731
        "prompt": [" ".join(line.split()[:3]) for line in texts],
        "chosen": [" good answer " + line for line in texts],
        "rejected": [" bad " + line[::-1] for line in texts],
    })
    kwargs: dict[str, Any] = {"model": str(assets["causal_lm"])}
    if kind in ("grpo", "rloo"):
        values.update(num_generations=4, max_completion_length=16, beta=0.1, learning_rate=1e-3,
                      generation_kwargs={"exponential_decay_length_penalty": (4, 1.6)})
        kwargs.update(reward_funcs=[reward_len, reward_letters], train_dataset=grpo_prompts(256, seed=1))
        config_cls, trainer_cls = (trl.GRPOConfig, trl.GRPOTrainer) if kind == "grpo" else \
            (trl.RLOOConfig, trl.RLOOTrainer)
    elif kind in ("dpo", "orpo", "cpo"):
        values.update(max_length=32)
        kwargs.update(train_dataset=pairs(lines), eval_dataset=pairs(held_out))
        if kind == "dpo":
            config_cls, trainer_cls = trl.DPOConfig, trl.DPOTrainer
        else:
            module = importlib.import_module(f"trl.experimental.{kind}")
            config_cls, trainer_cls = getattr(module, f"{kind.upper()}Config"), getattr(module, f"{kind.upper()}Trainer")
    elif kind == "kto":
        def unpaired(texts):
            rows = [(" ".join(line.split()[:3]), completion, label) for line in texts
                    for completion, label in ((" good answer " + line, True), (" bad " + line[::-1], False))]
            rows = [rows[(i * 37) % len(rows)] for i in range(len(rows))]
            return Dataset.from_dict({"prompt": [r[0] for r in rows], "completion": [r[1] for r in rows],
                                      "label": [r[2] for r in rows]})
        values.update(max_length=32)
        kwargs.update(train_dataset=unpaired(lines), eval_dataset=unpaired(held_out))
        config_cls, trainer_cls = trl.KTOConfig, trl.KTOTrainer
    elif kind == "sft":
        values.update(max_length=32)
        chat = lambda texts: Dataset.from_dict({"messages": [  # noqa: E731
            [{"role": "user", "content": line}, {"role": "assistant", "content": "yes " + line}] for line in texts]})
        kwargs.update(train_dataset=chat(lines), eval_dataset=chat(held_out))
        config_cls, trainer_cls = trl.SFTConfig, trl.SFTTrainer
    elif kind == "reward":
        values.update(max_length=32)
        preferences = lambda texts: Dataset.from_dict({  # noqa: E731
            "chosen": ["good answer " + line for line in texts], "rejected": ["bad " + line[::-1] for line in texts]})
        kwargs.update(model=str(assets["reward_model"]), train_dataset=preferences(lines),
                      eval_dataset=preferences(held_out))
        config_cls, trainer_cls = trl.RewardConfig, trl.RewardTrainer
    else:
        raise ValueError(kind)
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in values.items() if k in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = config_cls(output_dir=str(out_dir), **values)
        trainer = trainer_cls(args=args, processing_class=tokenizer, **kwargs)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer, values


def tiny_runs(kinds: Sequence[str], steps: int, eval_steps: int, tmp: Path) -> dict[str, dict[str, Any]]:
    """Train every kind once (cached as JSON in `tmp` for this run) and return its log history and timings."""
    import torch
    import transformers
    import trl

    from rldk_widget.demo_models import build_tiny_assets

    import datasets

    torch.set_num_threads(TORCH_THREADS)
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with contextlib.redirect_stderr(io.StringIO()):
        assets = build_tiny_assets(tmp / "assets")
    runs = {}
    for kind in kinds:
        cache = tmp / f"trl-{trl.__version__}_{kind}.json"
        if cache.exists():
            runs[kind] = json.loads(cache.read_text())
            continue
        started = time.perf_counter()
        trainer, values = tiny_trainer(kind, assets, tmp / f"out_{kind}", steps, eval_steps)
        built = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
        done = time.perf_counter()
        run = {
            "kind": kind, "source": "captured",
            "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__},
            "trainer_class": f"{type(trainer).__module__}.{type(trainer).__name__}",
            "config": {k: v for k, v in values.items() if k != "report_to"},
            "reward_funcs": [getattr(f, "__name__", str(f)) for f in getattr(trainer, "reward_funcs", [])] or None,
            "build_s": built - started, "train_s": done - built,
            "log_history": trainer.state.log_history,
        }
        cache.write_text(json.dumps(run))
        runs[kind] = run
        print(f"  tiny {kind}: {steps} steps in {done - built:.1f} s (+{built - started:.1f} s to build)", flush=True)
    return runs


def save_runs(runs: dict[str, dict[str, Any]], out_dir: Path) -> None:
    """Write the tiny runs as test fixtures: 5 significant digits, one log per line (tests/fixtures/alert_runs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, run in runs.items():
        meta = {k: v for k, v in run.items() if k not in ("log_history", "build_s", "train_s")}
        lines = [json.dumps({k: _round(v) for k, v in log.items()}, sort_keys=True) for log in run["log_history"]]
        text = json.dumps(meta, indent=1, sort_keys=True)[:-2] + ',\n "log_history": [\n' + ",\n".join(lines) + "\n ]\n}\n"
        path = out_dir / f"trl-{run['versions']['trl']}_{kind}.json"
        path.write_text(text)
        print(f"  wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def _round(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.5g}")
    return value


# ---- feeding the rules ------------------------------------------------------------------------------------------
class Mapper:
    """`synthetic_runs.records` with a cache per log object: an injected history shares its untouched logs with its
    base, so only the logs a fault changed are mapped again."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, dict[str, Any]]] = {}

    def records(self, history: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        from rldk_widget.trl_keys import is_summary_log, log_record

        out = []
        for log in history:
            hit = self._cache.get(id(log))
            if hit is not None and hit[0] is log:
                out.append(hit[1])
                continue
            if is_summary_log(log):
                continue
            step = int(log["step"])
            record = log_record({k: v for k, v in log.items() if k != "step"}, step, kind, "eval", float(step))
            self._cache[id(log)] = (log, record)
            out.append(record)
        return out

    def forget(self) -> None:
        self._cache.clear()


def observe(records: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    from rldk_widget.alerts import AlertMonitor, AlertRules

    monitor = AlertMonitor(AlertRules.for_trainer(kind))
    return [alert for record in records for alert in monitor.observe(record)]


def train_steps(history: Sequence[dict[str, Any]]) -> list[int]:
    from rldk_widget.synthetic_runs import train_logs
    from rldk_widget.trl_keys import is_summary_log

    return [int(log["step"]) for log in train_logs(history) if not is_summary_log(log)]


# ---- injected faults --------------------------------------------------------------------------------------------
def run_case(mapper: Mapper, base: dict[str, Any], fault_name: str, size: float, onset_frac: float,
             split: str) -> dict[str, Any] | None:
    from rldk_widget.synthetic_runs import FAULTS, eval_logs, inject

    fault = FAULTS[fault_name]
    kind, history = base["kind"], base["history"]
    steps = train_steps(history)
    onset = steps[min(len(steps) - 1, max(20, int(onset_frac * len(steps))))]
    duration = LASTING_STEPS if fault.lasting else None
    if fault.name == "nan_logps":
        duration = 10
    injected = inject(history, fault.name, onset, size, duration=duration, kind=kind, seed=base["seed"])
    records = mapper.records(injected, kind)
    alerts = observe(records, kind)
    naming = [a for a in alerts if a["type"] in fault.expected]
    if fault.evaluation:
        evals = [int(log["step"]) for log in eval_logs(history) if int(log["step"]) >= onset]
        if len(evals) < DETECT_WITHIN_EVALS:
            return None
        deadline = evals[DETECT_WITHIN_EVALS - 1]
    else:
        deadline = onset + DETECT_WITHIN_STEPS
    end = onset + (duration or 1) - 1
    hits = [a for a in naming if onset <= a["step"] <= deadline]
    onset_record = next((r for r in records if r["step"] == onset and not any(k.startswith("eval_") for k in r)), {})
    below = fault.under_floor(onset_record, kind)
    full = fault.lasting and duration == LASTING_STEPS and end <= steps[-1]
    return {
        "split": split, "source": base["source"], "kind": kind, "seed": base["seed"], "fault": fault.name,
        "size": size, "onset": onset, "detected": bool(hits), "below_floor": bool(below),
        "latency": (hits[0]["step"] - onset) if hits else None,
        "latency_evals": (sum(1 for s in evals if s <= hits[0]["step"]) if hits and fault.evaluation else None),
        "during": len([a for a in alerts if a["type"] == primary_rule(fault) and onset <= a["step"] <= end])
        if full else None,
        "during_any": len([a for a in alerts if onset <= a["step"] <= end]) if full else None,
        "before_onset": len([a for a in naming if a["step"] < onset]),
        "severity": hits[0]["severity"] if hits else None,
        "missed_with": None if hits else [(a["step"], a["type"]) for a in alerts if a["step"] >= onset][:3],
    }


def injected_cases(mapper: Mapper, bases: list[dict[str, Any]], split: str, onsets: Sequence[float],
                   which_sizes: str) -> list[dict[str, Any]]:
    from rldk_widget.synthetic_runs import FAULTS

    cases = []
    for base in bases:
        for fault in FAULTS.values():
            if not fault.applies(base["kind"], base["history"]):
                continue
            sizes = {"train": fault.train_sizes, "test": fault.test_sizes,
                     "all": tuple(dict.fromkeys(fault.train_sizes + fault.test_sizes))}[which_sizes]
            for size in sizes:
                for onset in onsets:
                    case = run_case(mapper, base, fault.name, size, onset, split)
                    if case is not None:
                        cases.append(case)
        mapper.forget()
    return cases


# ---- the issue's patterns ---------------------------------------------------------------------------------------
def issue_patterns(seeds: Sequence[int]) -> list[dict[str, Any]]:
    from rldk_widget.synthetic_runs import ISSUE_PATTERNS, records

    results = []
    for pattern in ISSUE_PATTERNS.values():
        failures = []
        for seed in seeds:
            alerts = observe(records(pattern.build(seed), pattern.kind), pattern.kind)
            problems = pattern.check(alerts)
            if problems:
                failures.append({"seed": seed, "problems": problems[:3]})
        results.append({"pattern": pattern.name, "description": pattern.description, "kind": pattern.kind,
                        "seeds": len(seeds), "passed": len(seeds) - len(failures), "failures": failures})
    return results


# ---- report -----------------------------------------------------------------------------------------------------
def rate(cases: Sequence[dict[str, Any]]) -> tuple[int, int]:
    counted = [case for case in cases if not case["below_floor"]]
    return sum(case["detected"] for case in counted), len(counted)


def pct(hit: int, total: int) -> str:
    return f"{hit / total:.1%} ({hit}/{total})" if total else "-"


def per_1k(alerts: int, steps: int) -> float:
    return 1000 * alerts / steps if steps else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--save-runs", type=Path, default=None,
                        help="also write the tiny TRL runs as fixtures into this folder (tests/fixtures/alert_runs)")
    args = parser.parse_args(argv)
    c.quiet_logging()
    os.environ.setdefault("WANDB_DISABLED", "true")
    cfg = QUICK if args.quick else FULL
    started = c.now()
    print(f"{NAME}: {'quick smoke run' if args.quick else 'full run'}; {c.load_note()}", flush=True)

    from rldk_widget.alerts import RULE_TYPES
    from rldk_widget.synthetic_runs import FAULTS, KINDS, healthy_run, records

    mapper = Mapper()
    tables: list[c.Table] = []
    checks = c.Checks()
    data: dict[str, Any] = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}

    # 1. real tiny-model runs, healthy
    with c.temp_dir("alert_eval") as tmp:
        t = c.now()
        runs = tiny_runs(cfg["tiny_kinds"], cfg["tiny_steps"], cfg["tiny_eval_steps"], tmp)
        tiny_seconds = c.now() - t
        if args.save_runs is not None:
            save_runs(runs, args.save_runs)
    healthy_alerts: dict[str, collections.Counter] = {"tiny": collections.Counter(), "synthetic": collections.Counter()}
    healthy_steps = {"tiny": 0, "synthetic": 0}
    tiny_table = c.Table("Real tiny-model TRL 1.16 runs, healthy (every alert is a false alarm)",
                         ["kind", "train steps", "evaluations", "train time", "what it looks like", "alerts"])
    tiny_bases = []
    for kind, run in runs.items():
        history = [log for log in run["log_history"] if "train_runtime" not in log]
        alerts = observe(mapper.records(history, kind), kind)
        steps = len(train_steps(history))
        evals = sum(1 for log in history if any(k.startswith("eval_") for k in log))
        healthy_steps["tiny"] += steps
        healthy_alerts["tiny"].update(a["type"] for a in alerts)
        tiny_table.add(kind, steps, evals, c.fmt_time(run["train_s"]), describe(history),
                       ", ".join(f"{a['type']}@{a['step']}" for a in alerts) or "none")
        tiny_bases.append({"source": "tiny TRL 1.16", "kind": kind, "seed": TINY_SEED, "history": history})
        data.setdefault("tiny_runs", {})[kind] = {"steps": steps, "evaluations": evals, "train_s": run["train_s"],
                                                   "alerts": alerts, "config": run["config"]}
    tiny_table.note("GRPO / RLOO: rewards reward_len + reward_letters (dense), 8 completions per step (2 prompts x 4), "
                    "max_completion_length 16 with exponential_decay_length_penalty=(4, 1.6) so that completions end; "
                    "the supervised kinds: 2,000 training lines (< 1 epoch), 32 held-out lines evaluated every "
                    f"{cfg['tiny_eval_steps']} steps; lr {5e-4:g} (GRPO / RLOO 1e-3), warm-up, cosine decay. Made "
                    "healthy this way, every rule counts in their false alarms (none is left out).")
    tables.append(tiny_table)
    mapper.forget()

    # 2. long synthetic healthy runs
    synthetic_kinds = cfg["synthetic_kinds"] or KINDS
    synthetic_table = c.Table(f"Synthetic healthy runs, {cfg['synthetic_steps']:,} steps each (every alert is a false alarm)",
                              ["kind", "seeds", "train steps", "evaluations", "alerts (type: count)", "per 1k steps"])
    t = c.now()
    for kind in synthetic_kinds:
        counts: collections.Counter = collections.Counter()
        steps = evals = 0
        for seed in cfg["synthetic_seeds"]:
            history = healthy_run(kind, cfg["synthetic_steps"], seed)
            alerts = observe(records(history, kind), kind)
            counts.update(a["type"] for a in alerts)
            steps += len(train_steps(history))
            evals += sum(1 for log in history if "eval_loss" in log)
        healthy_steps["synthetic"] += steps
        healthy_alerts["synthetic"].update(counts)
        synthetic_table.add(kind, len(cfg["synthetic_seeds"]), f"{steps:,}", evals,
                            ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none",
                            f"{per_1k(sum(counts.values()), steps):.2f}")
    synthetic_seconds = c.now() - t
    tables.append(synthetic_table)

    # 3. injected faults
    t = c.now()
    tune_bases = [{"source": "synthetic", "kind": kind, "seed": seed, "history": healthy_run(kind, cfg["inject_steps"], seed)}
                  for kind in KINDS for seed in cfg["tune_seeds"]]
    test_bases = [{"source": "synthetic", "kind": kind, "seed": seed, "history": healthy_run(kind, cfg["inject_steps"], seed)}
                  for kind in KINDS for seed in cfg["test_seeds"]]
    cases = injected_cases(mapper, tune_bases, "tuning", cfg["tune_onsets"], "train")
    cases += injected_cases(mapper, test_bases, "held-out", cfg["test_onsets"], "test")
    cases += injected_cases(mapper, tiny_bases, "tiny TRL runs", cfg["test_onsets"], "all")
    boundary = []
    for base in test_bases:
        for name, (sizes, _) in BOUNDARY.items():
            if FAULTS[name].applies(base["kind"], base["history"]):
                for size in sizes:
                    boundary += [case for onset in cfg["test_onsets"]
                                 if (case := run_case(mapper, base, name, size, onset, "boundary")) is not None]
        mapper.forget()
    inject_seconds = c.now() - t
    data["cases"] = summarize(cases)
    data["misses"] = [x for x in cases if not x["detected"] and not x["below_floor"]]

    # 4. the issue's patterns
    t = c.now()
    patterns = issue_patterns(cfg["pattern_seeds"])
    pattern_seconds = c.now() - t
    data["patterns"] = patterns

    # per-rule table
    rule_table = c.Table(
        "Per rule: detection within 5 steps of onset (2 evaluations for eval_divergence), false alarms per 1k healthy "
        "steps, most alerts for one condition lasting 100 steps",
        ["rule", "severity", "faults", "held-out (synthetic)", "tiny TRL runs", "tuning split", "median delay",
         "under floor (silent)", "FA/1k tiny", "FA/1k synthetic", "max alerts/100 steps", "verdict"])
    by_rule: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for case in cases:
        by_rule[primary_rule(FAULTS[case["fault"]])].append(case)
    for rule in RULE_TYPES:
        mine = by_rule.get(rule, [])
        splits = {split: rate([x for x in mine if x["split"] == split]) for split in ("held-out", "tiny TRL runs", "tuning")}
        delays = [x["latency"] for x in mine if x["detected"]]
        during = [x["during"] for x in mine if x["during"] is not None]
        during_any = [x["during_any"] for x in mine if x["during_any"] is not None]
        below = [x for x in mine if x["below_floor"]]
        below_silent = sum(1 for x in below if not x["detected"])
        fa_tiny = per_1k(healthy_alerts["tiny"][rule], healthy_steps["tiny"])
        fa_syn = per_1k(healthy_alerts["synthetic"][rule], healthy_steps["synthetic"])
        held, tiny = splits["held-out"], splits["tiny TRL runs"]
        ok = all(h / n >= TARGET_DETECTION for h, n in (held, tiny) if n) and fa_tiny <= TARGET_FALSE_ALARMS_PER_1K \
            and fa_syn <= TARGET_FALSE_ALARMS_PER_1K and max(during, default=0) <= TARGET_ALERTS_PER_CONDITION
        severities = sorted({x["severity"] for x in mine if x["severity"]})
        rule_table.add(rule, "/".join(severities) or "-", ", ".join(sorted({x["fault"] for x in mine})) or "-",
                       pct(*held), pct(*tiny), pct(*splits["tuning"]),
                       f"{statistics.median(delays):g} steps" if delays else "-",
                       f"{below_silent}/{len(below)}" if below else "-", f"{fa_tiny:.2f}", f"{fa_syn:.2f}",
                       f"{max(during)} ({max(during_any)} of any type)" if during else "-",
                       "PASS" if ok else ("MISS" if mine else "no faults"))
    rule_table.note("Evaluation-based rule: delay in steps here; its detection allows 2 evaluations. 'under floor': "
                    "injected spikes whose value stayed under the rule's absolute floor (kl_spike_min, grad_norm_floor), "
                    "silent by design / all such cases; they are not in the detection rate.")
    rule_table.note("max alerts/100 steps: the rule's own alerts during a fault that lasts 100 steps (onset and at most "
                    "one escalation); in brackets every alert of any rule in those steps (one fault can meet several "
                    "rules: a KL jump is a spike, a high KL and, with the reward rising, possible hacking).")
    rule_table.note("Synthetic healthy steps: "
                    f"{healthy_steps['synthetic']:,}; tiny TRL healthy steps: {healthy_steps['tiny']:,} (too few to "
                    "resolve 1 alert per 1k steps on their own: one alert there is "
                    f"{per_1k(1, healthy_steps['tiny']):.1f}/1k).")
    tables.append(rule_table)

    fault_table = c.Table("Per fault and source: detected / injected (sizes; onsets at "
                          f"{', '.join(f'{o:.0%}' for o in cfg['tune_onsets'])} of the run for tuning, "
                          f"{', '.join(f'{o:.0%}' for o in cfg['test_onsets'])} otherwise)",
                          ["fault", "what is injected", "tuning", "held-out", "tiny TRL runs", "sizes (tuning / held-out)",
                           "missed cases (first 2)"])
    for fault in FAULTS.values():
        mine = [x for x in cases if x["fault"] == fault.name]
        if not mine:
            continue
        misses = [x for x in mine if not x["detected"] and not x["below_floor"]]
        fault_table.add(fault.name, fault.description, *(pct(*rate([x for x in mine if x["split"] == s]))
                                                         for s in ("tuning", "held-out", "tiny TRL runs")),
                        f"{'/'.join(f'{v:g}' for v in fault.train_sizes)} / {'/'.join(f'{v:g}' for v in fault.test_sizes)}",
                        "; ".join(f"{x['kind']} s{x['seed']} size {x['size']:g} @{x['onset']}: "
                                  f"{x['missed_with'] or 'nothing'}" for x in misses[:2]) or "-")
    tables.append(fault_table)

    boundary_table = c.Table("Near the thresholds (held-out synthetic runs; not in the targets): detected / injected "
                             "per size. Under a rule's threshold it stays silent by design",
                             ["fault", "the rule's condition", "per size"])
    for name, (sizes, condition) in BOUNDARY.items():
        mine = [x for x in boundary if x["fault"] == name]
        if mine:
            boundary_table.add(name, condition, "; ".join(
                f"{size:g}: {pct(*rate([x for x in mine if x['size'] == size]))}" for size in sizes))
    tables.append(boundary_table)
    data["boundary"] = summarize(boundary)

    pattern_table = c.Table("The issue's patterns (synthetic histories): handled as the issue says, per seed",
                            ["pattern", "what", "seeds passed", "first problem"])
    for result in patterns:
        first = result["failures"][0]["problems"][0][:160] if result["failures"] else "-"
        pattern_table.add(result["pattern"], result["description"], f"{result['passed']}/{result['seeds']}", first)
    tables.append(pattern_table)

    # targets
    def detection(split: str) -> tuple[int, int]:
        return rate([x for x in cases if x["split"] == split])

    for split, label in (("held-out", "held-out synthetic onsets / sizes / seeds"), ("tiny TRL runs", "real tiny TRL runs"),
                         ("tuning", "tuning split")):
        hit, total = detection(split)
        checks.add(f"injected faults detected in time, {label}", hit / total if total else 0.0, TARGET_DETECTION, "",
                   higher_is_better=True, shown=pct(hit, total))
    for source, label in (("tiny", "real tiny TRL runs"), ("synthetic", f"synthetic {cfg['synthetic_steps']:,}-step runs")):
        alerts = sum(healthy_alerts[source].values())
        checks.add(f"false alarms per 1k healthy steps, {label}", per_1k(alerts, healthy_steps[source]),
                   TARGET_FALSE_ALARMS_PER_1K, "", shown=f"{per_1k(alerts, healthy_steps[source]):.2f} ({alerts} in "
                   f"{healthy_steps[source]:,} steps)")
    during = [x["during"] for x in cases if x["during"] is not None]
    checks.add("most alerts of a rule for one condition lasting 100 steps", max(during, default=0),
               TARGET_ALERTS_PER_CONDITION, "", shown=f"{max(during, default=0)} (over {len(during)} lasting faults)")
    passed = sum(r["passed"] for r in patterns)
    total = sum(r["seeds"] for r in patterns)
    checks.add("issue patterns handled as the issue says (pattern x seed)", passed / total if total else 0.0, 1.0, "",
               higher_is_better=True, shown=pct(passed, total))

    timing = c.Table("Run time", ["part", "seconds"])
    for part, seconds in (("tiny TRL runs (train)", tiny_seconds), ("synthetic healthy runs", synthetic_seconds),
                          ("injected faults", inject_seconds), ("issue patterns", pattern_seconds)):
        timing.add(part, f"{seconds:.1f}")
    timing.note(f"{len(cases)} injected runs; cases per split: "
                + ", ".join(f"{k} {v}" for k, v in collections.Counter(x['split'] for x in cases).items()))
    tables.append(timing)
    data["healthy"] = {source: {"steps": healthy_steps[source], "alerts": dict(healthy_alerts[source])}
                       for source in healthy_steps}
    c.write_results(NAME, args, tables, checks, data, started)
    return 0


def summarize(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases per (split, source, kind, fault, size): counts, under-floor cases, delays, alerts while lasting."""
    groups: dict[tuple, list[dict[str, Any]]] = collections.defaultdict(list)
    for case in cases:
        groups[(case["split"], case["source"], case["kind"], case["fault"], case["size"])].append(case)
    out = []
    for (split, source, kind, fault, size), mine in groups.items():
        delays = [x["latency"] for x in mine if x["detected"]]
        during = [x["during"] for x in mine if x["during"] is not None]
        out.append({"split": split, "source": source, "kind": kind, "fault": fault, "size": size, "cases": len(mine),
                    "detected": sum(x["detected"] for x in mine), "below_floor": sum(x["below_floor"] for x in mine),
                    "max_delay": max(delays, default=None), "max_during": max(during, default=None),
                    "alerts_before_onset": sum(x["before_onset"] for x in mine)})
    return out


def primary_rule(fault) -> str:
    """The rule a fault is meant for (the first of its expected types in RULE_TYPES order)."""
    from rldk_widget.alerts import RULE_TYPES

    named = {"reward_hacking": "reward_hacking", "nan_logps": "nonfinite"}
    return named.get(fault.name) or next(rule for rule in RULE_TYPES if rule in fault.expected)


def describe(history: Sequence[dict[str, Any]]) -> str:
    """A few medians that say whether the tiny run is healthy (the keys it has)."""
    logs = [log for log in history if "loss" in log and "train_runtime" not in log]
    parts = []
    for key, label in (("completions/clipped_ratio", "clipped"), ("frac_reward_zero_std", "zero-std groups"),
                       ("completions/mean_length", "length"), ("reward", "reward"), ("rewards/margins", "margins"),
                       ("loss", "loss"), ("grad_norm", "grad norm")):
        values = [float(log[key]) for log in logs if isinstance(log.get(key), (int, float))]
        if len(values) >= 4:
            q = len(values) // 4
            parts.append(f"{label} {statistics.median(values[:q]):.3g}->{statistics.median(values[-q:]):.3g}")
    evals = [float(log["eval_loss"]) for log in history if isinstance(log.get("eval_loss"), (int, float))]
    if evals:
        parts.append(f"eval_loss {evals[0]:.3g}->{min(evals):.3g} (last {evals[-1]:.3g})")
    return "; ".join(parts[:5])


if __name__ == "__main__":
    sys.exit(main())
