"""Reading a Security Lake bucket back, and every check the custom-source guide implies.

Shared by the sink's integration test and the SIGKILL run: each object is read with pyarrow and
checked for its key layout, codec, page and row-group sizes, time order, one class per object,
and every row, turned back into an OCSF document, valid against the official schema.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow.parquet as pq

from sinks.security_lake.parquet import PAGE_BYTES, ROW_GROUP_BYTES, class_schema
from sinks.security_lake.sink import CLASS_NAMES
from tests.support.ocsf_schema import problems

KEY = re.compile(
    r"^ext/(?P<source>[A-Za-z0-9_-]+)/(?:(?P<version>[A-Za-z0-9._-]+)/)?region=(?P<region>[a-z0-9-]+)/"
    r"accountId=(?P<account>[^/]+)/"
    r"eventDay=(?P<day>\d{8})/(?P<name>\d{8}T\d{6}Z-[0-9a-f]{24})\.parquet$"
)


def _document(row: dict[str, Any], specs: Any) -> Any:
    """A Parquet row as the OCSF JSON it was made from: nulls dropped, JSON-text columns decoded."""
    if specs == "json":
        return None if row is None else orjson.loads(row)
    if isinstance(specs, list):
        return None if row is None else [_document(item, specs[0]) for item in row]
    if isinstance(specs, dict):
        if row is None:
            return None
        out = {key: _document(row.get(key), spec) for key, spec in specs.items()}
        return {key: value for key, value in out.items() if value is not None}
    return row  # a scalar column


def read_lake(
    client: Any, bucket: str, source_name: str, region: str, account: str, version: str | None = None
) -> list[dict[str, Any]]:
    """Every OCSF document in the bucket, after checking every object (asserts); ``version``: the
    custom sources' ``sourceVersion``, a level of the key after the source's name."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="ext/"):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    documents = []
    for key in sorted(keys):
        match = KEY.match(key)
        assert match, f"key outside the custom-source layout: {key}"
        assert (match["region"], match["account"], match["version"]) == (region, account, version), key
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        parquet = pq.ParquetFile(io.BytesIO(body))
        meta = parquet.metadata
        table = parquet.read()
        classes = set(table.column("class_uid").to_pylist())
        assert len(classes) == 1, f"{key}: {classes} classes in one object"
        (class_uid,) = classes
        assert match["source"] == source_name.format(**{"class": CLASS_NAMES[class_uid], "class_uid": class_uid})
        schema, specs = class_schema("1.1.0", class_uid)
        assert table.schema.remove_metadata() == schema.remove_metadata(), f"{key}: not the class's schema"
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            assert row_group.total_byte_size <= ROW_GROUP_BYTES
            for column in range(row_group.num_columns):
                chunk = row_group.column(column)
                assert chunk.compression == "ZSTD", f"{key}: {chunk.path_in_schema} is {chunk.compression}"
        for column in range(meta.num_columns):  # data pages: about 1 MB at most (one huge value may exceed it)
            assert all(size <= PAGE_BYTES for size in _page_sizes(body, column, meta)), f"{key}: a page over 1 MB"
        times = table.column("time").to_pylist()
        assert times == sorted(times), f"{key}: records not sorted by time"
        days = {datetime.fromtimestamp(t // 1000, tz=UTC).strftime("%Y%m%d") for t in times}
        assert days == {match["day"]}, f"{key}: events of {days} (UTC, by event time)"
        for row in table.to_pylist():
            doc = _document(row, specs)
            assert doc["metadata"]["version"] == "1.1.0"
            errors = problems(doc)
            assert not errors, (key, errors)
            documents.append(doc)
    return documents


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _skip(data: bytes, pos: int, kind: int) -> int:
    """Past one Thrift compact value of ``kind``."""
    if kind in (1, 2):
        return pos
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        return _varint(data, pos)[1]
    if kind == 7:
        return pos + 8
    if kind == 8:
        length, pos = _varint(data, pos)
        return pos + length
    if kind in (9, 10):
        head = data[pos]
        pos += 1
        size, inner = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        for _ in range(size):
            pos = _skip(data, pos, inner)
        return pos
    if kind == 12:
        return _struct(data, pos)[1]
    raise AssertionError(f"unexpected thrift type {kind}")


def _struct(data: bytes, pos: int) -> tuple[dict[int, int], int]:
    """A compact-protocol struct's integer fields (by id) and where it ends."""
    fields: dict[int, int] = {}
    last = 0
    while True:
        head = data[pos]
        pos += 1
        if head == 0:
            return fields, pos
        delta, kind = head >> 4, head & 0x0F
        if delta:
            field = last + delta
        else:
            raw, pos = _varint(data, pos)
            field = (raw >> 1) ^ -(raw & 1)
        last = field
        if kind in (4, 5, 6):
            raw, end = _varint(data, pos)
            fields[field] = (raw >> 1) ^ -(raw & 1)
            pos = end
        else:
            pos = _skip(data, pos, kind)


def _page_sizes(body: bytes, column: int, meta: Any = None) -> list[int]:
    """Uncompressed sizes of the column's pages, read from the page headers themselves
    (PageHeader: 1 type, 2 uncompressed_page_size, 3 compressed_page_size)."""
    meta = meta or pq.ParquetFile(io.BytesIO(body)).metadata
    sizes = []
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group).column(column)
        pos = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        end = pos + chunk.total_compressed_size
        while pos < end:
            header, pos = _struct(body, pos)
            if header[1] in (0, 3):  # data pages (v1, v2); a dictionary page is bounded separately
                sizes.append(header[2])
            pos += header[3]
    return sizes
