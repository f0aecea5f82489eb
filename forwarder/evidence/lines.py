"""The chain fields of one stored line, in any output format (placements: docs/formats.md)."""

from __future__ import annotations

import csv
import re
from typing import Any, NamedTuple

import orjson

from forwarder.formats.csv import COLUMNS


class Link(NamedTuple):
    stream: str
    seq: int | None
    prev: str
    hash: str
    time: str | None


_KV = re.compile(r"(?:^|[ \t|^])(chainSeq|chainPrev|chainHash|deviceExternalId|sourceName|cs1|org|devTime)=([^ \t]*)")
_CSV = {name: i for i, name in enumerate(COLUMNS)}


def _from_chain(stream: str, chain: Any, time: Any) -> Link:
    if isinstance(chain, dict) and type(chain.get("seq")) is int:
        return Link(stream, chain["seq"], str(chain.get("prev")), str(chain.get("hash")), time)
    return Link(stream, None, "", "", time)


def link_of(line: bytes) -> Link | None:
    """None for a line that is not an event (a CSV header, a blank line)."""
    line = line.strip()
    if not line:
        return None
    if line.startswith(b"{"):
        doc = orjson.loads(line)
        if "ecs" in doc:
            ns = next((v for v in doc.values() if isinstance(v, dict) and "chain" in v), {})
            org = (doc.get("organization") or {}).get("id")
            return _from_chain(
                f"{(doc.get('event') or {}).get('provider')}/{org}", ns.get("chain"), doc.get("@timestamp")
            )
        if "class_uid" in doc:
            meta = doc.get("metadata") or {}
            stream = f"{meta.get('log_name')}/{meta.get('tenant_uid')}"
            return _from_chain(stream, (doc.get("unmapped") or {}).get("chain"), meta.get("original_time"))
        return _from_chain(f"{doc.get('source')}/{doc.get('organization')}", doc.get("chain"), doc.get("time"))
    text = line.decode("utf-8", "replace")
    if text.startswith(("CEF:", "LEEF:")):
        found = dict(_KV.findall(text))
        stream = f"{found.get('deviceExternalId') or found.get('sourceName')}/{found.get('cs1') or found.get('org')}"
        chain = (
            {"seq": int(found["chainSeq"]), "prev": found.get("chainPrev"), "hash": found.get("chainHash")}
            if found.get("chainSeq", "").isdigit()
            else None
        )
        return _from_chain(stream, chain, found.get("devTime"))
    row = next(csv.reader([text]))
    if row[: len(COLUMNS)] == COLUMNS or len(row) < len(COLUMNS):
        return None
    seq = row[_CSV["chain_seq"]]
    chain = (
        {"seq": int(seq), "prev": row[_CSV["chain_prev"]], "hash": row[_CSV["chain_hash"]]} if seq.isdigit() else None
    )
    return _from_chain(f"{row[_CSV['source']]}/{row[_CSV['organization']]}", chain, row[_CSV["time"]])
