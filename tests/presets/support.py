"""What the preset tests share: a source configuration for each preset pointing at its emulator
(over real loopback HTTP), and the id each emulator entry must arrive under."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from forwarder.emulators.github import GitHubEmulator
from forwarder.emulators.google_workspace import ADMIN, GoogleWorkspaceEmulator
from forwarder.emulators.okta import OktaEmulator

PRESETS = ("okta", "github", "google_workspace")
FAST: dict[str, Any] = {
    "initial_lookback_days": 3,
    "lag_s": 0,
    "overlap_s": 600,
    "interval_s": 1,
    "jitter_s": 0,
    "max_attempts": 4,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.5,
    "timeout_s": 10,
}
ORGS = {"okta": ["acme"], "github": ["octo-org"], "google_workspace": ["login", "admin"]}
KEYS = {
    "okta": OktaEmulator().entry_key,
    "github": GitHubEmulator().entry_key,
    "google_workspace": GoogleWorkspaceEmulator().entry_key,
}


def service_account_file(url: str, directory: Path) -> Path:
    """The key file the Google emulator's service account would have, as downloaded."""
    key = httpx.get(f"{url}/_emulator/service_account", timeout=10).json()
    path = directory / "service-account.json"
    path.write_bytes(orjson.dumps(key))
    path.chmod(0o600)
    return path


def preset_source(name: str, url: str, directory: Path, **overrides: Any) -> dict[str, Any]:
    """``type: <name>`` plus only what an operator must give (where, who, credentials), the
    URL pointed at the emulator; everything else comes from the preset."""
    if name == "okta":
        config: dict[str, Any] = {"url": f"{url}/{{organization}}/api/v1/logs", "auth": {"token": "okta-test-token"}}
    elif name == "github":
        config = {"url": f"{url}/orgs/{{organization}}/audit-log", "auth": {"token": "github-test-token"}}
    else:
        config = {
            "url": f"{url}/admin/reports/v1/activity/users/all/applications/{{organization}}",
            "auth": {"service_account_file": str(service_account_file(url, directory)), "subject": ADMIN},
        }
    return {"type": name, "organizations": ORGS[name], **config, **FAST, **overrides}


def expected_keys(name: str, entries: list[dict[str, Any]]) -> set[str]:
    return {KEYS[name](entry) for entry in entries}
