"""Presets: YAML only, one line to select, overridable key by key, golden mappings, auth methods.

The emulators run in their own processes on 127.0.0.1 (``tests.support.emulators.running``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from forwarder.emulators.google_workspace import GoogleWorkspaceEmulator
from forwarder.event import NormalizedEvent
from forwarder.formats.ocsf import ocsf_event
from forwarder.settings import ConfigError, load_settings
from forwarder.sources import SOURCES, presets
from forwarder.sources.http import SourceError
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from forwarder.sources.window import walk_keys
from tests.presets.support import ORGS, PRESETS, expected_keys, preset_source
from tests.support.daemon import write_config
from tests.support.emulators import EmulatorProcess, running

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OCSF_CLASSES = {
    "okta": {3001, 3002, 3004, 3005, 3006},
    "github": {3004, 3005, 3006, 6003},
    "google_workspace": {3002, 3004, 3006, 6003},
}


def preset(name: str, config: dict[str, Any]) -> HttpJsonConfig:
    model, _ = SOURCES[name]
    return cast(HttpJsonConfig, model.model_validate(config))


def source(name: str, config: dict[str, Any]) -> HttpJsonSource:
    return HttpJsonSource(name, preset(name, config))


async def drain(src: HttpJsonSource) -> list[tuple[Any, str]]:
    got: list[tuple[Any, str]] = []
    try:
        for org in src.organizations():
            async for page in src.pages(org, None):
                got.extend(page.entries)
    finally:
        await src.close()
    return got


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorProcess]:
    name = request.param
    started = running(name, entries=40, options={"span_s": 2 * 86400, "orgs": ORGS[name]})
    yield started
    started.stop()


# --- YAML only, one line, key by key -------------------------------------------------------
def test_every_preset_is_a_packaged_yaml_file_of_http_json_settings() -> None:
    found = sorted(path.stem for path in presets.PRESET_DIR.glob("*.yaml"))
    assert found == sorted(PRESETS)
    for name in PRESETS:
        model, factory = SOURCES[name]
        assert factory is HttpJsonSource  # the engine, configured: no vendor code
        assert issubclass(model, presets.PresetConfig)


def test_the_packaged_files_are_read_by_libyaml_with_the_pure_python_loaders_result() -> None:
    """libyaml's loader reads the presets in a tenth of the CPU (docs/performance.md, round 10);
    what it gives must be exactly what ``yaml.safe_load`` gives."""
    assert presets.LOADER is yaml.CSafeLoader  # libyaml is there (PyYAML's wheels carry it)
    for path in sorted(presets.PRESET_DIR.glob("*.yaml")):
        assert presets.load(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path.name


def test_one_line_selects_a_preset_and_settings_override_it_key_by_key(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {
                "okta": {
                    "type": "okta",
                    "organizations": ["acme.okta.com"],
                    "auth": {"token": "t0k"},
                    "params": {"limit": 200, "sortOrder": None},
                    "mapping": {"category": {"const": "authentication"}},
                }
            },
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        },
    )
    okta = cast(HttpJsonConfig, load_settings(cfg).sources["okta"])
    assert str(okta.type) == "okta"
    assert okta.params == {"limit": 200}  # merged; null took sortOrder back out
    assert okta.auth.type == "header" and okta.auth.scheme == "SSWS" and okta.auth.token is not None
    spec = okta.mapping["category"]
    assert spec.const == "authentication" and spec.map is None  # one mapping field is replaced whole
    assert okta.mapping["action"].path == "eventType"
    assert okta.retention_days == 90 and okta.rate_limit.early_limit == 10


def test_a_preset_setting_that_does_not_exist_is_named(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {"gh": {"type": "github", "organizations": ["o"], "auth": {"token": "t"}, "per_page": 100}},
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        },
    )
    with pytest.raises(ConfigError, match="per_page"):
        load_settings(cfg)


def test_a_misspelt_preset_key_or_name_gets_the_closest_one(tmp_path: Path) -> None:
    """The keys a preset takes are http_json's, nested ones (auth) included."""
    okta = {"type": "okta", "organisations": ["acme.okta.com"], "auth": {"tokn": "t"}}
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {"okta": okta, "gh": {"type": "githb", "organizations": ["o"]}},
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        },
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    problems = "\n".join(info.value.problems)
    assert "sources.okta.organisations: unknown key (did you mean 'organizations'?" in problems
    assert "sources.okta.auth.tokn: unknown key (did you mean 'token'?" in problems
    assert "sources.gh.type: unknown type 'githb' (did you mean 'github'?)" in problems


def test_google_without_the_admin_to_act_as_is_refused_when_the_configuration_loads(tmp_path: Path) -> None:
    """Google's Reports API answers only for an administrator the service account impersonates
    (domain-wide delegation): without auth.subject every request was refused at the first poll,
    with a 403 blamed on the token's role. The preset's ``auth.subject_required`` says so when it loads."""
    key = tmp_path / "key.json"
    key.write_text(json.dumps(GoogleWorkspaceEmulator().key_file("https://oauth2.googleapis.com")))
    key.chmod(0o600)
    gw = {"type": "google_workspace", "organizations": ["login"], "auth": {"service_account_file": str(key)}}
    data = {
        "state_dir": str(tmp_path / "state"),
        "sources": {"gw": gw},
        "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
    }
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path / "c.yaml", data))
    assert info.value.problems == [
        "line 7: sources.gw.auth: auth type jwt_bearer needs subject here: the email of the user the service account "
        "acts as (domain-wide delegation), an administrator allowed to read the audit log; without it the vendor "
        "refuses every request"
    ]
    gw["auth"] = {"service_account_file": str(key), "subject": "admin@example.com"}
    settings = load_settings(write_config(tmp_path / "c.yaml", data))
    assert cast(HttpJsonConfig, settings.sources["gw"]).auth.subject == "admin@example.com"


@pytest.mark.parametrize("given", ["https://acme.okta.com", "acme.okta.com/", "admin@acme.okta.com"])
def test_an_okta_domain_written_as_a_url_is_refused_with_the_host_to_write(given: str) -> None:
    """The Okta preset puts each organization in the URL's host: "https://acme.okta.com" made
    https://https://acme.okta.com/..., which failed only at the first poll, as host "https"."""
    with pytest.raises(ValueError, match=re.escape("write the host name alone, e.g. 'acme.okta.com'")):
        preset("okta", {"type": "okta", "organizations": ["ok.okta.com", given], "auth": {"token": "t"}})
    assert preset("okta", {"type": "okta", "organizations": ["acme.okta.com:8443"], "auth": {"token": "t"}})
    # in the path, an organization may hold a slash (the placeholder is no host there)
    assert preset(
        "okta",
        {"type": "okta", "organizations": ["a/b"], "url": "https://x.test/{organization}/logs", "auth": {"token": "t"}},
    )


def test_a_union_key_gets_one_line_naming_the_key_as_written(tmp_path: Path) -> None:
    """organizations is a list or a mapping: pydantic reported a text there once per member,
    and a mistake inside the mapping under a class name the file never wrote
    (organizations.Organizations.discover), beside "should be a valid list"."""
    sources = {
        "okta": {"type": "okta", "organizations": "acme.okta.com", "auth": {"token": "t"}},
        "gh": {"type": "github", "organizations": {"discover": {"urll": "/user/orgs"}}, "auth": {"token": "t"}},
    }
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": sources,
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        },
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert sorted(info.value.problems) == [  # the file is written with its keys sorted
        "line 11: sources.gh.organizations.discover.urll: unknown key (did you mean 'url'?; check the spelling "
        "against docs/configuration.md)",
        "line 16: sources.okta.organizations: got 'acme.okta.com'; Input should be a valid list or a valid "
        "dictionary or instance of Organizations",
    ]


def test_a_fourth_preset_is_one_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(presets.PRESET_DIR / "okta.yaml", tmp_path / "acme_idp.yaml")
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    found = presets.discover()
    assert list(found) == ["acme_idp"]
    config = found["acme_idp"].model_validate(
        {"type": "acme_idp", "organizations": ["x.example"], "auth": {"token": "t"}}
    )
    assert str(config.type) == "acme_idp" and config.id_field == "uuid"


# --- golden mappings -------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_golden_mapping_and_ocsf_class(name: str) -> None:
    raw = json.loads((FIXTURES / name / "raw.json").read_text())
    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    config = preset(name, {"type": name, "organizations": ["acme"], "auth": {"type": "bearer", "token": "t"}})
    src = HttpJsonSource(name, config)
    keys = walk_keys(raw, config.vendor, "acme", config.id_field, f"{config.vendor}:")
    observed = datetime(2026, 3, 1, tzinfo=UTC)
    got = []
    for entry, key in zip(raw, keys, strict=True):
        event = src.normalize("acme", entry, key, observed)
        NormalizedEvent.model_validate(event)
        got.append({"event": event, "ocsf_class_uid": ocsf_event(event)["class_uid"]})
    asyncio.run(src.close())
    assert got == expected
    assert len({g["event"]["id"] for g in got}) == len(got)
    # each event family lands in its OCSF class: sign-ins, account changes, access grants, groups
    assert {g["ocsf_class_uid"] for g in got} == OCSF_CLASSES[name]


# --- each preset against its emulator ------------------------------------------------------
@pytest.mark.parametrize("emulator", PRESETS, indirect=True)
def test_preset_reads_everything_its_emulator_holds(
    emulator: EmulatorProcess, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.params["emulator"]
    got = asyncio.run(drain(source(name, preset_source(name, emulator.url, tmp_path))))
    assert {key for _, key in got} == expected_keys(name, emulator.entries())
    assert len(got) == len(emulator.entries())


def test_okta_takes_an_oauth_access_token_as_bearer_and_names_a_refused_token(tmp_path: Path) -> None:
    okta = running("okta", entries=5)
    try:
        ok = preset_source("okta", okta.url, tmp_path, auth={"token": "okta-test-token", "scheme": "Bearer"})
        assert len(asyncio.run(drain(source("okta", ok)))) == 5
        bad = preset_source("okta", okta.url, tmp_path, auth={"token": "wrong-secret-value"})
        with pytest.raises(SourceError) as caught:
            asyncio.run(drain(source("okta", bad)))
        assert "401" in str(caught.value) and "wrong-secret-value" not in str(caught.value)
        assert str(caught.value).endswith("(vendor says: E0000011: Invalid token provided)")  # errorCode: errorSummary
    finally:
        okta.stop()


def test_google_error_object_is_quoted_by_its_message(tmp_path: Path) -> None:
    """Google answers {"error": {"code", "message", "status", "errors"}}: its message is what an
    operator needs, not the object's repr cut at 200 characters."""
    google = running("google_workspace", entries=1)
    try:
        config = preset_source("google_workspace", google.url, tmp_path, organizations=["logins"])
        with pytest.raises(SourceError) as caught:
            asyncio.run(drain(source("google_workspace", config)))
        assert "400 Bad Request for organization 'logins'" in str(caught.value)
        assert "(vendor says: INVALID_ARGUMENT: Invalid value 'logins'. Values must match" in str(caught.value)
        assert "'code'" not in str(caught.value)
    finally:
        google.stop()


def test_google_service_account_token_is_exchanged_refreshed_and_refusals_are_clear(tmp_path: Path) -> None:
    google = running("google_workspace", entries=10, options={"span_s": 86400, "orgs": ORGS["google_workspace"]})
    try:
        config = preset_source("google_workspace", google.url, tmp_path)
        assert len(asyncio.run(drain(source("google_workspace", config)))) == 20  # login and admin

        async def expiring() -> int:
            src = source("google_workspace", config)
            count = 0
            async for page in src.pages("login", None):
                count += len(page.entries)
            google.control("POST", "config", {"expire_tokens": True})  # revoked mid-way: a 401 next
            async for page in src.pages("admin", None):
                count += len(page.entries)
            await src.close()
            return count

        assert asyncio.run(expiring()) == 20
        not_admin = preset_source("google_workspace", google.url, tmp_path)
        not_admin["auth"] = {**not_admin["auth"], "subject": "someone@example.com"}
        with pytest.raises(SourceError) as caught:
            asyncio.run(drain(source("google_workspace", not_admin)))
        message = str(caught.value)
        assert "unauthorized_client" in message and "subject" in message
        assert "PRIVATE KEY" not in message and "eyJ" not in message  # neither the key nor the assertion
    finally:
        google.stop()


# --- Link headers as RFC 8288 writes them -------------------------------------------------------
def test_next_link_is_read_as_rfc_8288_writes_it() -> None:
    from forwarder.sources.pagination import next_link

    assert next_link('<https://a.test/l?fields=a,b&after=2>; rel="next"') == "https://a.test/l?fields=a,b&after=2"
    # Okta sends self and next as two Link headers, which arrive joined by a comma
    assert next_link('<https://a.test/l?x=1>; rel="self", <https://a.test/l?after=2>; rel="next"') == (
        "https://a.test/l?after=2"
    )
    assert next_link('<https://a.test/l;v=1?after=2>; title="a, b; rel=next"; rel="prev next"') == (
        "https://a.test/l;v=1?after=2"
    )
    assert next_link("<https://a.test/n>; REL=NEXT") == "https://a.test/n"
    assert next_link('<https://a.test/p>; rel="nextish"') is None
    assert next_link('<https://a.test/p>; rel="self"') is None
    assert next_link(None) is None


def test_a_next_link_with_a_comma_and_its_own_link_header_is_followed(tmp_path: Path) -> None:
    """Okta writes self and next as separate Link headers; a next URL may hold a comma (RFC 3986
    allows it unescaped). Split on commas, the link was lost: the walk ended after one page."""
    from tests.support.raw_http import raw_http_server

    now = datetime.now(UTC)
    entries = [
        {"uuid": f"u{i}", "published": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"), "eventType": "x"}
        for i in range(2)
    ]
    answers, base = [0], [""]

    async def answer(writer: asyncio.StreamWriter) -> None:
        answers[0] += 1
        body = json.dumps([entries[answers[0] - 1]] if answers[0] <= 2 else []).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n".encode()
        head += f'Link: <{base[0]}/acme/api/v1/logs?limit=1>; rel="self"\r\n'.encode()
        if answers[0] == 1:
            head += f'Link: <{base[0]}/acme/api/v1/logs?filter=a,b&after=one>; rel="next"\r\n'.encode()
        writer.write(head + b"\r\n" + body)
        await writer.drain()

    async def run() -> list[tuple[Any, str]]:
        async with raw_http_server(answer) as url:
            base[0] = url
            cfg = {
                "type": "okta",
                "organizations": ["acme"],
                "url": f"{url}/{{organization}}/api/v1/logs",
                "auth": {"token": "okta-test-token"},
                "slice_hours": 24 * 7,
                "initial_lookback_days": 1,
                "lag_s": 0,
                "max_attempts": 1,
            }
            return await drain(source("okta", cfg))

    got = asyncio.run(run())
    assert sorted(key for _, key in got) == ["okta:u0", "okta:u1"]
