"""What a vendor or a receiver wrote reaches the operator's terminal only as text: through the
real CLI, against a loopback API whose records and errors carry rich markup (``[/]``,
``[link=...]``), escape sequences and an echo of a header's secret value."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.journal import SqliteJournal
from tests.support.daemon import cli, write_config

pytestmark = pytest.mark.integration

HEADER_SECRET = "hdr-SECRET-5b1e0c9a77"  # in an http_json source's headers:, not in auth:
HOSTILE = (
    "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07 \x1b[2J\x1b[31mred\x1b[0m \x9b31m [/] [link=http://x]y[/link]"
)
WIDE = {"COLUMNS": "400"}  # rich wraps table cells to the terminal's width; keep each on one line


def vendor_api(now_ms: int) -> Iterator[str]:
    records = [
        {
            "id": "[/]",
            "ts": now_ms - 60_000,
            "user": {"email": "[link=http://x]mallory[/link]"},
            "action": "login\x1b[2J\x1b]0;pwned\x07",
            "ok": True,
        }
    ]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/bad"):  # a refusal whose message echoes the request's header
                status, body = 400, {"message": f"{HOSTILE} header was {self.headers.get('X-Tenant-Key')}"}
            else:
                status, body = 200, {"items": records}
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api() -> Iterator[str]:
    yield from vendor_api(int(time.time() * 1000))


def source(url: str, path: str) -> dict[str, Any]:
    return {
        "type": "http_json",
        "vendor": "acme",
        "url": f"{url}/{path}/{{organization}}",
        "organizations": ["[/]acme"],
        "records_path": "items",
        "id_field": "id",
        "time_field": "ts",
        "time_format": "epoch_ms",
        "initial_lookback_days": 1,
        "lag_s": 0,
        "max_attempts": 1,
        "headers": {"X-Tenant-Key": HEADER_SECRET},
        "mapping": {
            "action": "action",
            "actor.email": "user.email",
            "category": {"const": "authentication"},
            "outcome": {"const": "success"},
        },
    }


def config(tmp_path: Path, url: str, path: str = "ok", **extra: Any) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "retry": {"initial_backoff_s": 0.01, "max_backoff_s": 0.02, "max_attempts": 1},
            "sources": {"hj": source(url, path)},
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out" / "x.ndjson"), "batch_max_age_s": 0.05}},
            **extra,
        },
    )


def assert_inert(text: str) -> None:
    """No escape and no other control character but line feeds and the tabs that separate the
    columns of a table printed off a terminal (values themselves hold none)."""
    assert not any((c < " " and c not in "\n\t") or "\x7f" <= c <= "\x9f" for c in text), repr(text)


def test_preview_shows_markup_and_escapes_as_plain_text(tmp_path: Path, api: str) -> None:
    result = cli(config(tmp_path, api), "preview", "--source", "hj", env=WIDE)
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout)
    assert "[link=http://x]mallory[/link]" in result.stdout and "[/]acme" in result.stdout
    assert "login]0;pwned" not in result.stdout and "login" in result.stdout


def test_dlq_list_and_state_show_take_an_event_id_of_closing_markup(tmp_path: Path, api: str) -> None:
    cfg = config(tmp_path, api)
    (tmp_path / "out").write_text("a file where the sink needs a directory: every batch is dead-lettered")
    assert cli(cfg, "once").returncode == 1
    [letter] = orjson.loads(cli(cfg, "dlq", "list", "--output", "json").stdout)
    assert letter["event_id"] == "acme:[/]"

    async def add_hostile_reason() -> None:  # as a receiver's echo was stored before reasons were scrubbed
        journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3", migrate=False)
        await journal.open()
        try:
            [stored] = await journal.dead_letters()
            await journal.commit("out", 0, [(stored.record, f"receiver said {HOSTILE} to {HEADER_SECRET}")])
        finally:
            await journal.close()

    asyncio.run(add_hostile_reason())
    table = cli(cfg, "dlq", "list", env=WIDE)
    assert table.returncode == 0, table.stderr
    assert_inert(table.stdout)
    assert "acme:[/]" in table.stdout and "click" in table.stdout and "[link=http://x]y[/link]" in table.stdout
    assert HEADER_SECRET not in table.stdout
    listed = cli(cfg, "dlq", "list", "--output", "json").stdout
    assert HEADER_SECRET not in listed, listed
    assert all(d["reason"].isprintable() for d in orjson.loads(listed))  # events stay as sent: JSON escapes them
    state = cli(cfg, "state", "show", env=WIDE)
    assert state.returncode == 0, state.stderr
    assert "[/]acme" in state.stdout


def test_check_prints_a_vendor_error_without_its_escapes_or_the_header_secret(tmp_path: Path, api: str) -> None:
    result = cli(config(tmp_path, api, path="bad"), "check")
    assert result.returncode == 1
    assert_inert(result.stdout)
    line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL source hj"))
    assert "click" in line and "red" in line and "[/] [link=http://x]y[/link]" in line
    assert "header was ***" in line
    for output in (result.stdout, result.stderr):
        assert HEADER_SECRET not in output
        assert "\x1b" not in output
