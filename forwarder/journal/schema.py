"""The SQLite state file: its tables, its settings, and the checks and migration at opening.

Damaged state is never reset silently: a file that fails ``PRAGMA quick_check``, is not a state
file or has another state version is refused with a message naming the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from forwarder.chunks import CHUNK_MAX_EVENTS, Chunks, JournalEntry
from forwarder.journal import ledger_sqlite
from forwarder.journal.dead_letters import event_summary
from forwarder.journal.transaction import transaction
from forwarder.journal.types import StateError
from forwarder.state_files import StateFileError, make_state_dir, secure_state_file

STATE_VERSION = 3  # 2: chunks instead of a row per event; 3: chunk bytes in segment files

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT NOT NULL, organization TEXT NOT NULL, state BLOB NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (source, organization));
CREATE TABLE IF NOT EXISTS chunks (
    first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, source TEXT NOT NULL,
    organization TEXT NOT NULL, journaled_at REAL NOT NULL, bytes INTEGER NOT NULL,
    meta BLOB NOT NULL, data BLOB NOT NULL, segment INTEGER, segment_offset INTEGER);
CREATE TABLE IF NOT EXISTS sink_offsets (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sink_inflight (sink TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, organization TEXT NOT NULL,
    reason TEXT NOT NULL, raw BLOB NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, source TEXT NOT NULL, organization TEXT NOT NULL, vendor TEXT NOT NULL,
    time_ms INTEGER NOT NULL, reason TEXT NOT NULL, data BLOB NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chain_heads (
    source TEXT NOT NULL, organization TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (source, organization));
"""


def connect(path: Path, migrate: bool) -> sqlite3.Connection:
    """The state file at ``path``, created, checked and migrated as needed. ``migrate=False`` for
    openers without the state lock (``state show``, ``dlq list``): they must not rewrite a
    journal that a daemon of the previous release may be using."""
    existed = path.exists() and path.stat().st_size > 0
    _secure_files(path)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        version = _verify(db, path) if existed else STATE_VERSION
        if version < STATE_VERSION and not migrate:
            db.close()
            raise StateError(
                f"state database {path} has state version {version} and is migrated to version {STATE_VERSION} "
                "when the daemon (or a state-changing command) next starts; start it once, then run this again"
            )
        if not existed:
            # Chunks are ~1 MB blobs: 16 KiB pages read and write them in a quarter of the
            # system calls of the default 4 KiB (a quarter of the system CPU). Only a new
            # database takes it; an existing one keeps its page size.
            db.execute("PRAGMA page_size=16384")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        # Pruned events, deleted dead letters and quarantined entries must not stay readable
        # in free pages: ON zeroes every freed page (FAST left a chunk's overflow pages, the
        # events themselves, in the file). The cost is measured in docs/performance.md.
        db.execute("PRAGMA secure_delete=ON")
        # A reset WAL is otherwise reused, not cut: the frames beyond the new log's end still
        # held the appended (since pruned) events. 0 cuts it at the first commit after each
        # checkpoint that reset it.
        db.execute("PRAGMA journal_size_limit=0")
        if migrate or not existed:  # a read-only opener leaves the schema of another release alone
            db.executescript(_TABLES)
            db.executescript(ledger_sqlite.TABLES)  # new tables only: older releases ignore them
        if version < STATE_VERSION:
            _migrate(db, path, version)
        elif not existed:
            db.execute("INSERT INTO meta VALUES ('state_version', ?)", (str(STATE_VERSION),))
    except sqlite3.DatabaseError as exc:
        raise StateError(
            f"state database {path} is unreadable ({exc}); restore it from a backup or move it "
            "aside to start over (cursors would restart from initial_lookback)"
        ) from None
    return db


def _secure_files(path: Path) -> None:
    """state_dir 0700, the database and the ``-wal`` and ``-shm`` SQLite makes beside it 0600,
    none of them a symlink or another user's file (``forwarder.state_files``). The database is
    created here, empty, so that SQLite, which gives its ``-wal`` and ``-shm`` the database's
    mode, creates them 0600 too, then and after every checkpoint that deletes them."""
    directory, name = path.parent, path.name
    try:
        make_state_dir(directory)
        for suffix in ("", "-wal", "-shm"):
            secure_state_file(directory, name + suffix, create=not suffix)
    except StateFileError as exc:
        raise StateError(str(exc)) from None
    except OSError as exc:
        raise StateError(
            f"cannot open state database {path}: {exc.strerror}; run audit-forwarder and its tools as "
            f"the user that owns {directory}"
        ) from None


def _verify(db: sqlite3.Connection, path: Path) -> int:
    """The state version of a database that passes the checks."""
    try:
        result = db.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise StateError(f"state database {path} is damaged: {result}")
        row = db.execute("SELECT value FROM meta WHERE key='state_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StateError(
            f"state database {path} is not a valid audit-forwarder state file ({exc}); "
            "restore it from a backup or move it aside to start over"
        ) from None
    if row is None:
        raise StateError(f"state database {path} has no state_version: not an audit-forwarder state file")
    if not 1 <= int(row[0]) <= STATE_VERSION:
        raise StateError(
            f"state database {path} has state version {row[0]}, this build reads versions 1 "
            f"to {STATE_VERSION}; use the matching audit-forwarder release"
        )
    return int(row[0])


def _migrate(db: sqlite3.Connection, path: Path, version: int) -> None:
    try:
        if version == 1:
            _migrate_from_v1(db)  # into version 3's tables at once
        else:
            ledger_sqlite.fold_legacy(db)  # the ledger's one-row-per-event layout, if any, becomes runs
            _migrate_from_v2(db)
    except sqlite3.Error as exc:  # the transaction rolled back: the older version is intact
        raise StateError(
            f"cannot migrate state database {path} from state version {version} ({exc}); the file is unchanged. "
            "The migration needs about as much free space as the journal; free some and start again"
        ) from None


def _migrate_from_v2(db: sqlite3.Connection) -> None:
    """Version 3 keeps new chunks' bytes in segment files; the chunks already journaled keep
    theirs in ``data`` and are read as before. Old releases must not read the new rows."""
    with transaction(db):
        db.execute("ALTER TABLE chunks ADD COLUMN segment INTEGER")
        db.execute("ALTER TABLE chunks ADD COLUMN segment_offset INTEGER")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('state_version', ?)", (str(STATE_VERSION),))


def _migrate_from_v1(db: sqlite3.Connection) -> None:
    """State version 1 kept one row per event; version 2 keeps chunks. Same seqs, offsets and
    cursors, in one transaction: a crash during the migration leaves version 1 intact."""
    with transaction(db):
        rows = db.execute(
            "SELECT seq, event_id, source, organization, vendor, time_ms, journaled_at, data FROM events ORDER BY seq"
        )
        run: list[tuple[Any, ...]] = []

        def flush() -> None:
            first_seq, _, source, organization, _, _, journaled_at, _ = run[0]
            chunks = Chunks.of(JournalEntry(r[1], r[4], r[5], r[7], **event_summary(r[7])) for r in run)
            db.executemany(
                "INSERT INTO chunks (first_seq, last_seq, source, organization, journaled_at, bytes, meta, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                chunks.rows(first_seq, source, organization, journaled_at),
            )
            run.clear()

        for row in rows:  # streamed: a full journal does not fit in memory
            if run and (
                row[0] != run[-1][0] + 1
                or row[2:4] != run[0][2:4]
                or row[6] != run[0][6]
                or len(run) >= CHUNK_MAX_EVENTS
            ):
                flush()  # a gap, another source or organization, another page
            run.append(row)
        if run:
            flush()
        head = db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        if head:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head_seq', ?)", (str(head[0]),))
        db.execute("DROP TABLE events")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('state_version', ?)", (str(STATE_VERSION),))
