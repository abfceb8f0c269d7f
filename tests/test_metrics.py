"""RLDKMetrics: typed fields, extra keys, validation, to_dict / from_dict round trip."""

import math
import warnings

import numpy as np
import pytest

from rldk_widget import RLDKMetrics
from rldk_widget.metrics import record_from_mapping


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


def test_a_repeated_key_layout_takes_the_fast_path_with_the_same_result_as_the_general_one():
    """add_metrics works a layout's key order out once; whatever the values of a later record with the same keys
    (None, a text, numpy, a big int, a bool, a bad step), the record equals RLDKMetrics.from_dict(...).to_dict()
    and the same warnings and errors come."""
    layout = ["zeta", "step", "loss", "run_id", "timestamp", "alpha", "kl_mean"]
    values = [
        [0.5, 1, 0.25, "r", 1.5, 2.0, 0.01],
        [1, 2, np.float32(0.5), None, 7, True, -0.0],
        [None, 3, float("nan"), "r", 1.0, "text", float("inf")],
        [10**30, 4, 0.1, "r", 1.0, 2.0, np.int64(3)],
        [0.5, np.int64(5), 0.1, "r", 1.0, 2.0, 0.3],
    ]
    for row in values:
        data = dict(zip(layout, row))
        with warnings.catch_warnings(record=True) as fast_warnings:
            warnings.simplefilter("always")
            fast = record_from_mapping(data)
        with warnings.catch_warnings(record=True) as general_warnings:
            warnings.simplefilter("always")
            general = RLDKMetrics.from_dict(data).to_dict()
        assert list(fast) == list(general) and all(same(fast[k], general[k]) for k in fast), (row, fast, general)
        assert [type(v) for v in fast.values()] == [type(v) for v in general.values()]
        assert [str(w.message) for w in fast_warnings] == [str(w.message) for w in general_warnings]
    with pytest.raises(ValueError, match="non-negative"):
        record_from_mapping(dict(zip(layout, [0.5, -1, 0.1, "r", 1.0, 2.0, 0.3])))
    with pytest.raises(TypeError, match="run_id"):
        record_from_mapping(dict(zip(layout, [0.5, 6, 0.1, 7, 1.0, 2.0, 0.3])))


def same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
