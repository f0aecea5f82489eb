"""The ConfigCat source: its settings, the throttle on ``X-Rate-Limit-*`` and one window read
page by page with the end time fixed (the package's docstring says why)."""

from __future__ import annotations

import asyncio
import email.utils
import time
import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx
import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from forwarder.event import format_ms, parse_time
from forwarder.sources.base import (
    HttpUrl,
    SourceConfig,
    TimeBounds,
    lookback_setting,
    retention_setting,
    time_bounds_setting,
)
from forwarder.sources.configcat.mapping import normalize_entry
from forwarder.sources.http import MalformedResponse, make_client
from forwarder.sources.tenants import (
    CREDENTIALS_DOC,
    ORGANIZATIONS_DOC,
    Organizations,
    organization_configs,
    with_defaults,
)
from forwarder.sources.walk import PageGuard
from forwarder.sources.window import time_at
from forwarder.sources.windowed import DAY_MS, WindowedSource

log = structlog.get_logger("forwarder.sources.configcat")
PRODUCT_PREFIX = "product:"
# GET /v1/organizations: OrganizationModel items (the Public Management API's OpenAPI document)
DISCOVERY = {"url": "/v1/organizations", "id_field": "organizationId", "name_field": "name"}
RETENTION_DAYS = 35.0  # Pro/Smart; Free 7, Enterprise/Dedicated 750: the setting retention_days


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a ConfigCat id (a UUID)") from None


class ConfigCatConfig(SourceConfig):
    """ConfigCat Public Management API credentials (https://app.configcat.com/my-account/public-api-credentials)."""

    type: Literal["configcat"]
    base_url: HttpUrl = "https://api.configcat.com"
    username: str = Field(
        description="Public API credential user name (not an SDK key).",
        json_schema_extra={"redacted": True},  # half of a generated credential: masked like the password
    )
    password: SecretStr = Field(description="Public API credential password.")
    organizations: list[str] | Organizations = Field(
        default_factory=list,
        description="Organization ids (UUIDs) to read; or " + ORGANIZATIONS_DOC + " discover: true reads "
        "GET /v1/organizations (organizationId, name).",
    )
    credentials: dict[str, Any] = Field(
        default_factory=dict, description=CREDENTIALS_DOC + " Here: username and password."
    )
    credential_keys: ClassVar[tuple[str, ...]] = ("username", "password")
    product_ids: list[str] = Field(
        default_factory=list, description="Product ids read through the product endpoint, as product:<id>."
    )
    api_version: Literal["auto", "v1", "v2"] = Field(
        "auto",
        description="v2 (paged); v1 is deprecated (a bare array, no paging) but is the endpoint ConfigCat's "
        "'List Audit log items for Organization' page documents; auto: v2, and v1 for an organization or "
        "product whose v2 endpoint answers 404.",
    )
    window_days: float = Field(30.0, gt=0, le=30, description="Width of one window; ConfigCat caps it at 30.")
    page_size: int = Field(100, ge=1, le=100)
    max_pages: int = Field(1000, ge=1, description="Pages per window before the poll fails instead of looping.")
    product_id: str | None = Field(None, description="Filter: only this product's entries.")
    config_id: str | None = Field(None, description="Filter: only this config's entries.")
    environment_id: str | None = Field(None, description="Filter: only this environment's entries.")
    audit_log_type: str | None = Field(None, description="Filter: only this auditLogType, e.g. settingValueChanged.")
    initial_lookback_days: float = lookback_setting(365.0)
    retention_days: float = retention_setting(
        RETENTION_DAYS,
        "The plan's audit-log retention: Free 7, Pro/Smart 35, Enterprise/Dedicated 750.",
        "ConfigCat",
        " (Enterprise, Dedicated)",
    )
    max_throttle_s: float = Field(60.0, ge=0, description="Longest sleep when X-Rate-Limit-Remaining runs out.")
    time_bounds: TimeBounds = time_bounds_setting("fromUtcDateTime and toUtcDateTime", "ConfigCat")

    @field_validator("organizations", mode="before")
    @classmethod
    def _listing(cls, value: Any) -> Any:
        return with_defaults(value, DISCOVERY)

    @field_validator("organizations", "product_ids")
    @classmethod
    def _ids(cls, value: list[str] | Organizations) -> list[str] | Organizations:
        return [_uuid(v) for v in value] if isinstance(value, list) else value

    @field_validator("product_id", "config_id", "environment_id")
    @classmethod
    def _filter_id(cls, value: str | None) -> str | None:
        return _uuid(value) if value else None

    def own_params(self) -> set[str]:
        return {
            "fromUtcDateTime",
            "toUtcDateTime",
            "productId",
            "configId",
            "environmentId",
            "auditLogType",
            "pageNumber",
            "pageSize",
        }

    @model_validator(mode="after")
    def _something(self) -> ConfigCatConfig:
        if not self.organizations and not self.product_ids:
            raise ValueError("configcat needs organizations or product_ids")
        self.credentials = organization_configs(self, self.credentials, self.credential_keys)
        return self


def reset_delay(value: str | None, now: float) -> float | None:
    """Seconds until ``X-Rate-Limit-Reset``, whose format ConfigCat leaves unspecified:
    epoch seconds (or ms), delta seconds, ISO 8601 or an HTTP-date."""
    if not value:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number > 1e11:
            return number / 1000 - now
        return number - now if number > 1e9 else number
    try:
        return parse_time(text).timestamp() - now
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(text).timestamp() - now
    except (TypeError, ValueError):
        return None


_time_ms = time_at("auditLogDateTime")


class _NoV2(Exception):
    """The v2 endpoint answered 404 on a first page (api_version auto): the v1 endpoint is asked."""


def _bare_list(items: list[Any], body: list[Any], page_size: int, guard: PageGuard, keys: list[str]) -> bool:
    """A bare array answered on v2 (the v1 shape, e.g. v1 behind a redirect) joins ``items``;
    True when it ends the window. It says nothing of further pages, so another is asked for
    while they come back full and new; one holding only entries already read (a server that
    ignores ``pageNumber``) ends the window and is not read twice."""
    if guard.stale(keys):
        return True
    guard.remember(keys)
    items.extend(body)
    return len(body) < page_size


class ConfigCatSource(WindowedSource[ConfigCatConfig]):
    type_name: ClassVar[str] = "configcat"
    vendor: ClassVar[str] = "configcat"
    display_name: ClassVar[str] = "ConfigCat"
    retention_days: ClassVar[float | None] = RETENTION_DAYS
    check_message: ClassVar[str] = "credentials accepted for {n} organization(s)/product(s)"

    def __init__(self, name: str, config: ConfigCatConfig) -> None:
        self.versions: dict[str, str] = {}  # per unit, the API version api_version auto settled on
        super().__init__(name, config, on_response=self._on_response)

    def make_client(self) -> httpx.AsyncClient:
        cfg = self.config
        return make_client(cfg, cfg.base_url, auth=httpx.BasicAuth(cfg.username, cfg.password.get_secret_value()))

    def slice_ms(self, start_ms: int, end_ms: int) -> int:
        """Narrower by the pad asked beyond each end, so that a window of window_days 30 stays
        within the 30 days ConfigCat allows between fromUtcDateTime and toUtcDateTime."""
        return int(self.config.window_days * DAY_MS) - 2 * self.bound_pad_ms()

    async def _on_response(self, response: httpx.Response) -> None:
        if (
            response.status_code == 404
            and self.config.api_version == "auto"
            and response.request.url.path.startswith(self.client.base_url.path.rstrip("/") + "/v2/")
            and response.request.url.params.get("pageNumber", "1") == "1"
        ):
            raise _NoV2
        await self._throttle(response)

    async def _throttle(self, response: httpx.Response) -> None:
        """Sleep before the bucket is empty rather than collect a 429 (which the fetcher
        handles with Retry-After, so a 429 itself is not slept on twice)."""
        if response.status_code == 429:
            return
        try:
            remaining = int(response.headers.get("X-Rate-Limit-Remaining", ""))
        except ValueError:
            return
        if remaining > 1:
            return
        delay = reset_delay(response.headers.get("X-Rate-Limit-Reset"), time.time())
        delay = min(max(delay if delay is not None else 1.0, 0.0), self.config.max_throttle_s)
        if delay > 0:
            log.info(
                "ConfigCat rate limit nearly used; throttling",
                source=self.name,
                remaining=remaining,
                sleep_s=round(delay, 2),
            )
            await asyncio.sleep(delay)

    def organizations(self) -> list[str]:
        return [*self.tenants.current, *(PRODUCT_PREFIX + p for p in self.config.product_ids)]

    def _path(self, unit: str, version: str) -> str:
        if unit.startswith(PRODUCT_PREFIX):
            return f"/{version}/products/{unit.removeprefix(PRODUCT_PREFIX)}/auditlogs"
        return f"/{version}/organizations/{unit}/auditlogs"

    async def fetch_window(self, unit: str, lo_ms: int, hi_ms: int) -> list[Any]:
        cfg = self.config
        params: dict[str, Any] = {"fromUtcDateTime": format_ms(lo_ms), "toUtcDateTime": format_ms(hi_ms)}
        filters = {
            "productId": cfg.product_id,
            "configId": cfg.config_id,
            "environmentId": cfg.environment_id,
            "auditLogType": cfg.audit_log_type,
        }
        params.update({k: v for k, v in filters.items() if v})
        version = self.versions.get(unit) or ("v2" if cfg.api_version == "auto" else cfg.api_version)
        if version == "v2":
            try:
                return await self._walk_v2(unit, params)
            except _NoV2:
                log.warning(
                    "ConfigCat's v2 audit-log endpoint answered 404; reading the v1 endpoint instead "
                    "(set api_version to v1 or v2 to choose)",
                    source=self.name,
                    organization=unit,
                )
                self.versions[unit] = "v1"
        budget = self.walk_budget(unit, "lower window_days")
        path = self._path(unit, "v1")
        body = await self.fetcher.get_json(unit, path, params, budget=budget)
        if isinstance(body, list):
            return body
        if isinstance(body, dict) and "paging" in body:  # v1 redirected to v2 (June 2026): walk its pages
            return await self._walk_v2(unit, params, path)
        raise MalformedResponse(f"ConfigCat v1 sent {type(body).__name__} for {unit!r}, expected a list")

    async def _walk_v2(self, unit: str, params: dict[str, Any], path: str | None = None) -> list[Any]:
        cfg = self.config
        path = path or self._path(unit, "v2")
        # Page numbers, newest first: a window is journaled only once every page is read (the
        # module's docstring), so what it holds until then is bound.
        budget = self.walk_budget(unit, "lower window_days")
        items: list[Any] = []
        guard = self.page_guard(unit, cfg.max_pages, "lower window_days or raise max_pages")
        while True:
            page_number = guard.next_page()
            body = await self.fetcher.get_json(
                unit, path, {**params, "pageNumber": page_number, "pageSize": cfg.page_size}, budget=budget
            )
            if isinstance(body, list):
                if _bare_list(items, body, cfg.page_size, guard, self.keys(unit, body)):
                    return items
                continue
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("data", []), list | None)
                or not isinstance(body.get("paging", {}), dict | None)
            ):
                raise MalformedResponse(
                    f"ConfigCat sent {type(body).__name__} for {unit!r}, expected the {{data, paging}} envelope"
                )
            data = body.get("data") or []
            paging = body.get("paging") or {}
            items.extend(data)
            current, total = paging.get("currentPage", page_number), paging.get("totalPages")
            if (
                not data
                or paging.get("hasNext") is False
                or (isinstance(total, int) and isinstance(current, int) and current >= total)
            ):
                return items

    def keys(self, organization: str, items: list[Any]) -> list[str]:
        """``auditLogId``; every field of the older shape may be null, so an entry without one is
        keyed on its content instead of failing the window at every poll."""
        return self.entry_keys(organization, items, "auditLogId", "configcat:")

    def time_ms(self, raw: Any) -> int | None:
        return _time_ms(raw)

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        return normalize_entry(self.name, organization, raw, key, observed)
