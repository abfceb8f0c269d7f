"""trl_keys: mapping of real TRL 1.16 log dicts (tests/trl_logs.py, captured by tests/capture_trl_logs.py), PPO /
legacy keys, trainer-kind detection and default charts. tests/test_trl_fixtures.py checks every captured fixture
(TRL 1.16, 0.16.1, 0.15.2, 0.14.0; ORPO, KTO, CPO too)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    mapped_record,
    mapped_record_plan,
    ppo_keys,
)

from trl_logs import DPO_LOG, GRPO_LOG, LEGACY_PPO_LOG, PPO_LOG, REWARD_LOG, SFT_EVAL_LOG, SFT_LOG, SUMMARY_LOG

# every key a captured log holds, plus names that collide with mapped ones
_LOG_KEYS = sorted({k for log in (DPO_LOG, GRPO_LOG, LEGACY_PPO_LOG, PPO_LOG, REWARD_LOG, SFT_EVAL_LOG, SFT_LOG)
                    for k in log} | set(CORE_FIELDS) | {"reward", "kl", "entropy", "completion_length", "x"})


def test_grpo_mapping():
    m = map_log(GRPO_LOG, 2, "grpo")
    assert m.step == 2
    assert (m.reward_mean, m.reward_std, m.kl_mean, m.entropy_mean, m.clip_frac) == (-0.125, 0.1735, 3.516e-05,
                                                                                      5.943, 0.0)
    assert (m.loss, m.grad_norm, m.learning_rate, m.step_time, m.epoch) == (3.558e-06, 1.068, 0.0006667, 0.02961,
                                                                            0.0625)
    for raw in ("reward", "kl", "entropy", "clip_ratio/region_mean", "rewards/reward_len/mean",
                "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std", "num_tokens"):
        assert m.extra[raw] == GRPO_LOG[raw]
    assert "reward_std" not in m.extra and "loss" not in m.extra


def test_rloo_uses_the_grpo_mapping():
    assert map_log(GRPO_LOG, 1, "rloo").to_dict() == map_log(GRPO_LOG, 1, "grpo").to_dict()


def test_dpo_reward_is_the_margin():
    m = map_log(DPO_LOG, 3, "dpo")
    assert m.reward_mean == DPO_LOG["rewards/margins"]
    assert m.entropy_mean == 5.944 and m.kl_mean is None
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
            "logits/rejected", "mean_token_accuracy"} <= set(m.extra)


def test_sft_and_eval_logs():
    m = map_log(SFT_LOG, 2, "sft")
    assert (m.loss, m.entropy_mean, m.extra["mean_token_accuracy"]) == (5.933, 5.944, 0.0)
    e = map_log(SFT_EVAL_LOG, 2, "sft")
    assert e.loss is None and e.entropy_mean is None and e.epoch == 0.125
    assert e.extra == {k: v for k, v in SFT_EVAL_LOG.items() if k != "epoch"}
    assert is_eval_log(SFT_EVAL_LOG) and not is_eval_log(SFT_LOG)


def test_reward_trainer_mapping():
    m = map_log(REWARD_LOG, 5, "reward")
    assert (m.reward_mean, m.reward_min, m.reward_max) == (-0.004551, -0.1364, 0.1083)
    assert (m.extra["accuracy"], m.extra["margin"], m.extra["mean_reward"]) == (1.0, 0.1848, -0.004551)


def test_ppo_mapping():
    m = map_log(PPO_LOG, 7, "ppo")
    assert (m.reward_mean, m.kl_mean, m.entropy_mean, m.clip_frac, m.policy_loss, m.value_loss,
            m.learning_rate) == (1.5, 0.8, 40.0, 0.12, -0.02, 0.3, 3e-6)
    assert set(PPO_LOG) - {"epoch"} <= set(m.extra)


def test_legacy_ppo_mapping():
    m = map_log(LEGACY_PPO_LOG, 1, "ppo")
    assert (m.reward_mean, m.reward_std, m.kl_mean, m.entropy_mean, m.clip_frac, m.policy_loss, m.value_loss,
            m.loss, m.learning_rate, m.step_time) == (0.7, 0.2, 0.4, 30.0, 0.08, -0.01, 0.5, 0.04, 1.41e-5, 3.2)
    assert m.extra["ppo/mean_non_score_reward"] == -0.08


def test_first_present_key_wins_and_identical_names_win():
    m = map_log({"objective/rlhf_reward": 1.0, "ppo/mean_scores": 2.0, "loss": 3.0, "ppo/loss/total": 4.0}, 0, "ppo")
    assert (m.reward_mean, m.loss) == (1.0, 3.0)
    assert m.extra == {"objective/rlhf_reward": 1.0, "ppo/mean_scores": 2.0, "ppo/loss/total": 4.0}


def test_none_is_nan_and_non_numeric_skipped_and_step_ignored():
    m = map_log({"reward": None, "loss": 1.0, "note": "hi", "step": 99, "run_id": "x"}, 4, "grpo")
    assert m.step == 4 and math.isnan(m.reward_mean) and math.isnan(m.extra["reward"])
    assert "note" not in m.extra and "step" not in m.extra and m.run_id is None


def test_unknown_kind_detects_from_keys():
    assert map_log(GRPO_LOG, 1, None).reward_mean == -0.125
    assert map_log(DPO_LOG, 1, "unknown").reward_mean == DPO_LOG["rewards/margins"]
    generic = map_log({"kl": 0.1, "reward": 2.0, "entropy": 0.3}, 1, None)
    assert (generic.kl_mean, generic.reward_mean, generic.entropy_mean) == (0.1, 2.0, 0.3)


@pytest.mark.parametrize(
    ("logs", "kind"),
    [(GRPO_LOG, "grpo"), (DPO_LOG, "dpo"), (SFT_LOG, "sft"), (SFT_EVAL_LOG, "sft"), (REWARD_LOG, "reward"),
     (PPO_LOG, "ppo"), (LEGACY_PPO_LOG, "ppo"), ({"loss": 1.0}, None), ({}, None), (list(DPO_LOG), "dpo")],
)
def test_detect_trainer_kind(logs, kind):
    assert detect_trainer_kind(logs) == kind


def test_kind_from_class():
    import warnings

    import trl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRLExperimentalWarning
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    assert [kind_from_class(c) for c in (trl.GRPOConfig, trl.RLOOTrainer, trl.DPOConfig, trl.SFTTrainer,
                                         trl.RewardConfig)] == ["grpo", "rloo", "dpo", "sft", "reward"]
    assert [kind_from_class(c) for c in (ORPOConfig, ORPOTrainer, trl.KTOConfig, trl.KTOTrainer, CPOConfig,
                                         CPOTrainer)] == ["orpo", "orpo", "kto", "kto", "cpo", "cpo"]

    class MyConfig(trl.GRPOConfig):
        pass

    class PPOConfig:
        pass

    assert kind_from_class(MyConfig) == "grpo" and kind_from_class(PPOConfig()) == "ppo"
    assert kind_from_class(object()) is None


def test_summary_and_ppo_key_helpers():
    assert is_summary_log(SUMMARY_LOG) and not is_summary_log(GRPO_LOG)
    assert set(ppo_keys(PPO_LOG)) == set(PPO_LOG) - {"epoch"}
    assert ppo_keys(GRPO_LOG) == {} and ppo_keys(DPO_LOG) == {}


@pytest.mark.parametrize("kind", [*TRAINER_KINDS, None])
def test_default_charts(kind):
    charts = default_charts(kind)
    assert charts and len(charts) == len(set(charts))
    assert default_charts(kind, available=charts[:2]) == charts[:2]


def test_default_charts_follow_the_brief():
    assert default_charts("grpo")[:6] == ["reward_mean", "kl_mean", "entropy_mean", "loss",
                                          "completions/mean_length", "grad_norm"]
    assert default_charts("GRPO") == default_charts("rloo")
    assert default_charts("ppo")[:6] == ["reward_mean", "kl_mean", "entropy_mean", "value_loss", "policy_loss",
                                         "clip_frac"]
    assert "kl_mean" not in default_charts("grpo", available=map_log({"reward": 1.0}, 1, "grpo").to_dict())


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.floats(allow_nan=False) | st.none(), max_size=12),
       st.sampled_from([*TRAINER_KINDS, None]))
def test_no_numeric_key_is_lost(logs, kind):
    out = map_log(logs, 1, kind).to_dict()
    for key, value in logs.items():
        if key in ("step", "run_id"):
            continue
        assert key in out
        if value is None:
            assert math.isnan(out[key])
        elif key not in CORE_FIELDS or key == "timestamp":
            assert out[key] == value


@pytest.mark.parametrize("logs", [GRPO_LOG, DPO_LOG, SFT_LOG, SFT_EVAL_LOG, REWARD_LOG, PPO_LOG, LEGACY_PPO_LOG,
                                  {"loss": None, "timestamp": 3.0, "step": 9, "note": "text", "reward": 1}])
@pytest.mark.parametrize("kind", [*TRAINER_KINDS, None])
def test_log_record_is_map_log_to_dict(logs, kind):
    metrics = map_log(logs, 7, kind)
    metrics.run_id, metrics.timestamp = "run", 123.5
    expected, got = metrics.to_dict(), log_record(logs, 7, kind, "run", 123.5)
    assert list(got) == list(expected)
    assert all(got[k] == expected[k] or (math.isnan(got[k]) and math.isnan(expected[k])) for k in expected)


@given(st.lists(st.sampled_from(_LOG_KEYS), unique=True, max_size=25),
       st.sampled_from([None, *TRAINER_KINDS, "unknown"]), st.randoms(use_true_random=False))
def test_a_record_plan_maps_exactly_as_mapped_record(keys, kind, rng):
    """The health checks map a run's records by a plan worked out once per set of names (health._records)."""
    record = {"step": 3, **{key: rng.choice([rng.random(), math.nan, math.inf, -1.5]) for key in keys if key != "step"}}
    plan = mapped_record_plan(tuple(record), kind)
    planned = {name: record[source] for name, source in plan}
    expected = mapped_record(record, kind)
    assert list(planned) == list(expected)
    assert all(planned[k] == expected[k] or (math.isnan(planned[k]) and math.isnan(expected[k])) for k in expected)
