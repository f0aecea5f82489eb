"""Fixtures of the reliability suite (its figures fixture and the line it prints at the end are
in ``tests/conftest.py``: the HA suite records there too). Helpers live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.emulators import EmulatorProcess, running, running_all
from tests.support.moto_server import moto_server  # noqa: F401 (the fixture, for the tests here)
from tests.support.vendors import ORGS, VENDORS


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def vendor_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """All four vendor emulators, 30 entries each to begin with."""
    with running_all(30, {name: vendor.options for name, vendor in VENDORS.items()}) as started:
        yield started
