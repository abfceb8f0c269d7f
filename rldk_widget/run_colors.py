"""Which palette colour each selected run gets: a run keeps its colour while it stays selected.

The views colour a run by its slot (`PALETTE[slot % 10]`, js/src/colors.ts), so deselecting one run leaves the
others' colours as they were; a newly selected run takes the lowest free slot. The kernel assigns the slots (the
`run_colors` trait), so every view of a dashboard, its saved picture and its HTML export agree.
"""

from __future__ import annotations

from typing import Mapping, Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#7f7f7f")
"""js/src/colors.ts PALETTE: a run's colour is PALETTE[slot % 10] (the live view, the saved picture, figure())."""


def colour_slots(previous: Mapping[str, int], selected: Sequence[str]) -> dict[str, int]:
    """Slots for `selected` (in its order): each run's previous slot where it had one, the lowest free slot
    otherwise."""
    slots: dict[str, int] = {}
    used: set[int] = set()
    for run_id in selected:
        slot = previous.get(run_id)
        if isinstance(slot, int) and not isinstance(slot, bool) and slot >= 0 and slot not in used:
            slots[run_id] = slot
            used.add(slot)
    free = 0
    for run_id in selected:
        if run_id in slots:
            continue
        while free in used:
            free += 1
        slots[run_id] = free
        used.add(free)
    return {run_id: slots[run_id] for run_id in selected}
