"""Hostile input for the property tests: any JSON, entries that look almost like a vendor's,
and a plausible Codacy entry at a given time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from forwarder.emulators.codacy import format_timestamp

OBSERVED = datetime(2024, 6, 1, tzinfo=UTC)

# --- strategies ---------------------------------------------------------------------------
text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "",
        "\n",
        "\r\n",
        "\x00",
        '"',
        ",",
        "\u2028",
        "🦄",
        "a" * 300,
        "1970-01-01T00:00:00Z",
        "2024-02-30T25:61:61Z",
        "9999-12-31T23:59:59.9999999+14:00",
        "-1",
        "NaN",
    ]
)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12
)
# Keys every vendor uses for its entries, with any value type: the closest to a real but broken entry.
VENDOR_KEYS = [
    "id",
    "action",
    "event",
    "timestamp",
    "created_at",
    "createdAt",
    "time",
    "date",
    "actor",
    "user",
    "result",
    "details",
    "repositoryName",
    "entityId",
    "organization",
    "message",
    "description",
    "ip",
    "type",
    "data",
    "changes",
    "object",
    "meta",
]
plausible_entries = st.dictionaries(st.sampled_from(VENDOR_KEYS), json_values, max_size=10)
entries = plausible_entries | json_values


def codacy_entry(ts_ms: int) -> dict[str, Any]:
    return {
        "actor": {"email": "a@example.com"},
        "action": "user.login",
        "result": "succeed",
        "timestamp": format_timestamp(ts_ms),
    }
