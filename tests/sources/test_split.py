"""``split_path``: a record holding several events made one record per event, keys stable
(forwarder/sources/split.py; through the daemon: tests/presets/test_vendor_docs.py)."""

from __future__ import annotations

from typing import Any

from forwarder.sources.split import Part, split, split_keys
from forwarder.sources.window import walk_keys


def keys(items: list[Any], id_field: str | list[str] | None = "id") -> list[str]:
    return split_keys(items, lambda wholes: walk_keys(wholes, "v", "org", id_field, "v:"))


def test_each_element_is_a_record_in_the_vendors_shape() -> None:
    activity = {"id": "a1", "events": [{"name": "x"}, {"name": "y"}]}
    parts = split([activity], "events")
    assert parts == [{"id": "a1", "events": [{"name": "x"}]}, {"id": "a1", "events": [{"name": "y"}]}]
    assert [p.index for p in parts if isinstance(p, Part)] == [0, 1]
    assert activity["events"] == [{"name": "x"}, {"name": "y"}], "the vendor's record is left as it was"
    assert keys(parts) == ["v:a1", "v:a1|1"]


def test_identical_events_of_one_record_stay_two_and_a_record_read_twice_keys_the_same() -> None:
    activity = {"id": "a1", "events": [{"name": "x"}, {"name": "x"}]}
    twice = split([activity, dict(activity)], "events")
    assert keys(twice) == ["v:a1", "v:a1|1", "v:a1", "v:a1|1"]


def test_a_record_with_one_element_or_none_keeps_its_key() -> None:
    records = [{"id": "a", "events": [{"name": "x"}]}, {"id": "b", "events": []}, {"id": "c"}, "not an object"]
    assert split(records, "events") == records
    assert keys(split(records, "events")) == walk_keys(records, "v", "org", "id", "v:")


def test_a_nested_list_and_records_without_an_id() -> None:
    record = {"meta": {"n": 1, "changes": [1, 2, 3]}}
    parts = split([record, dict(record)], "meta.changes")
    assert [p["meta"]["changes"] for p in parts] == [[1], [2], [3], [1], [2], [3]]
    hashed = walk_keys([record, record], "v", "org", None, "v:")  # twins: the second is numbered
    assert keys(parts, None) == [
        hashed[0],
        f"{hashed[0]}|1",
        f"{hashed[0]}|2",
        hashed[1],
        f"{hashed[1]}|1",
        f"{hashed[1]}|2",
    ]
