"""The evidence ledger on both backends: one row per journaled event, written with the page,
equal to the event's own chain fields; gap events noted with their interval; each sink's
start, offset and dead letters; pruned by event time; the runs of verify and reconcile."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from forwarder.chunks import Chunks, JournalEntry
from forwarder.event import parse_ms
from forwarder.evidence.chain import START, fields, link
from forwarder.journal import StateJournal
from forwarder.journal.ledger import LedgerRow, hash_of
from forwarder.journal.sqlite import SqliteState
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


async def test_a_replayed_dead_letter_is_confirmed_a_purged_one_stays_dead(journal: StateJournal) -> None:
    """``dlq replay``'s receiver confirmed it: the ledger no longer calls it dead-lettered."""
    await journal.register_sinks(["a"])
    assert await Poller(PagedSource(), journal, lambda: None).poll()  # type: ignore[arg-type]
    records = await journal.read(0, 100, 1 << 30)
    await journal.commit("a", 12, [(records[2], "rejected"), (records[3], "rejected")])
    replayed, purged = sorted(await journal.dead_letters(), key=lambda d: d.record.seq)
    await journal.delete_dead_letters([replayed.id], delivered=True)  # dlq replay, confirmed
    await journal.delete_dead_letters([purged.id])  # dlq purge
    (a,) = await journal.confirmations()
    assert a.dead == frozenset({records[3].seq})
    assert [a.state(records[2].seq), a.state(records[3].seq)] == ["confirmed", "dead-lettered"]
    assert await journal.dead_letters() == []


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


# --- the layout before runs: one row per event (state files and PostgreSQL schema version 3) ----

_LEGACY_SQLITE = """
CREATE TABLE ledger (
    stream INTEGER NOT NULL, time_ms INTEGER NOT NULL, seq INTEGER NOT NULL, chain_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (stream, time_ms, seq)) WITHOUT ROWID;
"""


def legacy_rows() -> dict[tuple[str, str], list[LedgerRow]]:
    """What a release writing one row per event left: two streams interleaved in the journal,
    a run longer than a run holds, a chain that restarts, times out of order, ids that JSON escapes,
    hashes no chain wrote (one byte)."""
    rows: dict[tuple[str, str], list[LedgerRow]] = {("t", "acme"): [], ("t", "globex"): []}
    seq = 0
    for page, (stream, chain_seqs) in enumerate(
        [(("t", "acme"), range(1, 2501)), (("t", "globex"), range(1, 4)), (("t", "acme"), range(2501, 2504)),
         (("t", "globex"), range(10, 12))]
    ):  # fmt: skip
        for chain_seq in chain_seqs:
            seq += 1
            odd = f'x"\\\\é\u2028{seq}' if seq % 97 == 0 else f"codacy:{seq:064x}"
            time_ms = 1_000_000 + (seq * 7919) % 5000 + page
            digest = "ab" if seq % 500 == 0 else hashlib.sha256(str(seq).encode()).hexdigest()  # a hand-made one
            rows[stream].append(LedgerRow(seq, chain_seq, odd, time_ms, digest))
    return rows


def test_a_state_file_with_a_row_per_event_is_folded_into_runs(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    expected = legacy_rows()
    state = SqliteState(path)
    state.open()
    db = state.db
    db.execute("DROP TABLE ledger_runs")  # as the release before wrote it: state version 2
    db.executescript(_LEGACY_SQLITE)
    db.execute("ALTER TABLE chunks DROP COLUMN segment")
    db.execute("ALTER TABLE chunks DROP COLUMN segment_offset")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'state_version'")
    for (source, organization), rows in expected.items():
        (stream,) = db.execute(
            "INSERT INTO ledger_streams (source, organization) VALUES (?, ?) RETURNING id", (source, organization)
        ).fetchone()
        db.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
            [(stream, r.time_ms, r.seq, r.chain_seq, r.event_id, bytes.fromhex(r.hash)) for r in rows],
        )
    state.close()

    state = SqliteState(path)  # the daemon of this release: folded, the old table gone
    state.open()
    assert state.db.execute("SELECT 1 FROM sqlite_master WHERE name='ledger'").fetchone() is None
    assert state.db.execute("SELECT value FROM meta WHERE key='state_version'").fetchone() == ("3",)
    runs = state.db.execute("SELECT COUNT(*) FROM ledger_runs").fetchone()[0]
    assert runs < 30
    for (source, organization), rows in expected.items():
        assert state.ledger(source, organization, 0, 1 << 62) == rows
        assert state.ledger(source, organization, 1_002_000, 1_003_000) == [
            r for r in rows if 1_002_000 <= r.time_ms < 1_003_000
        ]
    assert state.prune_ledger({}, 1_002_000) == sum(1 for rs in expected.values() for r in rs if r.time_ms < 1_002_000)
    for (source, organization), rows in expected.items():
        assert state.ledger(source, organization, 0, 1 << 62) == [r for r in rows if r.time_ms >= 1_002_000]
    state.close()


async def test_a_postgresql_state_of_schema_version_3_is_folded_into_runs(postgres: Any) -> None:
    from forwarder.journal.postgres.journal import PostgresJournal
    from forwarder.journal.postgres.schema import MIGRATIONS

    dsn = postgres.dsn(postgres.create_database())
    expected = legacy_rows()
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        for statement in [s for version in MIGRATIONS[:3] for s in version]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO af_meta VALUES ('schema_version', '3')")
        for (source, organization), rows in expected.items():
            cur = await conn.execute(
                "INSERT INTO af_ledger_streams (source, organization) VALUES (%s, %s) RETURNING id",
                (source, organization),
            )
            (stream,) = await cur.fetchone() or (0,)
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO af_ledger VALUES (%s, %s, %s, %s, %s, %s)",
                    [(stream, r.time_ms, r.seq, r.chain_seq, r.event_id, bytes.fromhex(r.hash)) for r in rows],
                )
    journal = PostgresJournal(dsn)
    await journal.open()
    try:
        for (source, organization), rows in expected.items():
            assert await journal.ledger(source, organization, 0, 1 << 62) == rows
        async with journal.pool.connection() as conn:
            row = await (await conn.execute("SELECT COUNT(*), to_regclass('af_ledger') FROM af_ledger_runs")).fetchone()
        assert row is not None and row[0] < 30 and row[1] is None
        pruned = sum(1 for rs in expected.values() for r in rs if r.time_ms < 1_002_000)
        assert await journal.prune_ledger({}, 1_002_000) == pruned
        for (source, organization), rows in expected.items():
            assert await journal.ledger(source, organization, 0, 1 << 62) == [r for r in rows if r.time_ms >= 1_002_000]
    finally:
        await journal.close()


def test_the_hashes_handed_with_the_events_are_noted_as_the_json_holds_them() -> None:
    from forwarder.chunks import CHUNK_MAX_EVENTS
    from forwarder.journal import ledger

    handed, plain, wrong = Chunks(), Chunks(), Chunks()
    head = START
    for n in range(CHUNK_MAX_EVENTS + 5):  # two chunks: two runs
        e = event(n)
        head = link(e, head)
        fields_ = (e["id"], "t", parse_ms(e["time"]), "x.y", "api", "success")
        handed.add(fields_, orjson.dumps(e), head.hash)
        plain.add(fields_, orjson.dumps(e))
        wrong.add(fields_, orjson.dumps(e), "00" * 32)
    runs, _ = ledger.rows_of(handed, 11, "t", "acme", (START, head))
    assert [(r.first_seq, r.first_chain_seq, r.events) for r in runs] == [(11, 1, CHUNK_MAX_EVENTS), (1011, 1001, 5)]
    assert ledger.rows_of(plain, 11, "t", "acme", (START, head)) == (runs, [])
    assert ledger.rows_of(wrong, 11, "t", "acme", (START, head)) == (runs, [])  # not the chain's: read off the JSON
    rows = [row for run in runs for row in ledger.unpack(run)]
    assert rows[-1] == LedgerRow(1015, 1005, orjson.loads(plain.done[-1][1].split(b"\n")[-1])["id"], rows[-1].time_ms,
                                 head.hash)  # fmt: skip


def test_an_event_whose_hash_is_not_hex_is_not_noted_and_the_page_goes_on() -> None:
    from forwarder.journal import ledger

    good, bad = event(1), event(2)
    link(good, START)
    bad["chain"] = {"seq": 2, "prev": good["chain"]["hash"], "hash": "not hex"}
    chunks = Chunks.of(JournalEntry(e["id"], "t", parse_ms(e["time"]), orjson.dumps(e)) for e in (good, bad))
    runs, _ = ledger.rows_of(chunks, 1, "t", "acme", None)
    assert [row.event_id for run in runs for row in ledger.unpack(run)] == [good["id"]]
