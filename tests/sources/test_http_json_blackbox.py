"""``type: http_json`` tested from outside: three JSON audit APIs an operator might meet, none a
preset (``tests/support/audit_apis.py``), described in YAML as README.md and
docs/configuration.md say, served from loopback with hostile but valid pages, and read by the
real daemon (``once``, ``run`` with entries added, a restart): every entry exactly once, errors
that name the setting, no secret shown, one API's failure not stopping the others."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.audit_apis import AuditApi, Kind, source
from tests.support.config import files_per_source_config
from tests.support.daemon import cli, daemon, read_ndjson
from tests.support.waiting import wait_until


def delivered(tmp_path: Path) -> list[dict[str, Any]]:
    return read_ndjson(tmp_path / "out") if (tmp_path / "out").exists() else []


def assert_each_once(api: AuditApi, events: list[dict[str, Any]]) -> None:
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    got = Counter(api.time_of(e["raw"]) for e in events)
    want = Counter(e.ms for e in api.entries)
    assert got == want, f"missing {want - got}, extra {got - want}"


@pytest.fixture(params=["link", "cursor"])
def paged(request: pytest.FixtureRequest) -> Iterator[AuditApi]:
    kind: Kind = request.param
    server = AuditApi(kind)
    server.start()
    yield server
    server.stop()


def test_an_empty_page_with_a_next_link_does_not_end_the_walk(paged: AuditApi, tmp_path: Path) -> None:
    """A page may come empty with a link or cursor to more (a page boundary, filtered-out
    entries): ending the walk there moved the cursor past every entry after it, for good."""
    now = datetime.now(UTC)
    for hours in range(1, 20, 2):
        paged.add(now - timedelta(hours=hours, minutes=3), f"u{hours}")
    paged.hostile.empty_first = True
    result = cli(files_per_source_config(tmp_path, {"api": source(paged, slice_hours=24)}), "once")
    assert result.returncode == 0, result.stderr
    assert_each_once(paged, delivered(tmp_path))


def test_a_page_repeated_under_a_new_link_or_cursor_comes_once(paged: AuditApi, tmp_path: Path) -> None:
    """A last page that points on to itself under a new link or cursor (``after=0``, a fresh
    token for the same position): the URL differs, so only its content tells the repeat. Its
    entries older than the overlap were journaled again as new ones."""
    now = datetime.now(UTC)
    for hours in range(1, 30, 3):
        paged.add(now - timedelta(hours=hours, minutes=7), f"h{hours}")
    paged.hostile.repeat_last = True
    result = cli(files_per_source_config(tmp_path, {"api": source(paged, initial_lookback_days=2)}), "once")
    assert result.returncode == 0, result.stderr
    assert_each_once(paged, delivered(tmp_path))
    assert "sent the page just read again" in result.stdout + result.stderr


def test_a_misspelled_next_path_fails_naming_it_and_loses_nothing(tmp_path: Path) -> None:
    """has_more says another page follows, but next_path finds no cursor (a typo): the walk
    ended after its first page and the cursor moved past the rest, with ``once: ok``."""
    api = AuditApi("cursor")
    api.start()
    try:
        now = datetime.now(UTC)
        for hours in range(1, 20):
            api.add(now - timedelta(hours=hours, minutes=7), f"h{hours}")
        wrong = source(api, slice_hours=24)
        wrong["pagination"] = {**wrong["pagination"], "next_path": "nextCursor"}
        result = cli(files_per_source_config(tmp_path, {"api": wrong}), "once")
        text = result.stdout + result.stderr
        assert result.returncode == 1, text
        assert "next_path" in text and "nextCursor" in text and "has_more" in text
        assert api.api_key not in text
        fixed = cli(files_per_source_config(tmp_path, {"api": source(api, slice_hours=24)}), "once")
        assert fixed.returncode == 0, fixed.stderr
        assert_each_once(api, delivered(tmp_path))
    finally:
        api.stop()


def test_a_wrong_time_field_is_said_naming_the_setting(tmp_path: Path) -> None:
    """Every entry quarantined for want of a time: the reason said only "entry has no time", not
    which setting to fix."""
    api = AuditApi("offset")
    api.start()
    try:
        api.add(datetime.now(UTC) - timedelta(hours=2))
        result = cli(files_per_source_config(tmp_path, {"api": source(api, time_field="meta.when.msec")}), "once")
        text = result.stdout + result.stderr
        assert "entries quarantined" in text
        assert "time_field 'meta.when.msec'" in text and "time_format 'epoch_ms'" in text
        assert api.password not in text
    finally:
        api.stop()


@pytest.fixture
def apis() -> Iterator[dict[str, AuditApi]]:
    servers = {kind: AuditApi(kind) for kind in ("link", "cursor", "offset")}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def secrets(apis: dict[str, AuditApi]) -> list[str]:
    found = []
    for api in apis.values():
        found += [api.token, api.api_key, api.password]
    return found


def test_three_apis_once_run_restart_hostile_pages(apis: dict[str, AuditApi], tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for api in apis.values():
        api.page_size = 2
        for quarter in range(4, 120, 6):
            api.add(now - timedelta(minutes=quarter * 15 + 7), f"q{quarter}")
    link, cursor, offset = apis["link"], apis["cursor"], apis["offset"]
    link.hostile.empty_first, link.hostile.repeat_last, link.hostile.too_many = True, True, 2
    cursor.hostile.repeat_last, cursor.hostile.error_mid, cursor.hostile.empty_first = True, 1, True
    offset.hostile.error_mid, offset.hostile.too_many = 1, 1
    broken = source(offset, vendor="brokenco")
    broken["auth"] = {"type": "basic", "username": offset.user, "password": "wrong-" + offset.password}
    sources = {
        "linkco": source(link, initial_lookback_days=2),
        "cursorco": source(cursor, initial_lookback_days=2),
        "offsetco": source(offset, initial_lookback_days=2),
        "brokenco": broken,
    }
    cfg = files_per_source_config(tmp_path, sources)

    first = cli(cfg, "once")
    text = first.stdout + first.stderr
    assert first.returncode == 1, text  # brokenco failed; the others delivered
    assert "brokenco" in text and "401" in text
    for secret in [*secrets(apis), "wrong-" + offset.password]:
        assert secret not in text
    events = delivered(tmp_path)
    for name, api in (("linkco", link), ("cursorco", cursor), ("offsetco", offset)):
        assert_each_once(api, [e for e in events if e["source"] == name])
    assert any(r.status == 429 for r in link.requests) and any(r.status == 500 for r in cursor.requests)

    # run: entries written while it runs, then a restart with entries written while it was down
    # brokenco stays: its failing polls must not hold the others back while running either

    def complete() -> bool:
        got = delivered(tmp_path)
        return all(len([e for e in got if e["source"] == f"{k}co"]) >= len(api.entries) for k, api in apis.items())

    with daemon(cfg) as proc:
        for n in range(3):
            for api in apis.values():
                api.add(datetime.now(UTC) - timedelta(seconds=2), f"live{n}")
        wait_until("live entries delivered", complete, timeout=60, detail=proc.log)
        assert proc.stop() == 0
    for api in apis.values():
        api.add(datetime.now(UTC) - timedelta(seconds=3), "offline")
    with daemon(cfg) as proc:
        wait_until("offline entries delivered", complete, timeout=60, detail=proc.log)
        time.sleep(2.5)  # further polls re-read the overlap: nothing may come again
        assert proc.stop() == 0
        log = proc.log()
        assert "Traceback" not in log
        for secret in [*secrets(apis), "wrong-" + offset.password]:
            assert secret not in log
        assert "brokenco" in log and "401" in log
    events = delivered(tmp_path)
    for name, api in (("linkco", link), ("cursorco", cursor), ("offsetco", offset)):
        assert_each_once(api, [e for e in events if e["source"] == name])


def test_every_key_an_operator_writes_is_in_the_reference() -> None:
    """docs/configuration.md listed ``auth``, ``pagination`` and ``rate_limit`` with "(see below)"
    and nothing below: an operator could not learn ``next_path``, ``has_next_path`` or
    ``auth.header`` from it."""
    reference = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()

    def section(title: str) -> str:
        start = reference.index(f"\n## {title}")
        end = reference.find("\n## ", start + 1)
        return reference[start : end if end != -1 else None]

    http_json = section("source `type: http_json`")
    for kind in ("link", "cursor", "offset"):
        api = AuditApi(kind)
        api.start()
        written = source(api)
        api.stop()
        missing = [k for k in written if f"| `{k}` |" not in http_json]
        for block in ("auth", "pagination"):
            nested = section(f"`{block}`")
            missing += [f"{block}.{k}" for k in written[block] if f"| `{k}` |" not in nested]
        assert not missing, f"{kind}: {missing}"
    rate_limit = section("`rate_limit`")
    for key in ("remaining_header", "reset_header", "reset_format", "early_limit"):
        assert f"| `{key}` |" in rate_limit, key


def test_preview_shows_an_actor_known_by_name_only(tmp_path: Path) -> None:
    """An API whose actor is a name (``actor.name: actor``): preview's table showed "-", as if
    the mapping had failed, while the events carried the name."""
    api = AuditApi("link")
    api.start()
    try:
        api.add(datetime.now(UTC) - timedelta(hours=1), "svc-deployer")
        result = cli(
            files_per_source_config(tmp_path, {"api": source(api)}), "preview", "--source", "api", "--limit", "1"
        )
        assert result.returncode == 0, result.stderr
        assert "svc-deployer" in result.stdout
        assert api.token not in result.stdout + result.stderr
    finally:
        api.stop()
