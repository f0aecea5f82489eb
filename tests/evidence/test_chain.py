"""The per-stream hash chain: assigned at journaling, continuous across polls and restarts,
gap events included, a bad entry consuming no seq, a second writer refused."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.chunks import Chunks
from forwarder.event import make_event
from forwarder.evidence.chain import GENESIS, START, Head, content_hash, fields, intact, link
from forwarder.journal import SqliteJournal, StateJournal
from forwarder.journal.chain_heads import ChainConflict
from forwarder.polling import Poller
from forwarder.sources.base import Page
from forwarder.sources.gaps import gap_event


def event(n: int, org: str = "acme") -> dict[str, Any]:
    return make_event(
        id=f"t:{n}",
        time=f"2026-11-24T05:{n // 60:02d}:{n % 60:02d}.000Z",
        observed_time="2026-11-24T06:00:00.000Z",
        vendor="t",
        source="t",
        organization=org,
        action="x.y",
        activity="other",
        category="api",
        outcome="success",
        raw={"n": n},
    )


class PagedSource:
    """Two pages per poll; entry ``bad`` fails to normalize; the first page carries a gap event."""

    name = "t"

    def __init__(self) -> None:
        self.next = 0

    def organizations(self) -> list[str]:
        return ["acme", "globex"]

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        start = (cursor or {}).get("n", 0)
        first = [(i, f"t:{i}") for i in range(start, start + 3)] + [("bad", "t:bad")]
        gap = gap_event(vendor="t", source="t", organization=organization, from_ms=0, to_ms=1000)
        yield Page(first, {"n": start + 3}, [gap])
        yield Page([(i, f"t:{i}") for i in range(start + 3, start + 5)], {"n": start + 5})

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        if raw == "bad":
            raise ValueError("not an entry")
        return event(raw, organization)


async def chains(journal: SqliteJournal) -> dict[str, list[tuple[int, str, str]]]:
    out: dict[str, list[tuple[int, str, str]]] = {}
    for record in await journal.read(0, 10_000, 1 << 30):
        doc = orjson.loads(record.data)
        assert intact(doc), doc
        found = fields(doc)
        assert found is not None
        out.setdefault(record.organization, []).append(found)
    return out


def test_the_hash_covers_the_content_but_not_the_observed_time() -> None:
    one = event(1)
    head = link(one, START)
    assert one["chain"] == {"seq": 1, "prev": GENESIS, "hash": head.hash} and intact(one)
    refetched = {**one, "observed_time": "2030-01-01T00:00:00.000Z"}
    assert intact(refetched)  # the same entry fetched again hashes alike
    for change in ({"message": "x"}, {"raw": {"n": 2}}, {"chain": {**one["chain"], "seq": 2}}):
        assert not intact({**one, **change}), change
    two = event(2)
    link(two, head)
    assert two["chain"]["prev"] == head.hash and content_hash(two, 2, head.hash) == two["chain"]["hash"]


async def test_every_stream_is_one_continuous_chain_across_polls_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    for _ in range(2):  # a restart in between: the head comes back from the journal
        journal = SqliteJournal(path)
        await journal.open()
        try:
            assert await Poller(PagedSource(), journal, lambda: None).poll()  # type: ignore[arg-type]
        finally:
            await journal.close()
    journal = SqliteJournal(path)
    await journal.open()
    try:
        found = await chains(journal)
        assert set(found) == {"acme", "globex"}
        for links in found.values():
            # per poll: 3 entries + the gap event, then 2 (the bad entry quarantined, no seq taken)
            assert [seq for seq, _, _ in links] == list(range(1, 13))
            assert links[0][1] == GENESIS
            assert all(b[1] == a[2] for a, b in itertools.pairwise(links))
        head = await journal.chain_head("t", "acme")
        assert head == Head(12, found["acme"][-1][2])
        stats = await journal.stats()
        assert sum(stats.quarantined.values()) == 4
    finally:
        await journal.close()


async def test_a_second_writer_of_a_stream_is_refused_and_nothing_of_its_page_is_journaled(
    journal: StateJournal,
) -> None:
    first = event(1)
    head = link(first, START)
    page = Chunks()
    page.add(("t:1", "t", 0, "x.y", "api", "success"), orjson.dumps(first))
    await journal.append("t", "acme", page, {"n": 1}, chain=(START, head))
    stale = event(2)
    stale_head = link(stale, START)  # read the head before the first append committed
    again = Chunks()
    again.add(("t:2", "t", 0, "x.y", "api", "success"), orjson.dumps(stale))
    with pytest.raises(ChainConflict, match="moved from seq 0 to 1"):
        await journal.append("t", "acme", again, {"n": 2}, chain=(START, stale_head))
    assert [r.event_id for r in await journal.read(0, 100, 1 << 20)] == ["t:1"]
    assert await journal.get_cursor("t", "acme") == {"n": 1}
    assert await journal.chain_head("t", "acme") == head
