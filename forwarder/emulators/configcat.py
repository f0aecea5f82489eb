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

This module is the API (routes, validation, paging, the rate limit); the audit log's model is
``configcat_model`` and what is generated into it ``configcat_data``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from forwarder.emulators.base import Emulator, Request, Response
from forwarder.emulators.configcat_data import ORG_NAMES, new_product, new_record
from forwarder.emulators.configcat_model import (
    CURRENT_TYPES,
    LEGACY_ONLY_TYPES,
    Organization,
    Product,
    Record,
    is_uuid,
)
from forwarder.emulators.fixtures import US_PER_DAY, epoch_us, timeline_ms
from forwarder.event import format_ms, parse_time

DEFAULT_USER = "configcat-user"
DEFAULT_PASSWORD = "configcat-pass"  # a test credential of a loopback emulator
DEFAULT_ORG_ID = "0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10"
MAX_PAGE_SIZE = 100
V1_DEFAULT_DAYS = 7
V1_MAX_SPAN_DAYS = 30


def problem(status: int, title: str, errors: dict[str, list[str]] | None = None) -> Response:
    """ConfigCat runs on ASP.NET Core, whose errors are RFC 9457 problem details."""
    body: dict[str, Any] = {"title": title, "status": status}
    if errors:
        body["errors"] = errors
    return Response(status, json.dumps(body).encode(), {"Content-Type": "application/problem+json"})


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
        self.unlisted: list[str] = []  # left out of GET /v1/organizations (the credential lost access)
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
            "type": "configcat",
            "base_url": url,
            "username": self.username,
            "password": self.password,
            "organizations": organizations or list(self.orgs) or [DEFAULT_ORG_ID],
        }

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
            product = new_product(self.rng, len(org.products))
            org.products[product.product_id] = product
        return org

    def find_product(self, product_id: str) -> tuple[Organization, Product] | None:
        for org in self.orgs.values():
            if product_id in org.products:
                return org, org.products[product_id]
        return None

    def make_record(self, org: Organization, ts_ms: int) -> Record:
        record = new_record(self.rng, org, ts_ms, legacy_shape=self.legacy_shape, last_id=self._next_id)
        self._next_id = int(record.item["auditLogId"])
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
            listed = [o for o in self.orgs.values() if o.org_id not in self.unlisted]
            return Response.json([{"organizationId": o.org_id, "name": o.name} for o in listed])

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
