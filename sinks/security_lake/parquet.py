"""OCSF events as Parquet, with the Arrow schema of each class derived from the official schema.

The columns of a class are its attributes in the OCSF release the sink is pinned to, read from the
schema server's export that ``ocsf-json-schema`` ships (never a hand-kept list), so every object of a
class has the same columns whatever its rows hold, and Security Lake's Glue crawler sees one table.
Types follow OCSF's: ``*_t`` strings are strings, ``integer_t`` int32, ``long_t`` and
``timestamp_t`` (epoch ms) int64, arrays lists, objects structs. Objects nest as deep as OCSF
defines them, except that an object is not expanded inside itself (``process.parent_process``)
nor below ``MAX_DEPTH``: those attributes, and free-form ``object``/``json_t`` values
(``unmapped``), are stored as JSON text. The tests check that what the mapping emits survives the
round trip whole.

pyarrow is imported here only: this module loads when a ``security_lake`` sink is built, so the
base install needs neither pyarrow nor the schema package (extra ``security-lake``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson

MAX_DEPTH = 3
"""Objects below this many levels are JSON text: the full OCSF graph is unbounded (a user has
groups, a process a parent process), and our events nest two levels at most."""
PAGE_BYTES = 1024 * 1024  # the guide: data pages of about 1 MB at most
ROW_GROUP_BYTES = 256 * 1024 * 1024  # and row groups of 256 MB at most
PROFILES = frozenset({"host"})
"""Profiles whose attributes are columns: the events declare ``host`` where OCSF 1.1 needs it."""
_SCALARS = {"boolean_t": "bool_", "float_t": "float64", "integer_t": "int32", "long_t": "int64", "string_t": "string"}

Spec = Any
"""A column's conversion: "json" (encode as text), a scalar's Arrow type name, or a dict/list of specs."""
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class MissingExtra(RuntimeError):
    """pyarrow or the OCSF schema package is not installed."""


def _require() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from ocsf_json_schema import get_ocsf_schema
    except ImportError as exc:
        raise MissingExtra(
            f"the security_lake sink needs the security-lake extra ({exc.name} is missing): "
            "pip install 'audit-forwarder[security-lake]'"
        ) from None
    return pa, pq, get_ocsf_schema


@lru_cache(maxsize=4)
def _export(version: str) -> dict[str, Any]:
    return dict(_require()[2](version=version))


def _base_type(export: dict[str, Any], type_name: str) -> str:
    seen = 0
    while type_name not in _SCALARS and type_name not in ("object_t", "json_t") and seen < 8:
        type_name = export["types"].get(type_name, {}).get("type") or "string_t"
        seen += 1
    return type_name


def _attributes(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: attr
        for name, attr in sorted(definition.get("attributes", {}).items())
        if not attr.get("profile") or attr["profile"] in PROFILES
    }


def _field(pa: Any, export: dict[str, Any], name: str, attr: dict[str, Any], path: tuple[str, ...]) -> tuple[Any, Spec]:
    base = _base_type(export, attr.get("type", "string_t"))
    spec: Spec = _SCALARS.get(base)
    if base == "object_t":
        object_type = attr.get("object_type", "object")
        definition = export["objects"].get(object_type)
        if definition is None or object_type in path or len(path) >= MAX_DEPTH or not _attributes(definition):
            arrow, spec = pa.string(), "json"  # free-form, recursive or too deep: JSON text
        else:
            fields, specs = [], {}
            for sub, sub_attr in _attributes(definition).items():
                field, sub_spec = _field(pa, export, sub, sub_attr, (*path, object_type))
                fields.append(field)
                specs[sub] = sub_spec
            arrow, spec = pa.struct(fields), specs
    elif base == "json_t":
        arrow, spec = pa.string(), "json"
    else:
        arrow = getattr(pa, _SCALARS[base])()
    if attr.get("is_array"):
        arrow, spec = pa.list_(arrow), [spec]
    return pa.field(name, arrow), spec


@lru_cache(maxsize=32)
def class_schema(version: str, class_uid: int) -> tuple[Any, Spec]:
    """The Arrow schema of an OCSF class, and how each column's values are converted."""
    pa = _require()[0]
    export = _export(version)
    definition = next((c for c in export["classes"].values() if c.get("uid") == class_uid), None)
    if definition is None:
        raise ValueError(f"OCSF {version} has no class {class_uid}")
    fields, specs = [], {}
    for name, attr in _attributes(definition).items():
        field, spec = _field(pa, export, name, attr, ())
        fields.append(field)
        specs[name] = spec
    return pa.schema(fields, metadata={"ocsf_version": version, "class_uid": str(class_uid)}), specs


def _convert(value: Any, spec: Spec) -> Any:
    """``value`` in the column's type. Hostile input (a number where OCSF has a string) must not
    make a batch that can never be written: strings take any value as text, and a value that
    cannot be the column's number or boolean is left out (null)."""
    if value is None:
        return None
    if isinstance(spec, list):
        return [_convert(item, spec[0]) for item in value] if isinstance(value, list) else None
    if isinstance(spec, dict):
        return {key: _convert(value.get(key), sub) for key, sub in spec.items()} if isinstance(value, dict) else None
    if spec == "json" or (spec == "string" and not isinstance(value, str)):
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # e.g. an integer beyond 64 bits
            return str(value)
    if spec == "string":
        return value
    if spec in _INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        low, high = _INT_RANGES[spec]
        return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else None
    if spec == "float64":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return value if isinstance(value, bool) else None  # bool_


def unknown_attributes(doc: dict[str, Any], specs: Spec, prefix: str = "") -> list[str]:
    """Attributes of ``doc`` that have no column (they would be lost): none for a valid event."""
    lost = []
    for key, value in doc.items():
        if key not in specs:
            lost.append(prefix + key)
        elif isinstance(specs[key], dict) and isinstance(value, dict):
            lost.extend(unknown_attributes(value, specs[key], f"{prefix}{key}."))
    return lost


def to_parquet(docs: Sequence[dict[str, Any]], version: str, class_uid: int) -> bytes:
    """One Parquet file of OCSF events of one class, in the order given, zstd-compressed, with
    data pages of at most ~1 MB and row groups of at most 256 MB (by uncompressed size)."""
    pa, pq, _ = _require()
    schema, specs = class_schema(version, class_uid)
    rows = [_convert(doc, specs) for doc in docs]
    table = pa.Table.from_pylist(rows, schema=schema)
    row_bytes = max(1, table.nbytes // max(1, table.num_rows))
    sink = io.BytesIO()
    # pyarrow closes a page once it has passed data_page_size, checking after each write batch:
    # aim at 3/4 MB with batches of at most 1/4 MB of rows, so that pages stay within 1 MB.
    pq.write_table(
        table,
        sink,
        compression="zstd",
        data_page_size=PAGE_BYTES * 3 // 4,
        write_batch_size=max(1, min(1024, PAGE_BYTES // 4 // row_bytes)),
        dictionary_pagesize_limit=PAGE_BYTES,
        row_group_size=max(1, ROW_GROUP_BYTES // row_bytes),
        write_statistics=True,
    )
    return sink.getvalue()
