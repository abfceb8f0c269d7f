"""The auto-refresh thread: a dashboard's refresh pass every `refresh_interval` seconds until it is stopped.

The thread holds its dashboard weakly, so a dashboard nobody references any more is collected and its thread ends;
the threads still running are stopped at interpreter exit. A pass that raises is logged and shown in the status line,
and the thread keeps refreshing.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dashboard import RLDKDashboard

MAX_INTERVAL_S = 86_400.0
"""The longest auto-refresh interval (a day): longer ones cannot be waited for (Event.wait overflows)."""

logger = logging.getLogger(__name__)

_running_dashboards: "weakref.WeakSet[RLDKDashboard]" = weakref.WeakSet()


def checked_interval(name: str, value: Any) -> float:
    """`value` as seconds between refresh passes, or a ValueError naming the argument `name`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MAX_INTERVAL_S:
        raise ValueError(f"{name} must be a number of seconds in (0, {MAX_INTERVAL_S:g}], got {value!r}")
    return float(value)


def refresh_thread(dashboard: "RLDKDashboard") -> tuple[threading.Event, threading.Thread]:
    """A thread, not started yet, that calls `dashboard._auto_refresh()` every `dashboard.refresh_interval` seconds
    until the event is set (or the dashboard is collected); `disable_auto_refresh` stops it at interpreter exit."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_refresh_loop, args=(weakref.ref(dashboard), stop), name="rldk-auto-refresh", daemon=True
    )
    _running_dashboards.add(dashboard)
    return stop, thread


def _refresh_loop(dashboard_ref: "weakref.ref[RLDKDashboard]", stop: threading.Event) -> None:
    while True:
        dashboard = dashboard_ref()
        if dashboard is None:
            return
        interval = dashboard.refresh_interval
        del dashboard
        if stop.wait(interval):
            return
        dashboard = dashboard_ref()
        if dashboard is None:
            return
        try:
            dashboard._auto_refresh()
        except Exception as err:
            logger.exception("auto-refresh failed")
            try:
                dashboard.status = {"level": "error", "message": f"auto-refresh failed: {err}"}
            except Exception:
                pass
        del dashboard


@atexit.register
def _stop_all_refresh_threads() -> None:
    for dashboard in list(_running_dashboards):
        dashboard.disable_auto_refresh()
