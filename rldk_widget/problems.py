"""ProblemLog: what a dashboard could not read or write, per run, and the status line that shows it.

Each problem text is kept once per run (or folder); running counts — records placed at a fallback step or at an
inexact one — are kept by key and replaced in place as they grow. A file's condition (it cannot be read, it ends
inside a record: tailfile.py) is kept per file and replaced at each read of it, so it goes when it stops being true.
The status line shows the write errors while there are any, else a remote folder's state while it does not answer,
then the newest three problems. A remote folder's failures to answer are not a file's problem: they are in the
remote state only (remote_fs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

REMOTE_UNAVAILABLE = "remote unavailable"
"""How a remote folder's failure to answer starts in a problem text (remote_fs.RemoteError)."""


class StatusLine(Protocol):
    """The widget whose `status` trait the log sets: {"level": "ok" | "warning" | "error", "message": str}."""

    status: dict[str, str]


class ProblemLog:
    """Problems per run and the status line; call it holding the dashboard's lock (it sets the `status` trait)."""

    def __init__(self, widget: StatusLine, remote: bool) -> None:
        self._widget = widget
        self._remote = remote
        self._problems: dict[str, dict[str | tuple[str, str], str]] = {}
        self._step_counts: dict[tuple[str, str], list[int]] = {}
        self._remote_note: str | None = None

    def note(
        self,
        run_id: str,
        problems: list[str],
        write_errors: list[str],
        counted: Mapping[str, str] | None = None,
        conditions: Mapping[str, str | None] | None = None,
        *,
        all_conditions: bool = False,
    ) -> None:
        """Remember problems per run (each text once; `counted` ones by key, replaced as their counts grow) and
        show the newest three, or the write errors, in the status line. `conditions`: per file, what is wrong with
        it now, or None; with `all_conditions`, the run's other files have no condition any more."""
        if self._remote:
            problems = [p for p in problems if REMOTE_UNAVAILABLE not in p]
            if counted:
                counted = {k: v for k, v in counted.items() if REMOTE_UNAVAILABLE not in v}
        known = self._problems.setdefault(run_id, {})
        updates = dict(conditions or {})
        if all_conditions:
            updates = {**{key[1]: None for key in known if isinstance(key, tuple)}, **updates}
        ended = [("condition", source) for source, condition in updates.items() if condition is None]
        held = {  # (a remote that does not answer says nothing new about the file)
            ("condition", source): condition for source, condition in updates.items()
            if condition is not None and not (self._remote and REMOTE_UNAVAILABLE in condition)
        }
        changed = False
        for key in ended:
            changed = known.pop(key, None) is not None or changed
        for key, problem in [*((p, p) for p in problems), *(counted or {}).items(), *held.items()]:
            if known.get(key) != problem:
                known.pop(key, None)
                known[key] = problem
                changed = True
        if write_errors:
            message = "; ".join(write_errors) + " — records are kept in memory and written when possible"
            self._widget.status = {"level": "error", "message": message}
        elif changed or self._widget.status.get("level") == "error":
            self._show()

    def count_step_notes(self, run_id: str, kind: str, fallback: int, inexact: int, counted: dict[str, str]) -> None:
        """Add to the run's counts of `kind` records placed at a fallback step or an inexact one; their texts go to
        `counted` (for `note`), keyed so that they update in place."""
        if not (fallback or inexact):
            return
        counts = self._step_counts.setdefault((run_id, kind), [0, 0])
        counts[0] += fallback
        counts[1] += inexact
        if counts[0]:
            counted[f"fallback:{kind}"] = (
                f"{run_id}: {counts[0]} {kind} record(s) without a usable 'step' are shown at the previous "
                "record's step + 1"
            )
        if counts[1]:
            counted[f"inexact:{kind}"] = (
                f"{run_id}: {counts[1]} {kind} record(s) have a step beyond 2**53, which a browser cannot show "
                "exactly (shown at the nearest float64 step)"
            )

    def set_remote_note(self, note: str | None) -> None:
        """A remote folder's state ("remote read 40 s ago: timeout — retrying in 8 s"; None while it answers), shown
        first in the status line unless a write error is."""
        if note != self._remote_note:
            self._remote_note = note
            if self._widget.status.get("level") != "error":
                self._show()

    def report(self, folder: str) -> dict[str, list[str]]:
        """Per run (or folder), the problems; the remote state first under `folder`, the dashboard's folder."""
        report = {run: list(problems.values()) for run, problems in self._problems.items() if problems}
        if self._remote_note:
            report.setdefault(folder, []).insert(0, self._remote_note)
        return report

    def _show(self) -> None:
        """The status line: a remote folder's state while it does not answer, then the newest three problems."""
        everything = [p for run_problems in self._problems.values() for p in run_problems.values()]
        shown = ([self._remote_note] if self._remote_note else []) + everything[-3:]
        if shown:
            self._widget.status = {"level": "warning", "message": "; ".join(shown)}
        else:
            self._widget.status = {"level": "ok", "message": ""}
