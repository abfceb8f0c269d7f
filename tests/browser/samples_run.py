"""Kernel-side code of the Samples tab's browser test and screenshots (imported by the notebook's cells, so it runs
in the kernel): a real tiny-Llama GRPO run trained in a background thread with `dash.callback(trainer=trainer)` and
`log_completions=True`, and hostile samples appended to the same run's samples file the way the callback appends
its own (`samples.batch_records` → `RunStore.append("samples", ...)`), since a tiny model's completions are never
hostile by themselves.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

IMG = '<img src=x onerror="window.__pwned=1">'
HOSTILE_PROMPT = "Reply with markup: <b>bold</b> <script>window.__pwned=2</script>"
MEGABYTE = 1 << 20
HOSTILE_COMPLETIONS = [
    IMG,
    "\u202eevil.exe\u202c and zero\u200bwidth\u200d joiners, a NUL \x00 here and \x1b[31mANSI red\x1b[0m",
    "# markdown *heading*\n```js\nalert(1)\n```\n<script>window.__pwned=3</script>",
    "A" * MEGABYTE,  # 1 MB with no space to break at: it must wrap or scroll inside its cell
]
HOSTILE_STEPS = (2, 4)
"""Steps the hostile group is appended at by default (the same prompt each time: one prompt across steps)."""


def append_hostile(output_dir: str | Path, run_id: str, step: int) -> None:
    """Append one hostile prompt group at `step` to `run_id`'s samples file, as the callback writes its batches."""
    from rldk_widget.samples import RawBatch, SampleSettings, batch_records
    from rldk_widget.store import RunStore

    n = len(HOSTILE_COMPLETIONS)
    rewards = {"reward_len": [-1.0, -0.5, 0.25, -40.0 - step], "reward_words": [0.0, 0.5, 0.5, 0.0]}
    batch = RawBatch(
        step=step,
        prompts=[HOSTILE_PROMPT] * n,
        completions=[text if i else text + f" (step {step})" for i, text in enumerate(HOSTILE_COMPLETIONS)],
        rewards=rewards,
        advantages=[0.9 + step / 100, 0.3 - step / 100, 0.1 * step, -1.3 - step / 100],  # distinct per step
        max_completion_length=8,
        clipped_ratio=1.0,
    )
    settings = SampleSettings(text_cap_bytes=2 * MEGABYTE)  # the 1 MB text stays whole
    RunStore(output_dir, run_id).append("samples", batch_records(batch, settings, run_id, time.time()))


def make_trainer(work: Path, output_dir: Path, run_id: str, dash: Any, max_steps: int, step_delay: float = 0.0,
                 hostile_steps: tuple[int, ...] = HOSTILE_STEPS, prompts: int = 4, **config: Any) -> Any:
    """A tiny-Llama GRPO trainer logging every step with `dash.callback(trainer=trainer)` attached, over `prompts`
    prompts (four: each comes back every two steps), the hostile group appended after the log of each of
    `hostile_steps`, and `step_delay` seconds slept per step (a run long enough to click around in); `config`
    overrides GRPOConfig fields."""
    import torch
    import transformers
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rldk_widget.demo_models import build_tiny_assets, grpo_prompts, reward_len, reward_words

    torch.set_num_threads(1)
    transformers.logging.disable_progress_bar()
    paths = build_tiny_assets(work / "model")

    class Hostile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.global_step in hostile_steps and "train_runtime" not in (logs or {}):
                append_hostile(output_dir, run_id, state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if step_delay:
                time.sleep(step_delay)

    settings = {
        "output_dir": str(work / "trainer"),
        "max_steps": max_steps,
        "learning_rate": 1e-2,
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 8,
        "beta": 0.1,
        "logging_steps": 1,
        "log_completions": True,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "seed": 0,
        "disable_tqdm": True,
    }
    config = GRPOConfig(**{**settings, **config})
    trainer = GRPOTrainer(
        model=str(paths["causal_lm"]),
        reward_funcs=[reward_len, reward_words],
        args=config,
        train_dataset=grpo_prompts(prompts, seed=3),
        processing_class=AutoTokenizer.from_pretrained(paths["tokenizer"]),
    )
    trainer.add_callback(dash.callback(trainer=trainer))
    trainer.add_callback(Hostile())
    trainer.remove_callback(PrinterCallback)
    return trainer


def train_in_background(trainer: Any) -> threading.Thread:
    """trainer.train() in a thread of the kernel (the cell returns; the dashboard updates while it trains)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            trainer.train()
        except BaseException as err:  # noqa: BLE001 - reported by the test's next cell
            errors.append(err)

    thread = threading.Thread(target=run, name="tiny-grpo-train", daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread
