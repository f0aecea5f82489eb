"""How an ``http_json`` source proves who it is: the ``auth`` block and what it adds to requests.

Each method is one entry of ``METHODS``: a function from the validated ``Auth`` block to the
headers, the ``httpx.Auth`` and the request hooks it needs. A new method (an OAuth token, a
signed request) is one more ``type`` value, its fields on ``Auth`` with the check in
``_complete``, and one entry here; the source builds its client from whatever the entry gives
(``forwarder.sources.http.make_client``), so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx
from pydantic import ConfigDict, Field, SecretStr, model_validator

from forwarder.secrets import SecretFilesModel
from forwarder.sources.http import RequestHook


class Auth(SecretFilesModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["none", "header", "bearer", "basic", "query"] = "none"
    header: str = Field("Authorization", description="type header: the header that carries token.")
    param: str = Field("api_key", description="type query: the query parameter that carries token.")
    token: SecretStr | None = Field(None, description="header value, bearer token or query value; or token_file.")
    username: str | None = None
    password: SecretStr | None = Field(None, description="type basic; or password_file.")

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        if self.type in ("header", "bearer", "query") and self.token is None:
            raise ValueError(f"auth type {self.type} needs token (or token_file)")
        if self.type == "basic" and (self.username is None or self.password is None):
            raise ValueError("auth type basic needs username and password (or password_file)")
        return self

    def query_param(self) -> str | None:
        """The query parameter that carries the credential, if one does: never a parameter of the
        source's own, and taken off a link before it is compared with the page it came from."""
        return self.param if self.type == "query" else None


@dataclass
class Credentials:
    """What a method adds to every request of the source."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    request_hooks: list[RequestHook] = field(default_factory=list)


def _none(auth: Auth) -> Credentials:
    return Credentials()


def _token(auth: Auth) -> str:
    if auth.token is None:  # refused by Auth._complete already
        raise ValueError(f"auth type {auth.type} needs token")
    return auth.token.get_secret_value()


def _header(auth: Auth) -> Credentials:
    return Credentials(headers={auth.header: _token(auth)})


def _bearer(auth: Auth) -> Credentials:
    return Credentials(headers={"Authorization": f"Bearer {_token(auth)}"})


def _basic(auth: Auth) -> Credentials:
    if auth.username is None or auth.password is None:  # refused by Auth._complete already
        raise ValueError("auth type basic needs username and password")
    return Credentials(auth=httpx.BasicAuth(auth.username, auth.password.get_secret_value()))


def _query(auth: Auth) -> Credentials:
    name, token = auth.param, _token(auth)

    async def add_query_token(request: httpx.Request) -> None:
        """The token joins every request's query, next links included (which never leave the url's
        origin). A client's own ``params`` would replace a next link's query instead. As a secret
        it is scrubbed like any other; no message quotes a path or query."""
        request.url = request.url.copy_merge_params({name: token})

    return Credentials(request_hooks=[add_query_token])


METHODS: dict[str, Callable[[Auth], Credentials]] = {
    "none": _none,
    "header": _header,
    "bearer": _bearer,
    "basic": _basic,
    "query": _query,
}


def credentials(auth: Auth) -> Credentials:
    return METHODS[auth.type](auth)
