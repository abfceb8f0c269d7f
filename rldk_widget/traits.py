"""Synced traits whose Python value is read live from the dashboard, and the read-only `dash.metrics` mapping.

The views get `metrics` and `alerts` as a bounded snapshot (computed in `to_json` when state is sent) plus
numbered deltas; assigning a trait per append would resend it whole. So the traits are never assigned: reading one
in Python asks the widget for the complete, current value (`LiveTrait.get`), and assigning one raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import traitlets

if TYPE_CHECKING:
    from .series import RunSeries


class LiveTrait(traitlets.TraitType):  # type: ignore[type-arg]
    """A trait whose value is `widget._live_value(name)`, read-only from Python and from the views."""

    info_text = "a read-only value computed from the run files"

    def get(self, obj: Any, cls: Any = None) -> Any:
        return obj._live_value(self.name)

    def set(self, obj: Any, value: Any) -> None:
        raise traitlets.TraitError(
            f"RLDKDashboard.{self.name} is read-only: it shows what the run files hold; "
            "use add_metrics / add_alert to add to them"
        )


class MetricsView(Mapping[str, dict[str, pd.Series]]):
    """`dash.metrics`: run id → {series name → pandas Series of values indexed by step}, every point of every
    series (the views' snapshot is decimated; this is not). Reading a run copies its series; the mapping itself
    is a snapshot of the run ids at the time `dash.metrics` was read."""

    def __init__(
        self, runs: Mapping[str, "RunSeries"], order: list[str], lock: Any, load: Callable[[str], None] = lambda _r: None
    ) -> None:
        self._runs = runs
        self._order = [run for run in order if run in runs]
        self._lock = lock
        self._load = load

    def __getitem__(self, run_id: str) -> dict[str, pd.Series]:
        if run_id not in self._order:
            raise KeyError(run_id)
        self._load(run_id)  # a large sweep reads a run's files when it is first asked for
        with self._lock:
            return self._runs[run_id].series()

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        with self._lock:
            parts = [
                f"{run_id!r}: {len(self._runs[run_id].columns)} series, {self._runs[run_id].record_count} records"
                for run_id in self._order
            ]
        return "MetricsView({" + ", ".join(parts) + "})"
