"""Synthetic TRL log histories for tests, demos and `benchmarks/alert_eval.py`: healthy runs of every trainer kind
with a learning-rate warm-up and decay, learning curves and realistic noise, and the faults the alert rules must
name, injected into any history (a synthetic one or a real run's `log_history`).

A history is a list of TRL log dicts as `on_log` receives them, each with its `step` added (the shape of
`trainer.state.log_history`): training logs with the keys TRL 1.16 logs for that trainer (see `trl_keys`; PPO with
the `trl.experimental.ppo` keys), evaluation logs (`eval_*`) every `eval_every` steps for the trainers that
evaluate a held-out loss. `records(history, kind)` maps them as RLDKCallback does.

How the numbers are made, per kind (all seeded, pure Python):

- grpo / rloo: every step samples a batch (8 prompts x 8 completions) of binary rewards from two reward functions,
  `accuracy` (each prompt has a difficulty, the policy's skill rises with the learning progress) and `format`
  (its rate rises towards ~0.9), and TRL's statistics of that batch: per-function mean / std, `reward`,
  `reward_std`, `frac_reward_zero_std` (groups whose eight totals are equal). KL grows from 0 with the progress,
  entropy falls slowly, completion lengths are log-normal per completion (`completions/clipped_ratio` is the
  share over `max_completion_length`), the loss is beta x KL plus noise.
- dpo / cpo / orpo / kto / reward: a batch of 16 preference pairs whose margins are normal around a mean that
  rises with the progress; loss, accuracies and margins are computed from the sampled pairs; evaluation values
  are the expected ones on a held-out set (a generalisation gap, a little noise).
- sft: a power-law loss curve with batch noise, entropy and token accuracy following it.
- ppo: trends with log-normal noise for the objective/, policy/, loss/ and val/ keys.

Grad norms everywhere are log-normal with Student-t tails around a level that falls with the loss. "Progress" is
the cumulative learning rate, so curves flatten as the learning rate decays.

    from rldk_widget.synthetic_runs import healthy_run, inject, records
    history = healthy_run("dpo", steps=2000, seed=1)
    broken = inject(history, "grad_spike_with_loss", onset=900, size=6.0)
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = [
    "KINDS",
    "EVAL_KINDS",
    "FAULTS",
    "Fault",
    "healthy_run",
    "inject",
    "records",
    "lr_schedule",
    "train_logs",
    "eval_logs",
]

KINDS: tuple[str, ...] = ("grpo", "rloo", "dpo", "sft", "reward", "orpo", "kto", "cpo", "ppo")
EVAL_KINDS: frozenset[str] = frozenset({"dpo", "sft", "reward", "orpo", "kto", "cpo"})
_EVAL_EXTRA = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


# ---- shared shapes ----------------------------------------------------------------------------------------------
def lr_schedule(steps: int, peak: float, warmup: int, decay: str = "cosine") -> list[float]:
    """Learning rate per step 1..steps: linear warm-up over `warmup` steps, then cosine or linear decay to 0."""
    rates = []
    for step in range(1, steps + 1):
        if step <= warmup:
            rates.append(peak * step / max(1, warmup))
            continue
        done = (step - warmup) / max(1, steps - warmup)
        rates.append(peak * (0.5 * (1 + math.cos(math.pi * done)) if decay == "cosine" else 1 - done))
    return rates


def _progress(rates: Sequence[float]) -> list[float]:
    total = sum(rates) or 1.0
    out, acc = [], 0.0
    for rate in rates:
        acc += rate
        out.append(acc / total)
    return out


def _student_t(rng: random.Random, df: float = 5.0) -> float:
    """A Student-t draw scaled to unit variance."""
    chi = rng.gammavariate(df / 2, 2.0)
    return rng.gauss(0.0, 1.0) / math.sqrt(chi / df) * math.sqrt((df - 2) / df)


def _lognormal(rng: random.Random, sigma: float) -> float:
    return math.exp(rng.gauss(0.0, sigma))


def _heavy(rng: random.Random, sigma: float) -> float:
    """Multiplicative noise with heavier tails than log-normal (its log is sigma x a unit-variance Student-t with 10
    degrees of freedom: a 4-sigma step is ~10x likelier than for a normal, a 10x grad-norm spike stays a fault)."""
    return math.exp(sigma * _student_t(rng, 10.0))


def _std(values: Sequence[float]) -> float:
    """torch/TRL nanstd: the unbiased standard deviation."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


@dataclass
class _Run:
    """What every kind's generator shares: steps, learning rates, progress, the random stream."""

    kind: str
    steps: int
    rng: random.Random
    rates: list[float]
    progress: list[float]
    epoch_steps: int

    def epoch(self, step: int) -> float:
        return round(step / self.epoch_steps, 4)


def _setup(kind: str, steps: int, seed: int, peak_lr: float) -> _Run:
    rng = random.Random(f"{kind}:{seed}")
    warmup = max(1, int(steps * rng.uniform(0.02, 0.1)))
    rates = lr_schedule(steps, peak_lr * rng.uniform(0.5, 2.0), warmup, rng.choice(("cosine", "linear")))
    return _Run(kind, steps, rng, rates, _progress(rates), epoch_steps=max(1, steps // rng.choice((1, 2, 3))))


def _grad(run: _Run, level: float, sigma: float = 0.25) -> float:
    return level * _heavy(run.rng, sigma)


# ---- grpo / rloo ------------------------------------------------------------------------------------------------
def _grpo(run: _Run, sparse: bool = False, clipped: float | None = None, prompts: int = 8, generations: int = 8,
          **_: Any) -> list[dict[str, Any]]:
    rng = run.rng
    beta = 0.04
    kl_scale = rng.uniform(0.005, 0.05)
    entropy0 = rng.uniform(0.5, 1.2)
    grad0 = rng.uniform(0.05, 0.5)
    length0 = rng.uniform(100, 400)
    max_len = 1024
    if clipped is not None:  # max_completion_length that cuts that share of the completions
        max_len = int(length0 * math.exp(0.5 * _inverse_normal(1 - clipped)))
    skill0, skill1 = (rng.uniform(-8, -7), rng.uniform(-7, -6.5)) if sparse else (rng.uniform(-1, 0), rng.uniform(1, 2))
    format0, format1 = (0.0, 0.0) if sparse else (rng.uniform(0.2, 0.5), rng.uniform(0.8, 0.92))
    out = []
    tokens = 0
    for i in range(run.steps):
        step, p = i + 1, run.progress[i]
        skill = skill0 + (skill1 - skill0) * (1 - math.exp(-3 * p))
        p_format = format0 + (format1 - format0) * (1 - math.exp(-5 * p))
        accuracy, form, totals, zero_groups = [], [], [], 0
        for _ in range(prompts):
            difficulty = rng.gauss(0, 1.5)
            p_correct = _sigmoid(skill - difficulty)
            group = []
            for _ in range(generations):
                a = 1.0 if rng.random() < p_correct else 0.0
                f = 1.0 if rng.random() < p_format else 0.0
                accuracy.append(a)
                form.append(f)
                group.append(a + f)
            totals.extend(group)
            zero_groups += max(group) == min(group)
        signal = 1 - zero_groups / prompts  # share of groups with an advantage signal
        kl = 0.0 if step == 1 else kl_scale * (1 - math.exp(-4 * p)) * _lognormal(rng, 0.3) + 1e-5
        mean_length = length0 * (1 + 0.5 * p)
        lengths = [mean_length * _lognormal(rng, 0.5) for _ in range(prompts * generations)]
        cut = [min(n, max_len) for n in lengths]
        terminated = [n for n in lengths if n <= max_len]
        tokens += int(sum(cut)) + prompts * generations * 60
        shock = _student_t(rng, 10.0)
        grad = grad0 * (1 + 0.5 * (1 - p)) * math.exp(0.25 * shock)
        if sparse:  # no advantage: the gradient is the KL term's, unless a group had a signal
            grad = grad0 * 0.01 * _lognormal(rng, 0.3) + grad0 * 0.5 * signal * _lognormal(rng, 0.3)
        loss = beta * kl + rng.gauss(0, 0.01) * max(signal, 0.05) + 0.002 * shock
        out.append({
            "loss": loss, "grad_norm": grad, "learning_rate": run.rates[i], "num_tokens": float(tokens),
            "completions/mean_length": sum(cut) / len(cut), "completions/min_length": min(cut),
            "completions/max_length": max(cut), "completions/clipped_ratio": 1 - len(terminated) / len(lengths),
            "completions/mean_terminated_length": sum(terminated) / len(terminated) if terminated else 0.0,
            "completions/min_terminated_length": min(terminated) if terminated else 0.0,
            "completions/max_terminated_length": max(terminated) if terminated else 0.0,
            "rewards/accuracy/mean": sum(accuracy) / len(accuracy), "rewards/accuracy/std": _std(accuracy),
            "rewards/format/mean": sum(form) / len(form), "rewards/format/std": _std(form),
            "reward": sum(totals) / len(totals), "reward_std": _std(totals),
            "frac_reward_zero_std": zero_groups / prompts, "kl": kl,
            "entropy": entropy0 * (1 - 0.35 * p) * _lognormal(rng, 0.03),
            "clip_ratio/low_mean": 0.0, "clip_ratio/high_mean": 0.0, "clip_ratio/region_mean": 0.0,
            "clip_ratio/low_min": 0.0, "clip_ratio/high_max": 0.0, "step_time": rng.uniform(8, 12),
            "epoch": run.epoch(step), "step": step,
        })
    return out


def _inverse_normal(q: float) -> float:
    """The standard normal quantile, by bisection on erfc (precise enough to set a clipping share)."""
    q = min(max(q, 1e-9), 1 - 1e-9)
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# ---- preference trainers ----------------------------------------------------------------------------------------
def _pairs(run: _Run, mean: float, spread: float, n: int = 16) -> list[float]:
    return [run.rng.gauss(mean, spread) for _ in range(n)]


def _expected_loss(mean: float, spread: float) -> float:
    """E[softplus(-m)] for m ~ N(mean, spread), by a fixed 16-point quadrature (the held-out loss)."""
    nodes = [(-2.0 + 4.0 * (k + 0.5) / 16) for k in range(16)]
    weights = [math.exp(-x * x / 2) for x in nodes]
    return sum(w * _softplus(-(mean + spread * x)) for w, x in zip(weights, nodes)) / sum(weights)


def _preference(run: _Run, eval_every: int | None, **_: Any) -> list[dict[str, Any]]:
    """dpo, cpo, orpo, kto: batch margins around a rising mean; the kind decides the keys."""
    rng, kind = run.rng, run.kind
    beta = 0.1
    top = rng.uniform(1.0, 6.0) if kind in ("dpo", "kto") else rng.uniform(0.1, 0.4) if kind == "orpo" else \
        rng.uniform(2.0, 8.0)
    grad0 = rng.uniform(2.0, 20.0) if kind in ("dpo", "kto") else rng.uniform(0.5, 5.0)
    nll0, nll1 = rng.uniform(1.5, 3.0), rng.uniform(0.6, 1.2)
    ref_chosen, ref_rejected = rng.uniform(-300, -150), rng.uniform(-350, -200)
    kl_scale = rng.uniform(0.5, 3.0)
    gap = rng.uniform(0.75, 0.95)  # held-out margins are this share of the training ones
    out = []
    tokens = 0
    for i in range(run.steps):
        step, p = i + 1, run.progress[i]
        mean = top * (1 - math.exp(-4 * p))
        spread = 0.3 * top + 0.4 * mean
        margins = _pairs(run, mean, spread)
        expected_nll = nll1 + (nll0 - nll1) / (1 + 8 * p) ** 0.7
        nll = expected_nll * _lognormal(rng, 0.03)
        log = _preference_log(run, kind, margins, beta, nll, ref_chosen, ref_rejected, kl_scale * p)
        sigmoid_loss = sum(_softplus(-m) for m in margins) / len(margins)
        loss = _preference_loss(kind, sigmoid_loss, log, beta)
        tokens += rng.randint(4000, 6000)
        level = grad0 * (0.3 + 0.7 * min(1.0, (sigmoid_loss / math.log(2)) ** 0.5))
        out.append({"loss": loss, "grad_norm": _grad(run, level), "learning_rate": run.rates[i], **log,
                    **({"num_tokens": float(tokens)} if kind in ("dpo", "kto") else {}),
                    "epoch": run.epoch(step), "step": step})
        if eval_every and step % eval_every == 0:
            held = _expected_loss(gap * mean, spread)
            eval_margins = [gap * mean + spread * x for x in (-1.5, -0.5, 0.5, 1.5)]
            values = _preference_log(run, kind, eval_margins, beta, expected_nll * 1.03, ref_chosen, ref_rejected,
                                     kl_scale * p)
            eval_loss = _preference_loss(kind, held, values, beta)
            out.append(_eval_log(run, step, {"loss": eval_loss * _lognormal(rng, 0.002), **values}))
    return out


def _preference_loss(kind: str, sigmoid_loss: float, log: Mapping[str, float], beta: float) -> float:
    if kind == "dpo":
        return sigmoid_loss
    if kind == "kto":
        return 0.5 * sigmoid_loss + 0.1
    if kind == "cpo":
        return log["nll_loss"] + sigmoid_loss
    return log["nll_loss"] - beta * log["log_odds_ratio"]  # orpo


def _preference_log(run: _Run, kind: str, margins: Sequence[float], beta: float, nll: float, ref_chosen: float,
                    ref_rejected: float, kl: float) -> dict[str, float]:
    rng = run.rng
    n = len(margins)
    mean_margin = sum(margins) / n
    chosen = [-0.2 * abs(m) + rng.gauss(0, 0.2) for m in margins]
    rejected = [c - m for c, m in zip(chosen, margins)]
    log: dict[str, float] = {
        "rewards/chosen": sum(chosen) / n, "rewards/rejected": sum(rejected) / n,
        "rewards/accuracies": sum(m > 0 for m in margins) / n, "rewards/margins": mean_margin,
        "logits/chosen": rng.gauss(-1.5, 0.2), "logits/rejected": rng.gauss(-1.6, 0.2),
    }
    if kind in ("dpo", "kto"):
        log["logps/chosen"] = ref_chosen + sum(chosen) / n / beta + rng.gauss(0, 10)
        log["logps/rejected"] = ref_rejected + sum(rejected) / n / beta + rng.gauss(0, 10)
        log["entropy"] = 0.9 - 0.05 * kl + rng.gauss(0, 0.01)
        if kind == "dpo":
            log["mean_token_accuracy"] = 0.6 + rng.gauss(0, 0.02)
        else:
            log["kl"] = kl * _lognormal(rng, 0.3)
            del log["rewards/accuracies"]
    elif kind == "orpo":  # per-token average log-probs; rewards are beta x those
        log["logps/chosen"] = -nll + rng.gauss(0, 0.02)
        log["logps/rejected"] = log["logps/chosen"] - mean_margin / beta
        log["rewards/chosen"], log["rewards/rejected"] = beta * log["logps/chosen"], beta * log["logps/rejected"]
        log["rewards/margins"] = log["rewards/chosen"] - log["rewards/rejected"]
        odds = [m / beta * 0.5 for m in margins]
        log["log_odds_chosen"] = sum(odds) / n
        log["log_odds_ratio"] = -sum(_softplus(-o) for o in odds) / n
        log["nll_loss"] = nll
    else:  # cpo: summed log-probs, rewards beta x those
        log["logps/chosen"] = ref_chosen + rng.gauss(0, 10)
        log["logps/rejected"] = log["logps/chosen"] - mean_margin / beta
        log["rewards/chosen"], log["rewards/rejected"] = beta * log["logps/chosen"], beta * log["logps/rejected"]
        log["nll_loss"] = nll
    return log


def _eval_log(run: _Run, step: int, values: Mapping[str, float]) -> dict[str, Any]:
    rng = run.rng
    runtime = rng.uniform(20, 30)
    return {**{f"eval_{key}": value for key, value in values.items()}, "eval_runtime": runtime,
            "eval_samples_per_second": 200 / runtime, "eval_steps_per_second": 25 / runtime,
            "epoch": run.epoch(step), "step": step}


# ---- sft / reward / ppo -----------------------------------------------------------------------------------------
def _sft(run: _Run, eval_every: int | None, **_: Any) -> list[dict[str, Any]]:
    rng = run.rng
    loss0, loss1 = rng.uniform(1.5, 3.0), rng.uniform(0.6, 1.2)
    grad0 = rng.uniform(0.5, 2.0)
    gap = rng.uniform(0.01, 0.08)
    out = []
    tokens = 0
    for i in range(run.steps):
        step, p = i + 1, run.progress[i]
        expected = loss1 + (loss0 - loss1) / (1 + 8 * p) ** 0.7
        loss = expected * (1 + rng.gauss(0, 0.04))
        tokens += rng.randint(30000, 34000)
        accuracy = 0.35 + 0.3 * (loss0 - expected) / (loss0 - loss1) + rng.gauss(0, 0.01)
        level = grad0 * (0.6 + 0.4 * (1 - p)) * (1 + 2 * math.exp(-step / 15))
        out.append({"loss": loss, "grad_norm": _grad(run, level), "learning_rate": run.rates[i],
                    "entropy": 0.85 * expected * _lognormal(rng, 0.02), "mean_token_accuracy": accuracy,
                    "num_tokens": float(tokens), "epoch": run.epoch(step), "step": step})
        if eval_every and step % eval_every == 0:
            held = (expected + gap) * _lognormal(rng, 0.002)
            out.append(_eval_log(run, step, {"loss": held, "entropy": 0.85 * held, "mean_token_accuracy": accuracy - 0.02,
                                             "num_tokens": float(tokens)}))
    return out


def _reward_model(run: _Run, eval_every: int | None, **_: Any) -> list[dict[str, Any]]:
    rng = run.rng
    top = rng.uniform(1.0, 4.0)
    grad0 = rng.uniform(1.0, 10.0)
    gap = rng.uniform(0.7, 0.95)
    drift = 0.0
    out = []
    tokens = 0
    for i in range(run.steps):
        step, p = i + 1, run.progress[i]
        mean = top * (1 - math.exp(-3 * p))
        spread = 1.0 + 0.3 * mean
        margins = _pairs(run, mean, spread)
        drift += rng.gauss(0, 0.01)
        rewards = [drift + rng.gauss(0, 0.5 + 0.3 * mean) for _ in range(32)]
        loss = sum(_softplus(-m) for m in margins) / len(margins)
        tokens += rng.randint(6000, 8000)
        level = grad0 * (0.3 + 0.7 * (loss / math.log(2)) ** 0.5)
        log = {"loss": loss, "grad_norm": _grad(run, level), "learning_rate": run.rates[i], "num_tokens": float(tokens),
               "min_reward": min(rewards), "mean_reward": sum(rewards) / 32, "max_reward": max(rewards),
               "accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
               "epoch": run.epoch(step), "step": step}
        out.append(log)
        if eval_every and step % eval_every == 0:
            held = _expected_loss(gap * mean, spread) * _lognormal(rng, 0.002)
            out.append(_eval_log(run, step, {"loss": held, "accuracy": _sigmoid(1.6 * gap * mean / spread),
                                             "margin": gap * mean, "min_reward": drift - 2, "mean_reward": drift,
                                             "max_reward": drift + 2, "num_tokens": float(tokens)}))
    return out


def _ppo(run: _Run, **_: Any) -> list[dict[str, Any]]:
    rng = run.rng
    kl_top = rng.uniform(0.5, 4.0)
    score0, score1 = rng.uniform(-1, 0), rng.uniform(1, 3)
    value0 = rng.uniform(0.3, 1.5)
    out = []
    for i in range(run.steps):
        step, p = i + 1, run.progress[i]
        kl = kl_top * (1 - math.exp(-3 * p)) * _lognormal(rng, 0.3) + 0.01
        scores = score0 + (score1 - score0) * (1 - math.exp(-3 * p)) + rng.gauss(0, 0.15)
        non_score = -0.05 * kl
        out.append({
            "eps": int(rng.uniform(40, 60)), "objective/kl": kl, "objective/entropy": 40 * (1 - 0.3 * p) + rng.gauss(0, 1),
            "objective/non_score_reward": non_score, "objective/rlhf_reward": scores + non_score,
            "objective/scores": scores, "policy/approxkl_avg": 0.01 * _lognormal(rng, 0.4),
            "policy/clipfrac_avg": min(0.25, 0.08 * _lognormal(rng, 0.3)), "loss/policy_avg": rng.gauss(-0.02, 0.01),
            "loss/value_avg": value0 * (1 - 0.7 * p) * _heavy(rng, 0.3), "val/clipfrac_avg": 0.05 * _lognormal(rng, 0.3),
            "policy/entropy_avg": 2.0 * (1 - 0.3 * p) + rng.gauss(0, 0.05), "val/ratio": 1 + rng.gauss(0, 0.01),
            "val/ratio_var": 1e-3 * _lognormal(rng, 0.5), "val/num_eos_tokens": rng.randint(20, 64),
            "lr": run.rates[i], "episode": step * 64, "epoch": run.epoch(step), "step": step,
        })
    return out


_GENERATORS: dict[str, tuple[Callable[..., list[dict[str, Any]]], float]] = {
    "grpo": (_grpo, 1e-6), "rloo": (_grpo, 1e-6), "dpo": (_preference, 5e-7), "cpo": (_preference, 5e-7),
    "orpo": (_preference, 8e-6), "kto": (_preference, 5e-7), "sft": (_sft, 2e-5), "reward": (_reward_model, 1e-5),
    "ppo": (_ppo, 3e-6),
}


def healthy_run(kind: str, steps: int = 10_000, seed: int = 0, eval_every: int | None = -1,
                **options: Any) -> list[dict[str, Any]]:
    """A healthy history of `steps` training logs of `kind` (see the module docstring), plus an evaluation log every
    `eval_every` steps for the kinds in EVAL_KINDS (default: about 40 evaluations; None: none).

    Options that make it unhealthy on purpose (the issue's patterns): grpo/rloo `sparse=True` (a reward that
    almost never differs within a group, for the whole run) and `clipped=0.95` (max_completion_length cuts that
    share of the completions)."""
    if kind not in _GENERATORS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    generator, peak_lr = _GENERATORS[kind]
    run = _setup(kind, steps, seed, peak_lr)
    if eval_every == -1:
        eval_every = max(10, steps // 40) if kind in EVAL_KINDS else None
    return generator(run, eval_every=eval_every if kind in EVAL_KINDS else None, **options)


def train_logs(history: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [log for log in history if not _is_eval(log)]


def eval_logs(history: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [log for log in history if _is_eval(log)]


def _is_eval(log: Mapping[str, Any]) -> bool:
    return any(isinstance(key, str) and key.startswith("eval_") for key in log)


def records(history: Iterable[Mapping[str, Any]], kind: str | None, run_id: str = "synthetic") -> list[dict[str, Any]]:
    """The history as RLDKCallback records it (`trl_keys.log_record`, summaries left out)."""
    from .trl_keys import is_summary_log, log_record

    out = []
    for log in history:
        if is_summary_log(log):
            continue
        step = int(log["step"])
        out.append(log_record({k: v for k, v in log.items() if k != "step"}, step, kind, run_id, float(step)))
    return out


# ---- faults -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """A fault to inject: the kinds it applies to, the alert types that name it, its sizes (those the rules were
    tuned on and held-out ones), whether it lasts (from the onset on, `duration` steps) or is one step, whether it
    is seen at evaluations, the metric key whose absolute floor it may fall under, and what it does."""

    name: str
    kinds: frozenset[str]
    expected: frozenset[str]
    train_sizes: tuple[float, ...]
    test_sizes: tuple[float, ...]
    lasting: bool
    apply: Callable[["_Context", dict[str, Any], int, float], None]
    evaluation: bool = False
    description: str = ""
    floor: tuple[str, str] | None = None  # (record key, AlertRules field): at or under it the rule stays silent

    def under_floor(self, record: Mapping[str, Any], kind: str) -> bool:
        """Whether the injected value in the onset's record is at or under the rule's absolute floor (a spike
        too small to be a fault by the rule's own definition)."""
        if self.floor is None:
            return False
        from .alerts import AlertRules

        key, field = self.floor
        value = record.get(key)
        return isinstance(value, (int, float)) and value <= getattr(AlertRules.for_trainer(kind), field)

    def applies(self, kind: str, history: Sequence[Mapping[str, Any]]) -> bool:
        if kind not in self.kinds:
            return False
        keys = set().union(*(log.keys() for log in history[:5]))
        needs = _NEEDS.get(self.name, ())
        return all(any(_has(keys, key) for key in alternatives) for alternatives in needs)


@dataclass
class _Context:
    """What a fault needs to know about the base history before its onset (robust levels, noise)."""

    kind: str
    before: list[Mapping[str, Any]]
    rng: random.Random
    onset: int
    size: float

    def level(self, key: str, last: int = 20) -> float:
        values = [float(log[key]) for log in self.before[-last:] if _num(log.get(key)) is not None]
        return _med(values) if values else 0.0

    def spread(self, key: str, last: int = 20) -> float:
        values = [float(log[key]) for log in self.before[-last:] if _num(log.get(key)) is not None]
        if len(values) < 3:
            return 0.0
        middle = _med(values)
        return 1.4826 * _med([abs(v - middle) for v in values])

    def functions(self) -> list[str]:
        keys = set().union(*(log.keys() for log in self.before[-5:])) if self.before else set()
        return sorted(key.split("/")[1] for key in keys if key.startswith("rewards/") and key.endswith("/mean"))


def _has(keys: set[str], wanted: str) -> bool:
    """`wanted` is a key, or (ending with "/") a key prefix."""
    return wanted in keys or (wanted.endswith("/") and any(key.startswith(wanted) for key in keys))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _med(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _kl_key(log: Mapping[str, Any]) -> str:
    return "objective/kl" if "objective/kl" in log else "kl"


def _entropy_key(log: Mapping[str, Any]) -> str:
    return "objective/entropy" if "objective/entropy" in log else "entropy"


def _reward_key(kind: str) -> str:
    return {"grpo": "reward", "rloo": "reward", "ppo": "objective/rlhf_reward"}.get(kind, "rewards/margins")


def _loss_key(log: Mapping[str, Any]) -> str:
    return "loss/policy_avg" if "loss/policy_avg" in log else "loss"


def _jump_loss(ctx: _Context, log: dict[str, Any]) -> None:
    """Raise this log's loss clearly above its recent level (a bad batch's loss jump)."""
    key = _loss_key(log)
    if _num(log.get(key)) is None:
        return
    level, spread = ctx.level(key), ctx.spread(key)
    log[key] = level + max(8 * spread, 0.5 * abs(level), 1e-3)


def _nan_loss(ctx, log, i, size):
    log["loss"] = None


def _inf_grad(ctx, log, i, size):
    log["grad_norm"] = math.inf


def _nan_reward(ctx, log, i, size):
    key = _reward_key(ctx.kind)
    log[key] = None
    for name in ctx.functions():
        log[f"rewards/{name}/mean"] = None
        log[f"rewards/{name}/std"] = None


def _nan_logps(ctx, log, i, size):
    # NaN policy log-probs at a few steps (the onset, +3, +9), the loss finite
    if i in (0, 3, 9):
        for key in ("rewards/margins", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected"):
            if key in log:
                log[key] = None


def _kl_spike(ctx, log, i, size):
    # size x its typical magnitude: its median, or its scatter when that is larger (a signed estimate near 0)
    key = _kl_key(log)
    log[key] = max(ctx.level(key), ctx.spread(key), 1e-6) * size
    _jump_loss(ctx, log)


def _kl_unit(kind: str) -> float:
    """A KL step that matters: 0.05 per token, 1.0 for the KL summed over a completion (PPO, KTO)."""
    return 1.0 if kind in ("ppo", "kto") else 0.05


def _kl_high(ctx, log, i, size):
    key = _kl_key(log)
    limit = 10.0 if ctx.kind in ("ppo", "kto") else 0.2  # AlertRules.for_trainer's kl_max
    log[key] = limit * size * _lognormal(ctx.rng, 0.1)


def _entropy_collapse(ctx, log, i, size):
    key = _entropy_key(log)
    log[key] = ctx.level(key, last=50) * size * _lognormal(ctx.rng, 0.05)


def _reward_collapse(ctx, log, i, size):
    # the reward falls by `size` x its scale (the larger of its level, its rise and 5 noise sd) and stays there
    key = _reward_key(ctx.kind)
    if _num(log.get(key)) is None:
        return
    values = [float(v[key]) for v in ctx.before if _num(v.get(key)) is not None]
    early, late = _med(values[:10]), _med(values[-10:])
    scale = max(abs(late), late - early, 5 * ctx.spread(key))
    delta = -size * scale
    log[key] = float(log[key]) + delta
    for name in ctx.functions()[:1]:  # the per-function mean follows the total
        if _num(log.get(f"rewards/{name}/mean")) is not None:
            log[f"rewards/{name}/mean"] = float(log[f"rewards/{name}/mean"]) + delta


def _zero_variance(ctx, log, i, size):
    log["frac_reward_zero_std"] = min(1.0, size + ctx.rng.choice((0.0, 0.0, 0.05)))
    if "reward_std" in log:
        log["reward_std"] = float(log["reward_std"]) * (1 - size) * 0.1


def _reward_hacking(ctx, log, i, size):
    key = _kl_key(log)
    reward = _reward_key(ctx.kind)
    unit = _kl_unit(ctx.kind)
    kl = max(ctx.level(key), 0.2 * unit)
    log[key] = kl * size * _lognormal(ctx.rng, 0.1) + unit * size
    scale = max(abs(ctx.level(reward)), 5 * ctx.spread(reward), 0.1)
    log[reward] = float(log[reward]) + scale * min(1.0, (i + 1) / 5)


def _grad_spike_with_loss(ctx, log, i, size):
    log["grad_norm"] = ctx.level("grad_norm") * size
    _jump_loss(ctx, log)


def _grad_explosion(ctx, log, i, size):
    log["grad_norm"] = ctx.level("grad_norm") * size


def _clip_frac(ctx, log, i, size):
    key = "policy/clipfrac_avg" if "policy/clipfrac_avg" in log else "clip_ratio/region_mean"
    log[key] = size * _lognormal(ctx.rng, 0.05)


def _value_loss_spike(ctx, log, i, size):
    log["loss/value_avg"] = ctx.level("loss/value_avg") * size


def _length_blowup(ctx, log, i, size):
    log["completions/mean_length"] = ctx.level("completions/mean_length") * size * _lognormal(ctx.rng, 0.03)


def _clipped(ctx, log, i, size):
    log["completions/clipped_ratio"] = min(1.0, size * _lognormal(ctx.rng, 0.02))


def _target_function(ctx: _Context) -> str | None:
    names = ctx.functions()
    return names[0] if names else None


def _set_function(log: dict[str, Any], name: str, mean: float | None, std: float | None) -> None:
    """Replace one function's mean / std and keep `reward` the sum of the function means (TRL's default weights)."""
    old = _num(log.get(f"rewards/{name}/mean"))
    log[f"rewards/{name}/mean"] = mean
    if f"rewards/{name}/std" in log:
        log[f"rewards/{name}/std"] = std
    if _num(log.get("reward")) is not None and old is not None:
        log["reward"] = float(log["reward"]) - old + (mean if mean is not None else 0.0)


def _fn_none(ctx, log, i, size):
    name = _target_function(ctx)
    if name is not None:
        _set_function(log, name, None, None)


def _fn_variance_collapse(ctx, log, i, size):
    # the function gives (almost) every completion the same score, at its low level: a constant return
    name = _target_function(ctx)
    if name is None:
        return
    values = [float(v[f"rewards/{name}/mean"]) for v in ctx.before if _num(v.get(f"rewards/{name}/mean")) is not None]
    low = min(_med(values[k:k + 5]) for k in range(max(1, len(values) - 4)))
    std = ctx.level(f"rewards/{name}/std") * size
    _set_function(log, name, low, std)


def _fn_saturated(ctx, log, i, size):
    # from the onset on every completion gets the function's top score: its mean above its best so far, std x size
    name = _target_function(ctx)
    if name is None:
        return
    values = [float(v[f"rewards/{name}/mean"]) for v in ctx.before if _num(v.get(f"rewards/{name}/mean")) is not None]
    top = max(values) + max(ctx.spread(f"rewards/{name}/mean"), 0.05)
    _set_function(log, name, top, ctx.level(f"rewards/{name}/std") * size)


def _fn_dominant(ctx, log, i, size):
    # one function's scale grows `size`-fold (a reward on another scale: 0..10 instead of 0..1)
    name = _target_function(ctx)
    mean, std = _num(log.get(f"rewards/{name}/mean")), _num(log.get(f"rewards/{name}/std"))
    if name is None or mean is None or std is None:
        return
    _set_function(log, name, mean * size, std * size)


def _eval_divergence(ctx, log, i, size):
    # from the onset on, each evaluation's loss is `size` x the last healthy one higher than the one before
    if "eval_loss" not in log:
        return
    before = [float(v["eval_loss"]) for v in ctx.before if _num(v.get("eval_loss")) is not None]
    base = before[-1] if before else float(log["eval_loss"])
    log["eval_loss"] = base * (1 + size * (i + 1))


_ALL = frozenset(KINDS)
_RL = frozenset({"grpo", "rloo"})
_PREFERENCE = frozenset({"dpo", "orpo", "cpo", "kto"})
_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "kl_spike": (("kl", "objective/kl"),),
    "kl_high": (("kl", "objective/kl"),),
    "reward_hacking": (("kl", "objective/kl"),),
    "entropy_collapse": (("entropy", "objective/entropy"),),
    **{name: (("frac_reward_zero_std",), ("rewards/",)) for name in
       ("fn_none", "fn_variance_collapse", "fn_saturated", "fn_dominant")},
}

FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("nan_loss", _ALL - {"ppo"}, frozenset({"nonfinite"}), (1.0,), (1.0,), False, _nan_loss,
          description="loss NaN for one step"),
    Fault("inf_grad_norm", _ALL - {"ppo"}, frozenset({"nonfinite"}), (1.0,), (1.0,), False, _inf_grad,
          description="grad norm Inf for one step"),
    Fault("nan_reward", frozenset({"grpo", "rloo"}), frozenset({"nonfinite"}), (1.0,), (1.0,), False, _nan_reward,
          description="every reward function None for the whole batch (reward None)"),
    Fault("nan_logps", _PREFERENCE, frozenset({"nonfinite"}), (1.0,), (1.0,), True, _nan_logps,
          description="rewards/margins, logps/* NaN at 3 steps, loss finite"),
    Fault("kl_spike", frozenset({"grpo", "rloo", "kto", "ppo"}), frozenset({"kl_spike"}), (30.0, 50.0), (20.0, 80.0),
          False, _kl_spike, description="KL x size its median (or its scatter if larger) for one step, with a loss jump",
          floor=("kl_mean", "kl_spike_min")),
    Fault("kl_high", frozenset({"grpo", "rloo", "kto", "ppo"}), frozenset({"kl_high"}), (1.5, 3.0), (1.25, 2.0), True,
          _kl_high, description="KL at size x kl_max"),
    Fault("entropy_collapse", frozenset({"grpo", "rloo", "dpo", "sft", "kto", "ppo"}), frozenset({"entropy_collapse"}),
          (0.05, 0.02), (0.08, 0.03), True, _entropy_collapse, description="entropy x size"),
    Fault("reward_collapse", _ALL - {"sft", "reward"}, frozenset({"reward_collapse"}), (1.0, 2.0), (1.5, 3.0), True,
          _reward_collapse, description="reward falls by size x max(its level, its rise, 5 noise sd)"),
    Fault("zero_variance", _RL, frozenset({"zero_reward_variance"}), (0.95, 1.0), (0.92, 0.97), True, _zero_variance,
          description="frac_reward_zero_std at size"),
    Fault("reward_hacking", frozenset({"grpo", "rloo", "ppo"}), frozenset({"reward_hacking", "kl_high", "kl_spike"}),
          (4.0, 8.0), (3.0, 6.0), True, _reward_hacking,
          description="reward up while KL jumps to size x its level (+ size x 0.05, summed KL: x 1)"),
    Fault("grad_spike_with_loss", _ALL - {"ppo"}, frozenset({"grad_norm_explosion"}), (5.0, 8.0), (6.0, 10.0), False,
          _grad_spike_with_loss, description="grad norm x size its median with a loss jump, one step",
          floor=("grad_norm", "grad_norm_floor")),
    Fault("grad_explosion", _ALL - {"ppo"}, frozenset({"grad_norm_explosion"}), (15.0, 30.0), (12.0, 50.0), False,
          _grad_explosion, description="grad norm x size its median, one step", floor=("grad_norm", "grad_norm_floor")),
    Fault("clip_frac", frozenset({"grpo", "rloo", "ppo"}), frozenset({"clip_frac_high"}), (0.4, 0.6), (0.35, 0.8),
          True, _clip_frac, description="clip fraction at size"),
    Fault("value_loss_spike", frozenset({"ppo"}), frozenset({"value_loss_spike"}), (8.0, 15.0), (6.0, 30.0), False,
          _value_loss_spike, description="value loss x size its median, one step"),
    Fault("length_blowup", _RL, frozenset({"completion_length_blowup"}), (2.5, 4.0), (2.2, 3.0), True, _length_blowup,
          description="mean completion length x size"),
    Fault("completions_clipped", _RL, frozenset({"completions_clipped"}), (0.7, 0.95), (0.6, 0.85), True, _clipped,
          description="clipped_ratio at size"),
    Fault("fn_none", _RL, frozenset({"reward_fn_nonfinite"}), (1.0,), (1.0,), False, _fn_none,
          description="one reward function None for the whole batch, one step"),
    Fault("fn_variance_collapse", _RL, frozenset({"reward_fn_variance_collapse"}), (0.0, 0.02), (0.01, 0.04), True,
          _fn_variance_collapse, description="one function's std x size, its mean constant at its low"),
    Fault("fn_saturated", _RL, frozenset({"reward_fn_saturated"}), (0.0, 0.02), (0.01, 0.04), True, _fn_saturated,
          description="one function at above its best for every completion (std x size)"),
    Fault("fn_dominant", _RL, frozenset({"reward_fn_dominant"}), (8.0, 15.0), (6.0, 25.0), True, _fn_dominant,
          description="one function's scale x size"),
    Fault("eval_divergence", EVAL_KINDS, frozenset({"eval_divergence"}), (0.03, 0.1), (0.02, 0.05), True,
          _eval_divergence, evaluation=True, description="eval loss + size per evaluation, train loss falling"),
)}


def inject(history: Sequence[Mapping[str, Any]], fault: str, onset: int, size: float, duration: int | None = None,
           kind: str | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """A copy of `history` with `fault` (a FAULTS name) from training step `onset` on: one step for one-step faults,
    `duration` steps (default: to the end) for lasting ones; evaluation faults change the evaluations at or after
    the onset. `kind` defaults to the kind detected from the keys. The logs the fault does not touch are the same
    objects as in `history` (copy them before changing them)."""
    spec = FAULTS[fault]
    if kind is None:
        from .trl_keys import detect_trainer_kind

        kind = detect_trainer_kind(history[0]) or "grpo"
    rng = random.Random(f"{fault}:{onset}:{size}:{seed}")
    out: list[Any] = list(history)
    before = [log for log in history if int(log["step"]) < onset and _is_eval(log) == spec.evaluation]
    ctx = _Context(kind, before, rng, onset, size)
    end = onset + 1 if not spec.lasting else math.inf if duration is None else onset + duration
    index = 0
    for position, log in enumerate(history):
        step = int(log["step"])
        if step < onset or step >= end or _is_eval(log) != spec.evaluation:
            continue
        changed = out[position] = dict(log)
        spec.apply(ctx, changed, index, size)
        index += 1
    return out


# ---- the patterns issue 16 names --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pattern:
    """A pattern seen in real runs (issue 16, section 3), as a synthetic history, and what the rules must do with
    it: `must` alert types that must fire (at the `at` steps, within `within` steps, when given), `must_not` types
    that must not fire (`"*"`: none at all), and extra conditions on the alerts of the first `must` type."""

    name: str
    description: str
    kind: str
    build: Callable[[int], list[dict[str, Any]]]
    must: tuple[str, ...] = ()
    must_not: tuple[str, ...] = ()
    at: tuple[int, ...] = ()
    within: int = 5
    max_alerts: int | None = None
    severity: str | None = None
    metric_prefix: str | None = None
    message_has: tuple[str, ...] = ()
    message_lacks: tuple[str, ...] = ()

    def check(self, alerts: Sequence[Mapping[str, Any]]) -> list[str]:
        """What is wrong with these alerts for this pattern ([] when they are right)."""
        problems = []
        for rule in self.must:
            fired = [a for a in alerts if a["type"] == rule]
            if not fired:
                problems.append(f"no {rule} alert")
                continue
            for step in self.at:
                if not any(step <= a["step"] <= step + self.within for a in fired):
                    problems.append(f"no {rule} alert within {self.within} steps of step {step}")
            if rule != self.must[0]:
                continue
            if self.max_alerts is not None and len(fired) > self.max_alerts:
                problems.append(f"{len(fired)} {rule} alerts (at most {self.max_alerts})")
            for alert in fired:
                if self.severity and alert["severity"] != self.severity:
                    problems.append(f"{rule} at step {alert['step']} is {alert['severity']}, not {self.severity}")
                if self.metric_prefix and not str(alert["metric"]).startswith(self.metric_prefix):
                    problems.append(f"{rule} at step {alert['step']} is about {alert['metric']}")
                for text in self.message_has:
                    if text not in alert["message"]:
                        problems.append(f"{rule} message lacks {text!r}: {alert['message']}")
                for text in self.message_lacks:
                    if text in alert["message"]:
                        problems.append(f"{rule} message has {text!r}: {alert['message']}")
        banned = [a for a in alerts if "*" in self.must_not and a["type"] not in self.must
                  or a["type"] in self.must_not]
        problems += [f"unexpected {a['type']} at step {a['step']}: {a['message']}" for a in banned]
        return problems


def _spiky_dpo(seed: int) -> list[dict[str, Any]]:
    history = healthy_run("dpo", 1000, seed)
    for onset, size in ((300, 5.0), (500, 7.0), (700, 10.0)):
        history = inject(history, "grad_spike_with_loss", onset, size, kind="dpo")
    return history


def _zero_advantage_grads(seed: int) -> list[dict[str, Any]]:
    """A sparse-reward GRPO run whose grad norm is ~1e-3 (only the KL term) and jumps to ~0.1 when a group has a
    signal."""
    history = healthy_run("grpo", 600, seed, sparse=True)
    rng = random.Random(f"zero-advantage:{seed}")
    for log in history:
        log["grad_norm"] = 1e-3 * _lognormal(rng, 0.2)
        if log["step"] % 37 == 0 or rng.random() < 0.02:
            log["grad_norm"] = 0.1 * _lognormal(rng, 0.2)
    return history


ISSUE_PATTERNS: dict[str, Pattern] = {p.name: p for p in (
    Pattern("kl_spike_with_loss_spike", "GRPO: KL ~50x its median for one step, a loss spike at the same step",
            "grpo", lambda seed: inject(healthy_run("grpo", 1000, seed), "kl_spike", 500, 50.0, kind="grpo"),
            must=("kl_spike",), at=(500,), within=0, message_has=("loss jump",)),
    Pattern("dpo_nan_logps", "DPO: rewards/margins and logps/* NaN at a few steps while the loss stays finite",
            "dpo", lambda seed: inject(healthy_run("dpo", 1000, seed), "nan_logps", 400, 1.0, duration=10, kind="dpo"),
            must=("nonfinite",), at=(400,), within=0, severity="warning", metric_prefix="logps/",
            message_has=("log-probs", "loss stays finite"), message_lacks=("reward function",)),
    Pattern("grpo_sparse_reward", "GRPO: a sparse reward, nearly every group with identical rewards all run long",
            "grpo", lambda seed: healthy_run("grpo", 1000, seed, sparse=True),
            must=("zero_reward_variance",), must_not=("reward_collapse", "grad_norm_explosion"), max_alerts=1,
            message_has=("no learning signal", "dead")),
    Pattern("grpo_clipped_95", "GRPO: 95% of the completions cut at max_completion_length",
            "grpo", lambda seed: healthy_run("grpo", 1000, seed, clipped=0.95),
            must=("completions_clipped",), severity="warning", max_alerts=2),
    Pattern("dpo_grad_spikes_with_loss_jumps", "DPO: grad-norm spikes of 5-10x its recent median, the loss jumping "
            "at the same steps", "dpo", _spiky_dpo, must=("grad_norm_explosion",), at=(300, 500, 700), within=0),
    Pattern("grpo_zero_advantage_grad_jump", "GRPO with zero advantages: grad norm jumps from 1e-3 to 0.1",
            "grpo", _zero_advantage_grads, must_not=("grad_norm_explosion",)),
    *(Pattern(f"smooth_{kind}_{steps}", f"{kind.upper()}: a smooth run of {steps} steps", kind,
              functools.partial(healthy_run, kind, steps), must_not=("*",))
      for kind in ("sft", "orpo") for steps in (300, 1000)),
    Pattern("fn_none_batch", "multi-reward GRPO: one function returns None for a whole batch (TRL logs None)",
            "grpo", lambda seed: inject(healthy_run("grpo", 800, seed), "fn_none", 400, 1.0, kind="grpo"),
            must=("reward_fn_nonfinite",), at=(400,), within=0, must_not=("nonfinite",)),
    Pattern("fn_variance_collapse", "multi-reward GRPO: one function's variance collapses",
            "grpo", lambda seed: inject(healthy_run("grpo", 800, seed), "fn_variance_collapse", 400, 0.0, kind="grpo"),
            must=("reward_fn_variance_collapse",), at=(400,), max_alerts=2),
    Pattern("fn_dominant", "multi-reward GRPO: one function dominates the total reward's variance",
            "grpo", lambda seed: inject(healthy_run("grpo", 800, seed), "fn_dominant", 400, 10.0, kind="grpo"),
            must=("reward_fn_dominant",), at=(400,), max_alerts=2),
    Pattern("fn_saturated", "multi-reward GRPO: a reward saturates at its maximum (no signal left)",
            "grpo", lambda seed: inject(healthy_run("grpo", 800, seed), "fn_saturated", 400, 0.0, kind="grpo"),
            must=("reward_fn_saturated",), at=(400,), severity="info", max_alerts=2),
    *(Pattern(f"eval_divergence_{kind}", f"{kind.upper()}: eval loss rising over several evaluations while the "
              "train loss falls", kind,
              functools.partial(lambda kind, seed: inject(healthy_run(kind, 2000, seed, eval_every=50),
                                                          "eval_divergence", 1000, 0.03, kind=kind), kind),
              must=("eval_divergence",), at=(1050,), within=50, max_alerts=2)
      for kind in ("sft", "dpo", "reward")),
)}
