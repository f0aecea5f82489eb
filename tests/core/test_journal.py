"""The journal's transaction rules, against the protocol (``StateJournal``) for every backend in
``BACKENDS``, and the SQLite file's own matters (chunks, migration, damage) on a real file."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder import chunks as chunks_module
from forwarder.chunks import JournalEntry
from forwarder.journal import SqliteJournal, StateError, StateJournal
from forwarder.journal.postgres.journal import PostgresJournal


def entries(n: int, start: int = 0) -> list[JournalEntry]:
    return [
        JournalEntry(f"id-{i}", "codacy", 1_700_000_000_000 + i, b'{"id":"id-%d"}' % i) for i in range(start, start + n)
    ]


async def open_journal(path: Path, **kw: Any) -> SqliteJournal:
    journal = SqliteJournal(path, **kw)
    await journal.open()
    return journal


Opener = Callable[..., Awaitable[StateJournal]]


@pytest.fixture(params=["sqlite", "postgresql"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Each backend's journal at one place: opened again there, it holds the same state."""
    if request.param == "sqlite":
        make: Callable[..., StateJournal] = lambda **kw: SqliteJournal(tmp_path / "j.sqlite3", **kw)  # noqa: E731
    else:
        server = request.getfixturevalue("postgres")
        dsn = server.dsn(server.create_database())
        make = lambda **kw: PostgresJournal(dsn, **kw)  # noqa: E731

    async def open_(**kw: Any) -> StateJournal:
        journal = make(**kw)
        await journal.open()
        return journal

    return open_


async def test_append_moves_cursor_with_events(reopen: Opener) -> None:
    journal = await reopen()
    await journal.register_sinks(["a", "b"])
    await journal.append("src", "org", entries(3), {"watermark_ms": 5})
    assert await journal.get_cursor("src", "org") == {"watermark_ms": 5}
    records = await journal.read(0, 10, 1 << 20)
    assert [r.event_id for r in records] == ["id-0", "id-1", "id-2"]
    assert records[0].vendor == "codacy"
    await journal.close()


async def test_failed_append_keeps_neither_events_nor_cursor(reopen: Opener) -> None:
    journal = await reopen()
    await journal.append("src", "org", entries(1), {"watermark_ms": 1})
    unwritable = {"watermark_ms": 99, "bad": object()}  # fails after the events were inserted
    with pytest.raises(TypeError):
        await journal.append("src", "org", entries(2, 10), unwritable)
    assert await journal.get_cursor("src", "org") == {"watermark_ms": 1}
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == ["id-0"]
    await journal.close()


async def test_prune_waits_for_the_slowest_sink(reopen: Opener) -> None:
    journal = await reopen()
    await journal.register_sinks(["fast", "slow"])
    await journal.append("src", "org", entries(2), {"w": 1})
    await journal.append("src", "org", entries(2, 2), {"w": 2})
    await journal.commit("fast", 4)
    assert await journal.prune() == 0
    await journal.commit("slow", 1)  # inside the first chunk: nothing can go yet
    assert await journal.prune() == 0
    await journal.commit("slow", 2)
    assert await journal.prune() == 2
    assert journal.size[0] == 2
    assert [r.seq for r in await journal.read(await journal.offset("slow"), 10, 1 << 20)] == [3, 4]
    await journal.close()


async def test_chunks_are_cut_and_read_from_any_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks_module, "CHUNK_MAX_EVENTS", 3)
    journal = await open_journal(tmp_path / "j.sqlite3")
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(8), {"w": 1})
    assert journal.db.execute("SELECT first_seq, last_seq FROM chunks").fetchall() == [(1, 3), (4, 6), (7, 8)]
    for offset in range(9):
        records = await journal.read(offset, 4, 1 << 20)
        assert [r.seq for r in records] == list(range(offset + 1, min(offset + 4, 8) + 1))
        assert [r.event_id for r in records] == [f"id-{seq - 1}" for seq in range(offset + 1, min(offset + 4, 8) + 1)]
        assert all(r.data == b'{"id":"id-%d"}' % (r.seq - 1) for r in records)
    assert await journal.journaled_at(5) is not None
    assert await journal.journaled_at(9) is None
    await journal.commit("a", 7)
    assert await journal.prune() == 6
    assert journal.size[0] == 2
    stats = await journal.stats()
    assert (stats.sinks[0].offset, stats.sinks[0].events) == (7, 1)
    await journal.close()


def test_chunks_cut_by_size_keep_every_line_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks_module, "CHUNK_MAX_BYTES", 40)
    chunks = chunks_module.Chunks.of(entries(7))  # 13-byte lines, 14 with their LF
    chunks.cut()
    assert [len(columns[0]) for columns, _ in chunks.done] == [3, 3, 1]
    assert chunks.done[0][1] == b'{"id":"id-0"}\n{"id":"id-1"}\n{"id":"id-2"}'
    assert list(chunks) == entries(7)


async def test_head_survives_pruning_everything(reopen: Opener) -> None:
    journal = await reopen()
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(3), {"w": 1})
    await journal.commit("a", 3)
    assert await journal.prune() == 3
    await journal.close()
    journal = await reopen()
    assert journal.head == 3  # seqs are never reused: offsets stay meaningful
    await journal.append("src", "org", entries(1, 3), {"w": 2})
    assert [r.seq for r in await journal.read(await journal.offset("a"), 10, 1 << 20)] == [4]
    await journal.close()


async def test_state_version_1_is_migrated(tmp_path: Path) -> None:
    """A journal written by a release with one row per event keeps its events, offsets and cursors."""
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('state_version', '1')")
    db.execute("INSERT INTO cursors VALUES ('src', 'org', '{\"w\":5}', 0)")
    db.execute("INSERT INTO sink_offsets VALUES ('a', 3)")
    for seq in (3, 4, 5, 7, 8, 9):  # 1-2 pruned; 6 never committed (a gap); 9 a later page
        db.execute(
            "INSERT INTO events VALUES (?, ?, 'src', ?, 'codacy', ?, ?, ?)",
            (
                seq,
                f"id-{seq}",
                "org" if seq < 5 else "org2",
                seq * 10,
                2.5 if seq == 9 else 1.5,
                b'{"seq":%d,"action":"a.b","category":"authentication","outcome":"success"}' % seq,
            ),
        )
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="state version 1 and is migrated"):
        await open_journal(path, migrate=False)  # a read-only command: no lock, no rewrite
    assert path.read_bytes() == before
    journal = await open_journal(path)
    assert journal.head == 9
    assert journal.size[0] == 6
    records = await journal.read(await journal.offset("a"), 10, 1 << 20)
    assert [(r.seq, r.event_id, r.organization, r.time_ms) for r in records] == [
        (4, "id-4", "org", 40),
        (5, "id-5", "org2", 50),
        (7, "id-7", "org2", 70),
        (8, "id-8", "org2", 80),
        (9, "id-9", "org2", 90),
    ]
    assert all(orjson.loads(r.data)["seq"] == r.seq for r in records)
    assert {(r.action, r.category, r.outcome) for r in records} == {("a.b", "authentication", "success")}
    chunks = journal.db.execute("SELECT first_seq, last_seq, journaled_at FROM chunks ORDER BY 1").fetchall()
    assert chunks == [(3, 4, 1.5), (5, 5, 1.5), (7, 8, 1.5), (9, 9, 2.5)]
    assert await journal.get_cursor("src", "org") == {"w": 5}
    await journal.close()
    journal = await open_journal(path)  # now the current version
    assert journal.db.execute("SELECT value FROM meta WHERE key='state_version'").fetchone() == ("3",)
    await journal.close()


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cursors (source TEXT NOT NULL, organization TEXT NOT NULL, state BLOB NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (source, organization));
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, source TEXT NOT NULL,
    organization TEXT NOT NULL, vendor TEXT NOT NULL, time_ms INTEGER NOT NULL,
    journaled_at REAL NOT NULL, data BLOB NOT NULL);
CREATE TABLE sink_offsets (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


def test_a_line_feed_in_an_events_json_is_refused() -> None:
    """Chunks keep one event per line: a LF inside would split it when read back (the poller
    quarantines such an event; orjson never writes one)."""
    chunks = chunks_module.Chunks()
    with pytest.raises(ValueError, match="line feed"):
        chunks.add(("id", "codacy", 0, None, None, None), b'{"a":\n1}')
    assert len(chunks) == 0


async def test_offsets_and_cursors_survive_reopen(reopen: Opener) -> None:
    journal = await reopen()
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(3), {"w": 7})
    await journal.commit("a", 2)
    await journal.close()
    journal = await reopen()
    assert await journal.offset("a") == 2
    assert await journal.get_cursor("src", "org") == {"w": 7}
    assert journal.head == 3
    await journal.close()


async def test_cap_reports_full(reopen: Opener) -> None:
    journal = await reopen(max_events=3)
    await journal.append("src", "org", entries(2), {})
    assert not journal.is_full()
    await journal.append("src", "org", entries(1, 5), {})
    assert journal.is_full()
    await journal.close()


async def test_read_respects_byte_limit_but_returns_at_least_one(reopen: Opener) -> None:
    journal = await reopen()
    await journal.append("src", "org", entries(5), {})
    assert len(await journal.read(0, 10, 1)) == 1
    assert len(await journal.read(0, 10, 30)) == 2
    await journal.close()


async def test_dead_letters_commit_with_offset(reopen: Opener) -> None:
    journal = await reopen()
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(2), {})
    batch = await journal.read(0, 10, 1 << 20)
    await journal.commit("a", 2, [(batch[1], "rejected: code 6")])
    stats = await journal.stats()
    assert stats.dead_letters == {"a": 1}
    await journal.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "version"])
async def test_damaged_state_refuses_to_start(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "j.sqlite3"
    journal = await open_journal(path)
    await journal.append("src", "org", entries(50), {"w": 1})
    await journal.close()
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value='999' WHERE key='state_version'")
        db.commit()
        db.close()
    with pytest.raises(StateError) as info:
        await open_journal(path)
    assert str(path) in str(info.value)


async def test_each_sink_keeps_one_parsed_chunk_and_none_is_parsed_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One parsed chunk per sink (a chunk parsed is ~1 MiB of small allocations): a sink reading
    in batches smaller than a chunk, and two sinks reading in turn a few events apart, parse
    every chunk once, and no more chunks stay parsed than there are sinks."""
    from forwarder.journal import events as events_module

    monkeypatch.setattr(chunks_module, "CHUNK_MAX_EVENTS", 10)
    parsed: list[int] = []
    decode = events_module.decode

    def counting(first_seq: int, *args: Any) -> Any:
        parsed.append(first_seq)
        return decode(first_seq, *args)

    monkeypatch.setattr(events_module, "decode", counting)
    journal = await open_journal(tmp_path / "j.sqlite3")
    store = journal.state.events
    await journal.register_sinks(["only"])
    await journal.append("src", "org", entries(60), {"w": 1})
    offset = 0
    while offset < 60:  # batches of 4 in chunks of 10
        offset = (await journal.read(offset, 4, 1 << 20))[-1].seq
        assert len(store._cache) == 1
    assert parsed == [1, 11, 21, 31, 41, 51]

    parsed.clear()
    store.forget_decoded()
    await journal.register_sinks(["fast", "slow"])
    fast, slow = 0, 0
    while slow < 60:  # "slow" a few events behind "fast", reading in turn
        if fast < 60:
            fast = (await journal.read(fast, 5, 1 << 20))[-1].seq
        slow = (await journal.read(slow, 3 if slow == 0 else 5, 1 << 20))[-1].seq
        assert len(store._cache) <= 2
    assert sorted(parsed) == [1, 11, 21, 31, 41, 51]
    await journal.close()
