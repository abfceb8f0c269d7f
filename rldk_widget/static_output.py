"""StaticOutput: the dashboard's picture beside its live view, kept current, for where the widget cannot show.

A saved widget output keeps only a model id: GitHub, nbconvert, nbviewer, VS Code without a kernel and JupyterLab
after the kernel is gone show nothing of it (JupyterLab shows "model not found"). So when the dashboard is displayed
it puts a second output under the widget view: the PNG of its charts and a script-free HTML summary (static_view.py;
the HTML carries the image too, as nbconvert shows text/html before image/png). That output has a display id and is
replaced after each cell that changed the data, and every 30 s while a long cell keeps changing it (on a thread of
its own: never the training thread), so a notebook saved now holds the state it shows. The widget view itself is
never updated (updating it would re-create the live view and lose its zoom and tab). While the live view is
rendered, its stylesheet hides the picture below it (js/src/style.css), so a user sees one dashboard.

`freeze()` replaces the live view by the picture, for sharing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable

logger = logging.getLogger(__name__)

MAX_PNG_BYTES = 90_000
"""The PNG is in the output twice (image/png, and inside the HTML): ≤ 250 KB of notebook per dashboard output."""
DUTY_FACTOR = 5.0
"""After a cell, the picture is drawn again unless the last drawing began less than this many times its own cost
ago (a run-all of quick cells): then it is drawn when that time has passed."""
PERIODIC_S = 30.0
"""While a cell runs and the data changes, the picture is rendered again this often."""


def static_output_wanted() -> bool:
    """Off where each output is a frame of its own and the live view cannot hide the picture (Colab)."""
    return "google.colab" not in sys.modules


class StaticOutput:
    """The displayed pictures of one dashboard. `render()` (given) returns the picture's mime bundle."""

    def __init__(self, render: Callable[[], dict[str, Any]], changed: Callable[[], int]) -> None:
        """`changed()` returns a counter that grows whenever what the picture shows changed."""
        self._render = render
        self._changed = changed
        self._handles: list[Any] = []
        self._widget_handles: list[Any] = []
        self._drawn_version: Any = None
        self._drawn_at = -1e18
        self._cost = 0.0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._timer_due = 0.0
        self._closed = False

    def display(self, widget_bundle: dict[str, Any]) -> None:
        """Show the live view, then the picture under it (each with a display id of its own)."""
        from IPython.display import display

        widget = display(widget_bundle, raw=True, display_id=True)
        picture = display(self._bundle(), raw=True, display_id=True)
        with self._lock:
            self._widget_handles.append(widget)
            self._handles.append(picture)
            self._drawn_at = -1e18  # the first picture (often of an empty dashboard) does not delay the next one
        self._schedule()

    def after_cell(self) -> None:
        """After each cell: draw the picture again if the data changed (see DUTY_FACTOR)."""
        wait = self._drawn_at + DUTY_FACTOR * self._cost - time.monotonic()
        if wait > 0:
            self._schedule(wait)
        else:
            self.update()

    def update(self) -> bool:
        """Draw the pictures again if what they show changed; True if they were replaced."""
        with self._lock:
            if not self._handles or self._closed:
                return False
            if self._changed() == self._drawn_version:
                return False
            handles = list(self._handles)
        bundle = self._bundle()
        for handle in handles:
            try:
                handle.update(bundle, raw=True)
            except Exception:  # noqa: BLE001 - a picture that cannot be replaced stays as it was
                logger.debug("could not replace the dashboard's picture", exc_info=True)
        return True

    def freeze(self) -> None:
        """Replace every live view of this dashboard by the picture (the separate pictures are emptied)."""
        with self._lock:
            widgets, pictures = list(self._widget_handles), list(self._handles)
            self._widget_handles, self._handles = [], []
        bundle = self._bundle()
        for handle in widgets:
            handle.update(bundle, raw=True)
        for handle in pictures:
            handle.update({"text/plain": ""}, raw=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()

    def _bundle(self) -> dict[str, Any]:
        version = self._changed()
        started = time.monotonic()
        bundle = self._render()
        with self._lock:
            self._drawn_version = version
            self._drawn_at = started
            self._cost = time.monotonic() - started
        return bundle

    def _schedule(self, delay: float = PERIODIC_S) -> None:
        """Draw again in `delay` s if the data changed (every PERIODIC_S while displayed: a long training cell)."""
        with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                if self._timer_due <= time.monotonic() + delay:
                    return
                self._timer.cancel()
            self._timer_due = time.monotonic() + delay
            self._timer = threading.Timer(delay, self._tick)
            self._timer.name = "rldk-static-picture"
            self._timer.daemon = True
            self._timer.start()

    def _tick(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.update()
        except Exception:  # noqa: BLE001 - the picture is best effort
            logger.debug("periodic picture update failed", exc_info=True)
        self._schedule()
