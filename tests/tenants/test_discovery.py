"""Organizations discovered from the vendor's listing, through the real daemon, against the
ConfigCat emulator's ``GET /v1/organizations`` (forwarder/sources/tenants.py)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from forwarder.emulators.configcat import DEFAULT_PASSWORD, DEFAULT_USER
from tests.presets.support import preset_source
from tests.support.config import json_of
from tests.support.daemon import cli, daemon, file_sink_config, read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.waiting import wait_until

KEPT, EXCLUDED, LATER = (str(uuid.UUID(int=n)) for n in (0x1001, 0x2002, 0x3003))
DAY_S = 86_400


def source(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "configcat",
        "base_url": url,
        "username": DEFAULT_USER,
        "password": DEFAULT_PASSWORD,
        "organizations": {"discover": True, "exclude": [EXCLUDED], "refresh_s": 0.5},
        "interval_s": 1,
        "jitter_s": 0,
        "lag_s": 0,
        "max_attempts": 2,
        **extra,
    }


def delivered(tmp_path: Path) -> Counter[str]:
    return Counter(e["organization"] for e in read_ndjson(tmp_path / "out"))


def audit_paths(emulator: EmulatorProcess) -> list[str]:
    return [str(row[2]) for row in emulator.control("GET", "requests") if "/auditlogs" in str(row[2])]


def test_an_organization_added_to_the_vendor_is_collected_from_its_lookback_without_a_restart(
    tmp_path: Path,
) -> None:
    emulator = running("configcat")
    try:
        emulator.control("POST", "entries", {"generate": 5, "orgs": [KEPT, EXCLUDED], "span_s": 3 * DAY_S})
        cfg = file_sink_config(tmp_path, {"cc": source(emulator.url)})
        with daemon(cfg) as proc:
            wait_until("the listed organization's entries", lambda: delivered(tmp_path)[KEPT] == 5, detail=proc.log)
            # a new organization whose entries are 20 days old: read from its lookback (the retention, 35 days)
            emulator.control(
                "POST",
                "entries",
                {"generate": 7, "orgs": [LATER], "span_s": 10 * DAY_S, "end_ms": (time.time() - 10 * DAY_S) * 1000},
            )
            wait_until("the new organization's entries", lambda: delivered(tmp_path)[LATER] == 7, detail=proc.log)
            assert not proc.crashed(), proc.log()
        assert EXCLUDED not in delivered(tmp_path)
        assert not [path for path in audit_paths(emulator) if EXCLUDED in path]  # never even asked
    finally:
        emulator.stop()


def test_include_patterns_match_the_name_and_a_failed_listing_keeps_the_last_list(tmp_path: Path) -> None:
    emulator = running("configcat")
    try:
        # the emulator names organizations in order: Acme Inc., Globex Corporation, ...
        emulator.control("POST", "entries", {"generate": 3, "orgs": [KEPT, EXCLUDED], "span_s": DAY_S})
        organizations = {"discover": True, "include": ["Acme*"], "refresh_s": 0.5}
        cfg = file_sink_config(tmp_path, {"cc": source(emulator.url, organizations=organizations)})
        with daemon(cfg) as proc:
            wait_until("Acme's entries", lambda: delivered(tmp_path)[KEPT] == 3, detail=proc.log)
            emulator.control("POST", "faults", {"path_contains": "/v1/organizations", "status": 500, "count": 50})
            emulator.control("POST", "entries", {"generate": 2, "orgs": [KEPT], "span_s": 60})
            wait_until(
                "Acme's later entries, polled while the listing fails",
                lambda: delivered(tmp_path)[KEPT] == 5,
                detail=proc.log,
            )
            assert "organization listing failed" in proc.log()
            assert not proc.crashed(), proc.log()
        assert EXCLUDED not in delivered(tmp_path)
    finally:
        emulator.stop()


def test_operator_tools_read_the_listing_of_a_discovering_source(tmp_path: Path) -> None:
    """``preview`` (like ``backfill`` and ``cursor set``) picks organizations from the listing."""
    emulator = running("configcat")
    try:
        emulator.control("POST", "entries", {"generate": 2, "orgs": [KEPT, EXCLUDED], "span_s": DAY_S})
        cfg = file_sink_config(tmp_path, {"cc": source(emulator.url)})
        events = json_of(cfg, "preview", "--source", "cc", "--limit", "5")
        assert Counter(e["organization"] for e in events) == {KEPT: 2}
        refused = cli(cfg, "preview", "--source", "cc", "--org", EXCLUDED)
        assert refused.returncode != 0 and "not configured" in refused.stderr
    finally:
        emulator.stop()


def test_github_organizations_discovered_through_user_orgs_with_paging(tmp_path: Path) -> None:
    """The github preset with ``discover: {url: /user/orgs, id_field: login}`` over three listing pages."""
    github = running("github", entries=3, options={"orgs": ["octo-a", "octo-b", "octo-sandbox"], "span_s": DAY_S})
    try:
        organizations = {
            "discover": {"url": "/user/orgs", "id_field": "login", "params": {"per_page": 1}},
            "exclude": ["*-sandbox"],
            "refresh_s": 0.5,
        }
        cfg = file_sink_config(
            tmp_path, {"gh": preset_source("github", github.url, tmp_path, organizations=organizations)}
        )
        with daemon(cfg) as proc:
            wait_until(
                "both organizations' entries",
                lambda: delivered(tmp_path) == {"octo-a": 3, "octo-b": 3},
                detail=proc.log,
            )
            github.control("POST", "entries", {"generate": 2, "orgs": ["octo-c"], "span_s": DAY_S})
            wait_until("the new organization's entries", lambda: delivered(tmp_path)["octo-c"] == 2, detail=proc.log)
        assert not [row for row in github.control("GET", "requests") if "octo-sandbox/audit-log" in str(row[2])]
    finally:
        github.stop()


def test_an_organization_no_longer_listed_stops_being_polled_and_others_go_on(tmp_path: Path) -> None:
    emulator = running("configcat")
    try:
        emulator.control("POST", "entries", {"generate": 3, "orgs": [KEPT, LATER], "span_s": DAY_S})
        organizations = {"discover": True, "refresh_s": 0.5}
        cfg = file_sink_config(tmp_path, {"cc": source(emulator.url, organizations=organizations)})
        with daemon(cfg) as proc:
            both = {KEPT: 3, LATER: 3}
            wait_until("both organizations' entries", lambda: delivered(tmp_path) == both, detail=proc.log)
            emulator.control("POST", "config", {"unlisted": [LATER]})
            listings = len(listing_requests(emulator))
            read_again = lambda: len(listing_requests(emulator)) > listings + 1  # noqa: E731
            wait_until("the listing read again", read_again, detail=proc.log)
            asked = len(audit_paths(emulator))
            emulator.control("POST", "entries", {"generate": 2, "orgs": [KEPT, LATER], "span_s": 60})
            wait_until("the listed organization's new entries", lambda: delivered(tmp_path)[KEPT] == 5, detail=proc.log)
            assert not proc.crashed(), proc.log()
        assert delivered(tmp_path)[LATER] == 3
        assert not [path for path in audit_paths(emulator)[asked:] if LATER in path]
    finally:
        emulator.stop()


def listing_requests(emulator: EmulatorProcess) -> list[str]:
    return [str(row[2]) for row in emulator.control("GET", "requests") if str(row[2]).endswith("/v1/organizations")]
