"""Damaged state: the real CLI refuses to start on a state database it cannot trust.

Corrupt bytes, a truncated file and a state version from another release each stop the
daemon before it polls: non-zero exit, a message that names the file, no traceback, and
the file exactly as it was (starting over silently would reset cursors: re-sending a
year of history or skipping what was never delivered).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forwarder.chunks import JournalEntry
from forwarder.journal import SqliteState
from tests.support.config import file_sink, make_config
from tests.support.daemon import cli
from tests.support.figures import Figures
from tests.support.vendors import codacy_source

pytestmark = pytest.mark.integration


def healthy_state(path: Path) -> None:
    """A real journal with a cursor and enough events to span many pages."""
    journal = SqliteState(path)
    journal.open()
    now = datetime.now(UTC).isoformat()
    entries = [
        JournalEntry(f"codacy:{i:064x}", "codacy", 1_700_000_000_000 + i, b'{"pad":"' + b"x" * 900 + b'"}')
        for i in range(400)
    ]
    journal.append("codacy", "gh/acme", entries, {"watermark_ms": 1_700_000_000_000, "at": now})
    assert journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    journal.close()


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0:100] = b"\xde\xad\xbe\xef" * 25
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def wrong_version(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='state_version'")
    db.close()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (corrupt, "not a valid audit-forwarder state file"),
        (truncate, "not a valid audit-forwarder state file"),
        (wrong_version, "state version 99"),
    ],
    ids=["corrupt", "truncated", "wrong-version"],
)
def test_daemon_refuses_damaged_state_and_leaves_it_untouched(
    tmp_path: Path, damage: Callable[[Path], None], says: str, figures: Figures
) -> None:
    cfg = make_config(tmp_path, codacy_source("http://127.0.0.1:9"), {"file": file_sink(tmp_path / "out")})
    state_file = tmp_path / "state" / "journal.sqlite3"
    state_file.parent.mkdir()
    healthy_state(state_file)
    damage(state_file)
    for leftover in ("-wal", "-shm"):
        Path(f"{state_file}{leftover}").unlink(missing_ok=True)
    before = hashlib.sha256(state_file.read_bytes()).hexdigest()

    for command in ("run", "once"):
        result = cli(cfg, command, timeout=60)
        assert result.returncode != 0, f"{command} started on a damaged state file"
        assert str(state_file) in result.stderr, result.stderr
        assert says in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert hashlib.sha256(state_file.read_bytes()).hexdigest() == before, "the state file was modified"
    assert not (tmp_path / "out").exists(), "nothing may be delivered from a state it cannot trust"
    figures.record(crashed=0)
    print(f"\ndamaged state ({damage.__name__}): {result.stderr.strip().splitlines()[-1][:160]}")
