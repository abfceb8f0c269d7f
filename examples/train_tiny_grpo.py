"""A training job to monitor from disk: tiny GRPO on CPU with a headless `RLDKCallback` writing the run files.

It stands in for a real job running in another process (a terminal, a scheduler, another notebook): the
callback appends every log and alert to `{output_dir}/{run_id}_metrics.json` / `_alerts.json`, and any
`RLDKDashboard(output_dir=..., run_id=None)` shows them live (notebooks/monitor_from_disk.ipynb).

    python examples/train_tiny_grpo.py --output-dir rldk_logs/from_disk --run-id tiny_grpo --steps 20
    python examples/train_tiny_grpo.py --output-dir rldk_logs/from_disk --synthetic   # fake GRPO logs, no model

The model, tokenizer and prompts are built locally (`rldk_widget.demo_models`): nothing is downloaded.
`--synthetic` drives the same callback with made-up GRPO logs (KL rising past the alert threshold), in a few
seconds. SIGTERM / Ctrl-C stop the job cleanly: the files keep every record written so far.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="./rldk_logs", help="folder of the RLDK run files")
    parser.add_argument("--run-id", default="tiny_grpo", help="run id (file-name stem) of this run")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (one log each)")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", action="store_true", help="write made-up GRPO logs instead of training")
    parser.add_argument("--step-delay", type=float, default=0.2, help="seconds between synthetic steps")
    return parser.parse_args(argv)


def train_grpo(args: argparse.Namespace, callback) -> None:
    """Real GRPO with TRL on the tiny offline model, `callback` attached."""
    import torch
    from transformers import AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from rldk_widget.demo_models import build_tiny_assets, grpo_prompts, reward_len, reward_words

    torch.set_num_threads(1)  # a model this small trains fastest on one thread (and leaves the other cores free)
    with tempfile.TemporaryDirectory(prefix="tiny_grpo_") as work:
        paths = build_tiny_assets(Path(work) / "model", seed=args.seed)
        config = GRPOConfig(
            output_dir=str(Path(work) / "trainer"),
            max_steps=args.steps,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=4,
            num_generations=2,
            max_completion_length=8,
            beta=0.1,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = GRPOTrainer(
            model=str(paths["causal_lm"]),
            reward_funcs=[reward_len, reward_words],
            args=config,
            train_dataset=grpo_prompts(),
            processing_class=AutoTokenizer.from_pretrained(paths["tokenizer"]),
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # the dashboard shows the logs; keep stdout short
        trainer.train()


def write_synthetic(args: argparse.Namespace, callback) -> None:
    """Drive `callback` through the transformers callback API with GRPO-style logs, as a trainer would."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="tiny_grpo_") as work:
        training_args = TrainingArguments(output_dir=work, report_to=[])
        state, control = TrainerState(), TrainerControl()
        state.max_steps = args.steps
        callback.on_train_begin(training_args, state, control)
        for step in range(1, args.steps + 1):
            state.global_step = step
            progress = step / args.steps
            logs = {
                "loss": 0.01 + 0.02 * progress + rng.gauss(0, 0.002),
                "grad_norm": abs(rng.gauss(0.8, 0.1)),
                "learning_rate": args.learning_rate * (1 - progress),
                "reward": -0.3 + 0.3 * progress + rng.gauss(0, 0.03),
                "reward_std": 0.25,
                "frac_reward_zero_std": 0.1,
                "kl": 0.3 * progress**2,  # crosses the 0.2 KL alert threshold at ~80% of the run
                "entropy": 5.9 - progress + rng.gauss(0, 0.02),
                "completions/mean_length": 8.0,
                "step_time": args.step_delay,
            }
            callback.on_log(training_args, state, control, logs=logs)
            time.sleep(args.step_delay)
        callback.on_train_end(training_args, state, control)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (Popen.terminate) unwinds like Ctrl-C: temp folders are removed, written records stay.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    from rldk_widget import RLDKCallback

    callback = RLDKCallback(output_dir=args.output_dir, run_id=args.run_id)
    started = time.perf_counter()
    (write_synthetic if args.synthetic else train_grpo)(args, callback)
    elapsed = time.perf_counter() - started
    print(f"{args.run_id}: {args.steps} steps in {elapsed:.1f}s -> {Path(args.output_dir).resolve()}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
