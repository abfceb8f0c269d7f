"""The dashboard's ties to the IPython kernel: whether a widget can be shown here, and a hook after every cell."""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

OUTSIDE_NOTEBOOK = (
    "rldk_widget: RLDKDashboard is a notebook widget and cannot show in a plain Python process; open it in a "
    "notebook (JupyterLab, Notebook 7, VS Code, Colab), e.g. RLDKDashboard.from_dir('{output_dir}'), or write a "
    "page you can open in a browser with dash.save_html('report.html')."
)


def in_widget_kernel() -> bool:
    """True in a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab), where a widget can be displayed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def say_outside_notebook(output_dir: Any) -> None:
    """One line on stderr saying what to do instead of displaying the widget."""
    print(OUTSIDE_NOTEBOOK.format(output_dir=output_dir), file=sys.stderr)


def register_post_run_cell(target: Any, method: Callable[[Any], None]) -> Any:
    """Call `method(target)` after every cell (IPython only); holds the target weakly. Returns the hook."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    target_ref = weakref.ref(target)

    def after_cell(*_args: Any) -> None:
        alive = target_ref()
        if alive is not None:
            method(alive)

    shell.events.register("post_run_cell", after_cell)
    return after_cell


def unregister_post_run_cell(hook: Any) -> None:
    if hook is None:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        try:
            shell.events.unregister("post_run_cell", hook)
        except ValueError:
            pass
