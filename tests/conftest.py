"""Fixtures: every test is checked for dashboards left open and rldk threads left running (`no_rldk_leftovers`);
`dashboards` makes dashboards that are closed however the test ends; tiny offline models (the tokenizer and Llama
models of `rldk_widget.demo_models`, built locally, no hub access) and TRL trainers over them."""

from __future__ import annotations

import os
import threading
import weakref

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

from pathlib import Path

import pytest

from helpers import wait_until

from rldk_widget.demo_models import (  # tests/capture_trl_logs.py imports build_tiny_assets from here
    build_tiny_assets,
    grpo_prompts,
    reward_len,
    reward_words,
    synthetic_lines,
)


LINGERING_THREADS = ("rldk-callback-writes",)
"""rldk threads that may outlive a test: an RLDKCallback has no close() (a trainer may call train() again), so its
writer thread ends within a minute of the callback being dropped, by design. Every other rldk thread must be gone
once the dashboards that started it are closed."""


@pytest.fixture(autouse=True)
def own_summary_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own runs-summary cache (run_summary.SummaryCache), never the user's."""
    monkeypatch.setenv("RLDK_WIDGET_CACHE_DIR", str(tmp_path_factory.mktemp("summary-cache")))


@pytest.fixture(autouse=True)
def no_rldk_leftovers(monkeypatch):
    """Fail a test that leaves an RLDKDashboard open or an rldk thread running (after closing what it left, so the
    next test starts clean). A dashboard that is not closed is never collected (ipywidgets keeps every open widget)
    and keeps its threads: close dashboards in `finally`, or make them with the `dashboards` fixture."""
    from rldk_widget import RLDKDashboard

    before = set(threading.enumerate())
    created: list[weakref.ref] = []
    init = RLDKDashboard.__init__

    def tracking_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        created.append(weakref.ref(self))

    monkeypatch.setattr(RLDKDashboard, "__init__", tracking_init)
    yield
    monkeypatch.setattr(RLDKDashboard, "__init__", init)
    left_open = [dash for dash in (ref() for ref in created) if dash is not None and dash.comm is not None]
    for dash in left_open:
        dash.close()

    def running() -> list[str]:
        return [
            thread.name for thread in threading.enumerate()
            if thread not in before and thread.is_alive() and thread.name.startswith("rldk-")
            and not thread.name.startswith(LINGERING_THREADS)
        ]

    try:
        wait_until(lambda: not running(), timeout=10, what="rldk threads to end")
    except TimeoutError:
        pass
    problems = [f"{len(left_open)} RLDKDashboard(s) left open"] if left_open else []
    if running():
        problems.append(f"rldk threads still running 10 s after the test: {running()}")
    if problems:
        pytest.fail("; ".join(problems) + " (close dashboards in `finally` or use the `dashboards` fixture)")


@pytest.fixture
def dashboards():
    """`dashboards(output_dir, ...)` -> a new RLDKDashboard, `dashboards.from_dir(path, ...)` ->
    `RLDKDashboard.from_dir(path, ...)` (auto_refresh off unless asked for), closed after the test however it ends."""
    from rldk_widget import RLDKDashboard

    made: list[RLDKDashboard] = []

    def make(*args, **kwargs) -> RLDKDashboard:
        kwargs.setdefault("auto_refresh", False)
        made.append(RLDKDashboard(*args, **kwargs))
        return made[-1]

    def from_dir(path, **kwargs) -> RLDKDashboard:
        kwargs.setdefault("auto_refresh", False)
        made.append(RLDKDashboard.from_dir(path, **kwargs))
        return made[-1]

    make.from_dir = from_dir
    yield make
    for dash in made:
        dash.close()


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, Path]:
    """Directories of the tiny tokenizer, causal LM and reward model (built once per session)."""
    return build_tiny_assets(tmp_path_factory.mktemp("tiny_assets"))


@pytest.fixture(scope="session")
def make_trainer(tiny_assets):
    """`make_trainer(kind, output_dir, callbacks=(), max_steps=6, **config_overrides)` on the tiny assets."""

    def make(kind: str, output_dir: Path, **kwargs):
        return build_trainer(kind, tiny_assets, output_dir, **kwargs)

    return make


def build_trainer(kind: str, assets: dict[str, Path], output_dir: Path, callbacks=(), max_steps: int = 6, **overrides):
    """A TRL 1.16 trainer of `kind` (grpo, rloo, dpo, sft, reward) on the tiny assets, CPU, fp32."""
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets["tokenizer"])
    lines = synthetic_lines(64, seed=1)
    common = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    if kind in ("grpo", "rloo"):
        reward_funcs = overrides.pop("reward_funcs", [reward_len, reward_words])
        config_cls, trainer_cls = (
            (trl.GRPOConfig, trl.GRPOTrainer) if kind == "grpo" else (trl.RLOOConfig, trl.RLOOTrainer)
        )
        args = config_cls(
            **{
                **common,
                "per_device_train_batch_size": 4,
                "num_generations": 2,
                "max_completion_length": 8,
                "beta": 0.1,
                **overrides,
            }
        )
        dataset = grpo_prompts(64, seed=1)
        return trainer_cls(
            model=str(assets["causal_lm"]),
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    if kind == "dpo":
        args = trl.DPOConfig(**{**common, "per_device_train_batch_size": 4, "max_length": 32, **overrides})
        dataset = Dataset.from_dict(
            {
                "prompt": [" ".join(line.split()[:3]) for line in lines],
                "chosen": [" good answer " + line for line in lines],
                "rejected": [" bad " + line[::-1] for line in lines],
            }
        )
        return trl.DPOTrainer(
            model=str(assets["causal_lm"]),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    if kind == "sft":
        args = trl.SFTConfig(**{**common, "per_device_train_batch_size": 4, "max_length": 32, **overrides})
        dataset = Dataset.from_dict(
            {
                "messages": [
                    [{"role": "user", "content": line}, {"role": "assistant", "content": "yes " + line}]
                    for line in lines
                ]
            }
        )
        eval_dataset = dataset.select(range(8)) if args.eval_strategy != "no" else None
        return trl.SFTTrainer(
            model=str(assets["causal_lm"]),
            args=args,
            train_dataset=dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    if kind == "reward":
        args = trl.RewardConfig(**{**common, "per_device_train_batch_size": 4, "max_length": 32, **overrides})
        dataset = Dataset.from_dict(
            {"chosen": ["good answer " + line for line in lines], "rejected": ["bad " + line[::-1] for line in lines]}
        )
        return trl.RewardTrainer(
            model=str(assets["reward_model"]),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    raise ValueError(f"unknown trainer kind {kind!r}")
