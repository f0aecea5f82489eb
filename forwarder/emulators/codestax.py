"""CodeStax audit-log emulator.

CodeStax documents its audit log (categories, fields, 90-day retention) and its API
conventions, but no audit route (see ``shared/research/sources-api.md`` §4), so the path and the
filter names are switches. The rest follows the documented API and its FastAPI backend:
``X-API-Key`` (401 ``Not authenticated``), 403 for a key whose owner is not ORG_ADMIN/ORG_OWNER,
``skip``/``limit`` with FastAPI's 422 validation body, a bare array newest first, and a per-key
hourly request budget answered with 429 (no headers are documented; ``retry_after`` adds one).

Each organization has its own key (``api_key_for``); the default organization's is a fixed one.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from forwarder.emulators.base import Emulator, Request, Response
from forwarder.emulators.fixtures import (
    PEOPLE,
    US_PER_DAY,
    Timeline,
    documentation_ip,
    epoch_us,
    renamed,
    timeline_ms,
)
from forwarder.event import parse_time

DEFAULT_ORG = "default"
DEFAULT_API_KEY = "ch_" + "0" * 63 + "1"
DEFAULT_PATH = "/api/audit-logs"

CATEGORIES: dict[str, tuple[int, list[str]]] = {
    "auth": (20, ["auth.login", "auth.logout", "api_key.created", "api_key.revoked"]),
    "repositories": (8, ["repository.connected", "repository.disconnected", "repository.settings_changed"]),
    "scans": (35, ["scan.triggered", "scan.completed", "scan.failed", "scan.cancelled"]),
    "findings": (25, ["finding.triaged", "finding.ignored", "finding.commented"]),
    "team": (5, ["team.member_invited", "team.role_changed", "team.member_removed"]),
    "settings": (4, ["settings.updated", "settings.webhook_configured", "settings.policy_changed"]),
    "integrations": (
        3,
        [
            "integration.jira_linked",
            "integration.oauth_token_refreshed",
            "integration.webhook_enabled",
            "integration.webhook_disabled",
        ],
    ),
}
# The UI's "action type" filter speaks of "auth, scan, triage, settings, etc."
CATEGORY_ALIASES = {
    "scan": "scans",
    "triage": "findings",
    "finding": "findings",
    "repository": "repositories",
    "repo": "repositories",
    "integration": "integrations",
    "authentication": "auth",
}
REPOSITORIES = ["acme/web-app", "acme/billing-service", "acme/mobile", "acme/infra", "acme/docs"]
SCAN_TYPES = ["full", "incremental", "sca", "sast", "secrets"]
ROLES = ["VIEWER", "MEMBER", "ORG_ADMIN", "ORG_OWNER"]
TRIAGE = ["open", "confirmed", "false_positive", "accepted_risk", "fixed"]
INT_PATTERN = re.compile(r"[+-]?\d+")


def api_key_for(org: str) -> str:
    """Every organization's key, derivable by a test: ``ch_`` and 64 hex characters."""
    if org == DEFAULT_ORG:
        return DEFAULT_API_KEY
    return "ch_" + hashlib.sha256(org.encode()).hexdigest()


def format_timestamp(ts_us: int) -> str:
    """How pydantic serializes an aware UTC datetime: ``Z``, six fraction digits unless zero."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(value: str) -> int:
    """pydantic's datetime input: ISO 8601 or a Unix time (seconds, or ms when that large)."""
    text = value.strip()
    if INT_PATTERN.fullmatch(text) or re.fullmatch(r"[+-]?\d+\.\d+", text):
        number = float(text)
        return int(number * (1_000 if abs(number) > 2e10 else 1_000_000))
    return epoch_us(parse_time(text))


def validation_error(field: str, kind: str, msg: str, value: str, **ctx: int) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "loc": ["query", field], "msg": msg, "input": value}
    if ctx:
        error["ctx"] = ctx
    return error


@dataclass
class Record:
    item: dict[str, Any]
    repository: str | None


class CodeStaxEmulator(Emulator):
    name = "codestax"
    source_type = "codestax"

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.path = DEFAULT_PATH
        self.api_keys: dict[str, str] = {DEFAULT_API_KEY: DEFAULT_ORG}  # key -> organization
        self.forbidden = False  # the key's owner is not ORG_ADMIN or ORG_OWNER
        self.retention_days = 90
        self.field_names: dict[str, str] = {}  # served entries' fields renamed, e.g. {"timestamp": "created"}
        self.hourly_budget = 1000  # Pro; Free 100, Team 5000
        self.budget_window_s = 3600.0
        self.retry_after: int | str | None = None  # undocumented, so off by default
        self.default_limit = 100
        self.max_limit = 1000
        self.start_param = "start_date"
        self.end_param = "end_date"
        self.user_param = "user"
        self.action_param = "action"
        self.repository_param = "repository"
        self.orgs: dict[str, Timeline[Record]] = {}
        self._budgets: dict[str, tuple[float, int]] = {}  # key -> (window start, requests)
        self._next_id = 5000 + self.rng.randrange(1000)
        self.route("GET", r"(?P<path>/.*)", self.serve)

    # --- the emulator contract (``forwarder.emulators.base.Emulator``) --------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        """One organization per API key, so per source: the first of ``organizations``."""
        org = (organizations or list(self.orgs) or [DEFAULT_ORG])[0]
        return {
            "type": "codestax",
            "base_url": url,
            "path": self.path,
            "api_key": api_key_for(org),
            "organization": org,
        }

    def entry_key(self, entry: dict[str, Any]) -> str:
        return f"codestax:{entry['_org']}:{entry['id']}"

    def config_entries(self, name: str, url: str) -> dict[str, dict[str, Any]]:
        orgs = list(self.orgs) or [DEFAULT_ORG]
        if len(orgs) == 1:
            return {name: self.source_config(url, orgs)}
        return {f"{name}_{org}": self.source_config(url, [org]) for org in orgs}

    def ensure_org(self, org: str) -> Timeline[Record]:
        if org not in self.orgs:
            self.orgs[org] = Timeline()
            self.api_keys.setdefault(api_key_for(org), org)
        return self.orgs[org]

    # --- data ----------------------------------------------------------------------------
    def _describe(self, action: str, email: str) -> tuple[str, str | None, dict[str, Any]]:
        """Target, repository and metadata (besides the IP) of one action."""
        rng = self.rng
        repo = rng.choice(REPOSITORIES)
        meta: dict[str, Any] = {"scan_type": None, "old": None, "new": None}
        if action.startswith("auth."):
            return email, None, meta
        if action.startswith("api_key."):
            return rng.choice(["ci-pipeline", "siem-export", "local-dev"]), None, meta
        if action.startswith("repository."):
            if action.endswith("settings_changed"):
                meta.update(old={"default_branch": "master"}, new={"default_branch": "main"})
            return repo, repo, meta
        if action.startswith("scan."):
            meta["scan_type"] = rng.choice(SCAN_TYPES)
            return repo, repo, meta
        if action.startswith("finding."):
            if action == "finding.triaged":
                meta.update(old="open", new=rng.choice(TRIAGE[1:]))
            return f"FND-{rng.randint(10000, 99999)}", repo, meta
        if action.startswith("team."):
            if action == "team.role_changed":
                old, new = rng.sample(ROLES, 2)
                meta.update(old=old, new=new)
            return rng.choice(PEOPLE)[1], None, meta
        if action == "settings.policy_changed":
            meta.update(old={"fail_on": "critical"}, new={"fail_on": "high"})
            return "Default security policy", None, meta
        if action.startswith(("settings.webhook", "integration.webhook")):
            return "https://hooks.example.com/codestax", None, meta
        if action.startswith("integration."):
            return rng.choice(["Jira", "GitHub", "GitLab"]), None, meta
        meta.update(old={"require_2fa": False}, new={"require_2fa": True})
        return "organization", None, meta

    def make_record(self, ts_ms: int) -> Record:
        rng = self.rng
        names = list(CATEGORIES)
        category = rng.choices(names, [CATEGORIES[c][0] for c in names])[0]
        action = rng.choice(CATEGORIES[category][1])
        name, email = rng.choice(PEOPLE)
        target, repository, meta = self._describe(action, email)
        self._next_id += 1
        item = {
            "id": self._next_id,
            "timestamp": format_timestamp(ts_ms * 1000),
            "user": {"name": name, "email": email},
            "action": action,
            "category": category,
            "target": target,
            "metadata": {"ip": documentation_ip(rng), **meta},
        }
        return Record(item, repository)

    def _file(self, org: str, record: Record) -> None:
        ts = parse_datetime(str(record.item["timestamp"]))
        self.ensure_org(org).add(ts, int(record.item["id"]), record)

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        """``count`` entries per organization (default: the default organization)."""
        orgs = list(options.get("orgs") or []) or list(self.orgs) or [DEFAULT_ORG]
        created = []
        for org in orgs:
            for ts in timeline_ms(count, options):
                record = self.make_record(ts)
                self._file(str(org), record)
                created.append(record.item)
        return created

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        """Posted entries carry ``_org`` and optionally ``_repository`` (what the repository
        filter matches; else the target)."""
        for entry in entries:
            item = {k: v for k, v in entry.items() if k not in ("_org", "_repository")}
            if "id" not in item:
                self._next_id += 1
                item["id"] = self._next_id
            item.setdefault("timestamp", format_timestamp(int(time.time() * 1_000_000)))
            repository = entry.get("_repository", item.get("target"))
            self._file(str(entry.get("_org", DEFAULT_ORG)), Record(item, repository))

    def all_entries(self) -> list[dict[str, Any]]:
        return [{**r.item, "_org": org} for org, log in self.orgs.items() for r in log.all()]

    # --- the endpoint --------------------------------------------------------------------
    def _spend(self, key: str) -> bool:
        """One request from ``key``'s budget; False once the window's budget is spent."""
        now = time.monotonic()
        start, used = self._budgets.get(key, (now, 0))
        if now - start >= self.budget_window_s:
            start, used = now, 0
        self._budgets[key] = (start, used + 1)
        return used < self.hourly_budget

    def _paging(self, req: Request, errors: list[dict[str, Any]]) -> tuple[int, int]:
        values: dict[str, int] = {}
        for name, default, low in (("skip", 0, 0), ("limit", self.default_limit, 1)):
            raw = req.arg(name)
            if raw is None:
                values[name] = default
            elif not INT_PATTERN.fullmatch(raw.strip()):
                msg = "Input should be a valid integer, unable to parse string as an integer"
                errors.append(validation_error(name, "int_parsing", msg, raw))
            elif int(raw) < low:
                msg = f"Input should be greater than or equal to {low}"
                errors.append(validation_error(name, "greater_than_equal", msg, raw, ge=low))
            elif name == "limit" and self.max_limit and int(raw) > self.max_limit:
                msg = f"Input should be less than or equal to {self.max_limit}"
                errors.append(validation_error(name, "less_than_equal", msg, raw, le=self.max_limit))
            else:
                values[name] = int(raw)
        return values.get("skip", 0), values.get("limit", 0)

    def _window(self, req: Request, errors: list[dict[str, Any]]) -> tuple[int | None, int | None]:
        bounds: list[int | None] = []
        for name in (self.start_param, self.end_param):
            raw = req.arg(name)
            try:
                bounds.append(parse_datetime(raw) if raw else None)
            except (ValueError, OverflowError):
                errors.append(validation_error(name, "datetime_parsing", "Input should be a valid datetime", raw or ""))
                bounds.append(None)
        return bounds[0], bounds[1]

    def _matches(self, record: Record, user: str, action: str, repository: str) -> bool:
        item = record.item
        person = item.get("user") or {}
        if user and user.lower() not in (
            str(person.get("email", "")).lower(),
            str(person.get("name", "")).lower(),
        ):
            return False
        if action:
            name, category = str(item.get("action", "")), item.get("category")
            wanted = CATEGORY_ALIASES.get(action, action)
            if action != name and wanted != category and not name.startswith(action + "."):
                return False
        return not repository or record.repository == repository

    def serve(self, req: Request, path: str) -> Response:
        if path != self.path:
            if path.rstrip("/") == self.path.rstrip("/"):  # Starlette's redirect_slashes
                query = urlencode(sorted(req.query.items()), doseq=True)
                return Response(307, b"", {"Location": self.path + (f"?{query}" if query else "")})
            return Response.json({"detail": "Not Found"}, 404)
        key = req.header("x-api-key") or ""
        with self.lock:
            org = self.api_keys.get(key)
            if org is None:
                return Response.json({"detail": "Not authenticated"}, 401)
            if not self._spend(key):
                headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
                return Response.json({"detail": "Rate limit exceeded"}, 429, headers)
        if self.forbidden:
            return Response.json({"detail": "Insufficient permissions"}, 403)
        errors: list[dict[str, Any]] = []
        skip, limit = self._paging(req, errors)
        lo, hi = self._window(req, errors)
        if errors:
            return Response.json({"detail": errors}, 422)
        if self.retention_days:
            oldest = int(time.time() * 1_000_000) - int(self.retention_days * US_PER_DAY)
            lo = oldest if lo is None else max(lo, oldest)
        user, action, repository = (
            req.arg(p) or "" for p in (self.user_param, self.action_param, self.repository_param)
        )
        with self.lock:
            records = self.ensure_org(org).window(lo, hi)
        if user or action or repository:
            records = [r for r in records if self._matches(r, user, action, repository)]
        return Response.json([renamed(r.item, self.field_names) for r in records[skip : skip + limit]])
