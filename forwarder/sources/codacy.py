"""Codacy: ``GET /organizations/{provider}/{org}/audit`` (research notes §1).

The endpoint has no event id and no documented paging: it returns every entry between
``from`` and ``to`` (epoch ms). So the stream reads time slices with overlap and drops
entries already seen by content hash (``forwarder.sources.window``). An optional
``{data, pagination}`` envelope (the seed's curl example reads ``.data[]``) is followed
through ``pagination.cursor``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx
import structlog
from pydantic import Field, SecretStr, field_validator

from forwarder.event import SCHEMA_VERSION, event_time, format_observed, text
from forwarder.mapping import entry_time
from forwarder.sources.base import HttpUrl, SourceConfig, TimeBounds, time_bounds_setting
from forwarder.sources.http import MalformedResponse, make_client
from forwarder.sources.window import audit_entry, time_at
from forwarder.sources.windowed import WindowedSource

log = structlog.get_logger("forwarder.sources.codacy")
PROVIDERS = ("gh", "ghe", "gl", "gle", "bb", "bbe")


class CodacyConfig(SourceConfig):
    type: Literal["codacy"]
    base_url: HttpUrl = Field("https://app.codacy.com/api/v3", description="Self-hosted: https://HOST/api/v3")
    api_token: SecretStr = Field(description="An account API token of an organization admin or manager.")
    organizations: list[str] = Field(min_length=1, description="Each as provider/name, e.g. gh/acme.")
    slice_hours: float = Field(
        24.0,
        gt=0,
        description="Widest time window of one request; narrower while the log is dense (~2,000 entries "
        "per answer, which bounds memory: Codacy answers a whole window at once).",
    )
    time_bounds: TimeBounds = time_bounds_setting("from and to", "Codacy")

    def own_params(self) -> set[str]:
        return {"from", "to", "cursor"}

    @field_validator("organizations")
    @classmethod
    def _provider_and_name(cls, value: list[str]) -> list[str]:
        for item in value:
            provider, _, name = item.partition("/")
            if provider not in PROVIDERS or not name:
                raise ValueError(f"{item!r} is not provider/name with a provider among {', '.join(PROVIDERS)}")
        return value


# Codacy's action prefix and verb decide the category and activity; anything unknown keeps
# its raw action with category "unknown".
CATEGORY_BY_PREFIX = [
    ("user.login", "authentication"),
    ("user.tokens.", "access_management"),
    ("repositories.tokens.", "access_management"),
    ("organizations.security.managers.", "access_management"),
    ("organizations.analysisconfigurationminimumpermission.", "access_management"),
    ("organizations.people.", "user_management"),
    ("organizations.join", "user_management"),
    ("organizations.security.items.export", "data_access"),
    ("organizations.", "configuration"),
    ("repositories.", "configuration"),
]
ACTIVITY_BY_VERB = {
    "login": "login",
    "create": "create",
    "read": "read",
    "delete": "delete",
    "update": "update",
    "apply": "update",
    "setdefault": "update",
    "setcodacydefault": "update",
    "promote": "update",
    "join": "add_member",
    "ignore": "update",
    "unignore": "update",
    "export": "export",
    "bypass": "update",
    "sync": "update",
    "refreshprovider": "update",
    "reanalyzecommit": "execute",
    "postcommithook": "create",
    "analyze": "execute",
}
OUTCOMES = {"succeed": "success", "failed": "failure", "rejected": "failure"}


def categorize(action: str) -> str:
    for prefix, category in CATEGORY_BY_PREFIX:
        if action.startswith(prefix):
            return category
    return "unknown"


_ACTION_FIELDS: dict[str, tuple[str, str, str]] = {}


def _action_fields(action: str) -> tuple[str, str, str]:
    """(category, activity, target type) of an action, memoized: a tenant uses a few hundred
    distinct actions, and the prefix scan ran once per event."""
    fields = _ACTION_FIELDS.get(action)
    if fields is None:
        category = categorize(action)
        verb = action.rsplit(".", 1)[-1]
        parts = action.split(".")
        fields = (
            category,
            ACTIVITY_BY_VERB.get(verb, "other") if category != "unknown" else "other",
            parts[1] if len(parts) >= 3 else parts[0],
        )
        if len(_ACTION_FIELDS) < 10_000:  # hostile input cannot grow it without bound
            _ACTION_FIELDS[action] = fields
    return fields


def _actor(value: Any) -> dict[str, Any]:
    """The ``AuditActor`` object of the OpenAPI document, or the bare value Codacy's own export
    example treats it as (``jq '[.actor, ...] | @csv'`` works on a string only): a person's
    email as text is still its actor, never a reason to quarantine the entry. Anything else
    (null, a number) leaves the actor unknown; the entry keeps it in ``raw``."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        return {"email": value}
    return {}


def normalize_entry(source: str, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
    # One dict literal with every field of ``make_event`` (same keys, same order): this runs
    # once per event and building it through make_event's copies cost a fifth of the CPU.
    if type(raw) is not dict:
        audit_entry("Codacy", raw)
    action = raw["action"]
    if not isinstance(action, str) or not action:
        raise ValueError("entry has no action")
    actor = _actor(raw.get("actor"))
    details = raw.get("details")
    if details is None:  # the seed's export example (docs 002) reads ``requestDetails``
        details = raw.get("requestDetails")
    if details is not None and not isinstance(details, dict):
        details = {"text": str(details)}
    category, activity, target_type = _action_fields(action)
    # text(): a number or an object where Codacy writes a string must not break the schema (the
    # type test first: this runs once per event, and nearly every value is a string already)
    repository = raw.get("repositoryName")
    if repository is not None and type(repository) is not str:
        repository = text(repository)
    repository = repository or None
    entity = raw.get("entityId")
    if entity is not None and type(entity) is not str:
        entity = text(entity)
    description = raw.get("description")
    if description is not None and type(description) is not str:
        description = text(description)
    extra = {}
    if raw.get("source") is not None:
        extra["source"] = raw["source"]
    if description is not None:
        extra["description"] = raw["description"]
    if actor.get("role"):
        extra["actor_role"] = actor["role"]
    if details:
        extra["request"] = details
    email = actor.get("email")
    if email is not None and type(email) is not str:
        email = text(email)
    email = email or None
    return {
        "schema_version": SCHEMA_VERSION,
        "id": key,
        "time": event_time(stamp if type(stamp := raw["timestamp"]) is str else entry_time(raw, "timestamp")),
        "observed_time": format_observed(observed),
        "vendor": "codacy",
        "source": source,
        "organization": organization,
        "actor": {
            "id": email,
            "name": None,
            "email": email,
            "ip": None,
            "user_agent": None,
            "type": "user" if email else "unknown",
        },
        "action": action,
        "activity": activity,
        "category": category,
        "outcome": OUTCOMES.get(str(raw.get("result")), "unknown"),
        "target": {"type": target_type, "id": entity or None, "name": repository},
        "repository": repository,
        "message": description,
        "details": extra,
        "raw": raw,
    }


_time_ms = time_at("timestamp")


class CodacySource(WindowedSource[CodacyConfig]):
    type_name: ClassVar[str] = "codacy"
    vendor: ClassVar[str] = "codacy"
    display_name: ClassVar[str] = "Codacy"
    retention_days: ClassVar[float | None] = 365.0
    answer_entries: ClassVar[int | None] = 2_000  # a slice is one unpaged answer: its size is our memory

    def make_client(self) -> httpx.AsyncClient:
        return make_client(self.config, self.config.base_url, {"api-token": self.config.api_token.get_secret_value()})

    async def fetch_window(self, organization: str, lo_ms: int, hi_ms: int) -> list[Any]:
        path = f"/organizations/{organization}/audit"
        params: dict[str, Any] = {"from": lo_ms, "to": hi_ms}
        items: list[Any] = []
        # The whole slice is one answer (the documented API), or pages of an undocumented envelope
        # in an unknown order: held to the end of the slice, so bound.
        budget = self.walk_budget(organization, "lower slice_hours")
        guard = self.page_guard(organization, 10_000)  # a page that repeats forever must not loop forever
        while guard.next_page():
            body = await self.fetcher.get_json(organization, path, params, budget=budget)
            if isinstance(body, list):
                page, cursor = body, None
            elif isinstance(body, dict) and isinstance(body.get("data"), list):
                pagination = body.get("pagination") or {}
                if not isinstance(pagination, dict):  # taking it for "no more pages" could skip the rest
                    raise MalformedResponse(
                        f"Codacy sent a pagination that is a {type(pagination).__name__}, not an object, "
                        f"for organization {organization!r}; the cursor stays where it was"
                    )
                page, cursor = body["data"], pagination.get("cursor")
            else:
                raise MalformedResponse(
                    f"Codacy answered with {type(body).__name__} for organization {organization!r}, "
                    "expected a list of audit entries or a {data, pagination} envelope"
                )
            items.extend(page)
            if not cursor or not page:
                break
            if not isinstance(cursor, str | int) or guard.repeats(cursor):
                raise guard.token_repeated()  # ending here would skip the rest of the window for good
            params = {**params, "cursor": cursor}
        return items

    def keys(self, organization: str, items: list[Any]) -> list[str]:
        return self.entry_keys(organization, items, None, "")

    def time_ms(self, raw: Any) -> int | None:
        return _time_ms(raw)

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        return normalize_entry(self.name, organization, raw, key, observed)
