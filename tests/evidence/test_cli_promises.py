"""What README.md and docs/evidence.md promise of the evidence commands, run as an operator or
an auditor types them: the real command (``python -m forwarder``) over real files, the vendor
and the SIEM emulated on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from forwarder.event import format_ms
from tests.support.config import codacy_files_config
from tests.support.daemon import cli, write_config
from tests.support.emulators import running
from tests.support.ports import free_port
from tests.support.vendors import VENDORS

DAY_MS = 86_400_000


def command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def test_keys_generate_into_a_missing_directory_says_so_and_writes_nothing(tmp_path: Path) -> None:
    result = command(tmp_path, "keys", "generate", "--private", "keys/evidence.key", "--public", "evidence.pub")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "keys/evidence.key" in result.stderr and "does not exist" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_keys_generate_never_leaves_half_a_pair(tmp_path: Path) -> None:
    (tmp_path / "evidence.pub").write_text("an older public key\n")
    result = command(tmp_path, "keys", "generate", "--private", "evidence.key", "--public", "evidence.pub")
    assert result.returncode == 1 and "evidence.pub exists already" in result.stderr
    assert not (tmp_path / "evidence.key").exists()  # no private key whose public half is lost
    assert (tmp_path / "evidence.pub").read_text() == "an older public key\n"
    (tmp_path / "evidence.pub").unlink()
    made = command(tmp_path, "keys", "generate", "--private", "evidence.key", "--public", "evidence.pub")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "evidence.key").stat().st_mode & 0o777 == 0o600


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``once`` from the Codacy emulator into a file sink that signs digests."""
    base = tmp_path_factory.mktemp("promises")
    assert command(base, "keys", "generate", "--private", "evidence.key", "--public", "evidence.pub").returncode == 0
    emulator = running("codacy", entries=6, options=VENDORS["codacy"].options)
    try:
        config = codacy_files_config(base, emulator.url, metrics={"enabled": False})
        cfg = _yaml(config)
        cfg["sinks"]["out"]["evidence"] = {"signing_key_file": str(base / "evidence.key")}
        write_config(config, cfg)
        result = cli(config, "once", timeout=180)
        assert result.returncode == 0, result.stderr
    finally:
        emulator.stop()
    return base


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_report_output_json_prints_json_as_every_inspection_command(collected: Path) -> None:
    period = ("--from", format_ms(int(time.time() * 1000) - 8 * DAY_MS), "--to", format_ms(int(time.time() * 1000)))
    result = command(collected, "-c", "config.yaml", "report", *period, "--output", "json")
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert sorted(s["organization"] for s in data["streams"]) == ["gh/acme", "gl/globex"]
    assert [s["sink"] for s in data["sinks"]] == ["out"]
    assert not (collected / "json").exists()
    html = command(collected, "-c", "config.yaml", "report", *period, "--output", "html")
    assert html.stdout.startswith("<!DOCTYPE html>") and not (collected / "html").exists()


def test_a_run_with_nothing_to_deliver_still_writes_its_digest(collected: Path) -> None:
    """A digest is due every interval "even when nothing was written": the sink that signs them
    is started with its worker, not at its first batch, so an idle run still vouches for itself."""
    digests = collected / "out" / "_digests"
    before = sorted(p.name for p in digests.iterdir())
    idle = cli(collected / "config.yaml", "once", timeout=180)  # the emulator is gone: nothing new
    after = sorted(p.name for p in digests.iterdir())
    assert len(after) == len(before) + 1, (before, after, idle.stderr)
    verified = command(collected, "verify", "files", "out", "--public-key", "evidence.pub")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 digest(s) on the chain" in verified.stdout


def test_a_replayed_dead_letter_counts_as_delivered_for_reconcile_and_report(tmp_path: Path) -> None:
    vendor = running("codacy", entries=5, options=VENDORS["codacy"].options)
    try:
        unreachable = f"http://127.0.0.1:{free_port()}"
        config = codacy_files_config(
            tmp_path,
            vendor.url,
            metrics={"enabled": False},
            retry={"max_attempts": 2, "initial_backoff_s": 0.05, "max_backoff_s": 0.1},
        )
        cfg = _yaml(config)
        cfg["sinks"]["siem"] = {"type": "splunk_hec", "url": unreachable, "token": "hec-test-token"}
        write_config(config, cfg)
        down = cli(config, "once", timeout=180)  # the HEC is down: dead letters
        assert down.returncode == 1
        assert "10 event(s) were dead-lettered: `dlq list` gives the reasons" in down.stdout
        listed = orjson.loads(cli(config, "dlq", "list", "--output", "json").stdout)
        assert len(listed) == 10 and {d["sink"] for d in listed} == {"siem"}
        now = int(time.time() * 1000)
        period = ("--from", format_ms(now - 8 * DAY_MS), "--to", format_ms(now + DAY_MS))
        before = cli(config, "reconcile", "--source", "codacy", *period, "--output", "json")
        assert before.returncode == 1
        kinds = {f["kind"] for s in orjson.loads(before.stdout)["streams"] for f in s["findings"]}
        assert kinds == {"dead_lettered"}

        hec = running("splunk_hec")
        try:
            cfg["sinks"]["siem"]["url"] = hec.url
            write_config(config, cfg)
            replay = cli(config, "dlq", "replay", "--sink", "siem")
            assert replay.returncode == 0 and "10 of 10" in replay.stdout + replay.stderr, replay.stderr
        finally:
            hec.stop()
        after = cli(config, "reconcile", "--source", "codacy", *period, "--output", "json")
        assert after.returncode == 0, after.stdout
        report = orjson.loads(cli(config, "report", *period, "--format", "json").stdout)
        for stream in report["streams"]:
            assert stream["delivered"]["siem"] == {
                "confirmed": 5,
                "dead_lettered": 0,
                "not_confirmed": 0,
                "not_sent": 0,
            }
    finally:
        vendor.stop()


def test_every_command_has_an_example_in_its_help() -> None:
    """README: "Every command has `--help` with an example" (a group lists its subcommands)."""
    import click

    from forwarder.cli import main

    def leaves(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
        found: list[tuple[str, click.Command]] = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += leaves(command, f"{path} {name}")
            else:
                found.append((f"{path} {name}", command))
        return found

    commands = leaves(main, "audit-forwarder")
    assert {"audit-forwarder verify files", "audit-forwarder verify events", "audit-forwarder keys generate"} <= {
        name for name, _ in commands
    }
    assert [name for name, command in commands if "Example" not in (command.help or "")] == []


def test_the_schema_declares_its_draft_and_a_real_event_validates(collected: Path) -> None:
    from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]

    result = command(collected, "schema")
    schema = orjson.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert validators.validator_for(schema) is Draft202012Validator
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    lines = (collected / "out" / "gh_acme.ndjson").read_bytes().splitlines()
    assert lines
    for line in lines:
        assert list(validator.iter_errors(orjson.loads(line))) == []


def test_a_signing_key_that_cannot_be_read_is_a_configuration_error_naming_its_setting(collected: Path) -> None:
    cfg = _yaml(collected / "config.yaml")
    cfg["sinks"]["out"]["evidence"]["signing_key_file"] = str(collected / "no-such.key")
    config = write_config(collected / "no-key.yaml", cfg)
    for args in (("once",), ("check",)):
        result = cli(config, *args)
        assert result.returncode != 0, args
        said = result.stdout + result.stderr
        assert "sinks.out" in said and "evidence.signing_key_file" in said and "no-such.key" in said, said
    assert cli(config, "once").returncode == 2  # a configuration error (README)
