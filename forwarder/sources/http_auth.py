"""How an ``http_json`` source proves who it is: the ``auth`` block and what it adds to requests.

Each method is one entry of ``METHODS``: a function from the validated ``Auth`` block to the
headers, the ``httpx.Auth`` and the request hooks it needs. A new method (an OAuth token, a
signed request) is one more ``type`` value with its fields and their check on
``forwarder.sources.http_json.Auth``, and one entry here (or in a module of its own that adds
itself here); the source builds its client from whatever the entry gives
(``forwarder.sources.http.make_client``), so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from pydantic import SecretStr

from forwarder.sources.http import RequestHook


class AuthSettings(Protocol):
    """The ``auth`` block of an http_json source (``forwarder.sources.http_json.Auth``), validated."""

    @property
    def type(self) -> str: ...
    @property
    def header(self) -> str: ...
    @property
    def param(self) -> str: ...
    @property
    def token(self) -> SecretStr | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> SecretStr | None: ...


@dataclass
class Credentials:
    """What a method adds to every request of the source."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    request_hooks: list[RequestHook] = field(default_factory=list)


def _none(auth: AuthSettings) -> Credentials:
    return Credentials()


def _token(auth: AuthSettings) -> str:
    if auth.token is None:  # refused by the model's validation already
        raise ValueError(f"auth type {auth.type} needs token")
    return auth.token.get_secret_value()


def _header(auth: AuthSettings) -> Credentials:
    return Credentials(headers={auth.header: _token(auth)})


def _bearer(auth: AuthSettings) -> Credentials:
    return Credentials(headers={"Authorization": f"Bearer {_token(auth)}"})


def _basic(auth: AuthSettings) -> Credentials:
    if auth.username is None or auth.password is None:  # refused by the model's validation already
        raise ValueError("auth type basic needs username and password")
    return Credentials(auth=httpx.BasicAuth(auth.username, auth.password.get_secret_value()))


def _query(auth: AuthSettings) -> Credentials:
    name, token = auth.param, _token(auth)

    async def add_query_token(request: httpx.Request) -> None:
        """The token joins every request's query, next links included (which never leave the url's
        origin). A client's own ``params`` would replace a next link's query instead. As a secret
        it is scrubbed like any other; no message quotes a path or query."""
        request.url = request.url.copy_merge_params({name: token})

    return Credentials(request_hooks=[add_query_token])


METHODS: dict[str, Callable[[AuthSettings], Credentials]] = {
    "none": _none,
    "header": _header,
    "bearer": _bearer,
    "basic": _basic,
    "query": _query,
}


def credentials(auth: AuthSettings) -> Credentials:
    return METHODS[auth.type](auth)
