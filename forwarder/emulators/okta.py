"""Okta System Log API emulator (``GET /api/v1/logs``), written from Okta's public docs.

What it follows: ``Authorization: SSWS <token>`` or ``Bearer <token>`` (401 with Okta's
``E0000011`` error otherwise); ``since``/``until`` (ISO 8601, on ``published``), ``limit``
(1..1000, default 100), ``sortOrder``; an opaque ``after`` cursor carried by a
``Link: <...>; rel="next"`` header: a bounded query (with ``until``) gives a next link while a
page is full, a polling query (without ``until``) always gives one, an empty page ending it;
90-day retention; ``uuid`` ids; ``X-Rate-Limit-Limit/-Remaining/-Reset`` (UTC epoch seconds)
on every answer and 429 ``E0000047`` once the minute's limit is spent, with those three
headers and no ``Retry-After`` (Okta's "Rate limit best practices" documents none).

A test makes a late arrival by posting an entry with ``_delay_s``: its ``published`` time is
in the past, but it is served only once that many seconds passed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from forwarder.emulators.base import Request, Response
from forwarder.emulators.fixtures import PEOPLE, documentation_ip, random_uuid
from forwarder.emulators.presets_common import PresetEmulator, Quota, now_ms, okta_headers, page_token, read_token
from forwarder.event import parse_time

DEFAULT_ORG = "acme"
RETENTION_MS = 90 * 86_400_000
# (eventType, displayMessage, target type or None, outcome)
EVENTS = [
    ("user.session.start", "User login to Okta", None, "SUCCESS"),
    ("user.session.start", "User login to Okta", None, "FAILURE"),
    ("user.session.end", "User logout from Okta", None, "SUCCESS"),
    ("user.authentication.auth_via_mfa", "Authentication of user via MFA", "AuthenticatorEnrollment", "SUCCESS"),
    ("user.lifecycle.create", "Create Okta user", "User", "SUCCESS"),
    ("user.lifecycle.deactivate", "Deactivate Okta user", "User", "SUCCESS"),
    ("group.user_membership.add", "Add user to group membership", "User", "SUCCESS"),
    ("group.user_membership.remove", "Remove user from group membership", "User", "SUCCESS"),
    ("application.user_membership.add", "Add user to application membership", "AppUser", "SUCCESS"),
    ("user.account.privilege.grant", "Grant user privilege", "User", "SUCCESS"),
    ("policy.lifecycle.update", "Update policy", "Policy", "SUCCESS"),
    ("system.api_token.create", "Create API token", "Token", "SUCCESS"),
]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def error(status: int, code: str, summary: str) -> Response:
    return Response.json(
        {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae0000000000000000",
            "errorCauses": [],
        },
        status,
    )


class OktaEmulator(PresetEmulator):
    name = "okta"
    source_type = "okta"
    default_organizations = (DEFAULT_ORG,)

    def __init__(self, token: str = "okta-test-token", seed: int = 1) -> None:
        super().__init__(seed, Quota(limit=0, window_s=60.0, headers=okta_headers))
        self.token = token
        self.forbidden_orgs: list[str] = []
        self.org_tokens: dict[str, str] = {}  # an org's own API token (tokens are per org at Okta)
        self.route("GET", r"/api/v1/logs", self.logs)
        self.route("GET", r"/(?P<org>[^/]+)/api/v1/logs", self.logs)

    # --- the emulator contract (forwarder/emulators/base.py) --------------------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        return {
            "type": "okta",
            "url": f"{url}/{{organization}}/api/v1/logs",
            "organizations": self.organizations(organizations),
            "auth": {"token": self.token},
        }

    def entry_key(self, entry: dict[str, Any]) -> str:
        """The preset's ``id_field: uuid`` under the ``okta:`` prefix http_json gives ids."""
        return f"okta:{entry['uuid']}"

    # --- data ------------------------------------------------------------------------------
    def make_entry(self, ts: int, org: str) -> tuple[dict[str, Any], str]:
        event_type, message, target_type, result = self.rng.choice(EVENTS)
        name, email = self.rng.choice(PEOPLE)
        other_name, other_email = self.rng.choice(PEOPLE)
        entry: dict[str, Any] = {
            "uuid": random_uuid(self.rng),
            "published": iso(ts),
            "eventType": event_type,
            "version": "0",
            "severity": "WARN" if result == "FAILURE" else "INFO",
            "legacyEventType": None,
            "displayMessage": message,
            "actor": {
                "id": f"00u{self.rng.getrandbits(48):012x}",
                "type": "User",
                "alternateId": email,
                "displayName": name,
                "detailEntry": None,
            },
            "client": {
                "userAgent": {"rawUserAgent": "Mozilla/5.0 (X11; Linux x86_64)", "os": "Linux", "browser": "FIREFOX"},
                "zone": "null",
                "device": "Computer",
                "id": None,
                "ipAddress": documentation_ip(self.rng),
                "geographicalContext": {"city": "Berlin", "state": "Berlin", "country": "Germany", "postalCode": None},
            },
            "outcome": {"result": result, "reason": "INVALID_CREDENTIALS" if result == "FAILURE" else None},
            "transaction": {"type": "WEB", "id": f"Y{self.rng.getrandbits(64):016x}", "detail": {}},
            "debugContext": {"debugData": {"requestUri": "/api/v1/authn"}},
            "authenticationContext": {"authenticationStep": 0, "externalSessionId": f"102{self.rng.getrandbits(40):x}"},
            "securityContext": {"asNumber": None, "asOrg": None, "isp": None, "domain": None, "isProxy": None},
            "target": [],
        }
        if target_type:
            entry["target"] = [
                {
                    "id": f"0{self.rng.getrandbits(56):014x}",
                    "type": target_type,
                    "alternateId": other_email,
                    "displayName": other_name,
                }
            ]
        return entry, entry["uuid"]

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        """Posted entries may carry ``_org`` and ``_delay_s`` (a late arrival); neither is served."""
        for raw in entries:
            entry = {k: v for k, v in raw.items() if not k.startswith("_")}
            entry.setdefault("uuid", random_uuid(self.rng))
            entry.setdefault("published", iso(now_ms()))
            ts = int(parse_time(entry["published"]).timestamp() * 1000)
            self.store.add(str(raw.get("_org", DEFAULT_ORG)), ts, entry["uuid"], entry, float(raw.get("_delay_s", 0)))

    # --- the endpoint ------------------------------------------------------------------------
    def logs(self, req: Request, org: str = DEFAULT_ORG) -> Response:
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme not in ("SSWS", "Bearer") or token != self.org_tokens.get(org, self.token):
            return error(401, "E0000011", "Invalid token provided")
        with self.lock:
            allowed, headers = self.quota.take()
            if not allowed:
                response = error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
                response.headers.update(headers)
                return response
            if org in self.forbidden_orgs:
                return self._with(
                    error(403, "E0000006", "You do not have permission to perform the requested action"), headers
                )
            now = now_ms()
            try:
                since, until = req.arg("since"), req.arg("until")
                lo = int(parse_time(since).timestamp() * 1000) if since else now - 7 * 86_400_000
                hi = int(parse_time(until).timestamp() * 1000) if until else now
                limit = int(req.arg("limit") or 100)
                after = read_token(req.arg("after"))
            except (ValueError, TypeError):
                return self._with(
                    error(400, "E0000001", "Api validation failed: since, until, limit or after"), headers
                )
            if not 1 <= limit <= 1000:
                return self._with(error(400, "E0000001", "Api validation failed: limit"), headers)
            lo = max(lo, now - RETENTION_MS)
            found = self.store.window(org, lo, hi, after)
            if req.arg("sortOrder") == "DESCENDING" and after is None:
                found = found[::-1]
            page = found[:limit]
        links = [f'<{req.base_url}{req.path}?{urlencode(self._query(req))}>; rel="self"']
        if page and (until is None or len(found) > limit):
            query = {**self._query(req), "after": page_token(page[-1])}
            links.append(f'<{req.base_url}{req.path}?{urlencode(query)}>; rel="next"')
        return self._with(Response.json([s.entry for s in page]), {**headers, "Link": ", ".join(links)})

    @staticmethod
    def _query(req: Request) -> dict[str, str]:
        return {k: v[0] for k, v in req.query.items() if k != "after" and v}

    @staticmethod
    def _with(response: Response, headers: dict[str, str]) -> Response:
        response.headers.update(headers)
        return response
