"""`preview` through the real CLI: normalized events out, no state in or out."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from forwarder.event import content_id
from tests.support.config import codacy_files_config as make_config
from tests.support.config import json_of
from tests.support.daemon import cli
from tests.support.emulators import EmulatorProcess
from tests.support.vendors import ORGS


def snapshot(tmp_path: Path, cfg: Path) -> tuple[object, dict[str, bytes]]:
    state = json_of(cfg, "state", "show")
    for row in state["cursors"] + state["sinks"]:
        row.pop("lag_s")  # moves with the clock, not with the state
    files = {str(p): p.read_bytes() for p in sorted((tmp_path / "out").rglob("*"))}
    return state, files


def test_preview_prints_normalized_events_and_touches_nothing(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    events = json_of(cfg, "preview", "--source", "codacy", "--limit", "3")
    assert not (tmp_path / "state").exists(), "preview must not create the state"
    assert len(events) == 6 and {e["organization"] for e in events} == set(ORGS)
    known = {content_id("codacy", e.pop("_org"), e) for e in codacy.entries()}
    assert {e["id"] for e in events} <= known
    assert all(e["vendor"] == "codacy" and e["source"] == "codacy" and e["action"] for e in events)

    assert cli(cfg, "once").returncode == 0
    before = snapshot(tmp_path, cfg)
    csv = cli(cfg, "preview", "--source", "codacy", "--org", "gh/acme", "--limit", "2", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("time,id,") and len(lines) == 3 and ",gh/acme," in lines[1]
    table = cli(cfg, "preview", "--source", "codacy", "--limit", "1")
    assert table.returncode == 0 and "2 event(s)" in table.stdout
    assert snapshot(tmp_path, cfg) == before


def test_preview_rejects_unknown_source_and_organization(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    result = cli(cfg, "preview", "--source", "codacy", "--org", "gh/nope")
    assert result.returncode == 1 and "gh/nope not configured" in result.stderr
    result = cli(cfg, "preview", "--source", "other")
    assert result.returncode == 1 and "no source named 'other'" in result.stderr


class EchoingVendor(BaseHTTPRequestHandler):
    """A vendor whose refusal quotes the token it was sent (a proxy or a verbose API might)."""

    def do_GET(self) -> None:
        body = orjson.dumps({"message": f"token {self.headers.get('api-token')} is not valid"})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_preview_never_prints_a_token_the_vendor_echoes(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingVendor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = make_config(tmp_path, f"http://127.0.0.1:{server.server_port}")
        result = cli(cfg, "preview", "--source", "codacy", "--limit", "1")
    finally:
        server.shutdown()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "401" in result.stderr and "token *** is not valid" in result.stderr
    assert "codacy-test-token" not in result.stdout + result.stderr
