"""Fixtures of the operator-tool tests: a Codacy emulator (the configuration they write is
``tests/support/config.py::codacy_files_config``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.emulators import EmulatorProcess, running
from tests.support.vendors import ORGS


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=20, options={"orgs": ORGS, "span_s": 3 * 86400})
    yield emulator
    emulator.stop()
