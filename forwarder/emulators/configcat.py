"""ConfigCat Public Management API audit-log emulator.

Follows the vendor's OpenAPI document and docs (see ``shared/research/sources-api.md`` §2):
HTTP Basic auth (401 on a mismatch), the paged v2 routes for an organization and a product
with the ``{data, paging}`` envelope (``pageSize`` 1..100, a page past the end is empty), the
deprecated v1 routes (bare array, last 7 days by default, 400 beyond a 30-day span), uuid
validation (400), unknown organization or product (404), newest-first order (ties by
``auditLogId`` desc), retention by plan, and a token bucket that reports
``X-Rate-Limit-Remaining``/``X-Rate-Limit-Reset`` on every answer and 429 + ``Retry-After``
once empty. Switches reproduce what is unverified or known to bite clients: ``hasNext`` that
stays true on the last page, the legacy item shape, and the v1 window rules on v2.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import itertools
import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from forwarder.emulators.base import Emulator, Request, Response
from forwarder.emulators.fixtures import (
    PEOPLE,
    US_PER_DAY,
    Timeline,
    epoch_us,
    random_uuid,
    timeline_ms,
)
from forwarder.event import format_ms, parse_time

DEFAULT_USER = "configcat-user"
DEFAULT_PASSWORD = "configcat-pass"  # a test credential of a loopback emulator
DEFAULT_ORG_ID = "0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10"
MODEL_VERSION = 6
MAX_PAGE_SIZE = 100
V1_DEFAULT_DAYS = 7
V1_MAX_SPAN_DAYS = 30

# The current AuditLogType enum of the OpenAPI document; the seed's v1 list is a subset of it
# plus the four values below, which only the legacy shape can carry.
CURRENT_TYPES = """
productCreated productChanged productDeleted productsReordered productPreferencesUpdated
teamMemberInvited teamMemberInvitationRevoked teamMemberJoined teamMemberPermissionGroupChanged
teamMemberRemoved teamMemberLeft teamMemberInvitationChanged teamMemberInvitationResent
teamMemberInvitationRejected teamMemberAddedToProduct configCreated configChanged configDeleted
configsReordered environmentCreated environmentChanged environmentDeleted environmentsReordered
settingCreated settingChanged settingDeleted settingsReordered predefinedVariationsChanged
settingConvertedToPredefinedVariations settingConvertedToFreeFormValues settingValueChanged
webHookCreated webHookChanged webHookDeleted permissionGroupCreated permissionGroupChanged
permissionGroupDeleted permissionGroupDefault apiKeyAdded apiKeyRemoved integrationAdded
integrationChanged integrationRemoved apiKeyConnected integrationLinkAdded integrationLinkRemoved
organizationAdded organizationChanged organizationSubscriptionTypeChanged organizationAdminChanged
organizationAdminLeft twoFactorDisabledForMember tagAdded tagChanged tagRemoved settingTagAdded
settingTagRemoved publicApiAccessTokenAdded publicApiAccessTokenRemoved domainAdded domainVerified
domainRemoved autoProvisioningConfigurationChanged samlIdpConfigurationAdded
samlIdpConfigurationRemoved samlIdpConfigurationUpdated autoProvisioningEnabledChanged
organizationMemberJoined organizationMemberProductJoinRequested
organizationMemberProductJoinRequestRejected organizationMemberProductJoinRequestApproved
organizationMemberRemoved codeReferencesUploaded codeReferenceDeleted codeReferenceStaleBranchDeleted
segmentCreated segmentChanged segmentDeleted webhookSigningKeyDeleted webhookSigningKeyCreated
userProvisioningConfigurationChanged syncGroupProvisioningRuleChanged syncGroupsReordered
syncUserProvisioningEnabled syncUserProvisioningDisabled userEmailChanged userFullNameChanged
userDisabled awsConnected awsDisconnected userEnabled syncUserDeleted syncGroupDeleted
proxyConfigurationCreated proxyConfigurationChanged proxyConfigurationDeleted
proxyConfigurationSecretRegenerated proxyNotificationSettingsUpdated proxyNotificationSettingsDeleted
proxyNotificationSigningKeyAdded proxyNotificationSigningKeyDeleted changeRequestCreated
changeRequestUpdated changeRequestSettingValuesUpdated changeRequestSettingValueRebased
changeRequestApproved changeRequestApprovalDismissed changeRequestApplied
changeRequestAppliedOnSchedule changeRequestClosed changeRequestNeedsAttention
changeRequestCommentAdded changeRequestCommentEdited changeRequestCommentDeleted
changeRequestSettingDeleted changeRequestNeedsAttentionFixed changeRequestOwnershipClaimed
""".split()
LEGACY_ONLY_TYPES = [
    "productOwnershipTransferred",
    "organizationRemoved",
    "domainSamlConfigured",
    "domainSamlDeleted",
]
# Flag edits dominate a real audit log; everything else happens now and then.
TYPE_WEIGHTS = {
    "settingValueChanged": 40,
    "settingChanged": 8,
    "settingCreated": 6,
    "changeRequestApplied": 4,
}
TYPE_DRAW = {  # by legacy_shape: the types to draw from and their cumulative weights
    legacy: (types, list(itertools.accumulate(TYPE_WEIGHTS.get(t, 1) for t in types)))
    for legacy, types in ((False, CURRENT_TYPES), (True, CURRENT_TYPES + LEGACY_ONLY_TYPES))
}
SYSTEM_TYPES = {
    "changeRequestAppliedOnSchedule",
    "changeRequestNeedsAttention",
    "codeReferenceStaleBranchDeleted",
    "syncUserDeleted",
    "syncGroupDeleted",
}

ORG_NAMES = ["Acme Inc.", "Globex Corporation", "Initech", "Umbrella Labs"]
PRODUCT_NAMES = ["Main", "Mobile App", "Checkout", "Backoffice"]
CONFIG_NAMES = ["Web", "Mobile", "Backend"]
ENVIRONMENTS = [("Production", "#e74c3c"), ("Staging", "#f39c12"), ("Development", "#27ae60")]
FLAGS: dict[str, list[Any]] = {
    "isNewCheckoutEnabled": [False, True],
    "enableDarkMode": [False, True],
    "betaDashboard": [False, True],
    "showPromoBanner": [False, True],
    "maxUploadSizeMb": [10, 25, 50, 100],
    "pricingExperimentVariant": ["control", "variantA", "variantB"],
    "searchBackend": ["elastic", "opensearch"],
}
PERMISSION_GROUPS = ["Administrators", "Developers", "Read only", "Product managers"]
TAGS = ["beta", "experiment", "ops", "marketing", "deprecated"]
SEGMENTS = ["Beta users", "Internal staff", "EU customers"]
INTEGRATIONS = ["Slack", "Datadog", "Jira", "Amplitude", "Microsoft Teams"]
REASONS = [
    "Release 2.4 rollout",
    "JIRA-1234: enable for beta users",
    "Rollback after incident INC-88",
    "Requested by the product team",
]

WORDING = [
    (r"\bweb hook\b", "webhook"),
    (r"(?<!notification )\bsettings\b", "feature flags"),
    (r"\bsetting\b", "feature flag"),
    (r"\bapi key\b", "SDK key"),
    (r"\bapi\b", "API"),
    (r"\bsaml idp\b", "SAML IdP"),
    (r"\bsaml\b", "SAML"),
    (r"\baws\b", "AWS"),
    (r"\btwo factor\b", "two-factor"),
]


@functools.cache
def type_text(kind: str) -> str:
    """The human-readable ``auditLogType``, e.g. settingValueChanged -> Feature flag value changed."""
    phrase = " ".join(w.lower() for w in re.findall(r"[A-Z]?[a-z]+", kind))
    for pattern, replacement in WORDING:
        phrase = re.sub(pattern, replacement, phrase)
    return phrase[0].upper() + phrase[1:]


def scope_of(kind: str) -> str:
    """How deep in organization > product > config/environment an action of this type lands."""
    if kind == "settingValueChanged" or kind.startswith(("changeRequest", "apiKey")):
        return "config_env"
    if kind.startswith(("setting", "predefinedVariations", "codeReference", "config")):
        return "config"
    if kind.startswith("environment"):
        return "environment"
    if kind.startswith(
        (
            "product",
            "teamMember",
            "permissionGroup",
            "webHook",
            "webhookSigningKey",
            "tag",
            "segment",
            "integration",
        )
    ):
        return "product"
    return "organization"


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def problem(status: int, title: str, errors: dict[str, list[str]] | None = None) -> Response:
    """ConfigCat runs on ASP.NET Core, whose errors are RFC 9457 problem details."""
    body: dict[str, Any] = {"title": title, "status": status}
    if errors:
        body["errors"] = errors
    return Response(status, json.dumps(body).encode(), {"Content-Type": "application/problem+json"})


@dataclass
class Record:
    """A served item plus the ids it was filed under, which the item itself does not show."""

    item: dict[str, Any]
    org_id: str
    product_id: str | None = None
    config_id: str | None = None
    environment_id: str | None = None
    change_set_id: str | None = None


@dataclass
class Product:
    product_id: str
    name: str
    order: int
    configs: dict[str, str] = field(default_factory=dict)
    environments: dict[str, str] = field(default_factory=dict)


@dataclass
class Organization:
    org_id: str
    name: str
    products: dict[str, Product] = field(default_factory=dict)
    log: Timeline[Record] = field(default_factory=Timeline)


@dataclass
class Query:
    product_id: str | None
    config_id: str | None
    environment_id: str | None
    kind: str | None
    lo_us: int | None
    hi_us: int | None


class ConfigCatEmulator(Emulator):
    name = "configcat"
    source_type = "configcat"

    def __init__(self, username: str = DEFAULT_USER, password: str = DEFAULT_PASSWORD, seed: int = 1) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.username = username
        self.password = password
        self.retention_days = 35  # Pro/Smart; Free 7, Enterprise/Dedicated 750
        self.has_next_lies = False  # hasNext stays true on the last page (and past it)
        self.legacy_shape = False  # the 2024 item: changeSetId, no modelVersion
        self.v2_window_rules = False  # apply v1's 7-day default and 30-day cap to v2 as well
        self.bucket_size = 100
        self.refill_per_s = 20.0
        self.reset_format = "iso"  # X-Rate-Limit-Reset as "iso", "epoch" or "http-date"
        self.orgs: dict[str, Organization] = {}
        self._next_id = 480_000_000 + self.rng.randrange(1_000_000)
        self._tokens = float(self.bucket_size)
        self._refilled_at = time.monotonic()
        v2, v1 = r"/v2/", r"/v1/"
        self.route("GET", v2 + r"organizations/(?P<org_id>[^/]+)/auditlogs", self.org_auditlogs_v2)
        self.route("GET", v2 + r"products/(?P<product_id>[^/]+)/auditlogs", self.product_auditlogs_v2)
        self.route("GET", v1 + r"organizations/(?P<org_id>[^/]+)/auditlogs", self.org_auditlogs_v1)
        self.route("GET", v1 + r"products/(?P<product_id>[^/]+)/auditlogs", self.product_auditlogs_v1)
        self.route("GET", v1 + r"organizations", self.list_organizations)
        self.route("GET", v1 + r"products", self.list_products)

    # --- the emulator contract (``forwarder.emulators.base.Emulator``) --------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        return {
            "type": "configcat", "base_url": url, "username": self.username, "password": self.password,
            "organizations": organizations or list(self.orgs) or [DEFAULT_ORG_ID],
        }  # fmt: skip

    def entry_key(self, entry: dict[str, Any]) -> str:
        return f"configcat:{entry['auditLogId']}"

    def configure(self, options: dict[str, Any]) -> None:
        super().configure(options)
        if {"bucket_size", "refill_per_s"} & options.keys():
            with self.lock:
                self._tokens = float(self.bucket_size)
                self._refilled_at = time.monotonic()

    # --- data ----------------------------------------------------------------------------
    def ensure_org(self, org_id: str, products: int = 0) -> Organization:
        if not is_uuid(org_id):
            raise ValueError("ConfigCat organization ids are UUIDs")
        org_id = str(uuid.UUID(org_id))
        org = self.orgs.get(org_id)
        if org is None:
            org = self.orgs[org_id] = Organization(org_id, ORG_NAMES[len(self.orgs) % len(ORG_NAMES)])
        while len(org.products) < products:
            product = Product(
                random_uuid(self.rng),
                PRODUCT_NAMES[len(org.products) % len(PRODUCT_NAMES)],
                len(org.products),
            )
            product.configs = {random_uuid(self.rng): name for name in CONFIG_NAMES}
            product.environments = {random_uuid(self.rng): name for name, _ in ENVIRONMENTS}
            org.products[product.product_id] = product
        return org

    def find_product(self, product_id: str) -> tuple[Organization, Product] | None:
        for org in self.orgs.values():
            if product_id in org.products:
                return org, org.products[product_id]
        return None

    def _describe(self, kind: str, org: Organization, flag: str, config: str, env: str) -> tuple[str, Any]:
        """``actionTarget`` and the details object of one entry, after what the dashboard shows."""
        rng = self.rng
        if kind in ("settingValueChanged", "changeRequestSettingValuesUpdated"):
            old, new = rng.sample(FLAGS[flag], 2)
            return flag, {"oldValue": old, "newValue": new}
        if kind.startswith("changeRequest"):
            return f"Change request #{rng.randint(1, 400)}", {"settingKey": flag, "environment": env}
        if kind.startswith("settingTag"):
            return flag, {"tag": rng.choice(TAGS)}
        if kind.startswith(("setting", "predefinedVariations")):
            return flag, {"key": flag, "name": type_text(flag), "hint": ""}
        if kind.startswith("codeReference"):
            return flag, {
                "repository": "github.com/acme/web",
                "branch": rng.choice(["main", "develop", "feature/x"]),
            }
        if kind.startswith("config"):
            return config, {"name": config}
        if kind.startswith("environment"):
            return env, {"name": env, "color": dict(ENVIRONMENTS)[env]}
        if kind.startswith(("teamMember", "organizationMember", "organizationAdmin", "twoFactor", "user")):
            return rng.choice(PEOPLE)[1], {"permissionGroup": rng.choice(PERMISSION_GROUPS)}
        if kind.startswith("permissionGroup"):
            return rng.choice(PERMISSION_GROUPS), {"canManageMembers": rng.random() < 0.3}
        if kind.startswith(("webHook", "webhookSigningKey")):
            url = f"https://hooks.example.com/configcat/{rng.getrandbits(32):08x}"
            return url, {"url": url, "httpMethod": "post"}
        if kind.startswith("tag"):
            return rng.choice(TAGS), {"color": rng.choice(["panther", "whale", "salmon"])}
        if kind.startswith("segment"):
            return rng.choice(SEGMENTS), {"comparisonAttribute": "Email", "comparator": "containsAnyOf"}
        if kind.startswith("integration"):
            return rng.choice(INTEGRATIONS), {"environment": env}
        if kind.startswith("apiKey"):
            return f"{config} / {env}", {"keyType": "sdkKey"}
        if kind == "organizationSubscriptionTypeChanged":
            old, new = rng.sample(["Free", "Pro", "Smart", "Enterprise"], 2)
            return org.name, {"oldValue": old, "newValue": new}
        if kind.startswith(("domain", "saml", "autoProvisioning")):
            return "example.com", {"identityProvider": rng.choice(["Okta", "Entra ID", "Google Workspace"])}
        if kind.startswith("sync"):
            return rng.choice(["Engineering", "Product", "Support"]), {}
        if kind.startswith("aws"):
            return f"AWS account {rng.randrange(10**11, 10**12)}", {}
        if kind.startswith("proxy"):
            return rng.choice(["EU proxy", "US proxy"]), {}
        return org.name, {"name": org.name}

    def make_record(self, org: Organization, ts_ms: int) -> Record:
        rng = self.rng
        types, cum_weights = TYPE_DRAW[self.legacy_shape]
        kind = rng.choices(types, cum_weights=cum_weights)[0]
        scope = scope_of(kind) if org.products else "organization"
        record = Record({}, org.org_id)
        where = f"Organization: {org.name}"
        config = env = ""
        if scope != "organization":
            product = rng.choice(list(org.products.values()))
            record.product_id, where = product.product_id, f"Product: {product.name}"
            if scope in ("config", "config_env"):
                record.config_id, config = rng.choice(list(product.configs.items()))
                where += f" / Config: {config}"
            if scope in ("environment", "config_env"):
                record.environment_id, env = rng.choice(list(product.environments.items()))
                where += f" / Environment: {env}"
        target, details = self._describe(kind, org, rng.choice(list(FLAGS)), config or "Web", env or "Production")
        text = details if "Reordered" not in kind else f"New order: {', '.join(rng.sample(PRODUCT_NAMES, 3))}"
        detail_text = text if isinstance(text, str) else json.dumps(text, separators=(",", ":"))
        truncated = rng.random() < 0.01
        if truncated:
            detail_text = detail_text[: max(len(detail_text) // 2, 1)]
        name, email = rng.choice(PEOPLE)
        system = kind in SYSTEM_TYPES
        if kind.startswith("setting") or kind.startswith("changeRequest"):
            record.change_set_id = random_uuid(rng)
        self._next_id += 1 + rng.randrange(3)
        record.item = {
            "auditLogId": self._next_id,
            "auditLogDateTime": format_ms(ts_ms),
            "auditLogTypeEnum": kind,
            "truncated": truncated,
            "modelVersion": MODEL_VERSION,
            "auditLogType": type_text(kind),
            "userEmail": None if system else email,
            "userName": "System" if system else name,
            "where": where,
            "why": rng.choice(REASONS) if scope.startswith("config") and rng.random() < 0.3 else None,
            "actionTarget": target,
            "details": detail_text,
        }
        return record

    def _file(self, record: Record, ts_ms: int | None = None) -> None:
        """Generated entries pass their time; posted ones are filed by the time they show."""
        ts_us = ts_ms * 1000 if ts_ms is not None else epoch_us(parse_time(str(record.item["auditLogDateTime"])))
        self.orgs[record.org_id].log.add(ts_us, int(record.item["auditLogId"]), record)

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        """``count`` entries per organization (UUIDs; default one fixed org), each org with
        ``products`` products (default 2) holding three configs and three environments."""
        org_ids = list(options.get("orgs") or []) or list(self.orgs) or [DEFAULT_ORG_ID]
        created = []
        for org_id in org_ids:
            org = self.ensure_org(org_id, int(options.get("products", 2)))
            for ts in timeline_ms(count, options):
                record = self.make_record(org, ts)
                self._file(record, ts)
                created.append(self.render(record))
        return created

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        """Posted entries carry ``_org`` and optionally ``_productId``/``_configId``/``_environmentId``;
        they are filed under those and not served."""
        for entry in entries:
            item = dict(entry)
            org = self.ensure_org(str(item.pop("_org", DEFAULT_ORG_ID)))
            record = Record(item, org.org_id, item.pop("_productId", None), item.pop("_configId", None))
            record.environment_id = item.pop("_environmentId", None)
            record.change_set_id = item.pop("changeSetId", None)
            if record.product_id and record.product_id not in org.products:
                org.products[record.product_id] = Product(record.product_id, "Posted product", len(org.products))
            if "auditLogId" not in item:
                self._next_id += 1
                item["auditLogId"] = self._next_id
            item.setdefault("auditLogDateTime", format_ms(int(time.time() * 1000)))
            self._file(record)

    def all_entries(self) -> list[dict[str, Any]]:
        return [{**self.render(r), "_org": org_id} for org_id, org in self.orgs.items() for r in org.log.all()]

    def render(self, record: Record) -> dict[str, Any]:
        """The shape follows the switch when served, so flipping it mid-run acts like a vendor upgrade."""
        item = {k: v for k, v in record.item.items() if k != "modelVersion" or not self.legacy_shape}
        if self.legacy_shape:
            item["changeSetId"] = record.change_set_id
        return item

    # --- rate limiting -------------------------------------------------------------------
    def _take_token(self) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the bucket is full again)."""
        now = time.monotonic()
        self._tokens = min(float(self.bucket_size), self._tokens + (now - self._refilled_at) * self.refill_per_s)
        self._refilled_at = now
        allowed = self._tokens >= 1
        if allowed:
            self._tokens -= 1
        refill = max(self.refill_per_s, 1e-9)  # a bucket that never refills resets "in a year"
        return allowed, int(self._tokens), min((self.bucket_size - self._tokens) / refill, 365 * 86400.0)

    def _reset_header(self, seconds: float) -> str:
        at = time.time() + seconds
        if self.reset_format == "epoch":
            return str(math.ceil(at))
        if self.reset_format == "http-date":
            return formatdate(at, usegmt=True)
        return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def dispatch(self, req: Request) -> Response:
        """The bucket is drawn before routing, so every answer (errors and faults too) reports it."""
        if req.path.startswith("/_control/"):
            return super().dispatch(req)
        with self.lock:
            allowed, remaining, full_in = self._take_token()
            missing = 1 - self._tokens
        if allowed:
            resp = super().dispatch(req)
        else:
            retry = max(1, math.ceil(missing / max(self.refill_per_s, 1e-9)))
            resp = problem(429, "Too many requests.")
            resp.headers["Retry-After"] = str(retry)
        resp.headers["X-Rate-Limit-Remaining"] = str(remaining)
        resp.headers["X-Rate-Limit-Reset"] = self._reset_header(full_in)
        return resp

    # --- the endpoints -------------------------------------------------------------------
    def _authorized(self, req: Request) -> bool:
        scheme, _, encoded = (req.header("authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user_ok = hmac.compare_digest(user.encode(), self.username.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and user_ok

    def _unauthorized(self) -> Response:
        resp = problem(401, "Unauthorized")
        resp.headers["WWW-Authenticate"] = 'Basic realm="ConfigCat Public Management API"'
        return resp

    def _query(self, req: Request, *, v1_rules: bool) -> Query | Response:
        errors: dict[str, list[str]] = {}
        ids: dict[str, str | None] = {}
        for name in ("productId", "configId", "environmentId"):
            ids[name] = req.arg(name) or None
            if ids[name] and not is_uuid(str(ids[name])):
                errors[name] = [f"The value '{ids[name]}' is not valid."]
        kind = req.arg("auditLogType") or None
        if kind:
            known = {t.lower(): t for t in CURRENT_TYPES + LEGACY_ONLY_TYPES}
            if kind.lower() not in known:
                errors["auditLogType"] = [f"The value '{kind}' is not valid."]
            kind = known.get(kind.lower())
        bounds: dict[str, int | None] = {}
        for name in ("fromUtcDateTime", "toUtcDateTime"):
            text = req.arg(name)
            try:
                bounds[name] = epoch_us(parse_time(text)) if text else None
            except ValueError:
                errors[name] = [f"The value '{text}' is not valid."]
        if errors:
            return problem(400, "One or more validation errors occurred.", errors)
        lo, hi = bounds["fromUtcDateTime"], bounds["toUtcDateTime"]
        if v1_rules:
            now_us = int(time.time() * 1_000_000)
            hi = now_us if hi is None else hi
            lo = hi - V1_DEFAULT_DAYS * US_PER_DAY if lo is None else lo
            if hi - lo > V1_MAX_SPAN_DAYS * US_PER_DAY:
                return problem(
                    400,
                    "Bad request.",
                    {
                        "toUtcDateTime": [
                            "The distance between fromUtcDateTime and toUtcDateTime cannot exceed 30 days."
                        ]
                    },
                )
        return Query(ids["productId"], ids["configId"], ids["environmentId"], kind, lo, hi)

    def _select(self, org: Organization, q: Query) -> list[Record]:
        lo = q.lo_us
        if self.retention_days:
            oldest = int(time.time() * 1_000_000) - int(self.retention_days * US_PER_DAY)
            lo = oldest if lo is None else max(lo, oldest)
        records = org.log.window(lo, q.hi_us)
        if q.product_id or q.config_id or q.environment_id or q.kind:
            records = [
                r
                for r in records
                if (not q.product_id or r.product_id == q.product_id)
                and (not q.config_id or r.config_id == q.config_id)
                and (not q.environment_id or r.environment_id == q.environment_id)
                and (not q.kind or r.item.get("auditLogTypeEnum") == q.kind)
            ]
        return records

    def _auditlogs(self, req: Request, org_id: str | None, product_id: str | None, *, paged: bool) -> Response:
        if not self._authorized(req):
            return self._unauthorized()
        path_id = org_id or product_id or ""
        if not is_uuid(path_id):
            field_name = "organizationId" if org_id else "productId"
            return problem(
                400,
                "One or more validation errors occurred.",
                {field_name: [f"The value '{path_id}' is not valid."]},
            )
        page_number, page_size = 1, MAX_PAGE_SIZE
        if paged:
            try:
                page_number = int(req.arg("pageNumber") or 1)
                page_size = int(req.arg("pageSize") or MAX_PAGE_SIZE)
            except ValueError:
                return problem(400, "One or more validation errors occurred.", {"paging": ["Not an integer."]})
            if page_number < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
                return problem(
                    400,
                    "One or more validation errors occurred.",
                    {"pageSize": [f"The field pageSize must be between 1 and {MAX_PAGE_SIZE}."]}
                    if page_number >= 1
                    else {"pageNumber": ["The field pageNumber must be at least 1."]},
                )
        query = self._query(req, v1_rules=not paged or self.v2_window_rules)
        if isinstance(query, Response):
            return query
        with self.lock:
            if org_id is not None:
                org = self.orgs.get(org_id.lower())
            else:
                found = self.find_product(path_id.lower())
                org = found[0] if found else None
                query.product_id = path_id.lower()
            if org is None:
                return problem(404, "Not found.")
            records = self._select(org, query)
        if not paged:
            return Response.json([self.render(r) for r in records])
        total = len(records)
        total_pages = math.ceil(total / page_size)
        start = (page_number - 1) * page_size
        paging = {
            "currentPage": page_number,
            "totalPages": total_pages,
            "pageSize": page_size,
            "totalCount": total,
            "hasPrevious": page_number > 1,
            "hasNext": page_number < total_pages or self.has_next_lies,
        }
        return Response.json({"data": [self.render(r) for r in records[start : start + page_size]], "paging": paging})

    def org_auditlogs_v2(self, req: Request, org_id: str) -> Response:
        return self._auditlogs(req, org_id, None, paged=True)

    def product_auditlogs_v2(self, req: Request, product_id: str) -> Response:
        return self._auditlogs(req, None, product_id, paged=True)

    def org_auditlogs_v1(self, req: Request, org_id: str) -> Response:
        return self._auditlogs(req, org_id, None, paged=False)

    def product_auditlogs_v1(self, req: Request, product_id: str) -> Response:
        return self._auditlogs(req, None, product_id, paged=False)

    def list_organizations(self, req: Request) -> Response:
        """Discovery, as a client finds its organization ids: ``OrganizationModel`` items."""
        if not self._authorized(req):
            return self._unauthorized()
        with self.lock:
            return Response.json([{"organizationId": o.org_id, "name": o.name} for o in self.orgs.values()])

    def list_products(self, req: Request) -> Response:
        """``ProductModel`` items of every organization, the ids the product routes take."""
        if not self._authorized(req):
            return self._unauthorized()
        with self.lock:
            return Response.json(
                [
                    {
                        "organization": {"organizationId": o.org_id, "name": o.name},
                        "productId": p.product_id,
                        "name": p.name,
                        "description": None,
                        "order": p.order,
                        "reasonRequired": False,
                        "approveRequired": False,
                    }
                    for o in self.orgs.values()
                    for p in o.products.values()
                ]
            )
