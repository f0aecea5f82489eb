"""Credentials per organization (``credentials: {org: {...}}``, forwarder/sources/tenants.py):
through the real daemon against the Okta emulator, whose orgs each accept their own token."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from forwarder.secrets import collect_secrets
from forwarder.sources import SOURCES
from tests.presets.support import preset_source
from tests.support.daemon import daemon, file_sink_config, read_ndjson
from tests.support.emulators import running
from tests.support.waiting import wait_until

OWN_TOKEN = "globex-own-token-7f3a"


def test_an_organization_with_its_own_token_is_read_with_it_and_the_token_never_logged(tmp_path: Path) -> None:
    okta = running(
        "okta",
        entries=4,
        options={"orgs": ["acme", "globex"], "span_s": 86400, "config": {"org_tokens": {"globex": OWN_TOKEN}}},
    )
    try:
        source = preset_source(
            "okta",
            okta.url,
            tmp_path,
            organizations=["acme", "globex"],
            credentials={"globex": {"auth": {"token": OWN_TOKEN}}},
        )
        cfg = file_sink_config(tmp_path, {"okta": source})
        with daemon(cfg) as proc:
            wait_until(
                "both organizations' entries",
                lambda: Counter(e["organization"] for e in read_ndjson(tmp_path / "out")) == {"acme": 4, "globex": 4},
                detail=proc.log,
            )
            assert not proc.crashed(), proc.log()
            assert 401 not in [int(row[3]) for row in okta.control("GET", "requests")]
            # a refused request's message must not carry it either: make one fail and read the log
            okta.control("POST", "config", {"org_tokens": {"globex": "rotated"}})
            wait_until("globex refused", lambda: "Invalid token" in proc.log() or "401" in proc.log(), detail=proc.log)
            assert OWN_TOKEN not in proc.log()
    finally:
        okta.stop()


def test_per_organization_settings_are_validated_and_their_secrets_registered() -> None:
    model = SOURCES["okta"][0]
    base = {"type": "okta", "organizations": ["a", "b"], "auth": {"token": "shared"}}
    config = model.model_validate({**base, "credentials": {"b": {"auth": {"token": "own"}}}})
    assert collect_secrets(config) == {"shared", "own"}  # so the log redaction knows both
    with pytest.raises(ValueError, match="cannot differ per organization"):
        model.model_validate({**base, "credentials": {"b": {"url": "https://elsewhere.example/{organization}"}}})
