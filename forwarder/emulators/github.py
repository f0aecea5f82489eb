"""GitHub audit log REST API emulator (organization and enterprise), from GitHub's public docs.

What it follows: ``GET /orgs/{org}/audit-log`` and ``GET /enterprises/{enterprise}/audit-log``;
``Authorization: Bearer <token>`` or ``token <token>`` (401 "Bad credentials"), 403 for an
organization the token may not read; ``phrase`` with a ``created:FROM..TO`` qualifier (ISO 8601,
both ends inclusive; ``created:>=FROM`` too); ``include`` web (default), git or all; ``order``
asc or desc (default desc); ``per_page`` up to 100 (default 30); ``after``/``before`` cursors
in the ``Link`` header; ``@timestamp`` and ``created_at`` in epoch milliseconds;
``_document_id``; 180-day retention, 7 days for Git events; ``x-ratelimit-*`` headers, the
primary limit answered 403 with ``x-ratelimit-remaining: 0`` (or 429, ``limit_status``) and a
secondary limit (a queued fault) 403 or 429 with ``retry-after``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from forwarder.emulators.base import Request, Response
from forwarder.emulators.fixtures import PEOPLE, documentation_ip
from forwarder.emulators.presets_common import PresetEmulator, Quota, github_headers, now_ms, page_token, read_token
from forwarder.event import parse_time

DEFAULT_ORG = "octo-org"
RETENTION_MS = 180 * 86_400_000
GIT_RETENTION_MS = 7 * 86_400_000
DOCS = "https://docs.github.com/rest/orgs/orgs#get-the-audit-log-for-an-organization"
ACTIONS = [
    ("org.add_member", "user"),
    ("org.remove_member", "user"),
    ("org.update_member", "user"),
    ("team.add_member", "user"),
    ("team.remove_member", "user"),
    ("team.create", None),
    ("repo.create", None),
    ("repo.destroy", None),
    ("repo.access", None),
    ("repo.add_member", "user"),
    ("protected_branch.update", None),
    ("hook.create", None),
    ("org.update_default_repository_permission", None),
    ("personal_access_token.access_granted", "user"),
    ("git.clone", None),
    ("git.push", None),
]
CREATED = re.compile(r"created:(?:(>=|>|<=|<)?(\S+?)(?:\.\.(\S+))?)(?:\s|$)")


def error(status: int, message: str) -> Response:
    return Response.json({"message": message, "documentation_url": DOCS, "status": str(status)}, status)


class GitHubEmulator(PresetEmulator):
    name = "github"
    source_type = "github"
    default_organizations = (DEFAULT_ORG,)

    def __init__(self, token: str = "github-test-token", seed: int = 1) -> None:
        super().__init__(seed, Quota(limit=0, window_s=3600.0, headers=github_headers))
        self.token = token
        self.forbidden_orgs: list[str] = []
        self.limit_status = 403  # how the spent primary limit is answered: 403 or 429
        self.route("GET", r"/orgs/(?P<org>[^/]+)/audit-log", self.audit_log)
        self.route("GET", r"/enterprises/(?P<org>[^/]+)/audit-log", self.audit_log)

    # --- the emulator contract (forwarder/emulators/base.py) --------------------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        return {
            "type": "github",
            "url": f"{url}/orgs/{{organization}}/audit-log",
            "organizations": self.organizations(organizations),
            "auth": {"token": self.token},
        }

    def entry_key(self, entry: dict[str, Any]) -> str:
        """The preset's ``id_field: _document_id`` under the ``github:`` prefix."""
        return f"github:{entry['_document_id']}"

    # --- data ------------------------------------------------------------------------------
    def make_entry(self, ts: int, org: str) -> tuple[dict[str, Any], str]:
        action, target = self.rng.choice(ACTIONS)
        name, _ = self.rng.choice(PEOPLE)
        login = name.split()[0].lower()
        entry: dict[str, Any] = {
            "@timestamp": ts,
            "created_at": ts,
            "_document_id": f"{self.rng.getrandbits(128):032x}"[:22],
            "action": action,
            "actor": self.rng.choice([login, "github-actions[bot]"]),
            "actor_id": self.rng.randint(1, 10**8),
            "actor_location": {"country_code": "DE"},
            "org": org,
            "org_id": 4242,
            "business": "octo-business",
            "operation_type": "modify",
            "user_agent": "Mozilla/5.0",
            "actor_ip": documentation_ip(self.rng),
        }
        if target == "user":
            other = self.rng.choice(PEOPLE)[0].split()[0].lower()
            entry.update({"user": other, "user_id": self.rng.randint(1, 10**8)})
        if action.startswith(("repo.", "git.", "protected_branch.")):
            entry["repo"] = f"{org}/{self.rng.choice(['web', 'api', 'infra'])}"
        if action.startswith("team."):
            entry["team"] = f"{org}/platform"
        if action.startswith("git."):
            entry.update({"transport_protocol_name": "http", "repository_public": False})
        return entry, entry["_document_id"]

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        for raw in entries:
            entry = {k: v for k, v in raw.items() if k not in ("_org", "_delay_s")}
            entry.setdefault("_document_id", f"{self.rng.getrandbits(128):032x}"[:22])
            entry.setdefault("@timestamp", now_ms())
            entry.setdefault("created_at", entry["@timestamp"])
            org = str(raw.get("_org", DEFAULT_ORG))
            self.store.add(org, int(entry["@timestamp"]), entry["_document_id"], entry, float(raw.get("_delay_s", 0)))

    # --- the endpoint ------------------------------------------------------------------------
    @staticmethod
    def _window(phrase: str, now: int) -> tuple[int, int]:
        match = CREATED.search(phrase)
        if not match:
            return 0, now
        op, first, second = match.groups()

        def ms(text: str) -> int:
            return int(parse_time(text if "T" in text else f"{text}T00:00:00Z").timestamp() * 1000)

        if second:
            return ms(first), ms(second) + (999 if "." not in second else 0)
        if op in (">=", ">"):
            return ms(first) + (1000 if op == ">" else 0), now
        if op in ("<=", "<"):
            return 0, ms(first) - (1 if op == "<" else 0)
        return ms(first), ms(first) + 86_400_000 - 1

    def audit_log(self, req: Request, org: str) -> Response:
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or token != self.token:
            return error(401, "Bad credentials")
        with self.lock:
            allowed, headers = self.quota.take()
            if not allowed:
                refusal = error(self.limit_status, "API rate limit exceeded for user ID 1.")
                headers.pop("Retry-After", None)  # the primary limit states its reset only
                return self._with(refusal, headers)
            if org in self.forbidden_orgs:
                return self._with(error(403, "Must have admin rights to Repository."), headers)
            now = now_ms()
            try:
                lo, hi = self._window(req.arg("phrase") or "", now)
                per_page = int(req.arg("per_page") or 30)
                after = read_token(req.arg("after"))
            except (ValueError, TypeError):
                return self._with(error(422, "Validation Failed"), headers)
            if not 1 <= per_page <= 100:
                return self._with(error(422, "Validation Failed: per_page must be between 1 and 100"), headers)
            include = req.arg("include") or "web"
            if include not in ("web", "git", "all"):
                return self._with(error(422, "Validation Failed: include"), headers)
            found = [
                s
                for s in self.store.window(org, lo, hi)
                if (include == "all" or (include == "git") == str(s.entry.get("action", "")).startswith("git."))
                and s.time_ms
                >= now - (GIT_RETENTION_MS if str(s.entry.get("action")).startswith("git.") else RETENTION_MS)
            ]
            descending = (req.arg("order") or "desc") == "desc"
            if descending:
                found = found[::-1]
            if after is not None:
                found = [s for s in found if ((s.time_ms, s.key) < after) == descending and (s.time_ms, s.key) != after]
            page = found[:per_page]
        if len(found) > per_page:
            query = {k: v[0] for k, v in req.query.items() if k not in ("after", "before") and v}
            query["after"] = page_token(page[-1])
            headers["Link"] = f'<{req.base_url}{req.path}?{urlencode(query)}>; rel="next"'
        return self._with(Response.json([s.entry for s in page]), headers)

    @staticmethod
    def _with(response: Response, headers: dict[str, str]) -> Response:
        response.headers.update(headers)
        return response
