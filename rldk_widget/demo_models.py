"""Tiny offline models for demos and tests: no hub access, seconds on a CPU.

- `build_tokenizer(path)`: a byte-level BPE tokenizer (vocabulary 384) trained with `tokenizers` on a few
  hundred synthetic lines, as a `PreTrainedTokenizerFast` with pad / eos tokens and a simple chat template;
- `tiny_llama_config(tokenizer)`: a 2-layer Llama with hidden size 32 (about 30k parameters);
- `build_tiny_assets(root)`: tokenizer, causal LM and 1-label reward model saved under `root`, ready for
  `GRPOTrainer(model=str(paths["causal_lm"]), ...)` and the other TRL trainers;
- `grpo_prompts(n)`: a `datasets.Dataset` of short prompts; `reward_len` / `reward_words`: toy GRPO rewards.

The models are random: they learn the toy rewards a little, which is all a dashboard demo needs. Not imported by
`rldk_widget/__init__.py`; transformers, tokenizers, torch and datasets are imported inside the functions.

    from rldk_widget.demo_models import build_tiny_assets, grpo_prompts, reward_len
    paths = build_tiny_assets("./tiny_assets")
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import LlamaConfig, PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "WORDS",
    "synthetic_lines",
    "build_tokenizer",
    "tiny_llama_config",
    "build_tiny_assets",
    "grpo_prompts",
    "reward_len",
    "reward_words",
]

SPECIAL_TOKENS: list[str] = ["<|pad|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE: str = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS: list[str] = (
    "the a cat dog bird sat ran flew on under over mat tree sky red blue green big small one two three four five "
    "count add say yes no good bad answer question is what how many"
).split()


def synthetic_lines(n: int, seed: int = 0) -> list[str]:
    """`n` short pseudo-sentences over a tiny vocabulary (deterministic)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def build_tokenizer(path: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on synthetic text; save it to `path` when given."""
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
    if path is not None:
        fast.save_pretrained(path)
    return fast


def tiny_llama_config(tokenizer: PreTrainedTokenizerBase, **overrides: Any) -> LlamaConfig:
    """A 2-layer, hidden-32 Llama config sized to `tokenizer`; keyword overrides win (e.g. `num_labels=1`)."""
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
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


def build_tiny_assets(root: str | os.PathLike[str], seed: int = 0) -> dict[str, Path]:
    """Build tokenizer + causal LM + 1-label sequence classifier under `root`; return their directories
    (keys "tokenizer", "causal_lm", "reward_model"; each model folder holds the tokenizer too)."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM, LlamaForSequenceClassification

    root = Path(root)
    torch.manual_seed(seed)
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


def grpo_prompts(n: int = 64, seed: int = 1, words: int = 3) -> Dataset:
    """A `datasets.Dataset` with a "prompt" column: the first `words` words of `n` synthetic lines."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [" ".join(line.split()[:words]) for line in synthetic_lines(n, seed=seed)]})


def reward_len(completions: list[str], **kwargs: Any) -> list[float]:
    """Toy GRPO/RLOO reward: prefer completions of about 12 characters (0 is best, negative otherwise)."""
    return [-abs(12 - len(c)) / 12 for c in completions]


def reward_words(completions: list[str], **kwargs: Any) -> list[float]:
    """Toy GRPO/RLOO reward: fraction of known words in the completion."""
    return [sum(w in WORDS for w in c.split()) / max(1, len(c.split())) for c in completions]
