"""The operator's experience of the real ``audit-forwarder`` command (issue 25): ``check`` tries
what it claims, ``once`` keeps to its timeout and ends with a summary, tables stay whole off a
terminal, read-only commands need no secret, ``--config`` goes after the subcommand too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import read_ndjson
from tests.support.emulators import EmulatorProcess
from tests.support.ports import free_port

AUDIT_FORWARDER = str(Path(sys.executable).parent / "audit-forwarder")


def af(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed console script, stdout and stderr piped (not a terminal)."""
    return subprocess.run(
        [AUDIT_FORWARDER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    return free_port()


def edit(cfg: Path, change: dict[str, Any]) -> Path:
    data = yaml.safe_load(cfg.read_text())
    for key, value in change.items():
        data[key] = value
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def hec(port: int) -> dict[str, Any]:
    return {
        "type": "splunk_hec",
        "url": f"http://127.0.0.1:{port}",
        "token": "00000000-0000-0000-0000-000000000000",
        "batch_max_age_s": 0.05,
        "timeout_s": 2,
    }


def test_check_creates_what_it_claims_and_names_the_setting(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url, state_dir=str(tmp_path / "new" / "state"))
    data = yaml.safe_load(cfg.read_text())
    data["sinks"]["proc"] = {"type": "file", "path": "/proc/af-out/{organization}.ndjson"}
    data["sinks"]["siem"] = {
        "type": "syslog",
        "host": "127.0.0.1",
        "port": closed_port(),
        "transport": "tls",
        "ca_file": str(tmp_path / "missing-ca.pem"),
    }
    cfg.write_text(yaml.safe_dump(data))

    result = af("-c", str(cfg), "check")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split(":", 1)[0]: line for line in result.stdout.splitlines()}
    assert "does not exist yet; created it" in lines["ok   state dir"]
    assert not (tmp_path / "new").exists()  # the probe left nothing behind
    assert lines["ok   sink out"].startswith(f"ok   sink out: sinks.out.path: created {tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
    proc = lines["FAIL sink proc"]
    assert "sinks.proc.path" in proc and "cannot create directory /proc/af-out: No such file or directory" in proc
    siem = lines["FAIL sink siem"]
    assert f"sinks.siem.ca_file {tmp_path / 'missing-ca.pem'}: No such file or directory" in siem


def test_check_of_a_configuration_that_does_nothing_says_so(tmp_path: Path) -> None:
    """Valid and empty: "ok" alone let an operator believe something would be collected."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\n")
    result = af("-c", str(cfg), "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARN sources: none configured; nothing will be collected (see config/example.yaml)" in result.stdout
    assert "WARN sinks: none configured; what is collected goes nowhere (see config/example.yaml)" in result.stdout


def test_a_missing_configuration_file_says_how_to_name_one(tmp_path: Path) -> None:
    result = af("-c", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 2
    assert (
        f"cannot read config file {tmp_path / 'config.yaml'}: No such file or directory (name yours with -c FILE or "
        "AUDIT_FORWARDER_CONFIG; config/example.yaml shows every setting)"
    ) in result.stderr


def test_once_stops_a_sink_whose_directory_cannot_be_created(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url, sinks=("out", "proc"))
    data = yaml.safe_load(cfg.read_text())
    data["sinks"]["proc"]["path"] = "/proc/af-out/{organization}.ndjson"
    cfg.write_text(yaml.safe_dump(data))

    result = af("-c", str(cfg), "once", "--timeout", "60", "--output", "json", timeout=100)
    assert result.returncode == 1
    summary = orjson.loads(result.stdout)
    sinks = {s["sink"]: s for s in summary["sinks"]}
    assert not summary["timed_out"]  # stopped at once, not retried until the timeout
    assert sinks["out"]["delivered"] == 40 and sinks["out"]["pending"] == 0
    assert sinks["proc"]["state"] == "stopped" and sinks["proc"]["pending"] == 40
    error = sinks["proc"]["error"]
    assert "sinks.proc.path" in error and "cannot create directory /proc/af-out: No such file" in error
    stopped = [line for line in result.stderr.splitlines() if "sink stopped" in line]
    assert len(stopped) == 1 and "cannot create directory /proc/af-out" in stopped[0]
    assert "retrying" not in result.stderr
    assert len(read_ndjson(tmp_path / "out")) == 40


def test_once_timeout_bounds_the_whole_run(tmp_path: Path, codacy: EmulatorProcess) -> None:
    """A receiver that never confirms: the old ``once`` waited --timeout after polling, then
    shutdown_timeout_s on top (here 300 s, past the subprocess guard)."""
    cfg = make_config(tmp_path, codacy.url, sinks=(), shutdown_timeout_s=300)
    edit(cfg, {"sinks": {"splunk": hec(closed_port())}})

    result = af("-c", str(cfg), "once", "--timeout", "5", "--output", "json", timeout=90)
    assert result.returncode == 1
    summary = orjson.loads(result.stdout)
    assert summary["timed_out"] is True and summary["ok"] is False and summary["timeout_s"] == 5
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = " ".join(readme.split()).split("one JSON document for scripts (", 1)[1].split(")", 1)[0]
    assert set(summary) == set(re.findall(r"`(\w+)`", documented))  # README's list, exactly
    assert summary["sinks"] == [
        {
            "sink": "splunk",
            "state": summary["sinks"][0]["state"],
            "delivered": 0,
            "pending": 40,
            "dead_lettered": 0,
            "filtered": 0,
            "error": summary["sinks"][0]["error"],
        }
    ]
    assert "HEC unreachable" in summary["sinks"][0]["error"]
    assert {(s["organization"], s["events"], s["failures"]) for s in summary["sources"]} == {
        ("gh/acme", 20, 0),
        ("gl/globex", 20, 0),
    }

    table = af("-c", str(cfg), "once", "--timeout", "3", timeout=90)  # the same as a table, off a terminal
    assert table.returncode == 1
    assert "splunk\tretrying\t0\t40\t0\t" in table.stdout
    assert "once: FAILED (the --timeout of 3 s ended the run)" in table.stdout


def test_once_summarizes_a_failed_poll_without_promising_a_next_cycle(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, f"http://127.0.0.1:{closed_port()}", source={"max_attempts": 1})
    result = af("-c", str(cfg), "once", "--output", "json")
    assert result.returncode == 1
    assert "poll failed" in result.stderr and "next cycle" not in result.stderr
    summary = orjson.loads(result.stdout)
    assert not summary["ok"] and not summary["timed_out"]
    for org in summary["sources"]:
        assert org["state"] == "failed" and org["failures"] == 1 and org["events"] == 0
        assert "could not be reached" in org["error"]

    ok = af("-c", str(make_config(tmp_path, codacy.url)), "once")
    assert ok.returncode == 0, ok.stderr
    rows = [line.split("\t") for line in ok.stdout.splitlines()]
    assert ["codacy", "gh/acme", "ok", "20"] == rows[2][:4] and ["out", "running", "40", "0", "0", "-"] in rows
    assert ok.stdout.splitlines()[-1].startswith("once: ok")


def test_tables_off_a_terminal_keep_every_value_whole(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(
        tmp_path, codacy.url, sinks=("out",), retry={"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "max_attempts": 1}
    )
    edit(cfg, {"sinks": {"splunk_receiver_that_is_down": hec(closed_port())}})
    once = af("-c", str(cfg), "once")
    assert once.returncode == 1  # dead letters
    # dead-lettered because nothing answered: never logged as rejected by the receiver
    assert "rejected by the receiver" not in once.stderr and "not confirmed after every attempt" in once.stderr

    for args, key in (
        (("state", "show"), "cursors"),
        (("dlq", "list"), None),
        (("preview", "--source", "codacy", "--limit", "3"), None),
    ):
        piped = af("-c", str(cfg), *args)
        assert piped.returncode == 0, piped.stderr
        as_json = orjson.loads(af("-c", str(cfg), *args, "--output", "json").stdout)
        rows = as_json[key] if key else as_json
        lines = piped.stdout.splitlines()
        assert "…" not in piped.stdout
        for row in rows:
            if args[0] == "dlq":
                wanted = [
                    str(row["id"]),
                    row["sink"],
                    row["time"],
                    row["source"],
                    row["organization"],
                    row["event_id"],
                    row["reason"],
                    row["dead_lettered_at"],
                ]
            elif args[0] == "preview":
                wanted = [row["time"], row["organization"]]
            else:
                wanted = [row["source"], row["organization"], row["watermark"]]
            assert sum(line.split("\t")[: len(wanted)] == wanted for line in lines) == 1, (wanted, piped.stdout)
    letters = orjson.loads(af("-c", str(cfg), "dlq", "list", "--output", "json").stdout)
    assert len(letters) == 40 and all("HEC unreachable" in d["reason"] for d in letters)


def test_read_only_commands_need_no_secret(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url, source={"api_token": "${AF_TEST_CODACY_TOKEN}"})
    env = {"AF_TEST_CODACY_TOKEN": "codacy-test-token"}
    assert af("-c", str(cfg), "once", env=env).returncode == 0

    shown = af("-c", str(cfg), "state", "show", "--output", "json")
    assert shown.returncode == 0, shown.stderr
    assert len(orjson.loads(shown.stdout)["cursors"]) == 2
    assert af("-c", str(cfg), "dlq", "list").returncode == 0
    for command in (("once",), ("check",), ("run",)):  # those that talk to the vendor still refuse
        refused = af("-c", str(cfg), *command)
        assert refused.returncode == 2
        assert "sources.codacy.api_token: environment variable AF_TEST_CODACY_TOKEN is not set" in refused.stderr

    # a placeholder is for secrets only: an unset variable elsewhere is still refused
    edit(cfg, {"state_dir": "${AF_TEST_STATE_DIR}"})
    elsewhere = af("-c", str(cfg), "state", "show")
    assert elsewhere.returncode == 2 and "state_dir: environment variable AF_TEST_STATE_DIR" in elsewhere.stderr
    assert "AF_TEST_CODACY_TOKEN" not in elsewhere.stderr


def test_config_is_accepted_after_the_subcommand(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    for args in (
        ("once", "--config", str(cfg)),
        ("state", "show", "-c", str(cfg), "--output", "json"),
        ("dlq", "list", "--config", str(cfg)),
        ("check", "-c", str(cfg)),
    ):
        result = af(*args)
        assert result.returncode == 0, (args, result.stderr)
    wrong = af("-c", str(tmp_path / "missing.yaml"), "state", "show", "--config", str(cfg))
    assert wrong.returncode == 0, wrong.stderr  # the one nearest the end wins
    assert "-c, --config" in af("run", "--help").stdout
