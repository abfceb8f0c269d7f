"""trl_keys against real TRL logs: the fixtures of tests/fixtures/trl_logs (TRL 1.16.0, 0.16.1, 0.15.2, 0.14.0; by
tests/capture_trl_logs.py). Every fixture is detected as its kind (from the keys and from the class names), maps
onto the expected core fields, has its default charts among the logged names, and keeps its eval_* keys apart;
replayed through RLDKCallback it gets the kind's alert rules and records."""

from __future__ import annotations

import importlib
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from rldk_widget.alerts import AlertMonitor, AlertRules
from rldk_widget.callback import RLDKCallback
from rldk_widget.store import RunStore
from rldk_widget.trl_keys import (
    CORE_FIELDS,
    TRAINER_KINDS,
    default_charts,
    detect_trainer_kind,
    is_eval_log,
    is_summary_log,
    kind_from_class,
    log_record,
    map_log,
    ppo_keys,
)

FIXTURES = Path(__file__).parent / "fixtures" / "trl_logs"
NAMES = sorted(path.stem for path in FIXTURES.glob("trl-*.json"))
# Training logs with none of a trainer's own keys: TRL 0.15.2's RewardTrainer logs only these, TRL 0.16.1's
# GRPOTrainer at an eval step. Nothing tells the kind from them (the callback takes it from the config class).
BARE = frozenset({"loss", "grad_norm", "learning_rate", "epoch", "num_tokens"})

# Core field -> the raw key it comes from, at every training log that is not bare (epoch too, always).
_GRPO = {"reward_mean": "reward", "reward_std": "reward_std", "kl_mean": "kl", "loss": "loss", "grad_norm": "grad_norm",
         "learning_rate": "learning_rate"}
_PREF = {"reward_mean": "rewards/margins", "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate"}
MAPPED: dict[str, dict[str, str]] = {
    "trl-1.16.0_grpo": {**_GRPO, "entropy_mean": "entropy", "clip_frac": "clip_ratio/region_mean",
                        "step_time": "step_time"},
    "trl-1.16.0_rloo": {**_GRPO, "entropy_mean": "entropy", "clip_frac": "clip_ratio/region_mean",
                        "step_time": "step_time"},
    "trl-0.16.1_grpo": {**_GRPO, "clip_frac": "clip_ratio"},
    "trl-0.15.2_grpo": _GRPO,
    "trl-0.14.0_grpo": _GRPO,
    "trl-1.16.0_dpo": {**_PREF, "entropy_mean": "entropy"},
    "trl-0.15.2_dpo": _PREF,
    "trl-1.16.0_orpo": _PREF,
    "trl-0.15.2_orpo": _PREF,
    "trl-1.16.0_cpo": _PREF,
    "trl-0.15.2_cpo": _PREF,
    "trl-1.16.0_kto": {**_PREF, "kl_mean": "kl", "entropy_mean": "entropy"},
    "trl-0.15.2_kto": {**_PREF, "kl_mean": "kl"},
    "trl-1.16.0_sft": {"loss": "loss", "entropy_mean": "entropy", "grad_norm": "grad_norm",
                       "learning_rate": "learning_rate"},
    "trl-0.15.2_sft": {"loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate"},
    "trl-1.16.0_reward": {"reward_mean": "mean_reward", "reward_min": "min_reward", "reward_max": "max_reward",
                          "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate"},
    "trl-0.15.2_reward": {"loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate"},
}
# Default charts a fixture's run does not log (the view shows only the logged ones).
NOT_CHARTED: dict[str, set[str]] = {
    "trl-0.16.1_grpo": {"entropy_mean", "frac_reward_zero_std"},
    "trl-0.15.2_grpo": {"entropy_mean", "frac_reward_zero_std", "clip_frac"},
    "trl-0.14.0_grpo": {"entropy_mean", "frac_reward_zero_std", "clip_frac"},
    "trl-0.15.2_dpo": {"entropy_mean"},
    "trl-1.16.0_orpo": {"sft_loss", "odds_ratio_loss"},  # LLaMA-Factory's ORPO names
    "trl-0.15.2_orpo": {"sft_loss", "odds_ratio_loss"},
    "trl-0.15.2_kto": {"entropy_mean"},
    "trl-0.15.2_sft": {"entropy_mean"},
    "trl-1.16.0_reward": {"eval_accuracy"},
    "trl-0.15.2_reward": {"accuracy", "margin", "reward_mean", "eval_accuracy"},
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parts(fixture: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """(training, eval, summary) logs as on_log got them (without `step`), each with its step in `_step`."""
    train, evaluation, summary = [], [], []
    for entry in fixture["log_history"]:
        logs = {k: v for k, v in entry.items() if k != "step"}
        (summary if is_summary_log(logs) else evaluation if is_eval_log(logs) else train).append((entry["step"], logs))
    return train, evaluation, summary


def detected_kind(kind: str) -> str:
    return "grpo" if kind == "rloo" else kind  # RLOO logs GRPO's keys


def test_the_fixtures_are_there_and_captured():
    assert set(NAMES) == set(MAPPED)
    assert {load(name)["kind"] for name in NAMES} == set(TRAINER_KINDS) - {"ppo"}
    for name in NAMES:
        fixture = load(name)
        assert fixture["source"] == "captured" and name == f"trl-{fixture['versions']['trl']}_{fixture['kind']}"
        assert fixture["versions"]["torch"].startswith("2.13.0")
        train, evaluation, summary = parts(fixture)
        assert len(train) == 4 and len(summary) == 1
        assert len(evaluation) == (2 if fixture["kind"] in ("grpo", "sft") and name != "trl-0.14.0_grpo" else 0)
        assert set().union(*(logs for _, logs in train)) == set(fixture["keys"]["train"])


def test_trl_1_16_fixtures_are_the_keys_test_training_checks():
    from test_training import SFT_EVAL_KEYS, TRAIN_KEYS

    for kind, keys in TRAIN_KEYS.items():
        assert set(load(f"trl-1.16.0_{kind}")["keys"]["train"]) == keys
    assert set(load("trl-1.16.0_sft")["keys"]["eval"]) == SFT_EVAL_KEYS


@pytest.mark.parametrize("name", NAMES)
def test_detected_from_keys(name):
    fixture = load(name)
    train, evaluation, _ = parts(fixture)
    expected = detected_kind(fixture["kind"])
    telling = [logs for _, logs in train if not set(logs) <= BARE]
    assert all(detect_trainer_kind(logs) is None for _, logs in train if set(logs) <= BARE)
    assert [detect_trainer_kind(logs) for logs in telling] == [expected] * len(telling)
    assert [detect_trainer_kind(logs) for _, logs in evaluation] == [expected] * len(evaluation)
    assert detect_trainer_kind(fixture["keys"]["train"]) == (None if name == "trl-0.15.2_reward" else expected)
    assert len(telling) >= (0 if name == "trl-0.15.2_reward" else 2)


@pytest.mark.parametrize("name", NAMES)
def test_detected_from_the_classes(name):
    fixture = load(name)
    for dotted in (fixture["trainer_class"], fixture["config_class"]):
        module, _, cls = dotted.rpartition(".")
        assert kind_from_class(type(cls, (), {})) == fixture["kind"]  # by name: TRL 0.x classes are not installed
        if fixture["versions"]["trl"] == importlib.import_module("trl").__version__:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TRLExperimentalWarning of trl.experimental.orpo / .cpo
                real = getattr(importlib.import_module(module), cls)
            assert kind_from_class(real) == fixture["kind"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("given", ["kind", "detected"])
def test_maps_onto_the_core_fields(name, given):
    fixture = load(name)
    train, _, _ = parts(fixture)
    kind = fixture["kind"] if given == "kind" else None
    for step, logs in train:
        metrics = map_log(logs, step, kind)
        record = metrics.to_dict()
        expected = {**MAPPED[name], "epoch": "epoch"}
        if set(logs) <= BARE:
            expected = {field: raw for field, raw in expected.items() if raw in logs}
        assert {field for field in record if field in CORE_FIELDS} - {"step"} == set(expected), (step, logs)
        assert all(record[field] == logs[raw] for field, raw in expected.items())
        assert all(record[key] == value for key, value in logs.items() if key not in CORE_FIELDS)  # raw names kept
        metrics.run_id, metrics.timestamp = "run", 1.0
        assert log_record(logs, step, kind, "run", 1.0) == metrics.to_dict()


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith(("_grpo", "_rloo"))])
def test_grpo_completion_lengths_and_per_function_rewards(name):
    train, _, _ = parts(load(name))
    for step, logs in train:
        if set(logs) <= BARE:
            continue
        record = map_log(logs, step, "grpo").to_dict()
        length = logs.get("completion_length", logs.get("completions/mean_length"))
        assert record["completions/mean_length"] == length  # TRL <= 0.16 `completion_length` feeds the same name
        per_function = {k for k in logs if k.startswith("rewards/")}
        old = name.startswith("trl-0.")
        assert per_function == ({"rewards/reward_len", "rewards/reward_words"} if old else
                                {f"rewards/reward_{f}/{s}" for f in ("len", "words") for s in ("mean", "std")})
        assert all(record[k] == logs[k] for k in per_function)


@pytest.mark.parametrize("name", NAMES)
def test_default_charts_are_among_the_logged_names(name):
    fixture = load(name)
    train, evaluation, _ = parts(fixture)
    logged = set().union(*(map_log(logs, step, fixture["kind"]).to_dict() for step, logs in train + evaluation))
    charts = default_charts(fixture["kind"])
    assert set(charts) - logged == NOT_CHARTED.get(name, set())
    assert default_charts(fixture["kind"], available=logged) == [c for c in charts if c in logged]
    assert len(default_charts(fixture["kind"], available=logged)) >= 3  # 0.15.2 reward: loss, grad norm, lr


@pytest.mark.parametrize("name", [n for n in NAMES if load(n)["keys"].get("eval")])
def test_eval_keys_are_kept_apart(name):
    fixture = load(name)
    _, evaluation, _ = parts(fixture)
    assert evaluation
    for given in (fixture["kind"], None):
        for step, logs in evaluation:
            record = map_log(logs, step, given).to_dict()
            assert {k for k in record if k in CORE_FIELDS} == {"step", "epoch"}  # no training field filled
            assert {k: v for k, v in record.items() if k not in CORE_FIELDS} == {
                k: v for k, v in logs.items() if k != "epoch"}  # exactly the eval_ keys, no alias added
            assert all(k.startswith("eval_") for k in record if k not in CORE_FIELDS)


@pytest.mark.parametrize("name", NAMES)
def test_replayed_through_the_callback(name, tmp_path):
    """The callback's own path: the kind from the config class (as Unsloth's GRPOConfig subclass gives it too),
    the kind's alert rules, one record per log; eval logs are stored and observed too (they feed only the
    train/eval divergence rule), in log order."""
    fixture = load(name)
    kind = fixture["kind"]
    config_name = fixture["config_class"].rpartition(".")[2]
    config_cls = type("Unsloth" + config_name, (type(config_name, (), {}),), {})
    cb = RLDKCallback(tmp_path, run_id="replay", write_interval=0)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    cb.on_train_begin(config_cls(), state, None)
    observed: list[dict] = []
    monitor = cb._alert_monitor()
    observe = monitor.observe
    monitor.observe = lambda record: observed.append(record) or observe(record)
    for entry in fixture["log_history"]:
        state.global_step = entry["step"]
        cb.on_log(config_cls(), state, None, logs={k: v for k, v in entry.items() if k != "step"})
    cb.on_train_end(config_cls(), state, None)
    assert cb.trainer_kind == kind and monitor.rules == AlertRules.for_trainer(kind)
    data = RunStore(tmp_path, "replay").read_all()
    train, evaluation, _ = parts(fixture)
    assert len(data.metrics) == len(train) + len(evaluation)
    assert [r["step"] for r in observed] == [entry["step"] for entry in fixture["log_history"]
                                             if not is_summary_log(entry)]
    assert sum(1 for r in observed if any(k.startswith("eval_") for k in r)) == len(evaluation)
    stored_evals = [r for r in data.metrics if any(k.startswith("eval_") for k in r)]
    assert len(stored_evals) == len(evaluation)
    assert all({k for k in r if k in CORE_FIELDS} == {"step", "timestamp", "epoch"} for r in stored_evals)
    assert data.ppo_metrics == []
    # 4 healthy steps; the tiny model's GRPO completions all hit max_completion_length=8, which TRL 1.16 reports
    clipped = ["completions_clipped"] if name in ("trl-1.16.0_grpo", "trl-1.16.0_rloo") else []
    assert [alert["type"] for alert in data.alerts] == clipped


def test_alert_rules_for_the_new_kinds():
    base = AlertRules()
    for kind in ("orpo", "cpo", "kto"):
        rules = AlertRules.for_trainer(kind)
        assert rules.disabled == {"zero_reward_variance", "reward_hacking"}
        assert "reward_collapse" not in rules.disabled  # on rewards/margins, as for DPO
    assert (AlertRules.for_trainer("kto").kl_max, AlertRules.for_trainer("kto").kl_spike_min) == (10.0, 1.0)
    assert (AlertRules.for_trainer("orpo").kl_max, AlertRules.for_trainer("cpo").kl_max) == (base.kl_max, base.kl_max)
    assert AlertRules.for_trainer("grpo") == AlertRules.for_trainer("dpo") == base
    assert AlertRules.for_trainer("kto", kl_max=3.0).kl_max == 3.0


def test_early_grpo_completion_length_blowup_fires():
    """TRL 0.15's `completion_length` reaches the completion-length rule through `completions/mean_length`."""
    fixture = load("trl-0.15.2_grpo")
    template = parts(fixture)[0][0][1]
    monitor = AlertMonitor(AlertRules.for_trainer("grpo"))
    alerts = []
    for step in range(1, 41):
        logs = {**template, "completion_length": 8.0 + (step % 3) * 0.1 if step < 30 else 40.0}
        alerts += monitor.observe(log_record(logs, step, "grpo", "run", float(step)))
    assert [a["type"] for a in alerts] == ["completion_length_blowup"]
    assert alerts[0]["metric"] == "completions/mean_length" and alerts[0]["step"] == 30


@pytest.mark.parametrize("kind", [*TRAINER_KINDS, None])
def test_lr_is_the_learning_rate_for_every_kind(kind):
    assert map_log({"lr": 2e-5, "loss": 1.0}, 1, kind).learning_rate == 2e-5
    assert map_log({"lr": 2e-5, "learning_rate": 3e-5}, 1, kind).learning_rate == 3e-5  # the core name wins
    assert map_log({"lr": 2e-5}, 1, kind).extra == {"lr": 2e-5}


def test_lr_alone_is_not_a_ppo_row():
    assert ppo_keys({"lr": 1e-5, "loss": 1.0}) == {}
    assert ppo_keys({"lr": 1e-5, "eps": 3}) == {"lr": 1e-5, "eps": 3}


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        # LLaMA-Factory's ORPO (loss_type="orpo"): DPO-style rewards/* plus sft_loss and odds_ratio_loss
        ({"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
          "logps/rejected", "logits/chosen", "logits/rejected", "sft_loss", "odds_ratio_loss"}, "orpo"),
        # KTO: a window of desirable examples only; without its KL term (loss_type="apo_zero_unpaired") it reads
        # as DPO (documented limit: its keys are DPO's without rewards/accuracies, too weak a sign to go on)
        ({"loss", "rewards/chosen", "logps/chosen", "logits/chosen", "kl"}, "kto"),
        ({"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"}, "dpo"),
        # DPO with rpo_alpha in TRL < 1: the CPO keys (documented limit; the class tells them apart)
        ({"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "nll_loss"}, "cpo"),
        # early GRPO pieces: per-function rewards alone, a reward with its std, a completion length
        ({"loss", "rewards/correctness_reward_func", "rewards/xmlcount_reward_func"}, "grpo"),
        ({"reward", "reward_std", "kl"}, "grpo"),
        ({"eval_completion_length", "eval_loss"}, "grpo"),
        # a preference log with another rewards/ key (e.g. an online preference trainer's) stays a preference log
        ({"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "rewards/probabilities"},
         "dpo"),
        ({"reward", "kl", "entropy"}, None),
        ({"logps/chosen", "logps/rejected"}, "dpo"),
    ],
)
def test_detection_of_key_sets_seen_elsewhere(keys, kind):
    assert detect_trainer_kind(keys) == kind


def test_the_numbers_stay_finite_or_nan():
    for name in NAMES:
        for step, logs in parts(load(name))[0]:
            record = map_log(logs, step, None).to_dict()
            assert all(isinstance(v, float) and (math.isfinite(v) or math.isnan(v))
                       for k, v in record.items() if k not in ("step", "run_id"))
