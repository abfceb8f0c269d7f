"""Property tests (hypothesis) of what a training loop may hand the dashboard.

`add_metrics` / `add_alert` get arbitrary mappings and RLDKMetrics: extreme floats (NaN of any payload, ±Inf,
1e308, -0.0, subnormals), huge ints, bools, numpy scalars, strings, nested values, None, very long and unicode
names, lone surrogates, HTML payloads. The invariant: either a TypeError/ValueError before anything is stored (no
file, no run, nothing in memory or on the comm, even after the next refresh), or the record is stored, persisted,
reloads identically (`update_data` in a fresh dashboard gives equal data, NaN and -0.0 included) and reaches the
view (the snapshot and delta messages on the comm decode to the same values). Every comm message passes the
kernel's wire encoder (jupyter_client's `json_packer`: no NaN, valid UTF-8).

An independent oracle of the documented contract decides which inputs must be accepted, so a dashboard that
rejected everything, or stored something else, fails too.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rldk_widget import RLDKDashboard, RLDKMetrics
from rldk_widget.metrics import CORE_FLOAT_FIELDS
from rldk_widget.store import JSON_KINDS, CSV_KINDS, RunStore, validate_run_id

from helpers import CommTap, same_float

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_STEP = 2**53
RUN_ID_RE = r"[A-Za-z0-9._-]{1,128}"

# ---- strategies ---------------------------------------------------------------------------------------------
NEG_NAN = math.copysign(math.nan, -1.0)
EDGE_FLOATS = [math.nan, NEG_NAN, math.inf, -math.inf, 1e308, -1e308, sys.float_info.max, -0.0, 0.0, 5e-324,
               -5e-324, 2.2250738585072014e-308, 1e-320]
HOSTILE = ['<script>window.__pwned=1</script>', '<img src=x onerror="window.__pwned=1">', 'javascript:alert(1)',
           '<svg onload=alert(1)>', '</style><style>*{display:none}</style>', '\u202egnp.exe', '"><b>x</b>',
           "{{constructor.constructor('alert(1)')()}}", "%{y}<br>", "\x00\x1b[31m", "ok\nline2\ttab"]
SURROGATES = ["\ud800", "a\udfffb", "\udc80"]

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), st.sampled_from(EDGE_FLOATS))
EDGE_INTS = [2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**200, -(2**63), -(2**63) - 1, 10**400, -(10**400)]
huge_ints = st.one_of(st.integers(), st.sampled_from(EDGE_INTS))
numpy_scalars = st.one_of(
    floats.map(np.float64),
    st.floats(width=32, allow_nan=True).map(np.float32),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.booleans().map(np.bool_),
)
texts = st.one_of(st.text(max_size=30), st.sampled_from(HOSTILE + SURROGATES))
# a third of the scalars are edge cases, so each run meets them many times
edge_scalars = st.sampled_from([*EDGE_FLOATS, *EDGE_INTS, True, False, None, *HOSTILE, *SURROGATES, np.float32("nan"),
                                np.float64("-inf"), np.int64(-(2**63)), np.bool_(True)])
scalars = st.one_of(edge_scalars, edge_scalars, floats, huge_ints, st.booleans(), numpy_scalars, texts)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=3), max_leaves=6)
long_names = st.tuples(st.text(min_size=1, max_size=3), st.integers(200, 3000)).map(lambda t: t[0] * t[1])
str_names = st.one_of(st.text(max_size=25), long_names, st.sampled_from(HOSTILE + SURROGATES),
                      st.sampled_from(["loss", "timestamp", "run_id", "step", "extra", "ppo:kl", "ckpt:size",
                                       "rewards/acc/mean", "", " ", *CORE_FLOAT_FIELDS]))
names = st.one_of(str_names, st.integers(), st.tuples(st.integers()), st.none())
valid_run_ids = st.from_regex(r"[A-Za-z0-9._-]{1,24}", fullmatch=True).filter(lambda s: s not in (".", ".."))
run_id_values = st.one_of(valid_run_ids, st.sampled_from(["../x", "a/b", "*", "a?", "[ab]", "", ".", "..", "~", "x" * 129,
                                                          "\ud800", "run id", "ü"]), st.integers(), st.none())
steps = st.one_of(st.integers(0, 10**6), st.integers(0, 10**6).map(float), st.integers(0, 1000).map(np.int64),
                  st.integers(0, 2**60), st.sampled_from([0, MAX_STEP, MAX_STEP + 1, 2**63, 2**64, 10**400, -1, 1.5, math.nan, math.inf,
                                   -0.0, True, False, "3", None, np.float32(2.0), np.float64(7.0), 1e20, 2.0**53, 2.0**53 + 2,
                                   -(10**400), np.uint64(2**64 - 1)]))


@st.composite
def metric_mappings(draw):
    mapping = draw(st.dictionaries(names, values, max_size=6))
    if draw(st.integers(0, 9)) != 1:
        mapping["step"] = draw(steps)
    if draw(st.integers(0, 4)) == 1:
        mapping["run_id"] = draw(run_id_values)
    if draw(st.integers(0, 5)) == 1:
        mapping["extra"] = draw(st.dictionaries(names, values, max_size=4))
    return mapping


class MetricsArgs(dict):
    """Keyword arguments of an RLDKMetrics built inside the test (construction may raise the clear error)."""


optional_floats = st.one_of(st.none(), floats)
metrics_args = st.fixed_dictionaries(
    {"step": steps},
    optional={
        "loss": optional_floats,
        "reward_mean": optional_floats,
        "kl_mean": optional_floats,
        "grad_norm": optional_floats,
        "timestamp": optional_floats,
        "run_id": st.one_of(st.none(), valid_run_ids),
        "extra": st.dictionaries(str_names, st.one_of(floats, huge_ints, st.booleans(), numpy_scalars), max_size=4),
    },
).map(MetricsArgs)


# ---- the oracle: docs/protocol.md + the add_metrics / add_alert docstrings ------------------------------
def number(value):
    """A real number as float (bools, ints, numpy scalars); None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, np.integer)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def valid_step(value) -> bool:
    if isinstance(value, (bool, np.bool_)) or number(value) is None:
        return False
    n = number(value)
    if not math.isfinite(n) or n < 0 or n != int(n):
        return False
    return (value if isinstance(value, int) else int(n)) <= MAX_STEP


def valid_run_id(value) -> bool:
    import re

    return isinstance(value, str) and re.fullmatch(RUN_ID_RE, value) is not None and value not in (".", "..")


def utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def expected_metrics(item):
    """(accepted?, run_id or None for the default run, series values by name) for one add_metrics item."""
    if isinstance(item, RLDKMetrics):
        mapping = {"step": item.step, "run_id": item.run_id, **{n: getattr(item, n) for n in CORE_FLOAT_FIELDS},
                   "extra": item.extra}
    else:
        mapping = item
    if "step" not in mapping or not valid_step(mapping["step"]):
        return False, None, None
    run_id = mapping.get("run_id")
    if run_id is not None and not valid_run_id(run_id):
        return False, None, None
    core, extra = {}, {}
    for key, value in mapping.items():
        if key in ("step", "run_id"):
            continue
        if key == "extra" and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                if isinstance(sub_key, str) and number(sub_value) is not None:
                    extra[sub_key] = number(sub_value)
            continue
        if isinstance(key, str) and number(value) is not None:
            (core if key in CORE_FLOAT_FIELDS else extra)[key] = number(value)
    series = dict(core)
    for key, value in extra.items():
        if key not in ("step", "run_id"):
            series.setdefault(key, value)
    if not all(utf8(name) for name in series):
        return False, None, None
    step = mapping["step"]
    return True, run_id, {"step": step if isinstance(step, int) and not isinstance(step, bool) else int(number(step)),
                          **series}


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if number(value) is not None:
        return json_safe(number(value))
    return str(value)


def expected_alert(alert):
    """(accepted?, the record as stored minus `timestamp` when it is generated) for one add_alert dict."""
    if not isinstance(alert, Mapping) or not all(isinstance(k, str) for k in alert):
        return False, None
    for key in ("type", "message"):
        if not isinstance(alert.get(key), str) or not alert[key]:
            return False, None
    record = {key: json_safe(value) for key, value in alert.items()}
    record.setdefault("severity", "warning")
    if record["severity"] not in ("info", "warning", "critical"):
        return False, None
    if alert.get("step") is not None:
        if not valid_step(alert["step"]):
            return False, None
        record["step"] = alert["step"] if isinstance(alert["step"], int) else int(number(alert["step"]))
    if record.get("run_id") is not None and not valid_run_id(record["run_id"]):
        return False, None
    stamp = record.get("timestamp")  # judged after the JSON conversion: a numpy bool is the number 0.0 / 1.0 there
    keep_stamp = type(stamp) in (int, float) and math.isfinite(number(stamp))
    if not keep_stamp:
        record.pop("timestamp", None)
    for key, value in record.items():
        if not utf8(key) or (isinstance(value, str) and not utf8(value)):
            return False, None
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            return False, None
    return True, record


# ---- checks -------------------------------------------------------------------------------------------------
def quiet(call, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args)


def assert_nothing_stored(directory: Path, dash: RLDKDashboard, tap: CommTap) -> None:
    assert os.listdir(directory) == [], "a rejected record left a file"
    dash.update_data()
    dash.flush()
    assert dash.run_ids == [] and dash.to_dataframe().empty and dash.alerts_dataframe().empty
    assert tap.view.point_count() == 0 and tap.view.alerts == [], "a rejected record reached the view"


def store_or_reject(directory: Path, must_accept: bool, shown: str, call, closing: ExitStack) -> tuple | None:
    """Run `call(dash)` on a fresh dashboard with a view (closed by `closing`). A rejection (TypeError/ValueError)
    must be expected and leave nothing stored: returns None. Otherwise the input must have been valid: returns
    (dash, tap, time before, time after) with the queued delta sent."""
    dash = RLDKDashboard(output_dir=directory, auto_refresh=False)
    closing.callback(dash.close)
    tap = CommTap(dash, view=True)
    before = time.time()
    try:
        call(dash)
    except (TypeError, ValueError) as err:
        event("rejected")
        assert not must_accept, f"valid input {shown} rejected: {err!r}"
        assert_nothing_stored(directory, dash, tap)
        return None
    after = time.time()
    event("stored")
    assert must_accept, f"invalid input accepted: {shown}"
    dash.flush()
    return dash, tap, before, after


def assert_same_record(actual: dict, expected: dict, where: str) -> None:
    assert set(actual) == set(expected), f"{where}: keys {sorted(map(repr, actual))} != {sorted(map(repr, expected))}"
    for key, value in expected.items():
        got = actual[key]
        if isinstance(value, float) and isinstance(got, float):
            assert same_float(got, value), f"{where}: {key!r} = {got!r}, expected {value!r}"
        else:
            assert got == value and type(got) is type(value), f"{where}: {key!r} = {got!r}, expected {value!r}"


def view_series(view, run_id):
    return {name: view.series(run_id, name) for name in view.names(run_id)}


def assert_series_equal(actual: dict, expected: dict, where: str) -> None:
    assert sorted(actual) == sorted(expected), f"{where}: series {sorted(actual)} != {sorted(expected)}"
    for name, (xs, ys) in expected.items():
        got_x, got_y = actual[name]
        assert list(got_x) == list(xs), f"{where}: steps of {name!r}"
        assert len(got_y) == len(ys) and all(same_float(a, b) for a, b in zip(got_y, ys)), (
            f"{where}: values of {name!r}: {list(got_y)} != {list(ys)}"
        )


def points_of(records: list[dict]) -> dict:
    points: dict = {}
    for record in records:
        for key, value in record.items():
            if key not in ("step", "run_id"):
                xs, ys = points.setdefault(key, ([], []))
                xs.append(float(record["step"]))
                ys.append(value)
    return points


def assert_frames_equal(live: pd.DataFrame, fresh: pd.DataFrame, where: str) -> None:
    pd.testing.assert_frame_equal(live.reset_index(drop=True), fresh.reset_index(drop=True), check_like=True,
                                  check_exact=True, obj=where)


# ---- properties ---------------------------------------------------------------------------------------------
@settings(max_examples=200, **SETTINGS)
@given(raw=st.lists(st.one_of(metric_mappings(), metrics_args), min_size=1, max_size=3))
# inputs that broke an earlier version (each is checked on every run)
@example(raw=[{"step": 1, "x": 10**400, "y": -(10**400)}])  # OverflowError from as_number
@example(raw=[{"step": 10**400}])  # OverflowError instead of ValueError
@example(raw=[{"step": 2**63, "loss": 1.0}])  # accepted, shown at step -2**63
@example(raw=[{"step": 1, "\ud800": 1.0}])  # rejected late: shown anyway at the next refresh
@example(raw=[{"step": 1, "loss": 1.0, "run_id": "a"}, {"step": 2, "\udc80": 1.0, "run_id": "b"}])  # half stored
@example(raw=[{"step": np.True_, "loss": 1.0}])  # a numpy bool taken as step 1
@example(raw=[{"step": 3, "loss": NEG_NAN, "z": -0.0, "sub": 5e-324, "big": 1e308, "inf": -math.inf, "b": True}])
@example(raw=[MetricsArgs(step=5, loss=math.nan, extra={"<script>x</script>": 2**64, "\u202eabc": -0.0})])
def test_add_metrics_rejects_cleanly_or_stores_reloads_and_shows_the_same(raw):
    try:
        items = [RLDKMetrics(**item) if isinstance(item, MetricsArgs) else item for item in raw]
    except (TypeError, ValueError):
        event("RLDKMetrics() rejected")
        assert any(isinstance(item, MetricsArgs) and not valid_step(item["step"]) for item in raw)
        return
    for item in raw:
        if isinstance(item, MetricsArgs):
            assert valid_step(item["step"]), f"RLDKMetrics accepted step {item['step']!r}"
    oracle = [expected_metrics(item) for item in items]
    must_accept = all(accepted for accepted, _run, _record in oracle)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as closing:
        directory = Path(tmp)
        stored = store_or_reject(
            directory, must_accept, repr(items),
            lambda dash: quiet(dash.add_metrics, items if len(items) > 1 else items[0]), closing,
        )
        if stored is None:
            return
        dash, tap, before, after = stored
        default_run = dash._writer_run_id
        expected_runs: dict[str, list[dict]] = {}
        for _accepted, run_id, record in oracle:
            expected_runs.setdefault(run_id or default_run, []).append(record)

        assert sorted(dash.run_ids) == sorted(expected_runs)
        for run_id, expected in expected_runs.items():
            # persisted: the run file holds exactly these records (a timestamp is added when missing)
            on_disk = RunStore(directory, run_id).read_all().metrics
            assert len(on_disk) == len(expected)
            for got, want in zip(on_disk, expected):
                want = {**want, "run_id": run_id}
                if "timestamp" not in want:
                    assert before <= got["timestamp"] <= after
                    want["timestamp"] = got["timestamp"]
                assert_same_record(got, want, f"{run_id} on disk")
            expected_points = points_of(on_disk)
            # reaches the view: the live view's deltas decode to the same points
            assert_series_equal(view_series(tap.view, run_id), expected_points, f"{run_id} live view")

        fresh = RLDKDashboard(output_dir=directory, auto_refresh=False)
        closing.callback(fresh.close)
        fresh_tap = CommTap(fresh, view=True)
        assert sorted(fresh.run_ids) == sorted(expected_runs)
        for run_id, expected in expected_runs.items():
            on_disk = RunStore(directory, run_id).read_all().metrics
            # reloads identically: same frame, and a new view's snapshot holds the same points
            assert_frames_equal(dash.to_dataframe(run_id), fresh.to_dataframe(run_id), f"{run_id} reloaded frame")
            assert_series_equal(view_series(fresh_tap.view, run_id), points_of(on_disk), f"{run_id} reloaded view")
        assert not tap.wire_errors and not fresh_tap.wire_errors, tap.wire_errors + fresh_tap.wire_errors
        assert tap.view.gaps == 0


ALERT_KEYS = st.one_of(st.sampled_from(["value", "threshold", "metric", "note", "extra"]), str_names)
valid_texts = st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(HOSTILE), long_names)
invalid_texts = st.one_of(st.sampled_from(["", *SURROGATES]), st.integers(), st.none())


@st.composite
def alert_dicts(draw):
    alert = draw(st.dictionaries(ALERT_KEYS, st.one_of(scalars, values), max_size=4))
    if draw(st.integers(0, 9)) == 1:
        alert[draw(st.integers())] = "non-str key"
    for key in ("type", "message"):
        alert[key] = draw(invalid_texts if draw(st.integers(0, 14)) == 1 else valid_texts)
    if draw(st.integers(0, 2)) == 1:
        alert["severity"] = draw(st.sampled_from(["info", "warning", "critical", "info", "fatal", None, 1, "INFO"]))
    if draw(st.integers(0, 2)) == 1:
        alert["step"] = draw(st.one_of(st.integers(0, 10**6), steps))
    if draw(st.integers(0, 4)) == 1:
        alert["run_id"] = draw(st.one_of(valid_run_ids, run_id_values))
    if draw(st.integers(0, 3)) == 1:
        alert["timestamp"] = draw(st.one_of(floats, huge_ints, st.booleans(), st.text(max_size=3)))
    return alert


@settings(max_examples=200, **SETTINGS)
@given(alert=st.one_of(alert_dicts(), st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=5)))
@example(alert={"type": "t", "message": "m", "value": np.float64(0.5)})  # stored as the text "0.5"
@example(alert={"type": "t", "message": "m", "timestamp": 10**400})  # OverflowError
@example(alert={"type": "t", "message": "m", "count": 2**64})  # rejected late: shown, not stored
@example(alert={"type": "t\ud800", "message": "m"})  # rejected late
@example(alert={"type": "t", "message": "m", "step": np.False_})  # a numpy bool taken as step 0
@example(alert={"type": "<img src=x onerror=alert(1)>", "message": "<script>alert(1)</script>", "step": 3,
                "severity": "critical", "value": math.nan, "limit": -math.inf, "nested": {"a": [1, None]}})
def test_add_alert_rejects_cleanly_or_stores_reloads_and_shows_the_same(alert):
    must_accept, expected = expected_alert(alert)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as closing:
        directory = Path(tmp)
        stored = store_or_reject(directory, must_accept, repr(alert), lambda dash: dash.add_alert(alert), closing)
        if stored is None:
            return
        dash, tap, before, after = stored
        run_id = expected.get("run_id") or dash._writer_run_id
        want = {**expected, "run_id": run_id}
        (on_disk,) = RunStore(directory, run_id).read_all().alerts
        if "timestamp" not in want:
            assert before <= on_disk["timestamp"] <= after
            want["timestamp"] = on_disk["timestamp"]
        assert_same_record(on_disk, want, "alert on disk")
        (shown,) = tap.view.alerts
        assert_same_record(shown, want, "alert in the live view")

        fresh = RLDKDashboard(output_dir=directory, auto_refresh=False)
        closing.callback(fresh.close)
        fresh_tap = CommTap(fresh, view=True)
        (reloaded,) = fresh_tap.view.alerts
        assert_same_record(reloaded, want, "alert after reload")
        assert_frames_equal(dash.alerts_dataframe(), fresh.alerts_dataframe(), "alerts frame")
        assert not tap.wire_errors and not fresh_tap.wire_errors, tap.wire_errors + fresh_tap.wire_errors


# ---- run ids: only safe file-name stems --------------------------------------------------------------------
@settings(max_examples=300, **SETTINGS)
@given(run_id=st.one_of(st.text(max_size=140), st.from_regex(RUN_ID_RE, fullmatch=True),
                        st.sampled_from(["..", ".", "../..", "a/../b", "/etc/passwd", "~root", "*", "?", "[a-z]",
                                         "{a,b}", "a\\b", "a\x00b", "C:x", "x\n", " x", "..\u2215x", "\u2024\u2024"])))
def test_run_ids_are_accepted_exactly_when_safe_and_never_leave_output_dir(run_id):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        try:
            store = RunStore(out, run_id)
        except ValueError:
            assert not valid_run_id(run_id), f"safe run id {run_id!r} rejected"
            return
        assert valid_run_id(run_id), f"unsafe run id {run_id!r} accepted"
        for kind in (*JSON_KINDS, *CSV_KINDS):
            path = store.path(kind)
            assert path.parent == out and path.name.startswith(run_id + "_")
            assert os.path.realpath(path).startswith(os.path.realpath(out) + os.sep)


@pytest.mark.parametrize("bad", ["../escape", "..", ".", "a/b", "/tmp/abs", "*", "run?", "[ab]", "{a,b}", "~", "a\\b",
                                 "x\x00", "..\u2215etc", ""])
def test_traversal_and_glob_run_ids_are_rejected_everywhere_and_nothing_is_written(tmp_path, bad, dashboards):
    out = tmp_path / "runs"
    with pytest.raises(ValueError):
        dashboards(output_dir=out, run_id=bad)
    with pytest.raises(ValueError):
        validate_run_id(bad)
    dash = dashboards(output_dir=out)
    with pytest.raises(ValueError):
        dash.add_metrics({"step": 1, "loss": 1.0, "run_id": bad})
    with pytest.raises(ValueError):
        dash.add_metrics(RLDKMetrics(step=1, loss=1.0, run_id=bad))
    with pytest.raises(ValueError):
        dash.add_alert({"type": "t", "message": "m", "run_id": bad})
    dash.close()
    assert sorted(p.name for p in tmp_path.rglob("*")) == [], "a file or directory was created"


def test_store_rejects_an_unwritable_record_before_keeping_it_and_is_not_poisoned(tmp_path):
    """RunStore used directly (the training callback does): a record the file cannot hold raises ValueError,
    is neither written nor delivered to a reader, and the next good record is written normally."""
    store = RunStore(tmp_path, "r", follow=True)
    store.append_metrics({"step": 0, "loss": 1.0})
    for bad in ({"step": 1, "\ud800": 1.0}, {"step": 1, "big": 2**64}, {"step": 1, "loss": math.nan, "x": "\udc80"}):
        with pytest.raises(ValueError, match="cannot store"):
            store.append_metrics(bad)
    with pytest.raises(ValueError):
        store.append_alert({"type": "t", "message": "\ud800"})
    store.append_metrics({"step": 2, "loss": 0.5})
    assert [r["step"] for r in store.read_new().metrics] == [0, 2]
    assert [r["step"] for r in RunStore(tmp_path, "r").read_all().metrics] == [0, 2]
    assert store.write_errors == []
