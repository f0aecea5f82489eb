"""Parse a vendor's page when orjson refuses JSON that is valid all the same.

orjson refuses two things the JSON grammar allows and other stacks write: a lone surrogate
escape (``"\\ud83d"``, what ``JSON.stringify`` makes of an emoji cut in half) and a number
beyond a double (``1e400``). Refusing the page stopped the organization's feed for good (the
cursor never moved), and anyone who can type into an audited field could do that on purpose:
an audit-evasion vector. Such a page is parsed again by the standard library, and the two
oddities are made into values every later step can hash, serialize and write:

* a lone surrogate becomes U+FFFD (no UTF-8 output could carry it; a pair written as two
  escapes is one character already and is kept);
* a number that does not fit a double (``1e400``, a 400-digit integer) is kept as its
  original text, a JSON string, since ``inf`` would be written as ``null`` and lose it.
  An integer beyond 64 bits that does fit a double becomes that double, as orjson reads it,
  so a page parses to the same values whichever parser read it.

A third oddity is nesting deeper than either parser reads (orjson stops at 1,024 levels, the
standard library at Python's recursion limit): one entry nested 2,000 levels deep made its whole
page "not JSON", and the organization's cursor never moved again. Such a page is read with every
value deeper than ``MAX_NESTING`` levels replaced by ``TOO_DEEP``: the entry still cannot be
written (orjson writes 254 levels), so the poller quarantines it alone and its page goes on.

Two things that are not JSON text but are a vendor writing JSON badly, with the same effect
(the organization's cursor never moved again, for what one user typed into one field), are read
too: bytes that are not UTF-8 (a vendor writing a name in Latin-1) become U+FFFD, as a lone
surrogate does, and the caller is told (``notes``) so that it can warn; ``NaN``, ``Infinity``
and ``-Infinity`` (what Python's ``json.dumps`` writes for such floats) are kept as their text,
as a number beyond a double is. A body that is not JSON in its structure stays refused. The
fallback runs only on a page orjson refused, so the hot path pays nothing.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# A string (skipped whole: brackets inside it are text) or a bracket; nothing else moves the depth.
_NESTING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
# Deeper than orjson writes (254), so an entry holding the cut is still quarantined rather than
# delivered without its inner part; well within what the standard parser reads.
MAX_NESTING = 300
TOO_DEEP = f"<nested deeper than {MAX_NESTING} levels: cut>"
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def loads(body: bytes, notes: list[str] | None = None) -> Any:
    """The parsed page; raises ``ValueError`` for anything that is not JSON in its structure.
    What had to be repaired to read it is appended to ``notes``."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as refused:
        try:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body.decode("utf-8", errors="replace")
                if notes is not None:
                    notes.append("bytes that are not UTF-8 were read as U+FFFD")
            try:
                value = _standard(text)
            except RecursionError:
                text = _cut_deep(text)
                value = _standard(text)
        except (ValueError, RecursionError):
            raise refused from None
    return _clean(value) if "\\u" in text or "\\U" in text else value


def _standard(text: str) -> Any:
    return json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_constant)


def _cut_deep(text: str) -> str:
    """``text`` with each value that opens deeper than ``MAX_NESTING`` levels replaced by the
    JSON string ``TOO_DEEP``. Text that is not JSON outside what is cut stays refused by the
    parse that follows; what is cut could not have been read at all."""
    parts: list[str] = []
    depth = 0
    kept = 0  # where the text not yet copied to ``parts`` starts
    cut_at = -1  # where the value being cut opened, while one is
    for token in _NESTING_TOKEN.finditer(text):
        mark = token.group()
        if mark in ("[", "{"):
            depth += 1
            if depth == MAX_NESTING + 1 and cut_at < 0:
                cut_at = token.start()
        elif mark in ("]", "}"):
            depth -= 1
            if depth == MAX_NESTING and cut_at >= 0:
                parts.append(text[kept:cut_at])
                parts.append(f'"{TOO_DEEP}"')
                kept, cut_at = token.end(), -1
    parts.append(text[kept:])
    return "".join(parts)


def _number(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _integer(text: str) -> int | float | str:
    if len(text) > 21:  # past 64 bits for sure; int() would also refuse 4,300 digits
        return _number(text)
    value = int(text)
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    return _number(text)  # orjson reads it as a double; past a double, the text


def _constant(text: str) -> str:
    return text  # NaN, Infinity, -Infinity: kept as written, like a number beyond a double


def _text(value: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", value)


def _clean(value: Any) -> Any:
    """``value`` with every lone surrogate replaced, in keys and strings, at any depth; a loop
    rather than recursion, since the standard parser reads nesting deeper than Python recurses
    comfortably."""
    if isinstance(value, str):
        return _text(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        holder, at = stack.pop()
        item = holder[at]
        if isinstance(item, str):
            holder[at] = _text(item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            if any(_LONE_SURROGATE.search(k) for k in item):
                cleaned = {_text(k): v for k, v in item.items()}
                item.clear()
                item.update(cleaned)
            stack.extend((item, k) for k in item)
    return root[0]
