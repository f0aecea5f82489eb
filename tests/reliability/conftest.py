"""Fixtures of the reliability suite, and the one line of figures it prints at the end
(``tests/support/figures.py``). Helpers live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _pytest.terminal import TerminalReporter

from tests.support.emulators import EmulatorProcess, running
from tests.support.figures import FIGURES, Figures
from tests.support.vendors import ORGS, VENDORS


@pytest.fixture(scope="session")
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if FIGURES.recorded:
        terminalreporter.write_line(FIGURES.line())


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def vendor_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """All four vendor emulators, 30 entries each to begin with."""
    started: dict[str, EmulatorProcess] = {}
    try:
        for name, vendor in VENDORS.items():
            started[name] = running(name, entries=30, options=vendor.options)
        yield started
    finally:
        for emulator in started.values():
            emulator.stop()
