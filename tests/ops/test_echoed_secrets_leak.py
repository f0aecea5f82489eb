"""A vendor that quotes the request back in its refusal leaks nothing: the real daemon (``once``)
polls a loopback server that answers every request with an error whose message holds the
request's credential headers and URL, and stdout and stderr are searched for every credential
in every form it travels in.

The forms the configured values alone do not cover: the base64 ``user:password`` of a Basic
header, a token cut in two by the length limit of the vendor's message, an access token the
forwarder obtained itself (``jwt_bearer``), the password inside a URL."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.daemon import cli, write_config

pytestmark = pytest.mark.integration

CONFIGCAT_USER, CONFIGCAT_PASSWORD = "canary-cc-user-5d1e", "canary-cc-password-0b7f2a"
BASIC_USER, BASIC_PASSWORD = "canary-basic-user-9c3", "canary-basic-password-4e8d61"
CODACY_TOKEN = "canary-codacy-token-3f9a11c2e7"
ACCESS_TOKEN = "canary-access-token-77ab5e9d01"
URL_USER, URL_PASSWORD = "canary-url-user", "canary-url-password-a1c4"
CREDENTIAL_HEADERS = ("authorization", "api-token")


class Refusing(BaseHTTPRequestHandler):
    """401 to every request but the token endpoint's: the message quotes the credential headers
    and the path. Codacy's ``api-token`` comes behind a padding that puts the length limit of a
    vendor's message (200 characters) in the middle of it."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        said = " ".join(v for k, v in self.headers.items() if k.lower() in CREDENTIAL_HEADERS)
        padding = "." * 180 if "api-token" in self.headers else "refused"
        self._answer(401, {"message": f"{padding} {said} {self.path}"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(200, {"access_token": ACCESS_TOKEN, "expires_in": 3600})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Paging(BaseHTTPRequestHandler):
    """A first page whose next link repeats the request's query, credential included (as many
    APIs build their links), then a 500 for the second: the walk stops there, to resume later."""

    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Paging.seen.append(self.path)
        if "page=2" in self.path:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(
            {"data": [{"t": "2026-12-06T20:00:00Z", "a": "x", "id": "1"}], "next": f"{self.path}&page=2"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refusing() -> Iterator[str]:
    yield from serve(Refusing)


@pytest.fixture
def paging() -> Iterator[str]:
    Paging.seen = []
    yield from serve(Paging)


def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def config(tmp_path: Path, host: str) -> Path:
    polling = {"max_attempts": 1, "initial_lookback_days": 1, "lag_s": 0}
    generic = {
        **polling,
        "type": "http_json",
        "vendor": "acme",
        "organizations": ["o"],
        "time_field": "t",
        "mapping": {"action": "a"},
    }
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {
                "codacy": {
                    **polling,
                    "type": "codacy",
                    "base_url": f"http://{host}/api/v3",
                    "api_token": CODACY_TOKEN,
                    "organizations": ["gh/acme"],
                },
                "configcat": {
                    **polling,
                    "type": "configcat",
                    "base_url": f"http://{host}",
                    "username": CONFIGCAT_USER,
                    "password": CONFIGCAT_PASSWORD,
                    "organizations": ["0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10"],
                },
                "basic": {
                    **generic,
                    "url": f"http://{host}/basic/{{organization}}",
                    "auth": {"type": "basic", "username": BASIC_USER, "password": BASIC_PASSWORD},
                },
                "jwt": {
                    **generic,
                    "url": f"http://{host}/jwt/{{organization}}",
                    "auth": {
                        "type": "jwt_bearer",
                        "client_email": "forwarder@example.com",
                        "private_key": private_key(),
                        "token_url": f"http://{host}/token",
                        "scopes": ["audit.read"],
                    },
                },
                "userinfo": {**generic, "url": f"http://{URL_USER}:{URL_PASSWORD}@{host}/userinfo/{{organization}}"},
            },
            "sinks": {"file": {"type": "file", "path": str(tmp_path / "out" / "{organization}.ndjson")}},
        },
    )


def forms() -> dict[str, str]:
    """Each credential as it may be written, by a description of what it is."""
    found: dict[str, str] = {}
    for secret in (CONFIGCAT_PASSWORD, BASIC_PASSWORD, CODACY_TOKEN, ACCESS_TOKEN, URL_PASSWORD):
        found[secret] = secret
        found[secret[:12]] = f"the beginning of {secret}"  # a cut secret is still a leak
    for user, password in (
        (CONFIGCAT_USER, CONFIGCAT_PASSWORD),
        (BASIC_USER, BASIC_PASSWORD),
        (URL_USER, URL_PASSWORD),
    ):
        found[base64.b64encode(f"{user}:{password}".encode()).decode()] = f"Basic {user}:{password}"
    return found


def test_a_refusal_quoting_the_request_back_leaks_no_credential(tmp_path: Path, refusing: str) -> None:
    result = cli(config(tmp_path, refusing), "--log-level", "debug", "once", "--timeout", "20", timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # every source was refused with its credential quoted (scrubbed), or this test proves nothing
    for source in ("Codacy", "ConfigCat", "acme"):
        assert f"{source} answered 401 Unauthorized" in output, output[-3000:]
    assert output.count("vendor says: refused ") >= 4 and "vendor says: ....." in output, output[-3000:]
    leaks = [f"{what} ({form!r})" for form, what in forms().items() if form in output]
    assert not leaks, "\n".join(leaks) + "\n" + output[-3000:]


QUERY_TOKEN = "canary-query+token/4c2e="


def test_a_next_link_repeating_the_query_token_keeps_it_out_of_the_state(tmp_path: Path, paging: str) -> None:
    """The walk stops after the first page; where it resumes (the next link) is in the state,
    which must not hold the token the link repeated. The second request still carries it."""
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {
                "paged": {
                    "type": "http_json",
                    "vendor": "acme",
                    "url": f"http://{paging}/audit/{{organization}}",
                    "organizations": ["o"],
                    "time_field": "t",
                    "id_field": "id",
                    "records_path": "data",
                    "mapping": {"action": "a"},
                    "auth": {"type": "query", "param": "key", "token": QUERY_TOKEN},
                    "pagination": {"style": "next_link_body", "next_path": "next"},
                    "max_attempts": 1,
                    "initial_lookback_days": 1,
                    "lag_s": 0,
                }
            },
            "sinks": {"file": {"type": "file", "path": str(tmp_path / "out" / "{organization}.ndjson")}},
        },
    )
    result = cli(cfg, "once", "--timeout", "20", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr  # the second page failed
    sent = quote(QUERY_TOKEN, safe="")
    assert [path.count(f"key={sent}") for path in Paging.seen] == [1, 1], Paging.seen
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert b"page=2" in stored  # the resume point was journaled, or this test proves nothing
    for form in (QUERY_TOKEN, sent, quote_plus(QUERY_TOKEN), QUERY_TOKEN[:12]):
        assert form.encode() not in stored, form
