"""One vendor record holding several events, made one record per event (``split_path``).

Google's Reports API lists *activities*, and one activity may hold several events
(``events[]``: each its own name, type and parameters; asking for an ``eventName`` "returns all
activities which contain that eventName"). Mapped whole, an activity gave one event whose
action was its first event's, and the others were lost to the normalized fields (action,
category, outcome). Split, each event is a record of its own with the record's shape: the list
holds that one event, so ``raw`` stays in the vendor's schema and a mapping of ``events.0.*``
reads each event in turn.

The key: the record's own id for its first element (an activity with one event keeps the id it
always had, so no cursor or journal sees a new key for it), the id plus ``|<position>`` for the
others. The position is the element's place in the vendor's list, not a count of what was seen,
so two identical events of one activity stay two, and the same activity read twice (the overlap,
a page shift) gives the same keys twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forwarder.mapping import get_path


class Part(dict[str, Any]):
    """One element's record: the whole record it came from and the element's position."""

    __slots__ = ("index", "whole")

    def __init__(self, data: dict[str, Any], whole: Any, index: int) -> None:
        super().__init__(data)
        self.whole = whole
        self.index = index


def _with(record: dict[str, Any], steps: list[str], value: Any) -> dict[str, Any]:
    """``record`` with ``value`` at the dotted ``steps``: the mappings on the way copied, the rest shared."""
    out = dict(record)
    head, *rest = steps
    out[head] = _with(out[head], rest, value) if rest else value
    return out


def split(records: list[Any], path: str | None) -> list[Any]:
    """Each record whose value at ``path`` is a list of two or more, made one ``Part`` per element
    (the list holding that element alone); any other record is left as it is."""
    if not path:
        return records
    steps = path.split(".")
    out: list[Any] = []
    for record in records:
        items = get_path(record, path) if isinstance(record, dict) else None
        if not isinstance(items, list) or len(items) < 2:
            out.append(record)
            continue
        out.extend(Part(_with(record, steps, [item]), record, n) for n, item in enumerate(items))
    return out


def split_keys(items: list[Any], key_wholes: Callable[[list[Any]], list[str]]) -> list[str]:
    """The key of each record of ``items``, some of them ``Part``s: ``key_wholes`` keys the whole
    records (each once, in order, so that it numbers twins as it would have unsplit), and a
    part after the first adds its position."""
    wholes: dict[int, Any] = {}
    for item in items:
        whole = item.whole if isinstance(item, Part) else item
        wholes.setdefault(id(whole), whole)
    keyed = dict(zip(wholes, key_wholes(list(wholes.values())), strict=True))
    out = []
    for item in items:
        if isinstance(item, Part):
            key = keyed[id(item.whole)]
            out.append(key if item.index == 0 else f"{key}|{item.index}")
        else:
            out.append(keyed[id(item)])
    return out
