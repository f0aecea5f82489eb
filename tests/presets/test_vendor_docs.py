"""The presets held to what each vendor documents, black box: the real ``audit-forwarder``
process, a file sink, the vendor emulators over loopback.

* Google's ``events[]``: one activity may hold several events (``activities.list`` with an
  ``eventName`` "returns all activities which contain that eventName"); each is an event of its
  own, under the activity's id (the second and later with ``|<position>``).
* Okta answers a spent limit 429 with its three ``X-Rate-Limit-*`` headers only (Okta's "Rate
  limit best practices"); no ``Retry-After``: the forwarder waits for ``X-Rate-Limit-Reset``.
* Every preset walked to the end in pages of two, across restarts with the cursor persisted,
  new and late entries in between: each delivered once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.presets.support import PRESETS, expected_keys, preset_source
from tests.presets.test_presets_daemon import late_entry
from tests.support.daemon import cli, daemon, delivered_ids, file_sink_config, once_ok, read_ndjson
from tests.support.emulators import running
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ms / 1000))


def test_google_activity_with_several_events_gives_one_event_each(tmp_path: Path) -> None:
    google = running("google_workspace", entries=0)
    try:
        when = _iso(int(time.time() * 1000) - 600_000)
        activity: dict[str, Any] = {
            "id": {"time": when, "uniqueQualifier": "4242", "applicationName": "admin", "customerId": "C01"},
            "actor": {"email": "root@example.com", "callerType": "USER", "profileId": "1"},
            "events": [
                {"type": "USER_SETTINGS", "name": "CREATE_USER", "parameters": [{"name": "USER_EMAIL"}]},
                {"type": "GROUP_SETTINGS", "name": "ADD_GROUP_MEMBER", "parameters": [{"name": "GROUP_EMAIL"}]},
                {"type": "DELEGATED_ADMIN_SETTINGS", "name": "GRANT_ADMIN_PRIVILEGE"},
            ],
        }
        single = {
            "id": {"time": when, "uniqueQualifier": "77", "applicationName": "admin"},
            "actor": {"email": "root@example.com", "callerType": "USER"},
            "events": [{"type": "USER_SETTINGS", "name": "SUSPEND_USER"}],
        }
        google.control("POST", "entries", [activity, single])
        source = preset_source("google_workspace", google.url, tmp_path, organizations=["admin"])
        cfg = file_sink_config(tmp_path, {"google": source})
        once_ok(cfg)
        events = {e["id"]: e for e in read_ndjson(tmp_path / "out")}
        base = f"google_workspace:{when}|4242|admin"
        assert set(events) == {base, f"{base}|1", f"{base}|2", f"google_workspace:{when}|77|admin"}
        assert [events[k]["action"] for k in (base, f"{base}|1", f"{base}|2")] == [
            "CREATE_USER",
            "ADD_GROUP_MEMBER",
            "GRANT_ADMIN_PRIVILEGE",
        ]
        assert [events[k]["category"] for k in (base, f"{base}|1", f"{base}|2")] == [
            "user_management",
            "access_management",
            "access_management",
        ]
        assert events[f"{base}|1"]["activity"] == "add_member"
        # the position is in the event itself, so its id is recomputed from it (docs/schema.md)
        assert [events[k]["details"]["split_index"] for k in (base, f"{base}|1", f"{base}|2")] == [0, 1, 2]
        assert "split_index" not in events[f"google_workspace:{when}|77|admin"]["details"]
        # each keeps the activity's shape (Google's schema) with its one event
        assert events[f"{base}|2"]["raw"]["events"] == [activity["events"][2]]
        assert events[f"{base}|2"]["actor"]["email"] == "root@example.com"

        once_ok(cfg)  # the overlap re-reads the activity: nothing comes twice
        assert max(delivered_ids(tmp_path).values()) == 1 and len(delivered_ids(tmp_path)) == 4
    finally:
        google.stop()


def test_okta_429_with_only_its_rate_limit_headers_waits_for_the_reset(tmp_path: Path) -> None:
    """Okta's limit is the org's, spent by every client: here two credentials (two orgs with a
    token each) share the emulator's bucket, so the count one answer stated is spent by the
    other and 429s come. Okta's 429 states the reset in ``X-Rate-Limit-Reset`` and nothing
    else; the walk waits for it and goes on."""
    okta = running(
        "okta",
        entries=8,
        options={
            "orgs": ["acme", "globex"],
            "span_s": 86400,
            "config": {"rate_limit": 3, "rate_window_s": 2, "org_tokens": {"globex": "globex-own-token"}},
        },
    )
    try:
        source = preset_source(
            "okta",
            okta.url,
            tmp_path,
            organizations=["acme", "globex"],
            credentials={"globex": {"auth": {"token": "globex-own-token"}}},
            params={"limit": 2},
            slice_hours=24,
            rate_limit={"early_limit": 0},
        )
        once_ok(file_sink_config(tmp_path, {"okta": source}))
        assert set(delivered_ids(tmp_path)) == expected_keys("okta", okta.entries())
        refused = [row for row in okta.control("GET", "requests") if int(row[3]) == 429]
        assert refused, "the limit was never reached: the test proves nothing"
    finally:
        okta.stop()


def _small_pages(name: str) -> dict[str, Any]:
    return {
        "okta": {"params": {"limit": 2}},
        "github": {"params": {"per_page": 2}},
        "google_workspace": {"params": {"maxResults": 2}},
    }[name]


@pytest.mark.parametrize("name", PRESETS)
def test_pages_of_two_across_restarts_deliver_each_entry_once(name: str, tmp_path: Path) -> None:
    orgs = {"okta": ["acme"], "github": ["octo-org"], "google_workspace": ["login"]}[name]
    emulator = running(name, entries=9, options={"span_s": 86400, "orgs": orgs})
    try:
        source = preset_source(name, emulator.url, tmp_path, organizations=orgs, **_small_pages(name))
        cfg = file_sink_config(tmp_path, {name: source})
        once_ok(cfg)
        assert set(delivered_ids(tmp_path)) == expected_keys(name, emulator.entries())
        # a late one (behind the cursor, published only now) and a fresh one, then a restart
        now = int(time.time() * 1000)
        late = late_entry(name, now - 300_000)  # within the overlap (FAST: 600 s)
        emulator.control("POST", "entries", [late])
        once_ok(cfg)
        once_ok(cfg)
        delivered = delivered_ids(tmp_path)
        assert set(delivered) == expected_keys(name, emulator.entries())
        assert max(delivered.values()) == 1, "an entry was delivered twice"
    finally:
        emulator.stop()


REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # the emulator's switch, the source's settings, what the operator must read
    "okta": (
        {"config": {"forbidden_orgs": ["acme"]}},
        {},
        "(vendor says: E0000006: You do not have permission to perform the requested action)",
    ),
    "github": (
        {"config": {"forbidden_orgs": ["octo-org"]}},
        {},
        "(vendor says: Must have admin rights to Repository.; see https://docs.github.com/rest/orgs/orgs#get-the-",
    ),
    "google_workspace": (
        {},
        {"organizations": ["logins"]},
        "(vendor says: INVALID_ARGUMENT: Invalid value 'logins'.",
    ),
}


@pytest.mark.parametrize("name", PRESETS)
def test_a_refusal_shows_the_vendors_code_message_and_link(name: str, tmp_path: Path) -> None:
    """Okta's ``errorCode`` + ``errorSummary``, Google's ``error.status`` + ``error.message``,
    GitHub's ``message`` + ``documentation_url``: what the vendor's documentation and support
    look an error up by, in the daemon's own log."""
    options, settings, said = REFUSALS[name]
    emulator = running(name, entries=2, options=options)
    try:
        cfg = file_sink_config(tmp_path, {name: preset_source(name, emulator.url, tmp_path, **settings)})
        result = cli(cfg, "once")
        assert result.returncode != 0
        assert said in result.stderr, result.stderr[-2000:]
    finally:
        emulator.stop()


def test_okta_event_with_several_targets_keeps_them_all(tmp_path: Path) -> None:
    """Okta's ``target[]`` names every entity acted on: a user added to a group is two targets.
    ``target`` is the first; ``details.targets`` holds them all, so the group is not lost."""
    okta = running("okta", entries=0)
    try:
        targets = [
            {"id": "00u1", "type": "User", "alternateId": "new@example.com", "displayName": "New Person"},
            {"id": "00g1", "type": "UserGroup", "alternateId": "unknown", "displayName": "Admins"},
        ]
        entry = {
            "uuid": "2b0c6b0e-0000-4000-8000-00000000000a",
            "published": _iso(int(time.time() * 1000) - 120_000),
            "eventType": "group.user_membership.add",
            "actor": {"id": "00u0", "type": "User", "alternateId": "admin@example.com"},
            "outcome": {"result": "SUCCESS"},
            "target": targets,
            "_org": "acme",
        }
        okta.control("POST", "entries", [entry])
        once_ok(file_sink_config(tmp_path, {"okta": preset_source("okta", okta.url, tmp_path)}))
        [event] = read_ndjson(tmp_path / "out")
        assert event["target"]["name"] == "New Person" and event["activity"] == "add_member"
        assert event["details"]["targets"] == targets
    finally:
        okta.stop()


def test_google_run_stopped_and_started_again_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """``audit-forwarder run``, stopped as systemd stops it and started again: activities come
    newest first in pages of two (each slice held to its end), one arrives late with several
    events (within the overlap; Google documents hours of lag for some applications), and each
    event is delivered once."""
    google = running("google_workspace", entries=7, options={"span_s": 86400, "orgs": ["login"]})
    try:
        source = preset_source("google_workspace", google.url, tmp_path, organizations=["login"])
        source["params"] = {"maxResults": 2}
        cfg = file_sink_config(tmp_path, {"google": source})
        want = expected_keys("google_workspace", google.entries())
        with daemon(cfg) as first:
            wait_until("the first run's events", lambda: set(delivered_ids(tmp_path)) == want, detail=first.log)
            assert first.stop() == 0
        when = _iso(int(time.time() * 1000) - 400_000)
        late = {
            "id": {"time": when, "uniqueQualifier": "9001", "applicationName": "login"},
            "actor": {"email": "late@example.com", "callerType": "USER"},
            "events": [{"type": "login", "name": "login_challenge"}, {"type": "login", "name": "login_success"}],
        }
        google.control("POST", "entries", [late])
        base = f"google_workspace:{when}|9001|login"
        with daemon(cfg) as second:
            wait_until(
                "the late activity's two events",
                lambda: {base, f"{base}|1"} <= set(delivered_ids(tmp_path)),
                detail=second.log,
            )
            assert second.stop() == 0
        delivered = delivered_ids(tmp_path)
        assert set(delivered) == want | {base, f"{base}|1"}
        assert max(delivered.values()) == 1, "an event was delivered twice"
    finally:
        google.stop()
