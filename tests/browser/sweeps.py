"""A synthetic sweep on disk for the Runs tab's browser test and screenshots: our run files (a configuration in
the run info) and Hugging Face output folders (parameters in their names) side by side, plus hostile names and
values (markup, a right-to-left override, a 1 MB string)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

LEARNING_RATES = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4)
BETAS = (0.0, 0.01, 0.04, 0.1)
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">\u202eevil'
HOSTILE_VALUE = "<img src=x onerror=window.__pwned=2>"
HUGE_VALUE = "A" * 1_000_000


def params(i: int) -> tuple[float, float, int]:
    """Learning rate, beta and seed of run i."""
    return LEARNING_RATES[i % 5], BETAS[(i // 5) % 4], i // 20


def hf_name(i: int) -> str:
    lr, beta, _ = params(i)
    return f"lr_{lr:g}_beta_{beta:g}_s{i}"


def write_sweep(
    root: Path, runs: int = 300, steps: int = 30, now: float | None = None, hostile: bool = True
) -> dict[str, str]:
    """`runs` runs in `root`: even i our run files `ours_{i:03d}` (finished or stopped), odd i a Hugging Face
    folder `lr_<lr>_beta_<beta>_s<i>/trainer_state.json` one level down; with `hostile`, a folder with a hostile
    name and two runs with hostile configuration values (i = 2: 1 MB of text, i = 4: markup).
    Returns display name → the run's kind ("ours" / "hf")."""
    now = time.time() if now is None else now
    from rldk_widget.store import RunStore

    root.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    for i in range(runs):
        lr, beta, seed = params(i)
        quality = math.log10(lr) + 6 - 4 * beta  # higher learning rates learn faster here
        rewards = [0.1 + 0.2 * quality * (1 - math.exp(-s / 12)) + 0.02 * math.sin(s + i) for s in range(1, steps + 1)]
        if i % 2 == 0:
            run = f"ours_{i:03d}"
            store = RunStore(root, run)
            start = now - 7200 + 20 * i
            store.append_metrics_many(
                {"step": s, "timestamp": start + 10 * s, "reward_mean": rewards[s - 1], "kl_mean": beta * s / 40 + 0.001,
                 "loss": 0.5 / (1 + s) + 0.01 * seed}
                for s in range(1, steps + 1)
            )
            config = {"args": {"learning_rate": lr, "beta": beta, "num_generations": 8}, "seed": seed,
                      "model": "tiny-gpt2"}
            if hostile and i in (2, 4):
                config["notes"] = HUGE_VALUE if i == 2 else HOSTILE_VALUE
            info = {"max_steps": steps if i % 4 == 0 else steps * 2, "trainer": "grpo", "started": start,
                    "config": config}
            if i % 4 == 0:
                info["finished"] = start + 10 * steps
            store.write_info(info)
            store.close()
            kinds[run] = "ours"
        else:
            folder = root / hf_name(i)
            folder.mkdir()
            history = [{"step": s, "loss": 0.5 / (1 + s), "reward": rewards[s - 1], "kl": beta * s / 40,
                        "learning_rate": lr} for s in range(1, steps + 1)]
            (folder / "trainer_state.json").write_text(json.dumps({"max_steps": steps, "log_history": history}))
            kinds[folder.name] = "hf"
    if hostile:
        folder = root / HOSTILE_NAME
        folder.mkdir()
        history = [{"step": s, "loss": 0.3, "reward": 0.2} for s in range(1, 6)]
        (folder / "trainer_state.json").write_text(json.dumps({"max_steps": 5, "log_history": history}))
        kinds[HOSTILE_NAME] = "hf"
    return kinds
