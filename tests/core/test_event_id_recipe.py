"""An auditor can recompute every event id from docs/schema.md ("Event ids, exactly") alone.

The recipe below is written from the documentation, without the forwarder's code: standard
``json`` with sorted keys, and the float spelling the documentation gives. It must agree with
the ids the sources give, including the entries whose numbers a JSON library spells in more
than one way: orjson before 3.11.7 wrote ``1.2e30`` where later versions write ``1.2e+30``, so
the same Codacy entry got another id on another install (a duplicate no SIEM could drop).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from forwarder.sources.codescoring import CodescoringSource
from forwarder.sources.codestax import entry_key as codestax_key
from forwarder.sources.window import walk_keys


def documented_float(value: float) -> str:
    """docs/schema.md: Python's repr, an exponent without leading zeros (``1e-7``, ``1.2e+30``),
    and an exponent of -5 written out (``0.000032``)."""
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    power = int(exponent)
    if power == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{'-' if power < 0 else '+'}{abs(power)}"


def documented_canonical(value: Any) -> str:
    if isinstance(value, float):
        return documented_float(value)
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{documented_canonical(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(documented_canonical(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def documented_id(vendor: str, organization: str, raw: Any) -> str:
    payload = f"{vendor}\x00{organization}\x00{documented_canonical(raw)}".encode()
    return f"{vendor}:{hashlib.sha256(payload).hexdigest()}"


ODD_ENTRIES: list[dict[str, Any]] = [
    {"action": "user.login", "timestamp": "2026-11-21T05:53:09Z"},
    {"action": "a", "timestamp": "2026-11-21T05:53:09.639Z", "big": 1.2e30, "huge": 1e300, "r": 1.8446744073709552e19},
    {"action": "a", "timestamp": "2026-11-21T05:53:09.639Z", "small": [1e-7, 3.2e-5, 1e-4, 1e-5, 5e-324]},
    {"action": "a", "timestamp": "2026-11-21T05:53:09.639Z", "f": [100.0, -0.0, 0.1, 1e15, 1e16, 123.456]},
    {"action": "a", "timestamp": "2026-11-21T05:53:09.639Z", "i": [12345678901234567890, -(2**63), 0]},
    {"é": 1, "\U0001f600": 2, "\uffff": 3, "B": 4, "a\x00": 5, "text": '\x00\x1f\x7f\u2028"\\/\t\n🙂', "n": None},
    {"actor": {"email": "t@example.com"}, "nested": {"b": [True, False, {"z": 1, "a": 2}]}, "action": "x"},
]


@pytest.mark.parametrize("raw", ODD_ENTRIES, ids=range(len(ODD_ENTRIES)))
def test_a_content_id_follows_the_documented_recipe(raw: dict[str, Any]) -> None:
    assert walk_keys([raw], "codacy", "gh/acme") == [documented_id("codacy", "gh/acme", raw)]
    assert CodescoringSource._keys("default", [raw]) == [documented_id("codescoring", "default", raw)]
    assert codestax_key("acme", raw) == documented_id("codestax", "acme", raw)


def test_twins_and_vendor_ids_follow_the_documented_recipe() -> None:
    twin = {"action": "a", "timestamp": "2026-11-21T05:53:09.639Z"}
    first = documented_id("codacy", "gh/acme", twin)
    assert walk_keys([twin, dict(twin), twin], "codacy", "gh/acme") == [first, f"{first}#1", f"{first}#2"]
    assert CodescoringSource._keys("default", [{"id": 41138, "x": 1.5}]) == ["codescoring:default:41138"]
    assert codestax_key("acme", {"id": 5138}) == "codestax:acme:5138"
    assert walk_keys([{"a": 1, "b": "x"}], "acme", "o1", ["a", "b"], "acme:") == ["acme:1|x"]


def test_the_documented_float_spelling_is_the_one_ids_are_hashed_with() -> None:
    samples = [1.2e30, 1e-7, 3.2e-5, 1e-4, 100.0, -0.0, 1e16, 9999999999999998.0, 5e-324, 1.7976931348623157e308]
    assert [documented_float(v) for v in samples] == [
        "1.2e+30",
        "1e-7",
        "0.000032",
        "0.0001",
        "100.0",
        "-0.0",
        "1e+16",
        "9999999999999998.0",
        "5e-324",
        "1.7976931348623157e+308",
    ]
    assert re.fullmatch(r"codacy:[0-9a-f]{64}", documented_id("codacy", "gh/acme", {"x": 1.2e30}))
