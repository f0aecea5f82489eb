"""The evidence ledger on both backends: one row per journaled event, written with the page,
equal to the event's own chain fields; gap events noted with their interval; each sink's
start, offset and dead letters; pruned by event time; the runs of verify and reconcile."""

from __future__ import annotations

import time

import orjson

from forwarder.chunks import Chunks, JournalEntry
from forwarder.event import parse_ms
from forwarder.evidence.chain import START, fields, link
from forwarder.journal import StateJournal
from forwarder.journal.ledger import hash_of
from forwarder.polling import Poller
from tests.evidence.test_chain import PagedSource, event


def test_the_hash_read_off_the_tail_is_the_parsed_one() -> None:
    one = event(7)
    link(one, START)
    data = orjson.dumps(one)
    assert hash_of(data) == (0, one["chain"]["hash"])
    assert hash_of(data, parse=True) == (1, one["chain"]["hash"])
    reordered = orjson.dumps({"chain": one["chain"], **{k: v for k, v in one.items() if k != "chain"}})
    assert hash_of(reordered) == (1, one["chain"]["hash"])  # not last: parsed
    assert hash_of(orjson.dumps(event(8))) is None  # no chain: no row


async def test_every_journaled_event_leaves_its_row_with_the_page(journal: StateJournal) -> None:
    await journal.register_sinks(["a"])
    assert await Poller(PagedSource(), journal, lambda: None).poll()  # type: ignore[arg-type]
    records = await journal.read(0, 100, 1 << 30)
    assert len(records) == 12  # per org: 3 + gap event + 2; the bad entry is quarantined
    for org in ("acme", "globex"):
        rows = await journal.ledger("t", org, 0, 1 << 62)
        expected = []
        for r in records:
            if r.organization == org:
                doc = orjson.loads(r.data)
                found = fields(doc)
                assert found is not None
                expected.append((r.seq, found[0], r.event_id, parse_ms(doc["time"]), found[2]))
        assert [tuple(row) for row in rows] == expected
    gaps = await journal.ledger_gaps(0, 1 << 62)
    assert [(g.organization, g.chain_seq, g.from_ms, g.to_ms) for g in gaps] == [
        ("acme", 4, 0, 1000),
        ("globex", 4, 0, 1000),
    ]
    assert "were lost" in gaps[0].reason
    assert sorted(await journal.ledger_streams()) == [("t", "acme"), ("t", "globex")]

    # a sink's confirmation: its offset, and the dead letters noted by seq
    await journal.commit("a", 8, [(records[2], "rejected")])
    (a,) = await journal.confirmations()
    assert (a.sink, a.start, a.offset, a.dead) == ("a", 0, 8, frozenset({records[2].seq}))
    assert [a.state(s) for s in (1, records[2].seq, 9)] == ["confirmed", "dead-lettered", "not confirmed"]
    await journal.delete_dead_letters([d.id for d in await journal.dead_letters()])  # dlq purge
    assert (await journal.confirmations())[0].dead == frozenset({records[2].seq})

    # a sink added after pruning never had what was pruned before it
    await journal.commit("a", 12)
    await journal.prune()
    await journal.register_sinks(["a", "b"])
    b = {c.sink: c for c in await journal.confirmations()}["b"]
    assert b.start == b.offset == 12 and b.state(5) == "not sent (the sink was added later)"


async def test_rows_go_by_event_time_and_runs_keep_the_newest(journal: StateJournal) -> None:
    chunks = Chunks()
    head = START
    for n in range(4):
        e = event(n)
        head = link(e, head)
        chunks.add((e["id"], "t", parse_ms(e["time"]), "x.y", "api", "success"), orjson.dumps(e))
    await journal.append("t", "acme", chunks, {"n": 4}, chain=(START, head))
    old = [JournalEntry("u:1", "u", 1_000, orjson.dumps({**event(1), "chain": {"seq": 1, "prev": "0", "hash": "ab"}}))]
    await journal.append("u", "acme", old, {"n": 1})  # no chain heads given: read from the event
    assert [(r.chain_seq, r.hash) for r in await journal.ledger("u", "acme", 0, 1 << 62)] == [(1, "ab")]

    t_times = [r.time_ms for r in await journal.ledger("t", "acme", 0, 1 << 62)]
    deleted = await journal.prune_ledger({"t": t_times[2]}, 0)  # source u: the default cutoff keeps all
    assert deleted == 2
    assert [r.time_ms for r in await journal.ledger("t", "acme", 0, 1 << 62)] == t_times[2:]
    assert len(await journal.ledger("u", "acme", 0, 1 << 62)) == 1

    await journal.record_run("verify", "files /x", False, {"problems": 1})
    await journal.record_run("verify", "files /x", True, {"problems": 0})
    await journal.record_run("reconcile", "t/acme", True, {"missing": 0})
    runs = await journal.evidence_runs()
    assert [(r.kind, r.scope, r.ok, r.summary) for r in runs] == [
        ("reconcile", "t/acme", True, {"missing": 0}),
        ("verify", "files /x", True, {"problems": 0}),
    ]
    assert all(abs(r.at - time.time()) < 3600 for r in runs)


def test_the_ledger_is_kept_for_each_vendors_retention_unless_set() -> None:
    from types import SimpleNamespace

    from forwarder.evidence.retention import DAY_MS, UNKNOWN_RETENTION_DAYS, cutoffs

    configcat = SimpleNamespace(name="configcat", retention=lambda: 35.0)
    codacy = SimpleNamespace(name="codacy", retention=lambda: None)
    now = 1_000 * DAY_MS
    per_source, default = cutoffs([configcat, codacy], None, now)
    assert per_source == {"configcat": now - 35 * DAY_MS, "codacy": now - int(UNKNOWN_RETENTION_DAYS * DAY_MS)}
    assert default == now - int(UNKNOWN_RETENTION_DAYS * DAY_MS)  # a stream no longer configured: the longest
    per_source, default = cutoffs([configcat, codacy], 400.0, now)
    assert (
        per_source == {"configcat": now - 400 * DAY_MS, "codacy": now - 400 * DAY_MS}
        and default == per_source["codacy"]
    )
