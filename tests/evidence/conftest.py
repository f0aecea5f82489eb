"""Fixtures of the evidence tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from forwarder.journal import SqliteJournal, StateJournal
from forwarder.journal.postgres.journal import PostgresJournal


@pytest.fixture(params=["sqlite", "postgres"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateJournal]:
    """Both backends, each opened afresh: PostgreSQL's chain heads and ledger come with its schema."""
    if request.param == "sqlite":
        opened: StateJournal = SqliteJournal(tmp_path / "journal.sqlite3")
    else:
        server = request.getfixturevalue("postgres")
        opened = PostgresJournal(server.dsn(server.create_database()))
    await opened.open()
    yield opened
    await opened.close()
