"""Codacy ``listAuditLogsForOrganization`` emulator.

Follows the vendor's OpenAPI document and docs (see ``shared/research/sources-api.md`` §1):
``api-token`` auth (401 ApiError), 403 without the admin/manager role, 404 for an unknown
provider or organization, inclusive ``from``/``to`` in epoch ms (400 when not an integer),
newest-first bare array, one-year retention, and 503 once a request budget per 5 minutes
is spent (Codacy throttles with 503/504 and sends no ``Retry-After``).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from forwarder.emulators.base import Emulator, Request, Response
from forwarder.event import content_id

PROVIDERS = {"gh", "ghe", "gl", "gle", "bb", "bbe"}
RETENTION_MS = 365 * 24 * 3600 * 1000

ACTIONS = [
    ("user.login", "Log in"),
    ("user.tokens.create", "Create account API token"),
    ("user.tokens.read", "Read account API token"),
    ("user.tokens.delete", "Delete account API token"),
    ("organizations.create", "Add organization"),
    ("organizations.people.create", "Add people to organization"),
    ("organizations.join", "Join organization"),
    ("organizations.security.managers.create", "Assign organization manager role"),
    ("organizations.security.managers.delete", "Revoke organization manager role"),
    ("organizations.settings.hooks.create", "Create new organization hook"),
    ("organizations.gatepolicies.create", "Create new gate policy"),
    ("organizations.gatepolicies.update", "Update gate policy"),
    ("organizations.gatepolicies.repositories.apply", "Apply gate policy"),
    ("organizations.gatepolicies.delete", "Delete gate policy"),
    ("organizations.codingstandards.create", "Create new coding standard draft"),
    ("organizations.codingstandards.promote", "Create new coding standard from draft"),
    ("organizations.codingstandards.delete", "Delete coding standard"),
    ("organizations.security.items.export", "Export security items"),
    ("organizations.security.items.ignore", "Ignore security item"),
    ("repositories.integrations.postcommithook", "Create new post-commit hook"),
    ("repositories.tokens.create", "Create repository API token"),
    ("repositories.tokens.delete", "Delete repository API token"),
    ("repositories.issues.update", "Update issue"),
    ("repositories.tools.update", "Update tool"),
    ("repositories.pullrequests.bypass", "Bypass pull request"),
    ("repositories.branches.update", "Update branch"),
    ("repositories.settings.analysis.update", "Update analysis settings"),
    ("repositories.reanalyzecommit", "Reanalyze commit"),
    ("repositories.file.update", "Update file state"),
]
ROLES = ["organizationAdmin", "organizationManager", "organizationMember", "repositoryAdmin", "repositoryWrite"]
USERS = ["alice@example.com", "bob@example.com", "carol@example.org", "dave@example.net", "erin@example.com"]
REPOS = ["web-app", "billing-service", "infra", "mobile", "docs"]


def format_timestamp(ms: int) -> str:
    """Codacy writes a variable number of fractional digits; mimic that."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    frac = f"{ms % 1000:03d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def parse_timestamp(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


class CodacyEmulator(Emulator):
    name = "codacy"
    source_type = "codacy"

    def __init__(self, token: str = "codacy-test-token", seed: int = 1) -> None:
        super().__init__()
        self.token = token
        self.rng = random.Random(seed)
        self.orgs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.forbidden_orgs: list[str] = []
        self.envelope = False  # serve {data, pagination} instead of a bare array
        self.page_limit = 0  # with envelope: items per page, followed by pagination.cursor
        self.requests_per_window = 2500
        self.window_s = 300.0
        self._window: list[float] = []
        self.route("GET", r"/api/v3/organizations/(?P<provider>[^/]+)/(?P<org>[^/]+)/audit", self.audit)

    def ensure_org(self, provider: str, org: str) -> list[dict[str, Any]]:
        return self.orgs.setdefault((provider, org), [])

    # --- data ----------------------------------------------------------------------------
    def make_entry(self, ts_ms: int) -> dict[str, Any]:
        action, description = self.rng.choice(ACTIONS)
        repo = self.rng.choice(REPOS) if action.startswith("repositories.") else ""
        result = self.rng.choices(["succeed", "failed", "rejected"], weights=[90, 7, 3])[0]
        details: dict[str, Any] = {"requestId": f"{self.rng.getrandbits(64):016x}"}
        if action.startswith("organizations.gatepolicies"):
            details.update({"link": [self.rng.choice(REPOS)], "unlink": []})
        return {
            "actor": {"email": self.rng.choice(USERS), "role": self.rng.choice(ROLES)},
            "action": action,
            "result": result,
            "timestamp": format_timestamp(ts_ms),
            "source": self.rng.choice(["UI", "API"]),
            "repositoryName": repo,
            "description": description,
            "details": details,
            "entityId": str(self.rng.randint(1000, 999999)),
        }

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        """Entries spread evenly over the last ``span_s`` seconds (default: one day) per org."""
        orgs = [tuple(o.split("/", 1)) for o in options.get("orgs", [])] or list(self.orgs) or [("gh", "acme")]
        span_ms = int(float(options.get("span_s", 86400)) * 1000)
        end_ms = int(options.get("end_ms") or time.time() * 1000)
        created = []
        for provider, org in orgs:
            bucket = self.ensure_org(provider, org)
            for i in range(count):
                ts = end_ms - int(span_ms * (count - 1 - i) / max(count, 1))
                entry = self.make_entry(ts)
                bucket.append(entry)
                created.append(entry)
        return created

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        """Entries posted by a test carry ``_org`` as ``provider/org``; it is not served."""
        for entry in entries:
            provider, org = str(entry.pop("_org", "gh/acme")).split("/", 1)
            self.ensure_org(provider, org).append(entry)

    def all_entries(self) -> list[dict[str, Any]]:
        return [{**e, "_org": f"{p}/{o}"} for (p, o), items in self.orgs.items() for e in items]

    # --- the emulator contract (``forwarder.emulators.base.Emulator``) --------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        orgs = organizations or [f"{p}/{o}" for p, o in self.orgs] or ["gh/acme"]
        return {"type": "codacy", "base_url": f"{url}/api/v3", "api_token": self.token, "organizations": orgs}

    def entry_key(self, entry: dict[str, Any]) -> str:
        """Codacy has no ids: a content hash (the generated entries are all distinct, so no
        occurrence suffix is involved)."""
        fields = dict(entry)
        org = fields.pop("_org")
        return content_id("codacy", org, fields)

    # --- the endpoint --------------------------------------------------------------------
    def _throttled(self) -> bool:
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < self.window_s]
        self._window.append(now)
        return len(self._window) > self.requests_per_window

    def audit(self, req: Request, provider: str, org: str) -> Response:
        if req.header("api-token") != self.token:
            return Response.json(
                {"message": "Unauthorized", "actions": [], "error": "Unauthorized", "code": "Unauthorized"}, 401
            )
        with self.lock:
            if self._throttled():
                return Response.json({"message": "Service Unavailable", "actions": []}, 503)
            if provider not in PROVIDERS or (provider, org) not in self.orgs:
                return Response.json(
                    {"message": f"Organization {org} not found", "actions": [], "error": "NotFound"}, 404
                )
            if org in self.forbidden_orgs:
                return Response.json(
                    {
                        "message": "Requires organization admin or organization manager role",
                        "actions": [],
                        "error": "Forbidden",
                    },
                    403,
                )
            now_ms = int(time.time() * 1000)
            try:
                lo = int(req.arg("from") or 0)
                hi = int(req.arg("to") or now_ms)
            except ValueError:
                return Response.json(
                    {"message": "from/to must be epoch milliseconds", "actions": [], "error": "BadRequest"}, 400
                )
            lo = max(lo, now_ms - RETENTION_MS)
            items = [e for e in self.orgs[(provider, org)] if lo <= parse_timestamp(e["timestamp"]) <= hi]
        items.sort(key=lambda e: parse_timestamp(e["timestamp"]), reverse=True)
        if not self.envelope:
            return Response.json(items)
        start = int(req.arg("cursor") or 0)
        limit = self.page_limit or len(items) or 1
        page = items[start : start + limit]
        nxt = start + limit
        pagination: dict[str, Any] = {"limit": limit, "total": len(items)}
        if nxt < len(items):
            pagination["cursor"] = str(nxt)
        return Response.json({"data": page, "pagination": pagination})
