"""Configuration: YAML, ${VAR}, *_file secrets, environment overrides, and errors with exit code 2."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.settings import ConfigError, load_settings
from tests.support.daemon import cli

GOOD = """
state_dir: {state}
sources:
  codacy:
    type: codacy
    api_token: ${{CODACY_TOKEN}}
    organizations: [gh/acme]
sinks:
  out:
    type: file
    path: {state}/out.ndjson
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_interpolation_env_override_and_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODACY_TOKEN", "from-env-var")
    settings = load_settings(write(tmp_path, GOOD.format(state=tmp_path)))
    assert settings.sources["codacy"].api_token.get_secret_value() == "from-env-var"  # type: ignore[attr-defined]
    assert "from-env-var" not in repr(settings)

    monkeypatch.setenv("AUDIT_FORWARDER_SOURCES__CODACY__INTERVAL_S", "42")
    monkeypatch.setenv("AUDIT_FORWARDER_JOURNAL__MAX_EVENTS", "7")
    settings = load_settings(write(tmp_path, GOOD.format(state=tmp_path)))
    assert settings.sources["codacy"].interval_s == 42
    assert settings.journal.max_events == 7

    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    text = GOOD.format(state=tmp_path).replace("api_token: ${CODACY_TOKEN}", f"api_token_file: {secret}")
    settings = load_settings(write(tmp_path, text))
    assert settings.sources["codacy"].api_token.get_secret_value() == "from-a-file"  # type: ignore[attr-defined]


def test_credentials_directory_is_used_for_relative_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "codacy_token").write_text("systemd-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    text = GOOD.format(state=tmp_path).replace("api_token: ${CODACY_TOKEN}", "api_token_file: codacy_token")
    settings = load_settings(write(tmp_path, text))
    assert settings.sources["codacy"].api_token.get_secret_value() == "systemd-credential"  # type: ignore[attr-defined]
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")  # from a shell, outside the service
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert "is read from $CREDENTIALS_DIRECTORY, set only inside the systemd service" in info.value.problems[0]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("organizations: [gh/acme]", "organizations: [xx/acme]"), "sources.codacy.organizations: got ['xx/acme']"),
        (
            ("type: codacy", "type: codacyy"),
            "sources.codacy.type: unknown type 'codacyy' (did you mean 'codacy'?); expected one of",
        ),
        (("type: codacy", "type: xyz"), "sources.codacy.type: unknown type 'xyz'; expected one of"),
        (("type: file", "type: file\n    rotate_max_bytes: lots"), "sinks.out.rotate_max_bytes: got 'lots'"),
        (("    path: ", "    paht: "), "sinks.out.paht: unknown key (did you mean 'path'?; check the spelling"),
        (("    path: ", "    qqqq: "), "sinks.out.qqqq: unknown key (check the spelling"),
        (("organizations:", "organisations:"), "codacy.organisations: unknown key (did you mean 'organizations'?"),
        (("state_dir:", "stat_dir:"), "stat_dir: unknown key (did you mean 'state_dir'?"),
        (("api_token: ${CODACY_TOKEN}", "api_token: ${NOT_SET_ANYWHERE}"), "environment variable NOT_SET_ANYWHERE"),
        (("sources:", "sources: [1"), "is not valid YAML at line"),
        (("type: codacy", 'type: codacy\n    base_url: "https://[::1"'), "base_url: got 'https://[::1'; not a"),
        (("type: codacy", "type: codacy\n    base_url: codacy.example.com/api"), "must be an http:// or https:// URL"),
    ],
)
def test_bad_config_names_the_path_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], expected: str
) -> None:
    monkeypatch.setenv("CODACY_TOKEN", "super-secret-token-value")
    path = write(tmp_path, GOOD.format(state=tmp_path).replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(expected in problem for problem in info.value.problems), info.value.problems
    result = cli(path, "check")
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "super-secret-token-value" not in result.stderr + result.stdout


def test_each_problem_names_the_line_of_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key as the file writes it and its line; a missing key the line of its mapping; a
    setting the file does not hold (a default) no line."""
    monkeypatch.setenv("CODACY_TOKEN", "super-secret-token-value")
    text = GOOD.format(state=tmp_path).replace("    path: ", "    paht: ").replace("type: codacy", "type: codacyy")
    lines = text.splitlines()
    paht = next(n for n, line in enumerate(lines, 1) if "paht:" in line)
    kind = next(n for n, line in enumerate(lines, 1) if "type: codacyy" in line)
    sink = next(n for n, line in enumerate(lines, 1) if line.strip() == "out:")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    problems = info.value.problems
    assert any(p.startswith(f"line {paht}: sinks.out.paht: unknown key") for p in problems), problems
    assert any(p.startswith(f"line {kind}: sources.codacy.type: unknown type 'codacyy'") for p in problems), problems
    assert any(p.startswith(f"line {sink}: sinks.out.path: required but missing") for p in problems), problems


HEC = """
  hec:
    type: splunk_hec
    url: http://127.0.0.1:9
    token: ${CODACY_TOKEN}
"""


@pytest.mark.parametrize(
    ("edit", "expected"),
    [  # errors about a whole block carry the block as their input, secrets and all
        (HEC + "    format: nosuchformat\n", "sinks.hec: unknown format 'nosuchformat'"),
        (HEC + "    redact: [{field: actor.email, action: hmac}]\n", "sinks.hec: redact rules with action hmac need"),
        (HEC.replace("token: ${CODACY_TOKEN}", "token_file: {secret}"), "sinks.hec: token holds a line break"),
    ],
)
def test_errors_about_a_block_never_show_its_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str, expected: str
) -> None:
    monkeypatch.setenv("CODACY_TOKEN", "super-secret-token-value")
    secret = tmp_path / "token"
    secret.write_text("super-secret\ntoken-value\n")  # two lines: one too many for an HTTP header
    path = write(tmp_path, GOOD.format(state=tmp_path) + edit.replace("{secret}", str(secret)))
    result = cli(path, "check")
    assert result.returncode == 2
    assert expected in result.stderr, result.stderr
    assert "super-secret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"state_dir: /tmp\n\xff\xfe: x\n", "is not UTF-8 text"), (b"1: 2\n", "named by text")],
)
def test_a_config_file_that_is_not_text_or_not_named_settings_exits_2(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    result = cli(path, "check")
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("sinks", "expected"),
    [
        (
            "  lake:\n    type: s3\n    bucket: audit-lake\n    format: ocsf\n"
            "  copy:\n    type: s3\n    bucket: audit-lake\n",
            "sinks lake and copy both write S3 objects",
        ),
        (
            "  again:\n    type: file\n    path: {state}/out.ndjson\n    format: csv\n",
            "sinks out and again both write files",
        ),
    ],
)
def test_two_sinks_writing_the_same_place_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sinks: str, expected: str
) -> None:
    """S3 keys name only the events: the second sink would take the first one's objects for its
    own earlier attempts and store nothing; two file sinks would rotate one file under each other."""
    monkeypatch.setenv("CODACY_TOKEN", "codacy-test-token")
    path = write(tmp_path, GOOD.format(state=tmp_path) + sinks.format(state=tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = cli(tmp_path / "nope.yaml", "run")
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("check",), "FAIL source codacy: sources.codacy: cannot be built: UnicodeEncodeError"),
        (("preview", "--source", "codacy"), "error: source 'codacy' cannot be built: UnicodeEncodeError"),
    ],
)
def test_a_token_httpx_cannot_send_is_named_not_a_traceback(
    tmp_path: Path, command: tuple[str, ...], expected: str
) -> None:
    result = cli(write(tmp_path, GOOD.format(state=tmp_path)), *command, env={"CODACY_TOKEN": "t\u00f6ken"})
    assert result.returncode == 1
    assert expected in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_a_state_dir_that_cannot_be_written_is_named_by_check_and_by_once(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write(tmp_path, GOOD.format(state=blocker / "state"))
    env = {"CODACY_TOKEN": "codacy-test-token"}
    check = cli(path, "check", env=env)
    assert check.returncode == 1 and f"FAIL state dir: state_dir {blocker / 'state'}: cannot create" in check.stdout
    once = cli(path, "once", env=env)
    assert once.returncode == 1 and f"error: cannot write state_dir {blocker / 'state'}" in once.stderr
    assert "Traceback" not in check.stderr + once.stderr


def test_check_reports_each_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.emulators import running

    emulator = running("codacy", entries=1, options={"orgs": ["gh/acme"]})
    try:
        text = GOOD.format(state=tmp_path).replace(
            "    organizations: [gh/acme]",
            f"    organizations: [gh/acme, gh/nobody]\n    base_url: {emulator.url}/api/v3\n    max_attempts: 1",
        )
        result = cli(write(tmp_path, text), "check", env={"CODACY_TOKEN": "codacy-test-token"})
    finally:
        emulator.stop()
    assert result.returncode == 1
    assert "FAIL source codacy: Codacy answered 404" in result.stdout
    assert "ok   sink out: sinks.out.path: created and removed a file in" in result.stdout


def test_schema_command_prints_json_schema(tmp_path: Path) -> None:
    result = cli(tmp_path / "unused.yaml", "schema")
    assert result.returncode == 0
    schema = orjson.loads(result.stdout)
    assert schema["properties"]["schema_version"]["const"] == "1.0"
    assert {"id", "time", "actor", "raw", "outcome"} <= set(schema["required"])


def test_shipped_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODACY_API_TOKEN", "x" * 20)
    root = Path(__file__).resolve().parents[2]
    for path in (root / "config" / "example.yaml", root / "forwarder" / "demo.yaml"):
        monkeypatch.setenv("DEMO_OUTPUT", "/tmp/demo")
        settings = load_settings(path)
        assert settings.sources and settings.sinks


@pytest.mark.parametrize("value", ["nan", "-5", "0", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(tmp_path: Path, value: str) -> None:
    result = cli(tmp_path / "unused.yaml", "once", "--timeout", value)
    assert result.returncode == 2 and "Invalid value for '--timeout'" in result.stderr


async def test_check_probes_every_component_at_once_with_one_retry(tmp_path: Path) -> None:
    """One after the other with the full retry policy, unreachable vendors added up to minutes."""
    from forwarder.checks import CHECK_ATTEMPTS, run_checks
    from tests.support.raw_http import raw_http_server

    requests = waiting = most_waiting = 0
    both = asyncio.Event()

    async def unavailable(writer: Any) -> None:
        """Holds each answer until the other source's request is in too (or 5 s): probes one after
        the other would never have two waiting at once."""
        nonlocal requests, waiting, most_waiting
        requests += 1
        waiting += 1
        most_waiting = max(most_waiting, waiting)
        if waiting >= 2:
            both.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both.wait(), 5)
        waiting -= 1
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with raw_http_server(unavailable) as url:
        sources = "".join(
            f"  {name}:\n    type: codacy\n    api_token: t\n    organizations: [gh/acme]\n"
            f"    base_url: {url}/api/v3\n    max_attempts: 6\n    backoff_initial_s: 0.01\n"
            for name in ("b", "a")
        )
        path = write(
            tmp_path,
            f"state_dir: {tmp_path}\nsources:\n{sources}sinks:\n  out:\n    type: file\n"
            f"    path: {tmp_path}/out.ndjson\n",
        )
        lines: list[str] = []
        assert not await run_checks(load_settings(path), lines.append)
    heads = [line.split(":")[0] for line in lines]  # in configuration order, whatever finished first
    assert heads == ["ok   state dir", "FAIL source b", "FAIL source a", "ok   sink out"], lines
    assert requests == 2 * CHECK_ATTEMPTS
    assert most_waiting == 2


def test_two_write_probes_of_one_directory_at_once_leave_each_other_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check`` probes the state and the sinks at once: a file sink writing beside the state
    probed the same directory under the same file name, and the first probe to finish removed
    the other's file ("FAIL state dir", now and then). The second probe runs here between the
    first one's create and remove."""
    from forwarder import checks

    real_close = os.close
    interleaved: list[bool] = []

    def close(fd: int) -> None:
        real_close(fd)
        if not interleaved:
            interleaved.append(True)
            interleaved.append(checks._try_directory(tmp_path))

    monkeypatch.setattr(os, "close", close)
    assert checks._try_directory(tmp_path) is False
    monkeypatch.undo()
    assert interleaved == [True, False] and list(tmp_path.iterdir()) == []
