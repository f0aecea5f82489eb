"""Emulators under test run as real processes; requests and answers are checked against vendor
OpenAPI documents (``tests/support/openapi.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.emulators import EmulatorProcess, running
from tests.support.openapi import CODACY_SPEC, CONFIGCAT_SPEC, Start, Validate, validator


@pytest.fixture
def start() -> Iterator[Start]:
    """Start emulators for one test; all of them are stopped when it ends."""
    started: list[EmulatorProcess] = []

    def _start(name: str, entries: int = 0, options: dict[str, Any] | None = None) -> EmulatorProcess:
        emulator = running(name, entries, options)
        started.append(emulator)
        return emulator

    yield _start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def validate_configcat() -> Validate:
    return validator(CONFIGCAT_SPEC, "https://api.configcat.com")


@pytest.fixture(scope="session")
def validate_codacy() -> Validate:
    return validator(CODACY_SPEC, "https://app.codacy.com")
