"""ConfigCat: ``GET /v2/organizations/{id}/auditlogs`` (research notes §2).

Entries have an id (``auditLogId``) and the v2 endpoint pages with ``pageNumber``/``pageSize``,
newest first as far as anyone has observed. So the stream reads time windows of at most 30
days (the documented v1 cap, which may still hold on v2), walks every page of a window with
the end time fixed, and only then journals the window's new entries oldest first with the
cursor: a cursor committed per page could skip entries still to come on later pages.
``hasNext`` alone is never trusted (a page past the end comes back empty while it says true).

The mapping is declared as data (``MAPPING``) for the generic mapper of ``http_json``, so the
same table drives this source and an ``http_json`` description of ConfigCat.
"""

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
from forwarder.mapping import FieldSpec, Mapper, validate_mapping
from forwarder.sources.base import HttpUrl, SourceConfig, retention_setting
from forwarder.sources.http import MalformedResponse, make_client
from forwarder.sources.window import time_at
from forwarder.sources.windowed import DAY_MS, WindowedSource

log = structlog.get_logger("forwarder.sources.configcat")
PRODUCT_PREFIX = "product:"
RETENTION_DAYS = 35.0  # Pro/Smart; Free 7, Enterprise/Dedicated 750: the setting retention_days

# auditLogTypeEnum -> category and target type. Containers (organization, product, config,
# environment) are entity_management; what lives in them (feature flags and their values,
# segments, tags, webhooks, integrations, proxies, change requests) is configuration; people
# are user_management; whatever grants access (permission groups, SDK keys, Public API tokens,
# 2FA, SAML, domains, signing keys and secrets) is access_management. Most specific glob wins.
CATEGORY_BY_TYPE = {
    "teamMember*": "user_management",
    "organizationMember*": "user_management",
    "organizationAdmin*": "user_management",
    "user*": "user_management",
    "sync*": "user_management",
    "twoFactor*": "access_management",
    "permissionGroup*": "access_management",
    "apiKey*": "access_management",
    "publicApiAccessToken*": "access_management",
    "domain*": "access_management",
    "saml*": "access_management",
    "autoProvisioning*": "access_management",
    "webhookSigningKey*": "access_management",
    "proxyConfigurationSecretRegenerated": "access_management",
    "proxyNotificationSigningKey*": "access_management",
    "organization*": "entity_management",
    "product*": "entity_management",
    "config*": "entity_management",
    "environment*": "entity_management",
    "setting*": "configuration",
    "predefinedVariations*": "configuration",
    "segment*": "configuration",
    "tag*": "configuration",
    "webHook*": "configuration",
    "integration*": "configuration",
    "codeReference*": "configuration",
    "changeRequest*": "configuration",
    "proxy*": "configuration",
    "aws*": "configuration",
}
TARGET_BY_TYPE = {
    "teamMember*": "team_member",
    "organizationMember*": "organization_member",
    "organizationAdmin*": "organization_admin",
    "user*": "user",
    "syncUser*": "user",
    "syncGroup*": "group",
    "twoFactor*": "user",
    "permissionGroup*": "permission_group",
    "apiKey*": "sdk_key",
    "publicApiAccessToken*": "public_api_token",
    "domain*": "domain",
    "saml*": "saml_idp",
    "autoProvisioning*": "auto_provisioning",
    "webhookSigningKey*": "webhook_signing_key",
    "organization*": "organization",
    "product*": "product",
    "config*": "config",
    "environment*": "environment",
    "setting*": "setting",
    "predefinedVariations*": "setting",
    "segment*": "segment",
    "tag*": "tag",
    "webHook*": "webhook",
    "integration*": "integration",
    "codeReference*": "code_reference",
    "changeRequest*": "change_request",
    "proxy*": "proxy",
    "aws*": "aws",
}
# The verb the type ends with -> activity; member moves before plain removals.
ACTIVITY_BY_TYPE = {
    "*Created": "create",
    "*Added": "create",
    "*Connected": "create",
    "*Uploaded": "create",
    "*Requested": "create",
    "*Deleted": "delete",
    "*Removed": "delete",
    "*Disconnected": "delete",
    "*Revoked": "revoke",
    "*Invited": "add_member",
    "*Joined": "add_member",
    "*AddedToProduct": "add_member",
    "*JoinRequestApproved": "add_member",
    "teamMemberRemoved": "remove_member",
    "organizationMemberRemoved": "remove_member",
    "*Left": "remove_member",
    "*Disabled": "disable",
    "*DisabledForMember": "disable",
    "*Enabled": "enable",
    "*Changed": "update",
    "*Updated": "update",
    "*Reordered": "update",
    "*Edited": "update",
    "*Rebased": "update",
    "*Resent": "update",
    "*Verified": "update",
    "*Default": "update",
    "*Regenerated": "update",
    "*Fixed": "update",
    "*Claimed": "update",
    "*Applied": "update",
    "*AppliedOnSchedule": "update",
    "*Closed": "update",
    "*NeedsAttention": "update",
    "*Approved": "update",
    "*Dismissed": "update",
    "*Rejected": "update",
    "*ConvertedTo*": "update",
    "*Transferred": "update",
    "*Configured": "update",
}
MAPPING: dict[str, FieldSpec] = validate_mapping(
    {
        "action": FieldSpec(path="auditLogTypeEnum", default="unknown"),
        "category": FieldSpec(path="auditLogTypeEnum", map=CATEGORY_BY_TYPE, default="unknown"),
        "activity": FieldSpec(path="auditLogTypeEnum", map=ACTIVITY_BY_TYPE, default="other"),
        "outcome": FieldSpec(const="success"),  # the audit log records performed changes only
        "actor.id": "userEmail",
        "actor.email": "userEmail",
        "actor.name": "userName",
        "actor.type": FieldSpec(path="userEmail", map={"*": "user"}, default="system"),
        "target.type": FieldSpec(path="auditLogTypeEnum", map=TARGET_BY_TYPE),
        "target.name": "actionTarget",
        "message": "auditLogType",
        "details.where": "where",
        "details.why": "why",
        "details.details": FieldSpec(path="details", parse_json=True),
        "details.truncated": "truncated",
        "details.changeSetId": "changeSetId",
        "details.modelVersion": "modelVersion",
    }
)
MAPPER = Mapper(MAPPING)


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a ConfigCat id (a UUID)") from None


class ConfigCatConfig(SourceConfig):
    """ConfigCat Public Management API credentials (https://app.configcat.com/my-account/public-api-credentials)."""

    type: Literal["configcat"]
    base_url: HttpUrl = "https://api.configcat.com"
    username: str = Field(description="Public API credential user name (not an SDK key).")
    password: SecretStr = Field(description="Public API credential password.")
    organizations: list[str] = Field(default_factory=list, description="Organization ids (UUIDs) to read.")
    product_ids: list[str] = Field(
        default_factory=list, description="Product ids read through the product endpoint, as product:<id>."
    )
    api_version: Literal["v1", "v2"] = Field("v2", description="v1 is deprecated: a bare array, no paging.")
    window_days: float = Field(30.0, gt=0, le=30, description="Width of one window; ConfigCat caps it at 30.")
    page_size: int = Field(100, ge=1, le=100)
    max_pages: int = Field(1000, ge=1, description="Pages per window before the poll fails instead of looping.")
    product_id: str | None = Field(None, description="Filter: only this product's entries.")
    config_id: str | None = Field(None, description="Filter: only this config's entries.")
    environment_id: str | None = Field(None, description="Filter: only this environment's entries.")
    audit_log_type: str | None = Field(None, description="Filter: only this auditLogType, e.g. settingValueChanged.")
    initial_lookback_days: float = Field(
        365.0, gt=0, description="How far back the first run starts, at most retention_days."
    )
    retention_days: float = retention_setting(
        RETENTION_DAYS,
        "The plan's audit-log retention: Free 7, Pro/Smart 35, Enterprise/Dedicated 750.",
        "ConfigCat",
        " (Enterprise, Dedicated)",
    )
    max_throttle_s: float = Field(60.0, ge=0, description="Longest sleep when X-Rate-Limit-Remaining runs out.")

    @field_validator("organizations", "product_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return [_uuid(v) for v in value]

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


def normalize_entry(source: str, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"a ConfigCat audit entry is an object, not {type(raw).__name__}")
    return MAPPER.event(
        raw=raw,
        key=key,
        time=parse_time(str(raw.get("auditLogDateTime"))),
        observed=observed,
        vendor="configcat",
        source=source,
        organization=organization,
    )


_time_ms = time_at("auditLogDateTime")


class ConfigCatSource(WindowedSource[ConfigCatConfig]):
    type_name: ClassVar[str] = "configcat"
    vendor: ClassVar[str] = "configcat"
    display_name: ClassVar[str] = "ConfigCat"
    retention_days: ClassVar[float | None] = RETENTION_DAYS
    check_message: ClassVar[str] = "credentials accepted for {n} organization(s)/product(s)"

    def __init__(self, name: str, config: ConfigCatConfig) -> None:
        super().__init__(name, config, on_response=self._throttle)

    def make_client(self) -> httpx.AsyncClient:
        cfg = self.config
        return make_client(cfg, cfg.base_url, auth=httpx.BasicAuth(cfg.username, cfg.password.get_secret_value()))

    def slice_ms(self, start_ms: int, end_ms: int) -> int:
        return int(self.config.window_days * DAY_MS)

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
        return [*self.config.organizations, *(PRODUCT_PREFIX + p for p in self.config.product_ids)]

    def _path(self, unit: str) -> str:
        version = self.config.api_version
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
        path = self._path(unit)
        # Page numbers, newest first: a window is journaled only once every page is read (the
        # module's docstring), so what it holds until then is bound.
        budget = self.walk_budget(unit, "lower window_days")
        if cfg.api_version == "v1":
            body = await self.fetcher.get_json(unit, path, params, budget=budget)
            if not isinstance(body, list):
                raise MalformedResponse(f"ConfigCat v1 sent {type(body).__name__} for {unit!r}, expected a list")
            return body
        items: list[Any] = []
        guard = self.page_guard(unit, cfg.max_pages, "lower window_days or raise max_pages")
        while True:
            page_number = guard.next_page()
            body = await self.fetcher.get_json(
                unit, path, {**params, "pageNumber": page_number, "pageSize": cfg.page_size}, budget=budget
            )
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
