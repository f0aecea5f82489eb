"""The one place that picks the backend a configuration asks for."""

from __future__ import annotations

import re
from pathlib import Path

from forwarder.journal.protocols import StateJournal
from forwarder.journal.settings import StateSettings
from forwarder.journal.sqlite import SqliteJournal
from forwarder.journal.types import StateError
from forwarder.redaction import register_secrets

JOURNAL_FILE = "journal.sqlite3"


def make_journal(
    state: StateSettings, state_dir: Path, max_events: int = 1_000_000, max_bytes: int = 1 << 30, migrate: bool = True
) -> StateJournal:
    """``migrate=False`` for openers without the state lock: they must not change the schema."""
    if state.backend == "sqlite":
        return SqliteJournal(state_dir / JOURNAL_FILE, max_events, max_bytes, migrate=migrate)
    from forwarder.journal.postgres.journal import PostgresJournal  # psycopg only where it is configured

    conninfo, where = postgres_conninfo(state)
    register_secrets(dsn_secrets(state))
    return PostgresJournal(
        conninfo,
        max_events,
        max_bytes,
        migrate=migrate,
        pool_size=state.pool_size,
        where=where,
        replica=state.replica_id,
        lease_ttl_s=state.lease_ttl_s,
        stalled_transaction_s=state.lease_ttl_s / 2,
        reconnect_s=state.lease_ttl_s / 4,
    )


def postgres_conninfo(state: StateSettings) -> tuple[str, str]:
    """The connection string with the password merged in, and how messages name the database
    (host, port and database: never the password)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    assert state.dsn is not None  # checked by StateSettings
    extra = {"password": state.password.get_secret_value()} if state.password else {}
    try:
        # the replica's name in pg_stat_activity: whose sessions are whose, to terminate or to watch
        name = f"audit-forwarder/{state.replica_id}"[:63]  # the server's limit (NAMEDATALEN - 1)
        conninfo = make_conninfo(state.dsn.get_secret_value(), application_name=name, **extra)
    except psycopg.Error as exc:
        raise StateError(f"state.dsn is not a libpq connection string or URI: {unquoted(str(exc))}") from None
    parts = conninfo_to_dict(conninfo)
    where = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"
    return conninfo, f"PostgreSQL {where}"


def unquoted(message: str) -> str:
    """libpq's parse errors quote the DSN's words (``missing "=" after "secret"``): an unquoted
    password with a space in it would show half of it. The words are left out."""
    first = (message.strip().splitlines() or [""])[0]
    words = re.sub(r'"[^"]*"', lambda m: m[0] if len(m[0]) <= 3 else '"..."', first)  # keeps "="
    return words[:200] or "it could not be parsed"


def dsn_secrets(state: StateSettings) -> set[str]:
    """The password written inside the DSN (``password=`` or a URI's ``user:password@``): the
    whole DSN is a secret already, but a driver's or server's message could quote the password
    alone, so every opener registers it for redaction."""
    from psycopg.conninfo import conninfo_to_dict

    if state.dsn is None:
        return set()
    try:
        password = conninfo_to_dict(state.dsn.get_secret_value()).get("password")
    except Exception:  # an unparsable DSN: libpq refuses it at connect, without quoting it
        return set()
    return {str(password)} if password else set()
