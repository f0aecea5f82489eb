"""The vendors as the tests drive them, derived from the emulator contract
(``forwarder.emulators.base.Emulator``): each emulator says which source reads it, a working
source entry against it and the id each of its entries arrives under. What is left here is
only what a test adds: short polls, and the start-up options of a multi-vendor run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forwarder.emulators import EMULATORS
from forwarder.emulators.base import Emulator
from forwarder.emulators.configcat import DEFAULT_ORG_ID, DEFAULT_PASSWORD, DEFAULT_USER
from forwarder.sources.configcat import MAPPING
from tests.support.emulators import EmulatorProcess

TOKEN = "codacy-test-token"
ORGS = ["gh/acme", "gl/globex"]

# Short polls, no lag, quick retries: what lets a test see many polls in a few seconds.
FAST_POLLING: dict[str, Any] = {
    "initial_lookback_days": 7,
    "lag_s": 0,
    "overlap_s": 600,
    "interval_s": 1,
    "jitter_s": 0,
    "max_attempts": 2,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "timeout_s": 10,
}

# What a test adds to a vendor's source entry besides FAST_POLLING. CodeStax paces itself to
# its hourly request budget: a realistic one would slow a test to a crawl.
TEST_SETTINGS: dict[str, dict[str, Any]] = {"codestax": {"hourly_request_budget": 100_000}}


def emulator_of(source_type: str) -> Emulator:
    """A fresh instance of the emulator that declares ``source_type``: for its contract
    methods (its credentials and key rule are those of the process a test started)."""
    for cls in EMULATORS.values():
        if cls.source_type == source_type:
            return cls()
    raise LookupError(source_type)


def source_entry(
    source_type: str, url: str, organizations: list[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The emulator's own source entry, with short polls."""
    entry = emulator_of(source_type).source_config(url, organizations)
    return {**entry, **FAST_POLLING, **TEST_SETTINGS.get(source_type, {}), **overrides}


def codacy_source(url: str, **overrides: Any) -> dict[str, Any]:
    """Both organizations of ORGS, unless ``overrides`` names others."""
    return {**source_entry("codacy", url, ORGS), **overrides}


@dataclass(frozen=True)
class Vendor:
    """One vendor as a multi-source test drives it: its emulator's start-up options, and what
    adding entries while the daemon runs needs besides a count."""

    type: str  # the source's, declared by its emulator
    options: dict[str, Any]  # emulator start-up: generation options and switches
    generate: dict[str, Any]
    organizations: list[str] | None = None

    def source(self, url: str) -> dict[str, Any]:
        return source_entry(self.type, url, self.organizations)


VENDORS: dict[str, Vendor] = {
    "codacy": Vendor("codacy", {"orgs": ORGS, "span_s": 2 * 86400}, {"orgs": ORGS}, ORGS),
    "configcat": Vendor("configcat", {"orgs": [DEFAULT_ORG_ID], "span_s": 2 * 86400}, {"orgs": [DEFAULT_ORG_ID]}),
    "codescoring": Vendor("codescoring", {"span_s": 2 * 86400}, {}),
    "codestax": Vendor("codestax", {"span_s": 2 * 86400, "config": {"hourly_budget": 1_000_000}}, {}),
}


def entry_keys(emulator: EmulatorProcess, source_type: str) -> set[str]:
    """Every id the running emulator's entries must arrive under."""
    key = emulator_of(source_type).entry_key
    return {key(entry) for entry in emulator.entries()}


def expected_ids(emulator: EmulatorProcess, vendor: str = "codacy") -> set[str]:
    return entry_keys(emulator, vendor)


# --- ConfigCat described to the generic http_json source in YAML alone ---------------------
HTTP_JSON_COMMON = {"lag_s": 0, "overlap_s": 600, "max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}


def configcat_as_http_json(url: str) -> dict[str, Any]:
    return {
        "type": "http_json",
        "vendor": "configcat",
        **HTTP_JSON_COMMON,
        "url": url + "/v2/organizations/{organization}/auditlogs",
        "organizations": [DEFAULT_ORG_ID],
        "auth": {"type": "basic", "username": DEFAULT_USER, "password": DEFAULT_PASSWORD},
        "pagination": {
            "style": "page_number",
            "page_param": "pageNumber",
            "size_param": "pageSize",
            "page_size": 10,
            "total_pages_path": "paging.totalPages",
            "has_next_path": "paging.hasNext",
        },
        "records_path": "data",
        "id_field": "auditLogId",
        "time_field": "auditLogDateTime",
        "from_param": "fromUtcDateTime",
        "to_param": "toUtcDateTime",
        "window_format": "iso8601",
        "slice_hours": 720,
        "retention_days": 35,
        "mapping": {k: v.model_dump(exclude_defaults=True) for k, v in MAPPING.items()},
    }
