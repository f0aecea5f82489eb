"""Entra ID client-credentials tokens for the Sentinel sink (``sinks/sentinel/sink.py``).

Kept apart from the sink: how a token is obtained (a client secret, or a JWT assertion signed
with the app registration's certificate), cached and refreshed is one job; what the ingestion
endpoint's answers mean is another.

Wire format from Microsoft's "OAuth 2.0 client credentials flow" and "certificate credentials"
pages: ``POST {authority}/{tenant}/oauth2/v2.0/token`` with a form body ``grant_type=
client_credentials``, ``client_id``, ``scope`` and either ``client_secret`` or
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` plus
``client_assertion``; the answer is ``{"token_type", "expires_in", "access_token"}``, an error
is ``{"error", "error_description", "error_codes", ...}``. The assertion is PS256-signed with the
header's ``x5t#S256`` the base64url SHA-256 thumbprint of the certificate, claims ``aud`` (the
token URL), ``iss`` = ``sub`` = the client id, ``jti``, ``nbf``, ``iat`` and an ``exp`` a few
minutes later.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from forwarder.redaction import register_token
from sinks.sentinel.config import SentinelSinkConfig

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 600  # "keep it short - 5-10 minutes after nbf at most"
_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.+?-----END \1-----", re.S)
# What an AADSTS code in the token endpoint's answer asks the operator to fix
AADSTS_HINTS = {
    "7000215": "client_secret is wrong (give the secret's Value, not its ID)",
    "7000222": "client_secret has expired: create a new one on the app registration",
    "700016": "client_id is not an application in this tenant (check tenant_id and client_id)",
    "90002": "tenant_id names no tenant",
    "700027": "the client assertion's signature does not verify: upload this certificate to the app registration",
    "700024": "the client assertion is outside its validity: check this machine's clock",
    "500011": "scope names a resource this tenant does not know (sovereign cloud? set scope)",
    "70011": "scope is invalid",
}


def token_form(config: SentinelSinkConfig, assertion: str | None) -> bytes:
    """The token request's form body: the certificate's signed assertion, or else the secret."""
    form = {"grant_type": "client_credentials", "client_id": config.client_id, "scope": config.scope}
    if assertion is not None:
        form |= {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    elif config.client_secret is not None:
        form["client_secret"] = config.client_secret.get_secret_value()
    return urllib.parse.urlencode(form).encode()


def token_of(payload: dict[str, Any]) -> tuple[str, float] | None:
    """The token and its lifetime in seconds from a 200 answer; None when it holds neither."""
    token = payload.get("access_token")
    lifetime = payload.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if not isinstance(token, str) or not token or not isinstance(lifetime, int | float) or lifetime <= 0:
        return None
    register_token(token)  # an endpoint refusing it may quote it back, like a configured secret
    return token, float(lifetime)


def credentials_hint(message: str) -> str:
    """What the AADSTS codes in a refusal ask the operator to fix."""
    hints = [hint for code, hint in AADSTS_HINTS.items() if f"AADSTS{code}:" in message]
    return f" ({'; '.join(hints)})" if hints else " (check tenant_id, client_id and the secret or certificate)"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CredentialError(Exception):
    """The configured credential cannot be used (file missing, not a key, no cryptography)."""


@dataclass(frozen=True)
class Certificate:
    """A private key and the thumbprint of its certificate, loaded once at start."""

    key: Any
    thumbprint_s256: str

    def assertion(self, client_id: str, audience: str, now: float | None = None) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        issued = int(time.time() if now is None else now)
        header = {"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint_s256}
        claims = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": issued,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_S,
        }
        signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}".encode()
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        signature = self.key.sign(signing_input, pss, hashes.SHA256())
        return f"{signing_input.decode()}.{_b64url(signature)}"


def load_certificate(certificate_file: str, private_key_file: str | None, password: str | None) -> Certificate:
    """Blocking (file reads): call through ``asyncio.to_thread``. ``private_key_file`` may be
    left out when the certificate's PEM file also holds the key."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise CredentialError(
            "certificate authentication needs the Python package cryptography (pip install cryptography); "
            "or use client_secret"
        ) from None
    try:
        cert_pem = Path(certificate_file).read_bytes()
        key_pem = Path(private_key_file).read_bytes() if private_key_file else cert_pem
    except OSError as exc:
        raise CredentialError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise CredentialError(f"certificate_file {certificate_file} holds no PEM certificate") from None
    block = _KEY_BLOCK.search(key_pem)
    where = private_key_file or certificate_file
    if block is None:
        raise CredentialError(f"{where} holds no PEM private key")
    try:
        key = load_pem_private_key(block.group(0), password.encode() if password else None)
    except (ValueError, TypeError) as exc:  # wrong or missing password, damaged key
        raise CredentialError(f"cannot load the private key in {where}: {type(exc).__name__}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError(f"the private key in {where} is not an RSA key (Entra ID certificates are RSA)")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise CredentialError(f"the private key in {where} does not belong to the certificate in {certificate_file}")
    from cryptography.hazmat.primitives.serialization import Encoding

    return Certificate(key, _b64url(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()))


@dataclass
class Token:
    value: str
    refresh_at: float  # monotonic seconds


class TokenCache:
    """One access token, fetched on first use and again before it expires.

    Refreshed ``margin_s`` before its ``expires_in`` ends, or at half its lifetime when that is
    shorter (a token living 60 s must not be refetched for every request). ``invalidate``
    drops it when the ingestion endpoint refused it early (revoked, clock skew). A lock makes
    concurrent callers (``check`` beside a send) share one fetch.
    """

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]], margin_s: float) -> None:
        self._fetch = fetch
        self._margin_s = margin_s
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.fetched = 0

    @property
    def cached(self) -> bool:
        return self._token is not None and time.monotonic() < self._token.refresh_at

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._token.refresh_at:
                value, lifetime = await self._fetch()
                self.fetched += 1
                ahead = max(min(self._margin_s, lifetime / 2), 0.0)
                self._token = Token(value, time.monotonic() + lifetime - ahead)
            return self._token.value

    def invalidate(self, value: str) -> None:
        if self._token is not None and self._token.value == value:
            self._token = None

    def current(self) -> str | None:
        return self._token.value if self._token is not None else None
