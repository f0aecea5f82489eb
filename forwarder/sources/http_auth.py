"""How an ``http_json`` source (and so every preset) proves who it is: the ``auth`` block and
what it adds to requests.

Vendor-neutral methods only; a vendor is a choice among them in its preset's YAML:

* ``header`` with an optional ``scheme``: ``Authorization: SSWS <token>`` (Okta API tokens)
  or any header holding the token as is;
* ``bearer``: ``Authorization: Bearer <token>`` (GitHub tokens, OAuth access tokens);
* ``basic`` and ``query``;
* ``jwt_bearer``: the OAuth 2.0 JWT bearer grant (RFC 7523), which is how a Google service
  account with domain-wide delegation gets an access token: an RS256-signed assertion
  (issuer, subject to impersonate, scopes, audience) is posted to the token endpoint and the
  access token it returns is sent as a bearer token until shortly before it expires, and
  fetched again after a 401.

Each method is one entry of ``METHODS``: a function from the validated ``Auth`` block to the
headers, the ``httpx.Auth`` and the request hooks it needs. A new method (another OAuth grant, a
signed request) is one more ``type`` value with its fields and their check on ``Auth``, and one
entry here; the source builds its client from whatever the entry gives
(``forwarder.sources.http.make_client``), so nothing else changes.

No credential, assertion or access token ever appears in a message: the token endpoint's
refusal is quoted by its OAuth ``error`` code and description only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import ConfigDict, Field, SecretStr, model_validator

from forwarder.http_shared import HttpUrl, read_at_most
from forwarder.redaction import clip, register_token
from forwarder.retry import parse_retry_after
from forwarder.secret_stores import credentials_refused
from forwarder.secrets import SecretFilesModel
from forwarder.sources.http import RequestHook, RetryableHTTPError, SourceError

AuthType = Literal["none", "header", "bearer", "basic", "query", "jwt_bearer"]
# An access token is fetched again this long before the expiry the endpoint stated.
REFRESH_MARGIN_S = 60.0


class PemSecret(SecretStr):
    """A secret that spans lines (a PEM key): kept, scrubbed and never shown like any secret, but
    exempt from the one-line rule of header secrets, since it never goes into a header."""


class Auth(SecretFilesModel):
    model_config = ConfigDict(extra="forbid")
    type: AuthType = "none"
    header: str = Field("Authorization", description="type header: the header that carries token.")
    scheme: str | None = Field(None, description="type header: a word before the token, e.g. SSWS.")
    param: str = Field("api_key", description="type query: the query parameter that carries token.")
    token: SecretStr | None = Field(None, description="header value, bearer token or query value; or token_file.")
    username: str | None = None
    password: SecretStr | None = Field(None, description="type basic; or password_file.")
    service_account_file: Path | None = Field(
        None,
        description="type jwt_bearer: a Google-style service-account key (JSON with client_email, private_key, "
        "token_uri); fills the three settings below.",
    )
    client_email: str | None = Field(None, description="type jwt_bearer: the assertion's issuer (iss).")
    private_key: PemSecret | None = Field(
        None, description="type jwt_bearer: RSA private key, PEM; or private_key_file."
    )
    token_url: HttpUrl | None = Field(
        None, description="type jwt_bearer: the token endpoint (and the assertion's aud)."
    )
    subject: str | None = Field(None, description="type jwt_bearer: the user to act as (domain-wide delegation).")
    subject_required: bool = Field(
        False,
        description="type jwt_bearer: refuse a configuration without subject, for a vendor that answers only for "
        "a user the service account acts as (Google's Reports API: an administrator).",
    )
    scopes: list[str] = Field(default_factory=list, description="type jwt_bearer: OAuth scopes asked for.")
    token_lifetime_s: int = Field(3600, ge=60, le=3600, description="type jwt_bearer: the assertion's lifetime.")

    @model_validator(mode="before")
    @classmethod
    def _service_account(cls, data: Any) -> Any:
        """A service-account key file fills the fields it holds; settings given beside it win.
        The file's content is never quoted: it holds the private key."""
        if isinstance(data, dict) and data.get("private_key_file"):
            data = dict(data)
            path = Path(str(data.pop("private_key_file")))
            try:
                data.setdefault("private_key", path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                raise ValueError(f"cannot read private_key_file {path}") from None
        if not isinstance(data, dict) or not data.get("service_account_file"):
            return data
        path = Path(str(data["service_account_file"]))
        try:
            key = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read service_account_file {path}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"service_account_file {path} is not JSON") from None
        if not isinstance(key, dict):
            raise ValueError(f"service_account_file {path} is not a JSON object")
        filled = {
            "client_email": key.get("client_email"),
            "private_key": key.get("private_key"),
            "token_url": key.get("token_uri"),
        }
        return {**{k: v for k, v in filled.items() if v}, **data}

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        if self.type in ("header", "bearer", "query") and self.token is None:
            raise ValueError(f"auth type {self.type} needs token (or token_file)")
        if self.type == "basic" and (self.username is None or self.password is None):
            raise ValueError("auth type basic needs username and password (or password_file)")
        if self.type == "jwt_bearer":
            missing = [n for n in ("client_email", "private_key", "token_url") if getattr(self, n) is None]
            if missing:
                raise ValueError(
                    f"auth type jwt_bearer needs {', '.join(missing)} (or a service_account_file holding them)"
                )
            if not self.scopes:
                raise ValueError("auth type jwt_bearer needs scopes")
            if self.subject_required and not self.subject:
                raise ValueError(
                    "auth type jwt_bearer needs subject here: the email of the user the service account acts as "
                    "(domain-wide delegation), an administrator allowed to read the audit log; without it the "
                    "vendor refuses every request"
                )
            _load_key(self.private_key)
        return self

    def query_param(self) -> str | None:
        """The query parameter that carries the credential, if one does: never a parameter of the
        source's own, and taken off a link before it is compared with the page it came from."""
        return self.param if self.type == "query" else None


def _load_key(pem: PemSecret | None) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key((pem.get_secret_value() if pem else "").encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private_key must be an RSA key (the assertion is signed RS256)")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_assertion(auth: Auth, now: float) -> str:
    """The RS256 JWT the token endpoint exchanges for an access token (RFC 7523 §2.1)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    claims: dict[str, Any] = {
        "iss": auth.client_email,
        "scope": " ".join(auth.scopes),
        "aud": auth.token_url,
        "iat": int(now),
        "exp": int(now) + auth.token_lifetime_s,
    }
    if auth.subject:
        claims["sub"] = auth.subject
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _load_key(auth.private_key).sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{_b64(signature)}"


class JwtBearerAuth(httpx.Auth):
    """Adds the access token to every request, exchanging a fresh assertion when it expires."""

    def __init__(self, auth: Auth, vendor: str, timeout_s: float) -> None:
        self.auth = auth
        self.vendor = vendor
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"JwtBearerAuth(issuer={self.auth.client_email!r})"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._access_token(force=False)}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, then the answer stands
            request.headers["Authorization"] = f"Bearer {await self._access_token(force=True)}"
            yield request

    async def _access_token(self, *, force: bool) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if force or self._token is None or time.time() >= self._expires_at:
                self._token, lifetime = await self._exchange()
                self._expires_at = time.time() + max(0.0, lifetime - REFRESH_MARGIN_S)
            return self._token

    async def _exchange(self) -> tuple[str, float]:
        url = str(self.auth.token_url)
        data = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": signed_assertion(self.auth, time.time()),
        }
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            async with client.stream("POST", url, data=data, headers={"Accept": "application/json"}) as response:
                body = await read_at_most(response, 64 * 1024)
        parsed: Any = None
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        where = f"{self.vendor}'s token endpoint ({httpx.URL(url).host})"
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableHTTPError(
                f"{where} answered {response.status_code}", parse_retry_after(response.headers.get("Retry-After"))
            )
        if response.status_code != 200 or not isinstance(parsed, dict):
            if response.status_code in (400, 401):  # a key from AWS may have rotated since it was read
                credentials_refused()
            said = ""
            if isinstance(parsed, dict):
                said = ": ".join(clip(str(parsed.get(k)), 200) for k in ("error", "error_description") if parsed.get(k))
            raise SourceError(
                f"{where} refused the service account's credentials ({response.status_code}"
                f"{'; ' + said if said else ''}); check client_email, the key, subject (an admin of the domain) "
                "and that domain-wide delegation grants the scopes"
            )
        token = parsed.get("access_token")
        if not isinstance(token, str) or not token or not token.isprintable():
            raise SourceError(f"{where} answered without a usable access_token")
        register_token(token)  # the vendor may quote it back in a refusal, like a configured token
        try:
            lifetime = float(parsed.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, min(max(lifetime, 0.0), 86_400.0)


@dataclass(frozen=True)
class Caller:
    """Who uses the credential: the vendor a method names in its own messages (a token endpoint's
    refusal) and the timeout of the requests it makes itself."""

    vendor: str
    timeout_s: float


@dataclass
class Credentials:
    """What a method adds to every request of the source."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    request_hooks: list[RequestHook] = field(default_factory=list)


def _none(auth: Auth, caller: Caller) -> Credentials:
    return Credentials()


def _token(auth: Auth) -> str:
    if auth.token is None:  # refused by the model's validation already
        raise ValueError(f"auth type {auth.type} needs token")
    return auth.token.get_secret_value()


def _header(auth: Auth, caller: Caller) -> Credentials:
    value = _token(auth)
    return Credentials(headers={auth.header: f"{auth.scheme} {value}" if auth.scheme else value})


def _bearer(auth: Auth, caller: Caller) -> Credentials:
    return Credentials(headers={"Authorization": f"Bearer {_token(auth)}"})


def _basic(auth: Auth, caller: Caller) -> Credentials:
    if auth.username is None or auth.password is None:  # refused by the model's validation already
        raise ValueError("auth type basic needs username and password")
    return Credentials(auth=httpx.BasicAuth(auth.username, auth.password.get_secret_value()))


def _query(auth: Auth, caller: Caller) -> Credentials:
    name, token = auth.param, _token(auth)

    async def add_query_token(request: httpx.Request) -> None:
        """The token joins every request's query, next links included (which never leave the url's
        origin). A client's own ``params`` would replace a next link's query instead. As a secret
        it is scrubbed like any other; no message quotes a path or query."""
        request.url = request.url.copy_merge_params({name: token})

    return Credentials(request_hooks=[add_query_token])


def _jwt_bearer(auth: Auth, caller: Caller) -> Credentials:
    return Credentials(auth=JwtBearerAuth(auth, caller.vendor, caller.timeout_s))


METHODS: dict[str, Callable[[Auth, Caller], Credentials]] = {
    "none": _none,
    "header": _header,
    "bearer": _bearer,
    "basic": _basic,
    "query": _query,
    "jwt_bearer": _jwt_bearer,
}


def credentials(auth: Auth, vendor: str, timeout_s: float) -> Credentials:
    return METHODS[auth.type](auth, Caller(vendor, timeout_s))
