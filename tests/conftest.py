"""Fixtures every part of the suite may use."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from tests.support.figures import FIGURES, Figures
from tests.support.postgres import PostgresServer
from tests.support.receivers import Receivers


@pytest.fixture(scope="session")
def figures() -> Figures:
    """What the reliability and HA suites measured (``tests/support/figures.py``)."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if FIGURES.recorded:
        terminalreporter.write_line(FIGURES.line())


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; each test takes a database of its own. Its
    directory is not under pytest's (private to root): the server may run as ``postgres``."""
    root = Path(tempfile.mkdtemp(prefix="af-postgres-"))
    server = PostgresServer(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Receivers]:
    """A syslog (rsyslog), HEC, S3 (moto) and file receiver each, for the suites that deliver to all."""
    started = Receivers(tmp_path / "receivers").start()
    yield started
    started.stop()
