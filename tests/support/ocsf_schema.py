"""Validation against the official OCSF schema, as exported by the OCSF schema server for each
release and shipped offline by the ``ocsf-json-schema`` package (docs/formats.md says why that one).

An event is checked against the JSON Schema of its class in the version its ``metadata.version``
names, with the profiles its ``metadata.profiles`` declares: objects closed
(``additionalProperties: false``), enums, required attributes and the ``at_least_one`` constraints.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


@lru_cache(maxsize=16)
def official_export(version: str) -> dict[str, Any]:
    """The schema server's export itself: classes and objects with their enum captions."""
    export: dict[str, Any] = get_ocsf_schema(version=version)
    return export


@lru_cache(maxsize=16)
def official(version: str) -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(official_export(version))


@lru_cache(maxsize=256)
def class_validator(version: str, class_uid: int, profiles: tuple[str, ...] = ()) -> Draft202012Validator:
    schema = official(version)
    return Draft202012Validator(schema.get_class_schema(schema.lookup_class_name_from_uid(class_uid), list(profiles)))


def problems(doc: dict[str, Any]) -> list[str]:
    """What the official schema finds wrong with ``doc``: empty when it is a valid event."""
    metadata = doc.get("metadata") or {}
    validator = class_validator(
        str(metadata.get("version")), int(doc["class_uid"]), tuple(metadata.get("profiles") or ())
    )
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message[-300:]}" for e in validator.iter_errors(doc)]
