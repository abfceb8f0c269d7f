"""Answer a widget's views while a cell runs: route its comm's messages to a kernel subshell (ipykernel ≥ 7).

A kernel handles messages from the views on its main thread, between cells, so a view's request waits while
`trainer.train()` runs in a cell. ipykernel 7 can run shell messages on subshell threads and routes a comm's
messages by the comm's `_reply_subshell_for`; this adapter creates one subshell for the widget (on the shell
channel thread, as a create_subshell_request would) and routes the widget's comm there. It reads private ipykernel
state, so every step is checked: on any other kernel (ipykernel 6, Colab, no kernel) nothing changes and messages
wait for the cell to end, as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

_CREATE_TIMEOUT_S = 5.0


def _manager() -> Any:
    """The running kernel's subshell manager, or None."""
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return None
    if not Kernel.initialized():
        return None
    kernel = Kernel.instance()
    if not getattr(kernel, "_supports_kernel_subshells", False):
        return None
    thread = getattr(kernel, "shell_channel_thread", None)
    manager = getattr(thread, "manager", None)
    if manager is None or not hasattr(manager, "_create_subshell") or not hasattr(manager, "_shell_channel_io_loop"):
        return None
    return manager


def _on_shell_channel_thread(manager: Any, work: Any) -> Any:
    """Run `work()` on the shell channel thread (the only one that may create or delete subshells) and wait."""
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as err:  # noqa: BLE001 - reported to the caller
            result["error"] = err
        finally:
            done.set()

    manager._shell_channel_io_loop.add_callback(run)
    if not done.wait(_CREATE_TIMEOUT_S):
        raise TimeoutError("the kernel's shell channel thread did not answer")
    if "error" in result:
        raise result["error"]
    return result.get("value")


class SubshellRoute:
    """Routes `comm`'s messages from the views to a subshell of its own for as long as it is open."""

    def __init__(self) -> None:
        self.subshell_id: str | None = None
        self._manager: Any = None
        self._comm: Any = None

    def open(self, comm: Any) -> bool:
        """Route `comm` to a new subshell; False (and nothing changed) where the kernel cannot."""
        manager = _manager()
        if manager is None or comm is None or not hasattr(comm, "_reply_subshell_for"):
            return False
        try:
            subshell_id = _on_shell_channel_thread(manager, manager._create_subshell)
        except Exception:  # noqa: BLE001 - no subshell: messages wait for the cell, as without this
            logger.info("could not create a kernel subshell for the widget", exc_info=True)
            return False
        self.subshell_id, self._manager, self._comm = subshell_id, manager, comm
        comm._reply_subshell_for = lambda _data, _default: subshell_id
        return True

    def close(self) -> None:
        """Route the comm back to the main shell and delete the subshell (without waiting: this may run on the
        subshell's own thread, when the views closed the comm)."""
        subshell_id, manager, comm = self.subshell_id, self._manager, self._comm
        self.subshell_id = self._manager = self._comm = None
        if subshell_id is None:
            return
        try:
            del comm._reply_subshell_for
        except AttributeError:
            pass

        def delete() -> None:
            try:
                manager._delete_subshell(subshell_id)
            except Exception:  # noqa: BLE001 - already gone, or the kernel is shutting down
                logger.debug("could not delete the widget's subshell", exc_info=True)

        try:
            manager._shell_channel_io_loop.add_callback(delete)
        except Exception:  # noqa: BLE001 - the kernel is shutting down
            logger.debug("could not schedule the subshell's deletion", exc_info=True)
