"""Requests to an emulator and its answers checked against the vendor's OpenAPI document, as if
the vendor's own server had been asked (the emulator tests' ``validate_*`` fixtures)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse

from tests.support.emulators import EmulatorProcess

# CI clones the repository as <dir>/main with the research material in <dir>/shared.
SPECS = Path(__file__).parents[2] / ".." / "shared" / "vendor-specs"

Start = Callable[..., EmulatorProcess]


class Validate(Protocol):
    def __call__(self, response: httpx.Response, *, request_valid: bool = True) -> None: ...


CONFIGCAT_SPEC = "configcat-public-management-api.openapi.yaml"
CODACY_SPEC = "codacy-api-v3.openapi.yaml"

# Where the emulator answers what the vendor's document does not declare, on purpose. Each is
# an [INF] of the research notes; the exemption holds only while the document still lacks it.
UNDECLARED_STATUSES: dict[str, dict[int, str]] = {
    CONFIGCAT_SPEC: {401: "research §2 [INF]: 401 on bad Basic credentials (the document declares 400, 404, 429)"},
    CODACY_SPEC: {},
}


@functools.cache
def _openapi(spec_file: str) -> OpenAPI:
    text = (SPECS / spec_file).read_text()
    return OpenAPI.from_dict(yaml.load(text, Loader=yaml.CSafeLoader))


def mock_request(request: httpx.Request, server: str) -> MockRequest:
    """``request`` as if sent to the vendor's server: path, every query argument and header."""
    return MockRequest(
        server,
        request.method.lower(),
        request.url.path,
        args=list(request.url.params.multi_items()),  # type: ignore[arg-type]  # a MultiDict takes pairs
        headers=dict(request.headers),
    )


def request_errors(spec_file: str, server: str, request: httpx.Request) -> list[Exception]:
    """What the vendor's document finds wrong with ``request`` (parameters, security)."""
    return list(_openapi(spec_file).unmarshal_request(mock_request(request, server)).errors)


def validator(spec_file: str, server: str) -> Validate:
    """Checks a request to the emulator and its answer as if the vendor's server (``server``)
    had been asked and had answered. ``request_valid=False``: the request is one the vendor's
    document refuses too (a test of the emulator's 400s), and must be."""
    spec = _openapi(spec_file)
    undeclared = UNDECLARED_STATUSES[spec_file]

    def validate(response: httpx.Response, *, request_valid: bool = True) -> None:
        request = mock_request(response.request, server)
        errors = list(spec.unmarshal_request(request).errors)
        if request_valid:
            assert not errors, f"{response.request.url} is not a valid request for {spec_file}: {errors}"
        else:
            assert errors, f"{spec_file} accepts {response.request.url}, which the test expects to be refused"
        content_type = response.headers.get("content-type", "application/json").split(";")[0]
        mock = MockResponse(response.content, status_code=response.status_code, content_type=content_type)
        try:
            spec.validate_response(request, mock)
        except ResponseNotFound:
            if response.status_code not in undeclared:
                raise

    return validate
