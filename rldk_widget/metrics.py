"""RLDKMetrics: one training step's metrics, typed core fields plus `extra` for any other numeric key."""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

MAX_STEP = 2**53
"""Largest step: views and the series columns hold steps as float64, exact up to 2**53."""

CORE_FLOAT_FIELDS: tuple[str, ...] = (
    "epoch",
    "learning_rate",
    "loss",
    "grad_norm",
    "reward_mean",
    "reward_std",
    "reward_min",
    "reward_max",
    "kl_mean",
    "kl_std",
    "entropy_mean",
    "clip_frac",
    "value_loss",
    "policy_loss",
    "step_time",
    "wall_time",
    "timestamp",
)


@dataclass
class RLDKMetrics:
    """Metrics of one logged training step. Only `step` is required."""

    step: int
    epoch: float | None = None
    learning_rate: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    reward_mean: float | None = None
    reward_std: float | None = None
    reward_min: float | None = None
    reward_max: float | None = None
    kl_mean: float | None = None
    kl_std: float | None = None
    entropy_mean: float | None = None
    clip_frac: float | None = None
    value_loss: float | None = None
    policy_loss: float | None = None
    step_time: float | None = None
    wall_time: float | None = None
    run_id: str | None = None
    timestamp: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.step = coerce_step(self.step)
        for name in CORE_FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None and type(value) is not float:
                number = as_number(value)
                if number is None:
                    raise TypeError(f"RLDKMetrics.{name} must be a number or None, got {type(value).__name__}")
                setattr(self, name, number)
        if self.run_id is not None and not isinstance(self.run_id, str):
            raise TypeError(f"RLDKMetrics.run_id must be a str or None, got {type(self.run_id).__name__}")
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"RLDKMetrics.extra must be a dict of numbers, got {type(self.extra).__name__}")
        extra: dict[str, float] = {}
        for key, value in self.extra.items():
            number = as_number(value)
            if not isinstance(key, str) or number is None:
                raise TypeError(f"RLDKMetrics.extra[{key!r}] must be a number under a str key")
            extra[key] = number
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: core fields that are set, then `extra` keys inline."""
        return flat_record(self.step, self.run_id, self.__dict__, self.extra)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RLDKMetrics":
        """Build from a flat mapping; unknown numeric keys go to `extra`, non-numeric ones are skipped
        with one warning naming them."""
        step, run_id, core, extra = split_mapping(data)
        return cls(step=step, run_id=run_id, extra=extra, **core)


_CORE_KEYS = frozenset(CORE_FLOAT_FIELDS)
_RESERVED = frozenset({"step", "run_id"})


def split_mapping(
    data: Mapping[str, Any], stacklevel: int = 4
) -> tuple[int, str | None, dict[str, float], dict[str, float]]:
    """A flat metrics mapping, validated, as (step, run_id, core fields, extra keys): what `from_dict` builds
    RLDKMetrics from and `record_from_mapping` a flat record. Non-numeric values are skipped with one warning."""
    if data is None:
        raise TypeError("expected a mapping with at least a 'step' key, got None")
    if type(data) is not dict and not isinstance(data, Mapping):
        raise TypeError(f"expected a mapping with at least a 'step' key, got {type(data).__name__}")
    if "step" not in data:
        raise ValueError(f"metrics need a 'step' key; got keys {sorted(map(str, data))[:10]}")
    step = coerce_step(data["step"])
    run_id: str | None = None
    core: dict[str, float] = {}
    extra: dict[str, float] = {}
    skipped: list[str] = []
    for key, value in data.items():
        if key == "step":
            continue
        if key == "run_id":
            if value is not None and not isinstance(value, str):
                raise TypeError(f"'run_id' must be a str, got {type(value).__name__}")
            run_id = value
            continue
        if key == "extra" and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                number = as_number(sub_value)
                if isinstance(sub_key, str) and number is not None:
                    extra[sub_key] = number
                else:
                    skipped.append(str(sub_key))
            continue
        number = value if type(value) is float else as_number(value)
        if number is None or not isinstance(key, str):
            if value is not None:
                skipped.append(str(key))
            continue
        if key in _CORE_KEYS:
            core[key] = number
        else:
            extra[key] = number
    if skipped:
        warnings.warn(
            f"skipped non-numeric metric values for keys: {', '.join(skipped[:10])}"
            + (f" (+{len(skipped) - 10} more)" if len(skipped) > 10 else ""),
            stacklevel=stacklevel,
        )
    return step, run_id, core, extra


def record_from_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """`RLDKMetrics.from_dict(data).to_dict()` without the dataclass in between (add_metrics' path)."""
    if type(data) is dict:
        record = _plain_record(data)
        if record is not None:
            return record
    step, run_id, core, extra = split_mapping(data, stacklevel=5)
    return flat_record(step, run_id, core, extra)


_LAYOUTS: dict[tuple[Any, ...], tuple[str, ...] | None] = {}
_MAX_LAYOUTS = 1024


def _plain_record(data: dict[Any, Any]) -> dict[str, Any] | None:
    """`record_from_mapping` of a dict with an int step, a str run id (or none) and numbers under str keys, with its
    key order worked out once per layout (a training loop logs the same keys every step); None for anything else,
    which the general path validates (and warns about)."""
    keys = tuple(data)
    try:
        order = _LAYOUTS[keys]
    except KeyError:
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        order = _LAYOUTS[keys] = _value_order(keys)
    if order is None:
        return None
    step = data["step"]
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        return None
    out: dict[str, Any] = {"step": step}
    run_id = data.get("run_id")
    if run_id is not None:
        if type(run_id) is not str:
            return None
        out["run_id"] = run_id
    for key in order:
        value = data[key]
        if type(value) is not float:
            value = as_number(value)
            if value is None:
                return None
        out[key] = value
    return out


def _value_order(keys: tuple[Any, ...]) -> tuple[str, ...] | None:
    """The value keys of a flat record in `flat_record`'s order (core fields in CORE_FLOAT_FIELDS order, then the
    others as given); None when the keys need the general path (no step, a key that is not a str, an `extra`)."""
    if "step" not in keys or "extra" in keys or not all(isinstance(key, str) for key in keys):
        return None
    present = set(keys)
    core = [name for name in CORE_FLOAT_FIELDS if name in present]
    return (*core, *(key for key in keys if key not in _CORE_KEYS and key not in _RESERVED))


def flat_record(
    step: int, run_id: str | None, core: Mapping[str, Any], extra: Mapping[str, float]
) -> dict[str, Any]:
    """The flat form of a metrics record (`RLDKMetrics.to_dict`): step, run_id, the core float fields found in
    `core` that are not None (in CORE_FLOAT_FIELDS order), then the `extra` keys that do not shadow those."""
    out: dict[str, Any] = {"step": step}
    if run_id is not None:
        out["run_id"] = run_id
    for name in CORE_FLOAT_FIELDS:
        value = core.get(name)
        if value is not None:
            out[name] = value
    for key, value in extra.items():
        if key not in _RESERVED:  # an extra metric cannot stand in for the record's step or run id
            out.setdefault(key, value)
    return out


def as_number(value: Any) -> float | None:
    """A real number as float (bools, ints, numpy and torch scalars included); None for anything else."""
    if type(value) is float:  # the common case first: exact type checks are far cheaper than the ABC check below
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except (OverflowError, ValueError):
            return (math.inf if value > 0 else -math.inf) if isinstance(value, int) else None
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        try:
            scalar = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return as_number(scalar) if not hasattr(scalar, "item") else None
    return None


def coerce_step(value: Any) -> int:
    """A step must be a finite, non-negative whole number."""
    if type(value) is int and 0 <= value <= MAX_STEP:
        return value
    if value is None:
        raise TypeError("'step' must be a non-negative integer, got None")
    item = getattr(value, "item", None)
    if isinstance(value, bool) or (callable(item) and getattr(value, "ndim", None) == 0 and isinstance(item(), bool)):
        raise TypeError("'step' must be a non-negative integer, got bool")  # numpy / torch bools included
    number = as_number(value)
    if number is None:
        raise TypeError(f"'step' must be a non-negative integer, got {type(value).__name__}")
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"'step' must be a non-negative integer, got {value!r}")
    step = value if isinstance(value, int) else int(number)
    if step > MAX_STEP:
        raise ValueError(f"'step' must be at most 2**53 (steps travel as float64), got {value!r}")
    return step
