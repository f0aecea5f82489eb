"""Each preset end to end: its emulator, the real ``audit-forwarder`` process, a file sink.

The configuration gives one line of type, where the emulator is and the credentials; the rest
is the preset. A second run after a late arrival (an entry whose time is already behind the
cursor, published meanwhile) must deliver it, and nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.presets.support import ORGS, PRESETS, expected_keys, preset_source
from tests.support.daemon import delivered_ids, file_sink_config, once_ok, read_ndjson
from tests.support.emulators import EmulatorProcess, running

pytestmark = pytest.mark.integration


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ms / 1000))


def late_entry(name: str, ms: int) -> dict[str, Any]:
    """An entry of ``name``'s shape that happened at ``ms``."""
    return LATE[name](ms)


LATE: dict[str, Callable[[int], dict[str, Any]]] = {
    "okta": lambda ms: {
        "uuid": "late-0000-4000-8000-000000000001",
        "eventType": "user.session.start",
        "published": _iso(ms),
        "actor": {"id": "00u1", "type": "User", "alternateId": "late@example.com"},
        "outcome": {"result": "SUCCESS"},
        "_org": "acme",
    },
    "github": lambda ms: {
        "_document_id": "late-document-0001",
        "@timestamp": ms,
        "action": "org.add_member",
        "actor": "late",
        "user": "newcomer",
        "_org": "octo-org",
    },
    "google_workspace": lambda ms: {
        "id": {"time": _iso(ms), "uniqueQualifier": "777", "applicationName": "login"},
        "actor": {"email": "late@example.com", "callerType": "USER"},
        "events": [{"type": "login", "name": "login_success"}],
    },
}


@pytest.fixture(params=PRESETS)
def preset(request: pytest.FixtureRequest) -> Iterator[tuple[str, EmulatorProcess]]:
    emulator = running(request.param, entries=25, options={"span_s": 2 * 86400, "orgs": ORGS[request.param]})
    yield request.param, emulator
    emulator.stop()


def test_preset_end_to_end_through_the_daemon_with_a_late_arrival(
    preset: tuple[str, EmulatorProcess], tmp_path: Path
) -> None:
    name, emulator = preset
    cfg = file_sink_config(tmp_path, {name: preset_source(name, emulator.url, tmp_path)})
    log = once_ok(cfg)
    # the service account's key, its assertion and the access token never reach the log
    assert "PRIVATE KEY" not in log and "ya29." not in log and "eyJ" not in log
    want = expected_keys(name, emulator.entries())
    assert set(delivered_ids(tmp_path)) == want

    # an entry that happened five minutes ago, behind the cursor, shows up only now
    late = late_entry(name, int(time.time() * 1000) - 300_000)
    emulator.control("POST", "entries", [late])
    once_ok(cfg)
    delivered = delivered_ids(tmp_path)
    assert set(delivered) == expected_keys(name, emulator.entries()) and len(want) + 1 == len(delivered)
    assert max(delivered.values()) == 1, "an entry was delivered twice"
    events = read_ndjson(tmp_path / "out")
    assert {e["vendor"] for e in events} == {name}
    assert all(e["category"] != "unknown" for e in events), "the preset's mapping classifies every emulated event"
