"""RLDKMetrics: typed fields, extra keys, validation, to_dict / from_dict round trip."""

import math

import numpy as np
import pytest

from rldk_widget import RLDKMetrics


def test_to_dict_is_flat_with_extra_inline():
    m = RLDKMetrics(step=3, loss=0.5, reward_mean=1.0, extra={"rewards/acc/mean": 0.25})
    assert m.to_dict() == {"step": 3, "loss": 0.5, "reward_mean": 1.0, "rewards/acc/mean": 0.25}


def test_from_dict_round_trip_keeps_unknown_numeric_keys():
    data = {"step": 7, "kl_mean": 0.02, "completions/mean_length": 31.0, "run_id": "r"}
    m = RLDKMetrics.from_dict(data)
    assert m.kl_mean == 0.02 and m.extra == {"completions/mean_length": 31.0} and m.run_id == "r"
    assert RLDKMetrics.from_dict(m.to_dict()) == m


def test_non_finite_values_are_kept():
    m = RLDKMetrics.from_dict({"step": 1, "loss": float("nan"), "grad_norm": float("inf"), "x": -math.inf})
    assert math.isnan(m.loss) and m.grad_norm == math.inf and m.extra["x"] == -math.inf


def test_numpy_and_bool_scalars_become_floats():
    m = RLDKMetrics.from_dict({"step": np.int64(4), "loss": np.float32(0.5), "flag": True})
    assert m.step == 4 and m.loss == 0.5 and m.extra["flag"] == 1.0


def test_non_numeric_values_are_skipped_with_one_warning():
    with pytest.warns(UserWarning, match="a, b") as caught:
        m = RLDKMetrics.from_dict({"step": 1, "a": "text", "b": [1], "loss": 2})
    assert len(caught) == 1 and m.loss == 2.0 and m.extra == {}


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (None, TypeError, "got None"),
        ([1, 2], TypeError, "got list"),
        ({"loss": 1.0}, ValueError, "'step'"),
        ({"step": None}, TypeError, "'step'"),
        ({"step": -1}, ValueError, "non-negative"),
        ({"step": 1.5}, ValueError, "non-negative integer"),
        ({"step": float("nan")}, ValueError, "non-negative integer"),
        ({"step": "3"}, TypeError, "got str"),
        ({"step": True}, TypeError, "bool"),
        ({"step": 1, "run_id": 5}, TypeError, "run_id"),
    ],
)
def test_bad_input_raises_a_clear_error(data, error, match):
    with pytest.raises(error, match=match):
        RLDKMetrics.from_dict(data)


def test_constructor_rejects_wrong_field_types():
    with pytest.raises(TypeError, match="RLDKMetrics.loss"):
        RLDKMetrics(step=1, loss="high")
    with pytest.raises(TypeError, match="extra"):
        RLDKMetrics(step=1, extra={"a": "b"})
