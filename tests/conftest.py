"""Tiny offline fixtures: a byte-level BPE tokenizer and Llama models built locally (no hub access)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import random
from pathlib import Path

import pytest

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = (
    "the a cat dog bird sat ran flew on under over mat tree sky red blue green big small one two three four five "
    "count add say yes no good bad answer question is what how many"
).split()


def synthetic_lines(n: int, seed: int = 0) -> list[str]:
    """`n` short pseudo-sentences over a tiny vocabulary (deterministic)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def build_tokenizer(path: Path):
    """Train a byte-level BPE tokenizer on synthetic text and save it as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(synthetic_lines(400), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|pad|>",
        eos_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
    )
    fast.save_pretrained(path)
    return fast


def tiny_llama_config(tokenizer, **overrides):
    from transformers import LlamaConfig

    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def build_tiny_assets(root: Path) -> dict[str, Path]:
    """Build tokenizer + causal LM + 1-label sequence classifier under `root`; return their directories."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    paths = {"tokenizer": root / "tokenizer", "causal_lm": root / "causal_lm", "reward_model": root / "reward_model"}
    tokenizer = build_tokenizer(paths["tokenizer"])
    causal = LlamaForCausalLM(tiny_llama_config(tokenizer))
    causal.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True
    )
    causal.save_pretrained(paths["causal_lm"])
    tokenizer.save_pretrained(paths["causal_lm"])
    reward = LlamaForSequenceClassification(tiny_llama_config(tokenizer, num_labels=1))
    reward.save_pretrained(paths["reward_model"])
    tokenizer.save_pretrained(paths["reward_model"])
    return paths


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


def reward_len(completions, **kwargs) -> list[float]:
    """Toy GRPO/RLOO reward: prefer completions of about 12 characters."""
    return [-abs(12 - len(c)) / 12 for c in completions]


def reward_words(completions, **kwargs) -> list[float]:
    """Toy GRPO/RLOO reward: fraction of known words in the completion."""
    return [sum(w in WORDS for w in c.split()) / max(1, len(c.split())) for c in completions]


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
        dataset = Dataset.from_dict({"prompt": [" ".join(line.split()[:3]) for line in lines]})
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
