"""Hundreds of tenants: organizations discovered from the vendor, and credentials per organization.

A vendor that lists the organizations a credential reaches (ConfigCat's ``/v1/organizations``,
GitHub's ``/user/orgs``, an enterprise's organization list...) need not have them typed:
``organizations: {discover: {url, records_path, id_field, name_field}, include, exclude,
refresh_s}`` reads the list with the source's own client (its auth, retries and rate budget),
keeps what the patterns allow and reads it again every ``refresh_s``. The ``Poller`` asks for
the refresh before each cycle (``refresh_organizations``), so a new organization is polled from
the next cycle on, starting at its lookback (it has no cursor yet), and one no longer listed is
no longer polled (its cursor stays in the journal, for the day it comes back). A listing that
fails keeps the last list in force: one bad answer must not stop every organization.

``credentials: {<organization>: {<credential settings>}}`` gives one organization other
credentials than the source's: the source builds one configuration per such organization with
those settings merged over its own (``organization_configs``), validated with the rest of the
configuration, so their secrets are registered for redaction like every other.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from forwarder.mapping import get_path
from forwarder.sources.errors import SourceError

log = structlog.get_logger("forwarder.sources.tenants")


class Discovery(BaseModel):
    """Where the vendor lists the organizations its credential reaches."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(
        None,
        description="The listing's URL, absolute or a path on the source's host; a source that knows its "
        "vendor's listing (configcat: /v1/organizations) fills it in.",
    )
    records_path: str = Field("", description="Dotted path of the list in the answer; empty: the body is the list.")
    id_field: str | None = Field(None, description="Path of an organization's id (the value polled) in one record.")
    name_field: str | None = Field(None, description="Path of its display name; include/exclude match it too.")
    params: dict[str, str | int] = Field(default_factory=dict, description="Fixed query parameters of the listing.")
    max_pages: int = Field(100, ge=1, description='Listing pages followed through Link rel="next" at most.')


class Organizations(BaseModel):
    """``organizations`` as a discovered list instead of a typed one."""

    model_config = ConfigDict(extra="forbid")
    discover: Discovery = Field(description="The vendor's organization listing.")
    include: list[str] = Field(
        default_factory=list,
        description="Shell patterns (fnmatch, case-sensitive) on the id or the name: only matching organizations "
        "are polled; empty: all.",
    )
    exclude: list[str] = Field(default_factory=list, description="Patterns of organizations never polled.")
    also: list[str] = Field(default_factory=list, description="Organizations polled besides the discovered ones.")
    refresh_s: float = Field(3600.0, gt=0, description="Seconds between two readings of the listing.")

    @model_validator(mode="before")
    @classmethod
    def _discover_true(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("discover") is True:  # a source that knows its listing
            return {**data, "discover": {}}
        return data

    def allows(self, org_id: str, name: str | None = None) -> bool:
        names = [org_id] if name is None else [org_id, name]

        def matches(patterns: list[str]) -> bool:
            return any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns)

        return (not self.include or matches(self.include)) and not matches(self.exclude)


def with_defaults(value: Any, defaults: Mapping[str, Any]) -> Any:
    """``organizations`` with the source's own listing defaults under what the configuration says."""
    if isinstance(value, Mapping):
        discover = value.get("discover")
        if discover is True or discover is None:
            discover = {}
        if isinstance(discover, Mapping):
            return {**value, "discover": {**defaults, **discover}}
    return value


ORGANIZATIONS_DOC = (
    "discovered from the vendor: {discover: {url, records_path, id_field, name_field, params}, include: "
    "[patterns], exclude: [patterns], also: [ids], refresh_s} (forwarder/sources/tenants.py, docs/presets.md)."
)
CREDENTIALS_DOC = (
    "Per organization, credential settings that replace the source's for that organization (mappings merged "
    "key by key), e.g. {org-a: {auth: {token: ...}}}; they get a rate budget of their own."
)

Fetch = Callable[[str, Mapping[str, Any]], Awaitable[tuple[Any, httpx.Headers]]]


class Tenants:
    """The organizations one source polls now: typed, or discovered and re-read when due."""

    def __init__(self, label: str, organizations: list[str] | Organizations) -> None:
        self.label = label
        self.settings = organizations if isinstance(organizations, Organizations) else None
        self.current: list[str] = list(organizations) if isinstance(organizations, list) else []
        self._due = 0.0  # time.monotonic() of the next reading

    @property
    def discovered(self) -> bool:
        return self.settings is not None

    async def refresh(self, fetch: Fetch, base_url: str, *, force: bool = False) -> bool:
        """Reads the listing if due (or ``force``); True if the list changed. A failure raises
        ``SourceError`` and leaves the last list in force; the next cycle tries again."""
        settings = self.settings
        if settings is None or (not force and time.monotonic() < self._due):
            return False
        found = await self._read(fetch, base_url, settings)
        self._due = time.monotonic() + settings.refresh_s
        listed = [org for org, name in found if settings.allows(org, name)]
        fresh = list(dict.fromkeys([*listed, *settings.also]))
        if fresh == self.current:
            return False
        added, gone = sorted(set(fresh) - set(self.current)), sorted(set(self.current) - set(fresh))
        log.info(
            "organization list read",
            vendor=self.label,
            organizations=len(fresh),
            listed=len(found),
            added=added[:20],
            removed=gone[:20],
        )
        self.current = fresh
        return True

    async def _read(self, fetch: Fetch, base_url: str, settings: Organizations) -> list[tuple[str, str | None]]:
        spec = settings.discover
        if not spec.url or not spec.id_field:
            raise SourceError(f"{self.label}: organizations.discover needs url and id_field")
        url: str | None = str(httpx.URL(base_url).join(spec.url))
        params: Mapping[str, Any] = dict(spec.params)
        found: list[tuple[str, str | None]] = []
        seen: set[str] = set()
        for _ in range(spec.max_pages):
            if url is None:
                break
            body, headers = await fetch(url, params)
            records = get_path(body, spec.records_path)
            if not isinstance(records, list):
                where = f"at {spec.records_path!r}" if spec.records_path else "as the body"
                raise SourceError(
                    f"{self.label} sent {type(records).__name__} {where} of its organization listing, expected a "
                    "list; check organizations.discover.records_path"
                )
            for record in records:
                org = get_path(record, spec.id_field) if isinstance(record, dict) else None
                if org in (None, "") or isinstance(org, dict | list):
                    continue
                name = get_path(record, spec.name_field) if spec.name_field else None
                found.append((str(org), None if name is None else str(name)))
            url, params = _next(url, headers), {}
            if url is not None and (url in seen or httpx.URL(url).netloc != httpx.URL(base_url).netloc):
                break  # a link to the page just read, or to another host (our credentials stay home)
            if url is not None:
                seen.add(url)
        return found


def _next(url: str, headers: httpx.Headers) -> str | None:
    """``Link: <...>; rel="next"`` resolved against the page's URL."""
    for part in (headers.get("Link") or "").split(","):
        target, _, rest = part.strip().partition(";")
        if "next" in rest.replace('"', " ").split() or 'rel="next"' in rest.replace(" ", ""):
            target = target.strip()
            if target.startswith("<") and target.endswith(">"):
                return str(httpx.URL(url).join(target[1:-1]))
    return None


def organization_configs(config: BaseModel, credentials: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """One configuration per organization of ``credentials``: the source's, with that
    organization's credential settings merged over it (mappings merged key by key). Only
    ``keys`` (the source's credential settings, and their ``_file``/``_from`` forms) may differ."""
    out: dict[str, Any] = {}
    base = config.model_dump(exclude={"credentials", "organizations"})
    for org, override in credentials.items():
        if isinstance(override, BaseModel):  # validated already (a copy of a validated config)
            out[org] = override
            continue
        allowed = {k for key in keys for k in (key, f"{key}_file", f"{key}_from")}
        stray = sorted(set(override) - allowed)
        if stray:
            raise ValueError(
                f"credentials.{org}: {', '.join(stray)} cannot differ per organization; allowed: {', '.join(keys)}"
            )
        data = _merged(base, override)
        data["organizations"] = [org]
        out[org] = type(config).model_validate(data)
    return out


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key.endswith(("_file", "_from")):  # the secret comes from elsewhere: the source's own value goes
            out.pop(key.rsplit("_", 1)[0], None)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out
