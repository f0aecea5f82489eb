"""Values that came from the environment never appear in a config error, whatever their key is
called; an ``http_json`` source's ``headers:`` values are secrets; ``check`` and start-up warn
about plain HTTP to another machine and about HEC without certificate checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from forwarder.delivery import SinkWorker
from forwarder.journal import SqliteJournal
from forwarder.record import Record
from forwarder.redaction import register_secrets
from forwarder.retry import RetrySettings
from forwarder.secrets import collect_secrets
from forwarder.settings import ConfigError, load_settings
from sinks.base import DeliveryReport
from sinks.file_config import FileSinkConfig
from tests.support.daemon import cli, write_config

TOKEN = "env-token-3f9d1c0b"
HEADER = "hdr-value-8c2e7a41"


def http_json(**extra: Any) -> dict[str, Any]:
    return {
        "type": "http_json",
        "vendor": "acme",
        "url": "https://127.0.0.1:9/audit/{organization}",
        "organizations": ["a"],
        "time_field": "ts",
        "mapping": {"action": "action"},
        **extra,
    }


def config(tmp_path: Path, sources: dict[str, Any] | None = None, sinks: dict[str, Any] | None = None) -> Path:
    out = {"type": "file", "path": str(tmp_path / "out.ndjson")}
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": sources or {"hj": http_json()},
            "sinks": sinks or {"out": out},
        },
    )


@pytest.mark.parametrize(
    ("sources", "sinks", "env", "expected"),
    [
        ({"hj": http_json(auth="Bearer ${TOKEN}")}, None, {}, "hj.auth: got <the value of 'Bearer ${TOKEN}'>"),
        (
            None,
            {"out": {"type": "file", "path": "/tmp/x", "batch_max_events": "${TOKEN}"}},
            {},
            "sinks.out.batch_max_events: got <the value of '${TOKEN}'>",
        ),
        (
            None,
            {"out": {"type": "syslog", "host": "127.0.0.1", "sd_id": "${TOKEN}"}},
            {},
            "sd_id '<${TOKEN}>' must look like",
        ),
        (
            None,
            None,
            {"AUDIT_FORWARDER_SINKS__OUT__BATCH_MAX_EVENTS": TOKEN},
            "sinks.out.batch_max_events: got <a value from the environment>",
        ),
    ],
)
def test_a_config_error_never_echoes_a_value_from_the_environment(
    tmp_path: Path, sources: Any, sinks: Any, env: dict[str, str], expected: str
) -> None:
    result = cli(config(tmp_path, sources, sinks), "check", env={"TOKEN": TOKEN, **env})
    assert result.returncode == 2
    assert expected in result.stderr, result.stderr
    assert TOKEN not in result.stderr + result.stdout


def test_header_values_are_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(config(tmp_path, {"hj": http_json(headers={"X-Tenant": HEADER})}))
    assert HEADER not in repr(settings) and HEADER not in str(settings.sources["hj"])
    assert HEADER in collect_secrets(settings)  # so logs, check, /readyz and dlq scrub it
    monkeypatch.setenv("HDR", f"{HEADER}\nb")
    for headers, expected in [
        ({"X-Tenant": "${HDR}"}, "header 'X-Tenant' holds a line break"),
        ({"X-Other": [HEADER]}, "headers.X-Other: got ***"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_settings(config(tmp_path, {"hj": http_json(headers=headers)}))
        problems = "\n".join(info.value.problems)
        assert expected in problems and HEADER not in problems, problems


def test_check_warns_about_plain_http_and_hec_without_certificate_checks(tmp_path: Path) -> None:
    hec = {"type": "splunk_hec", "url": "https://splunk.invalid:8088", "token": TOKEN, "tls_verify": False}
    cfg = config(
        tmp_path,
        {
            "hj": http_json(url="http://audit.invalid/{organization}", max_attempts=1, timeout_s=2),
            "local": http_json(url="http://127.0.0.1:9/{organization}", max_attempts=1, timeout_s=2),
        },
        {"hec": hec, "plain": {**hec, "url": "http://splunk.invalid:8088", "tls_verify": True}},
    )
    result = cli(cfg, "check")
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert warnings == [
        "WARN source hj: url http://audit.invalid is plain HTTP to another machine: credentials and events cross "
        "the network unencrypted; use https://",
        "WARN sink hec: tls_verify: false: the server's certificate is not checked, so the HEC token goes to whoever "
        "answers for the host; give ca_file for a private CA instead",
        "WARN sink plain: url http://splunk.invalid is plain HTTP to another machine: credentials and events "
        "cross the network unencrypted; use https://",
    ], result.stdout
    logged = [line for line in result.stderr.splitlines() if "insecure transport" in line]
    assert len(logged) == 3 and TOKEN not in result.stderr + result.stdout


class Rejecting:
    async def start(self) -> None:
        return None

    async def send(self, batch: list[Record]) -> DeliveryReport:
        return DeliveryReport(rejected=[(r, f"receiver: bad token {TOKEN}\x1b[2J\x1b]0;x\x07 here") for r in batch])


async def test_dead_letter_reasons_are_stored_scrubbed(tmp_path: Path) -> None:
    register_secrets({TOKEN})
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
        worker = SinkWorker("s", Rejecting(), config, journal, RetrySettings())  # type: ignore[arg-type]
        with structlog.testing.capture_logs():
            await worker._deliver([Record(1, "e1", "src", "org", 0, b"{}", "codacy")], 1)
        [letter] = await journal.dead_letters()
    finally:
        await journal.close()
    assert letter.reason == "receiver: bad token *** here"


def test_a_plain_http_token_url_is_warned_about_like_the_source_url(tmp_path: Path) -> None:
    """``auth.token_url`` (jwt_bearer) is where the signed assertion goes and the access token
    comes back: nested in ``auth``, it is checked like a top-level URL."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    auth = {
        "type": "jwt_bearer",
        "client_email": "forwarder@example.com",
        "private_key": key.decode(),
        "token_url": "http://oauth.invalid/token",
        "scopes": ["audit.read"],
    }
    settings = load_settings(config(tmp_path, {"hj": http_json(auth=auth)}))
    assert settings.sources["hj"].transport_warnings() == [
        "auth.token_url http://oauth.invalid is plain HTTP to another machine: credentials and events cross "
        "the network unencrypted; use https://"
    ]


def _codacy_token(path: Path) -> str:
    source: Any = load_settings(path).sources["codacy"]
    return str(source.api_token.get_secret_value())


@pytest.mark.parametrize("yaml_form", ["inline", "file"])
def test_an_environment_override_of_any_form_of_a_secret_wins_over_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_form: str
) -> None:
    """docs/configuration.md: ``AUDIT_FORWARDER_`` + the key path overrides the YAML, and
    ``<field>_file`` is a key like any other: an override given as a file replaced nothing
    while the YAML had the value inline (the two forms merged, the inline one won)."""
    (tmp_path / "from-yaml").write_text("yaml-token\n")
    (tmp_path / "from-env").write_text("env-token\n")
    source: dict[str, Any] = {"type": "codacy", "organizations": ["gh/acme"]}
    source.update(
        {"api_token": "yaml-token"} if yaml_form == "inline" else {"api_token_file": str(tmp_path / "from-yaml")}
    )
    path = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state"), "sources": {"codacy": source}})
    monkeypatch.setenv("AUDIT_FORWARDER_SOURCES__CODACY__API_TOKEN_FILE", str(tmp_path / "from-env"))
    assert _codacy_token(path) == "env-token"
    monkeypatch.delenv("AUDIT_FORWARDER_SOURCES__CODACY__API_TOKEN_FILE")
    monkeypatch.setenv("AUDIT_FORWARDER_SOURCES__CODACY__API_TOKEN", "inline-env-token")
    assert _codacy_token(path) == "inline-env-token"


def test_a_secret_given_inline_and_as_a_file_in_the_same_file_is_refused(tmp_path: Path) -> None:
    """README's systemd steps replace `api_token: ${CODACY_API_TOKEN}` by `api_token_file:`; one
    who adds the second line and keeps the first got the inline token, silently, not the file's."""
    (tmp_path / "token").write_text("file-token\n")
    source = {
        "type": "codacy",
        "organizations": ["gh/acme"],
        "api_token": "inline-token",
        "api_token_file": str(tmp_path / "token"),
    }
    path = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state"), "sources": {"codacy": source}})
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any("give one of api_token and api_token_file" in p for p in info.value.problems), info.value.problems
    assert "inline-token" not in str(info.value.problems)


def test_an_override_that_is_not_json_is_a_configuration_error(tmp_path: Path) -> None:
    """A whole mapping in one variable must be JSON: anything else is exit 2 with one line, no
    traceback, and the value (which may be a secret) not shown."""
    path = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state")})
    result = cli(path, "check", env={"AUDIT_FORWARDER_SINKS": "{token: s3cr3t-not-json"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'field "sinks"' in result.stderr and "must hold JSON" in result.stderr
    assert "Traceback" not in result.stderr and "s3cr3t" not in result.stderr + result.stdout


def test_an_overriding_secret_reference_replaces_the_files_instead_of_merging_into_it() -> None:
    from forwarder.settings import _overridden_secret_forms_dropped

    file = {"sources": {"c": {"api_token_from": {"ssm": {"name": "/old", "region": "eu-west-1"}}, "type": "codacy"}}}
    env = {"sources": {"c": {"api_token_from": {"secretsmanager": {"secret_id": "new"}}}}}
    assert _overridden_secret_forms_dropped(file, env) == {"sources": {"c": {"type": "codacy"}}}
