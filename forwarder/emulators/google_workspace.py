"""Google Workspace Admin SDK Reports API emulator (``activities.list``) and its token endpoint.

What it follows, from Google's public docs: a service account's RS256 JWT assertion posted to
``/token`` (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``) is checked (signature,
issuer, audience, expiry, the reports scope, and ``sub``: domain-wide delegation acts as an
administrator of the domain) and exchanged for a one-hour access token (``invalid_grant`` /
``unauthorized_client`` otherwise); ``GET /admin/reports/v1/activity/users/all/applications/
{applicationName}`` with that bearer token (401 ``UNAUTHENTICATED`` otherwise); ``startTime``/
``endTime`` (RFC 3339), ``maxResults`` (1..1000), ``pageToken``/``nextPageToken``; newest first;
``items`` left out when there are none; the composite id ``id.time``/``id.uniqueQualifier``/
``id.applicationName``; 180-day retention; and no rate-limit headers: a spent quota is 403
``rateLimitExceeded`` (or 429 ``RESOURCE_EXHAUSTED``, ``limit_status``).

``GET /_emulator/service_account`` serves a service-account key file (with this emulator's
private key and ``token_uri``), so a test or the demo configures what a Google Cloud console
would have downloaded. The key is a fixed, published test key (``EMULATOR_KEY_PEM``), so that
``source_config`` of any instance holds the credentials the running emulator accepts, as the
other emulators' fixed test tokens do; it signs nothing but assertions to this emulator.
Late arrivals: post an entry with ``_delay_s``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from forwarder.emulators.base import Request, Response
from forwarder.emulators.fixtures import PEOPLE, documentation_ip
from forwarder.emulators.presets_common import PresetEmulator, Quota, now_ms, page_token, read_token
from forwarder.event import parse_time

SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
CLIENT_EMAIL = "audit-forwarder@example-project.iam.gserviceaccount.com"
ADMIN = "admin@example.com"
RETENTION_MS = 180 * 86_400_000
APPLICATIONS = {
    "login": [("login", "login_success"), ("login", "login_failure"), ("login", "logout")],
    "admin": [
        ("USER_SETTINGS", "CREATE_USER"),
        ("USER_SETTINGS", "SUSPEND_USER"),
        ("GROUP_SETTINGS", "ADD_GROUP_MEMBER"),
        ("DELEGATED_ADMIN_SETTINGS", "GRANT_ADMIN_PRIVILEGE"),
    ],
    "token": [("auth", "authorize"), ("auth", "revoke")],
    "drive": [("access", "view"), ("access", "edit"), ("access", "download")],
}
DEFAULT_APPLICATION = "login"
# The emulated service account's key: a test key, published here, never a real credential.
EMULATOR_KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDgb+LEKBwEwmNW
FXmjRetzvY1z68Nb5D996oOQXJi6JvXqKbaapEVxds1Dn0Ks9QrW3USbFK7FZe8c
N/1wU3dcfKnyBHeTJNe77Ff3laUamZmS8Rx8UUXx8zKCUbWhSehUWbbcdh5BnYKA
SiAsG7s7qnQydGNt13SvgvfXKMWlGav+Y0NaKugHveL303j4ZcbKIKLV8bpwK5Jo
mgSK0Zg7Y3/cD7viaJtpMjnwyMMMWEUo++irmkYF+RThvatnA9ljTp8nD5YOx4ZY
PX/RfrMtpPs7ANk+CVOMKfb8S5L03LrgJwWBAYzbZSyaecckE0Vpn1JZWM+HE0a/
s1JWhwUFAgMBAAECggEAK5DcampEwhG/uZqSkYSFh2KAnkNiGSjNwFHw9ulahiwA
6VLujMcdacB/aMR161/nmjy6UAYsRMocJ5SgwBibn1rdnEqMsYXh0Ks4iilEssyl
GHZwKpuWIbitEcntoWDY1eLSUaomBmOeTOvWoelCJ3tXceHQ2SYNEvKvzFawQvND
I++An7vmhoH7sCoXC90Cod+O5XokvbGP0ZHcn9PsSrOR0CucOl3sV9bsBfQ3mkPy
kEo/h6Gzh9Fg/1xVyfu/saGZPNMK0mndANs1fUm9uZrQgiY6WEdyIjihr4lNEGG8
8UeoRVznozMm9jJBdHnmfsYeml1+JVc2FtZ2tJfngwKBgQD5R2Vsg5X0BcVzmRvI
izlLpv1Ch1W946SUqKb2sBKkhviWF5WMd0FxT19okXcsto+r2uEQZOCyFVIT4wnL
x9VP2rsoEjGS9mRb6IIqiOtUBsKo+21BITXerMYlkWDzWEoBeoStnVjG8CuK02V4
ofNBsfRy86yvmPxvTya070yUowKBgQDmfQXwDE+VIK25EathJCJ60VADuoUz0jf5
9DI82+RZU1Mv9pN463eF6J3ONJTwbY7y3p/8Jg9Zxd8unrUOy3PZSPXFSu7nGr+G
Gq+aswOKEXOroJEPCrWGU4lzYKdhC1OKTDyEkBff3aqKicTbPJoA04QWVZoVeB5b
69BuDTvyNwKBgQDNy7Se/o9Ysz8MrVVzngUCQO2K9CHEL+Ca3hVhSYFKlSc6+mN7
YKUFf8q7kIQ7xMgd0AjIuQ+L1fA5/NEEjIi9cU3byhFlS8cU3YJAzWLCrwYb7d6H
y3wmxqqbL0dD/xqx180ba/Bz5Kl95gI6sjEahmjSUfu5yGp3FnhVHc4yUwKBgFTQ
ZML0hMRnhgW4DsxsM5PmOf9lP2bWUGrWBTaH4/tKwi3AGnxAiXbpJkie6L+gUR3l
9hEfID70pS/OjummzDaEtounC0pXeWqrnzrZ7M99pIbfSwGx+yI20zl1s6HuPQuD
CjHtpBtowjzAfYP/RNxQ+SYO0ehcjy9cExKsJAb5AoGBAPUvA5VOTADC5MmnPy9L
l6UPrQniU7uEqGmYJ+JpKdOJxMEdynb4YdWEi638nD+cGjZW7sPuBIp1tFsJ6Lhn
4+g2rco9f58TMjphBwqT0Kfnru9xqVHhC80m4GJ9Ga96nrXfAS2dWMBsAyU5QMZC
kI39CibwIS8anYJuSzdckizg
-----END PRIVATE KEY-----
"""
ALL_APPLICATIONS = {*APPLICATIONS, "saml", "groups", "user_accounts", "calendar", "chat", "meet", "mobile"}


def rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def google_error(status: int, message: str, reason: str, state: str) -> Response:
    return Response.json(
        {
            "error": {
                "code": status,
                "message": message,
                "status": state,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        },
        status,
    )


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GoogleWorkspaceEmulator(PresetEmulator):
    name = "google_workspace"
    source_type = "google_workspace"
    default_organizations = (DEFAULT_APPLICATION,)

    def __init__(self, seed: int = 1) -> None:
        super().__init__(seed, Quota(limit=0, window_s=60.0))
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = serialization.load_pem_private_key(EMULATOR_KEY_PEM.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("EMULATOR_KEY_PEM must be an RSA key")
        self.key = key
        self.client_email = CLIENT_EMAIL
        self.admins = [ADMIN]
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time)
        self.token_lifetime_s = 3599
        self.token_requests = 0
        self.limit_status = 403
        self.route("POST", r"/token", self.token)
        self.route("GET", r"/_emulator/service_account", self.service_account)
        self.route("GET", r"/admin/reports/v1/activity/users/all/applications/(?P<app>[^/]+)", self.activities)

    def configure(self, options: dict[str, Any]) -> None:
        options = dict(options)
        if options.pop("expire_tokens", False):
            self.tokens.clear()
        super().configure(options)

    def key_file(self, url: str) -> dict[str, Any]:
        from cryptography.hazmat.primitives import serialization

        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": "0" * 40,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "1" * 21,
            "token_uri": f"{url}/token",
        }

    # --- the emulator contract (forwarder/emulators/base.py) --------------------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        """Each organization is an application (login, admin, ...)."""
        key = self.key_file(url)
        return {
            "type": "google_workspace",
            "url": f"{url}/admin/reports/v1/activity/users/all/applications/{{organization}}",
            "organizations": self.organizations(organizations),
            "auth": {
                "client_email": key["client_email"],
                "private_key": key["private_key"],
                "token_url": key["token_uri"],
                "subject": ADMIN,
            },
        }

    def entry_key(self, entry: dict[str, Any]) -> str:
        """The preset's composite ``id_field`` (time, uniqueQualifier, applicationName) joined by ``|``."""
        ident = entry["id"]
        return f"google_workspace:{ident['time']}|{ident['uniqueQualifier']}|{ident['applicationName']}"

    # --- data ------------------------------------------------------------------------------
    def make_entry(self, ts: int, org: str) -> tuple[dict[str, Any], str]:
        """``org`` is the application."""
        app = org
        kind, name = self.rng.choice(APPLICATIONS.get(app, APPLICATIONS["admin"]))
        _, email = self.rng.choice(PEOPLE)
        parameters: list[dict[str, Any]] = (
            [{"name": "login_type", "value": "google_password"}]
            if app == "login"
            else [{"name": "USER_EMAIL", "value": self.rng.choice(PEOPLE)[1]}]
        )
        etag = f'"{self.rng.getrandbits(64):x}"'  # drawn in the order the entries were always drawn
        ident = {
            "time": rfc3339(ts),
            "uniqueQualifier": str(self.rng.randint(-(2**62), 2**62)),
            "applicationName": app,
            "customerId": "C03az79cb",
        }
        entry: dict[str, Any] = {
            "kind": "admin#reports#activity",
            "etag": etag,
            "id": ident,
            "actor": {"callerType": "USER", "email": email, "profileId": str(self.rng.randint(10**20, 10**21))},
            "ownerDomain": "example.com",
            "ipAddress": documentation_ip(self.rng),
            "events": [{"type": kind, "name": name, "parameters": parameters}],
        }
        return entry, ident["uniqueQualifier"]

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        """Posted entries name their application in ``id.applicationName`` (or ``_org``)."""
        for raw in entries:
            entry = {k: v for k, v in raw.items() if k not in ("_org", "_delay_s")}
            app = str(raw.get("_org") or entry.get("id", {}).get("applicationName") or "admin")
            ident = {
                "time": rfc3339(now_ms()),
                "uniqueQualifier": str(self.rng.randint(1, 2**62)),
                "applicationName": app,
                **entry.get("id", {}),
            }
            entry["id"] = ident
            ts = int(parse_time(ident["time"]).timestamp() * 1000)
            self.store.add(app, ts, str(ident["uniqueQualifier"]), entry, float(raw.get("_delay_s", 0)))

    # --- the token endpoint -----------------------------------------------------------------
    def service_account(self, req: Request) -> Response:
        return Response.json(self.key_file(req.base_url))

    def _claims(self, assertion: str, audience: str) -> dict[str, Any] | str:
        """The verified claims, or the ``error_description`` Google would give."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_unb64(header_b64))
            claims = json.loads(_unb64(claims_b64))
            signature = _unb64(signature_b64)
        except (ValueError, TypeError):
            return "Invalid JWT: not a signed JWT"
        if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
            return "Invalid JWT: alg must be RS256"
        try:
            self.key.public_key().verify(
                signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != self.client_email:
            return "Invalid JWT: iss is not a known service account"
        if claims.get("aud") != audience:
            return "Invalid JWT: Failed audience check."
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int) or exp <= now or exp - iat > 3600 or iat > now + 300:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return claims

    def token(self, req: Request) -> Response:
        self.token_requests += 1
        form = parse_qs(req.body.decode(errors="replace"))
        if form.get("grant_type", [""])[0] != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Response.json({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, 400)
        claims = self._claims(form.get("assertion", [""])[0], f"{req.base_url}{req.path}")
        if isinstance(claims, str):
            return Response.json({"error": "invalid_grant", "error_description": claims}, 400)
        scopes = str(claims.get("scope", "")).split()
        if SCOPE not in scopes or claims.get("sub") not in self.admins:
            return Response.json(
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to "
                    "retrieve access tokens using this method, or client not authorized for any of "
                    "the scopes requested.",
                },
                401,
            )
        access = f"ya29.{secrets.token_urlsafe(32)}"
        with self.lock:
            self.tokens[access] = time.time() + self.token_lifetime_s
        return Response.json({"access_token": access, "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    # --- activities.list ----------------------------------------------------------------------
    def activities(self, req: Request, app: str) -> Response:
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        with self.lock:
            valid = scheme == "Bearer" and self.tokens.get(token, 0) > time.time()
        if not valid:
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                "authError",
                "UNAUTHENTICATED",
            )
        with self.lock:
            allowed, _ = self.quota.take()
            if not allowed:
                if self.limit_status == 429:
                    return google_error(
                        429, "Quota exceeded for quota metric 'Queries'", "rateLimitExceeded", "RESOURCE_EXHAUSTED"
                    )
                return google_error(
                    403,
                    "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'",
                    "rateLimitExceeded",
                    "PERMISSION_DENIED",
                )
            if app not in ALL_APPLICATIONS:
                return google_error(
                    400,
                    f"Invalid value '{app}'. Values must match the following regular "
                    "expression: '(access_transparency)|(admin)|(calendar)|...'",
                    "invalid",
                    "INVALID_ARGUMENT",
                )
            now = now_ms()
            try:
                start, end = req.arg("startTime"), req.arg("endTime")
                lo = int(parse_time(start).timestamp() * 1000) if start else 0
                hi = int(parse_time(end).timestamp() * 1000) if end else now
                size = int(req.arg("maxResults") or 1000)
                after = read_token(req.arg("pageToken"))
            except (ValueError, TypeError):
                return google_error(
                    400, "Invalid value for startTime, endTime, maxResults or pageToken", "invalid", "INVALID_ARGUMENT"
                )
            if lo > now or (end and lo > hi):
                return google_error(
                    400, "Start time must be less than end time and the current time", "invalid", "INVALID_ARGUMENT"
                )
            if not 1 <= size <= 1000:
                return google_error(400, "Invalid value for maxResults", "invalid", "INVALID_ARGUMENT")
            found = self.store.window(app, max(lo, now - RETENTION_MS), hi)[::-1]  # newest first
            if after is not None:
                found = [s for s in found if (s.time_ms, s.key) < after]
            page = found[:size]
        body: dict[str, Any] = {"kind": "admin#reports#activities", "etag": '"emulator"'}
        if page:
            body["items"] = [s.entry for s in page]
        if len(found) > size:
            body["nextPageToken"] = page_token(page[-1])
        return Response.json(body)
