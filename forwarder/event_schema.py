"""The normalized event's JSON Schema as shipped: ``forwarder/event.schema.json``.

``audit-forwarder schema`` prints this file instead of building ``NormalizedEvent`` with
pydantic, which alone cost more than the command's whole start-up budget (round 8 of
docs/performance.md). ``tests/core/test_config.py`` checks that the file is what the model
gives; after changing the model, regenerate it:
``python -m forwarder.event_schema > forwarder/event.schema.json``.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("event.schema.json")


def rendered() -> str:
    """The schema as the model gives it, in the file's form (two-space indent, final LF)."""
    import orjson

    from forwarder.event import json_schema

    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"


if __name__ == "__main__":
    print(rendered(), end="")
