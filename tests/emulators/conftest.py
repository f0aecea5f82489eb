"""Emulators under test run as real processes; responses are checked against vendor OpenAPI documents."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from tests.helpers.emulators import EmulatorProcess, running

# CI clones the repository as <dir>/main with the research material in <dir>/shared.
SPECS = Path(__file__).parents[2] / ".." / "shared" / "vendor-specs"

Start = Callable[..., EmulatorProcess]
Validate = Callable[[httpx.Response], None]


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


@functools.cache
def _openapi(spec_file: str) -> OpenAPI:
    text = (SPECS / spec_file).read_text()
    return OpenAPI.from_dict(yaml.load(text, Loader=yaml.CSafeLoader))


def _validator(spec_file: str, server: str) -> Validate:
    """Checks a response from the emulator as if the vendor's server (``server``) had sent it."""
    spec = _openapi(spec_file)

    def validate(response: httpx.Response) -> None:
        request = MockRequest(server, response.request.method.lower(), response.request.url.path)
        content_type = response.headers.get("content-type", "application/json").split(";")[0]
        mock = MockResponse(response.content, status_code=response.status_code, content_type=content_type)
        spec.validate_response(request, mock)

    return validate


@pytest.fixture(scope="session")
def validate_configcat() -> Validate:
    return _validator("configcat-public-management-api.openapi.yaml", "https://api.configcat.com")


@pytest.fixture(scope="session")
def validate_codacy() -> Validate:
    return _validator("codacy-api-v3.openapi.yaml", "https://app.codacy.com")
