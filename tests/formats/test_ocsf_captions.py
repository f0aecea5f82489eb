"""Every OCSF enum id we write has the caption the official schema gives it in its sibling
(``activity_name`` for ``activity_id``, ``severity`` for ``severity_id``, ``status``,
``user.type``, ``class_name``, ``category_name``, ``type_name``): the JSON Schema checks the ids
alone, and a consumer that shows the caption must not read another meaning than the id's.

"Other" (99) is the exception the schema itself makes: its sibling holds the source's own value.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from forwarder.formats import get_formatter, ocsf
from tests.formats.samples import record
from tests.formats.test_ocsf import SHAPES
from tests.support.ocsf_schema import official_export

SIBLINGS = {"class_uid": "class_name", "category_uid": "category_name", "type_uid": "type_name"}


def caption_problems(value: Any, attributes: dict[str, Any], objects: dict[str, Any], path: str) -> list[str]:
    """Sibling captions that disagree with their id, anywhere in ``value``."""
    out: list[str] = []
    if not isinstance(value, dict):
        return out
    for key, item in value.items():
        spec = attributes.get(key) or {}
        sibling = spec.get("sibling") or SIBLINGS.get(key)
        enum = spec.get("enum")
        if enum and sibling and sibling in value and str(item) != "99":
            caption = (enum.get(str(item)) or {}).get("caption")
            if value[sibling] != caption:
                out.append(f"{path}{sibling}: {value[sibling]!r} for {key}={item}, the schema says {caption!r}")
        kind = spec.get("object_type")
        if kind in objects:
            children = objects[kind]["attributes"]
            for child in item if isinstance(item, list) else [item]:
                out += caption_problems(child, children, objects, f"{path}{key}.")
    return out


def test_a_wrong_caption_is_caught() -> None:
    export = official_export("1.8.0")
    doc = ocsf.ocsf_event(SHAPES[0]) | {"severity": "High"}
    cls = next(c for c in export["classes"].values() if int(c["uid"]) == doc["class_uid"])
    assert caption_problems(doc, cls["attributes"], export["objects"], "")


@pytest.mark.parametrize("version", ocsf.VERSIONS)
def test_every_caption_is_the_official_one_for_its_id(version: str) -> None:
    export = official_export(version)
    classes = {int(c["uid"]): c for c in export["classes"].values()}
    formatter = get_formatter("ocsf", {"version": version})
    problems: set[str] = set()
    for event in SHAPES:
        doc = orjson.loads(formatter(record(event)))
        problems.update(caption_problems(doc, classes[doc["class_uid"]]["attributes"], export["objects"], ""))
    assert not problems, sorted(problems)
