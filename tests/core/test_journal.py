"""The journal's transaction rules, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forwarder.journal import Journal, JournalEntry, StateError


def entries(n: int, start: int = 0) -> list[JournalEntry]:
    return [
        JournalEntry(f"id-{i}", "codacy", 1_700_000_000_000 + i, b'{"id":"id-%d"}' % i)
        for i in range(start, start + n)
    ]


async def open_journal(path: Path, **kw: int) -> Journal:
    journal = Journal(path, **kw)
    await journal.open()
    return journal


async def test_append_moves_cursor_with_events(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.sqlite3")
    await journal.register_sinks(["a", "b"])
    await journal.append("src", "org", entries(3), {"watermark_ms": 5})
    assert await journal.get_cursor("src", "org") == {"watermark_ms": 5}
    records = await journal.read(0, 10, 1 << 20)
    assert [r.event_id for r in records] == ["id-0", "id-1", "id-2"]
    assert records[0].vendor == "codacy"
    await journal.close()


async def test_failed_append_keeps_neither_events_nor_cursor(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.sqlite3")
    await journal.append("src", "org", entries(1), {"watermark_ms": 1})
    bad = [JournalEntry("x", "codacy", 1, None)]  # type: ignore[arg-type]  # NOT NULL violation mid-transaction
    with pytest.raises(sqlite3.IntegrityError):
        await journal.append("src", "org", [*entries(2, 10), *bad], {"watermark_ms": 99})
    assert await journal.get_cursor("src", "org") == {"watermark_ms": 1}
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == ["id-0"]
    await journal.close()


async def test_prune_waits_for_the_slowest_sink(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.sqlite3")
    await journal.register_sinks(["fast", "slow"])
    await journal.append("src", "org", entries(4), {"w": 1})
    await journal.commit("fast", 4)
    assert await journal.prune() == 0
    await journal.commit("slow", 2)
    assert await journal.prune() == 2
    assert journal.size[0] == 2
    assert [r.seq for r in await journal.read(await journal.offset("slow"), 10, 1 << 20)] == [3, 4]
    await journal.close()


async def test_offsets_and_cursors_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = await open_journal(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(3), {"w": 7})
    await journal.commit("a", 2)
    await journal.close()
    journal = await open_journal(path)
    assert await journal.offset("a") == 2
    assert await journal.get_cursor("src", "org") == {"w": 7}
    assert journal.head == 3
    await journal.close()


async def test_cap_reports_full(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.sqlite3", max_events=3)
    await journal.append("src", "org", entries(2), {})
    assert not journal.is_full()
    await journal.append("src", "org", entries(1, 5), {})
    assert journal.is_full()
    await journal.close()


async def test_read_respects_byte_limit_but_returns_at_least_one(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.sqlite3")
    await journal.append("src", "org", entries(5), {})
    assert len(await journal.read(0, 10, 1)) == 1
    assert len(await journal.read(0, 10, 30)) == 2
    await journal.close()


async def test_dead_letters_commit_with_offset(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path / "j.sqlite3")
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
