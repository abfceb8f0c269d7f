"""Run each TRL trainer for a few steps on the tiny offline model and print the exact keys it logs.

Usage: python tests/capture_trl_logs.py [grpo rloo dpo sft reward] > keys.json
The output is the source of the key lists verified in tests/test_training.py and trl_keys.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import build_tiny_assets, build_trainer  # noqa: E402


def capture(kind: str, assets: dict[str, Path], root: Path) -> dict[str, list[str]]:
    """Train `kind` for 3 steps (SFT also evaluates) and return its train / eval / summary log keys."""
    overrides = {"eval_strategy": "steps", "eval_steps": 2, "per_device_eval_batch_size": 4} if kind == "sft" else {}
    trainer = build_trainer(kind, assets, root / kind, max_steps=3, **overrides)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints each log; stdout is for the JSON
        trainer.train()
    keys: dict[str, set[str]] = {"train": set(), "eval": set(), "summary": set()}
    for entry in trainer.state.log_history:
        evaluation = any(k.startswith("eval_") for k in entry)
        part = "summary" if "train_runtime" in entry else "eval" if evaluation else "train"
        keys[part].update(entry)
    return {part: sorted(names) for part, names in keys.items() if names}


def main(kinds: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assets = build_tiny_assets(root / "assets")
        result = {kind: capture(kind, assets, root) for kind in kinds}
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["grpo", "rloo", "dpo", "sft", "reward"])
