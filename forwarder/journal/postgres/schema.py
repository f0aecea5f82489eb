"""The PostgreSQL state: its tables and their versions.

Each version is a list of statements applied in one transaction, recorded in ``af_meta``; a
replica refuses a database whose version it does not know (a newer release wrote it) instead
of writing into tables it does not understand. Table names carry an ``af_`` prefix so the
state can share a database (and a schema) with other applications.
"""

from __future__ import annotations

import psycopg

from forwarder.journal.postgres import ledger
from forwarder.journal.types import StateError

MIGRATIONS: list[list[str]] = [
    [  # version 1
        "CREATE TABLE af_meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE af_head (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, events bigint NOT NULL,"
        " bytes bigint NOT NULL)",
        "INSERT INTO af_head VALUES (1, 0, 0, 0)",
        "CREATE TABLE af_cursors (source text NOT NULL, organization text NOT NULL, state bytea NOT NULL,"
        " updated_at double precision NOT NULL, PRIMARY KEY (source, organization))",
        "CREATE TABLE af_chunks (first_seq bigint PRIMARY KEY, last_seq bigint NOT NULL, source text NOT NULL,"
        " organization text NOT NULL, journaled_at double precision NOT NULL, bytes bigint NOT NULL,"
        " meta bytea NOT NULL, data bytea NOT NULL)",
        "CREATE TABLE af_sink_offsets (sink text PRIMARY KEY, seq bigint NOT NULL)",
        "CREATE TABLE af_sink_inflight (sink text PRIMARY KEY, last_seq bigint NOT NULL)",
        "CREATE TABLE af_quarantine (id bigserial PRIMARY KEY, source text NOT NULL, organization text NOT NULL,"
        " reason text NOT NULL, raw bytea NOT NULL, at double precision NOT NULL)",
        "CREATE TABLE af_dead_letters (id bigserial PRIMARY KEY, sink text NOT NULL, seq bigint NOT NULL,"
        " event_id text NOT NULL, source text NOT NULL, organization text NOT NULL, vendor text NOT NULL,"
        " time_ms bigint NOT NULL, reason text NOT NULL, data bytea NOT NULL, at double precision NOT NULL)",
        "CREATE TABLE af_leases (unit text PRIMARY KEY, holder text, token bigint NOT NULL DEFAULT 0,"
        " expires_at timestamptz NOT NULL DEFAULT '-infinity', takeovers bigint NOT NULL DEFAULT 0)",
        "CREATE TABLE af_replicas (replica text PRIMARY KEY, expires_at timestamptz NOT NULL)",
        "CREATE TABLE af_counters (name text PRIMARY KEY, value bigint NOT NULL)",
    ],
    [  # version 2: the head of each stream's hash chain (forwarder.evidence.chain)
        "CREATE TABLE af_chain_heads (source text NOT NULL, organization text NOT NULL, seq bigint NOT NULL,"
        " hash text NOT NULL, PRIMARY KEY (source, organization))",
    ],
    ledger.MIGRATION,  # version 3: the evidence ledger and the verify/reconcile runs (forwarder.journal.ledger)
    ledger.MIGRATION_RUNS,  # version 4: the ledger a row per run of events, version 3's rows folded in
    [  # version 5: the sinks each replica configures (``PostgresJournal.register_sinks``)
        "ALTER TABLE af_replicas ADD COLUMN sinks text[] NOT NULL DEFAULT '{}'",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """Brings the database to ``SCHEMA_VERSION``; returns the version it had. Replicas starting
    together serialize on an advisory lock, so each version is applied once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit-forwarder schema'))")
        cur = await conn.execute("SELECT to_regclass('af_meta') IS NOT NULL")
        row = await cur.fetchone()
        exists = bool(row and row[0])
        version = 0
        if exists:
            cur = await conn.execute("SELECT value FROM af_meta WHERE key = 'schema_version'")
            found = await cur.fetchone()
            version = int(str(found[0])) if found else 0
        if version > SCHEMA_VERSION:
            raise StateError(
                f"the PostgreSQL state has schema version {version}; this build knows versions 1 to "
                f"{SCHEMA_VERSION}: run the release that wrote it, or a newer one"
            )
        if version == SCHEMA_VERSION:  # nothing to write: a replica's role needs no DDL, not even on af_meta
            return version
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                await conn.execute(statement)  # fixed DDL, no user input
        await conn.execute(
            "INSERT INTO af_meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return version


async def check_version(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """For read-only openers: refuse a database of another version without changing it."""
    cur = await conn.execute("SELECT to_regclass('af_meta') IS NOT NULL")
    row = await cur.fetchone()
    if not (row and row[0]):
        raise StateError("the PostgreSQL state is empty: start the daemon (or a state-changing command) once")
    cur = await conn.execute("SELECT value FROM af_meta WHERE key = 'schema_version'")
    found = await cur.fetchone()
    version = int(str(found[0])) if found else 0
    if version != SCHEMA_VERSION:
        raise StateError(
            f"the PostgreSQL state has schema version {version}; this build reads version {SCHEMA_VERSION}"
        )
