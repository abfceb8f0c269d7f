"""Run TRL trainers for a few steps on the tiny offline model and record the exact keys (and logs) they write.

Usage:
    python tests/capture_trl_logs.py [KIND ...] > keys.json              # the keys only, as JSON on stdout
    python tests/capture_trl_logs.py --fixtures tests/fixtures/trl_logs [KIND ...]

KINDs: grpo rloo dpo sft reward orpo kto cpo (default: those the installed TRL has). With --fixtures each run is
written to `DIR/trl-<version>_<kind>.json`: the versions it ran with, the trainer and config classes, the
non-default config values, the keys of each part (train / eval / summary) and the whole `log_history`.
`tests/test_trl_fixtures.py` checks `rldk_widget.trl_keys` against every fixture.

It runs with the project's venv (TRL 1.16: ORPO and CPO from `trl.experimental`, KTO from `trl`) and with
early-2025 TRL in a throwaway venv, e.g.

    python -m venv /work/venvs/trl015 && /work/venvs/trl015/bin/pip install torch==2.13.0
    /work/venvs/trl015/bin/pip install trl==0.15.2 transformers==4.49.0 datasets==3.3.2 accelerate==1.4.0 torch==2.13.0
    /work/venvs/trl015/bin/python tests/capture_trl_logs.py --fixtures tests/fixtures/trl_logs grpo dpo orpo kto cpo

so it needs neither pytest nor the rldk_widget package: `rldk_widget/demo_models.py` is loaded from its file.
The trainer settings are those of `tests/conftest.py::build_trainer` (which the training tests use), plus an
evaluation every 2 steps for SFT and GRPO (TRL >= 0.15), so that the `eval_*` keys are captured too. TRL 0.14 and
0.15 need a model object for ORPO / CPO / KTO / Reward, and TRL 0.14 a tokenizer without token_type_ids (below).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("grpo", "rloo", "dpo", "sft", "reward", "orpo", "kto", "cpo")
STEPS = 4
EVAL_STEPS = 2


def _demo_models():
    """rldk_widget/demo_models.py as a module of its own (no import of the package, its widget dependencies)."""
    spec = importlib.util.spec_from_file_location("rldk_demo_models", ROOT / "rldk_widget" / "demo_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _demo_models()


def trainer_classes(kind: str) -> tuple[type, type] | None:
    """(Config, Trainer) of `kind` in the installed TRL: the top-level names, else `trl.experimental.<kind>`
    (ORPO and CPO in TRL 1.x); None when this TRL has no such trainer."""
    import trl

    name = {"grpo": "GRPO", "rloo": "RLOO", "dpo": "DPO", "sft": "SFT", "reward": "Reward", "orpo": "ORPO",
            "kto": "KTO", "cpo": "CPO"}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(trl, f"{name}Config"), getattr(trl, f"{name}Trainer")
        except (AttributeError, ImportError):
            pass
        try:
            module = importlib.import_module(f"trl.experimental.{kind}")
            return getattr(module, f"{name}Config"), getattr(module, f"{name}Trainer")
        except (AttributeError, ImportError):
            return None


def _supported(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` without the fields this version's config does not have (e.g. GRPO's `beta` is there since 0.14)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    dropped = sorted(set(values) - names)
    if dropped:
        print(f"capture: {config_cls.__name__} has no {dropped}; not set", file=sys.stderr)
    return {k: v for k, v in values.items() if k in names}


def build(kind: str, assets: dict[str, Path], output_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The trainer of `kind` on the tiny assets, CPU, fp32, and the config values set (for the fixture)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    classes = trainer_classes(kind)
    if classes is None:
        raise SystemExit(f"this TRL has no {kind} trainer")
    config_cls, trainer_cls = classes
    tokenizer = AutoTokenizer.from_pretrained(assets["tokenizer"])
    # Like real chat-model tokenizers, return no token_type_ids: TRL 0.14's GRPOTrainer passes the whole tokenizer
    # output to generate(), which the tiny Llama refuses when token_type_ids are in it.
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    lines = demo.synthetic_lines(64, seed=1)
    values: dict[str, Any] = dict(
        max_steps=STEPS, logging_steps=1, learning_rate=1e-3, report_to=[], use_cpu=True, bf16=False,
        save_strategy="no", seed=0, dataloader_num_workers=0, disable_tqdm=True, per_device_train_batch_size=4,
    )
    common: dict[str, Any] = {"processing_class": tokenizer}
    if kind in ("grpo", "rloo"):
        values.update(num_generations=2, max_completion_length=8, beta=0.1)
        # GRPO evaluates since TRL 0.15 (its prediction_step); in 0.14 transformers' prediction_step gets GRPO's
        # list of prompts and fails, so there is nothing to capture.
        evaluate = kind == "grpo" and "prediction_step" in vars(trainer_cls)
        if evaluate:
            values.update(eval_strategy="steps", eval_steps=EVAL_STEPS, per_device_eval_batch_size=4)
        prompts = demo.grpo_prompts(64, seed=1)
        common.update(model=str(assets["causal_lm"]), reward_funcs=[demo.reward_len, demo.reward_words],
                      train_dataset=prompts)
        if evaluate:
            common["eval_dataset"] = prompts.select(range(8))
    elif kind in ("dpo", "orpo", "cpo"):
        values.update(max_length=32)
        if kind != "dpo":
            values.update(max_prompt_length=16)
        common.update(model=str(assets["causal_lm"]), train_dataset=Dataset.from_dict({
            "prompt": [" ".join(line.split()[:3]) for line in lines],
            "chosen": [" good answer " + line for line in lines],
            "rejected": [" bad " + line[::-1] for line in lines],
        }))
    elif kind == "kto":
        # Unpaired: a desirable and an undesirable completion per prompt, shuffled so batches mix both.
        rows = [(" ".join(line.split()[:3]), completion, label) for line in lines
                for completion, label in ((" good answer " + line, True), (" bad " + line[::-1], False))]
        rows = [rows[(i * 37) % len(rows)] for i in range(len(rows))]
        values.update(max_length=32, max_prompt_length=16)
        common.update(model=str(assets["causal_lm"]), train_dataset=Dataset.from_dict(
            {"prompt": [r[0] for r in rows], "completion": [r[1] for r in rows], "label": [r[2] for r in rows]}))
    elif kind == "sft":
        values.update(max_length=32, eval_strategy="steps", eval_steps=EVAL_STEPS, per_device_eval_batch_size=4)
        data = Dataset.from_dict({"messages": [
            [{"role": "user", "content": line}, {"role": "assistant", "content": "yes " + line}] for line in lines]})
        common.update(model=str(assets["causal_lm"]), train_dataset=data, eval_dataset=data.select(range(8)))
    elif kind == "reward":
        values.update(max_length=32)
        common.update(model=str(assets["reward_model"]), train_dataset=Dataset.from_dict(
            {"chosen": ["good answer " + line for line in lines], "rejected": ["bad " + line[::-1] for line in lines]}))
    values = _supported(config_cls, values)
    args = config_cls(output_dir=str(output_dir), **values)
    if kind in ("orpo", "cpo", "kto", "reward"):
        # TRL 0.x's ORPO / CPO / KTO / Reward trainers take a model object (a path only with model_init_kwargs).
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        loader = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
        common["model"] = loader.from_pretrained(common["model"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer = trainer_cls(args=args, **common)
    return trainer, values


def capture(kind: str, assets: dict[str, Path], root: Path) -> dict[str, Any]:
    """Train `kind` for STEPS steps and return the fixture: versions, classes, config, keys per part, logs."""
    import datasets
    import torch
    import transformers
    import trl

    trainer, values = build(kind, assets, root / kind)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints each log; stdout is for the JSON
        trainer.train()
    keys: dict[str, set[str]] = {"train": set(), "eval": set(), "summary": set()}
    for entry in trainer.state.log_history:
        evaluation = any(k.startswith("eval_") for k in entry)
        part = "summary" if "train_runtime" in entry else "eval" if evaluation else "train"
        keys[part].update(k for k in entry if k != "step")
    return {
        "kind": kind,
        "source": "captured",
        "versions": {name: module.__version__ for name, module in
                     (("trl", trl), ("transformers", transformers), ("torch", torch), ("datasets", datasets))},
        "python": sys.version.split()[0],
        "trainer_class": f"{type(trainer).__module__}.{type(trainer).__name__}",
        "config_class": f"{type(trainer.args).__module__}.{type(trainer.args).__name__}",
        "config": {k: v for k, v in values.items() if k != "report_to"},
        "keys": {part: sorted(names) for part, names in keys.items() if names},
        "log_history": trainer.state.log_history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"any of {' '.join(KINDS)}")
    parser.add_argument("--fixtures", type=Path, help="write DIR/trl-<version>_<kind>.json instead of printing keys")
    opts = parser.parse_args()
    unknown = sorted(set(opts.kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; known: {' '.join(KINDS)}")
    kinds = opts.kinds or [kind for kind in KINDS if trainer_classes(kind) is not None]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assets = demo.build_tiny_assets(root / "assets")
        result = {kind: capture(kind, assets, root) for kind in kinds}
    if opts.fixtures is None:
        json.dump({kind: run["keys"] for kind, run in result.items()}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    opts.fixtures.mkdir(parents=True, exist_ok=True)
    for kind, run in result.items():
        path = opts.fixtures / f"trl-{run['versions']['trl']}_{kind}.json"
        path.write_text(json.dumps(run, indent=1) + "\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
