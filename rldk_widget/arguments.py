"""A clear TypeError for unknown keyword arguments: it names the argument, a close match and the accepted ones."""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping


def reject_unknown(where: str, given: Mapping[str, Any] | Iterable[str], accepted: Iterable[str]) -> None:
    """Raise TypeError if `given` has a name that is not in `accepted`."""
    accepted = list(accepted)
    unknown = [name for name in given if name not in accepted]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    more = f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else ""
    raise TypeError(
        f"{where} got an unexpected keyword argument {name!r}{more}{hint}. Accepted: {', '.join(accepted)}"
    )
