"""Per-sink filters and redaction, unit-level and end to end through two SinkWorkers with
file sinks on one journal: one sink's routing never changes what the other receives, and a
filtered-out event still moves that sink's offset."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr, ValidationError

from forwarder.chunks import JournalEntry
from forwarder.delivery import SinkWorker
from forwarder.event import make_event
from forwarder.journal import SqliteJournal
from forwarder.record import Record, record_of
from forwarder.retry import RetrySettings
from forwarder.routing import Redactor, RedactRule, Router, SinkFilter
from sinks.base import DeliveryReport
from sinks.file import FileSink
from sinks.file_config import FileSinkConfig
from sinks.registry import SINKS

KEY = "k3y-for-tests"


def event(
    n: int,
    *,
    category: str = "configuration",
    action: str = "settings.update",
    outcome: str = "success",
    vendor: str = "codacy",
    org: str = "gh/acme",
    email: str = "alice@example.com",
) -> dict[str, Any]:
    return make_event(
        id=f"e{n}",
        time="2026-01-01T00:00:00.000Z",
        observed_time="2026-01-01T00:00:01.000Z",
        vendor=vendor,
        source=vendor,
        organization=org,
        action=action,
        activity="update",
        category=category,
        outcome=outcome,
        actor={"email": email, "id": email, "ip": "192.0.2.7"},
        target={"type": "user", "name": email},
        details={"who": email, "n": 7},
        raw={"actor": {"email": email}, "seen": [email, "other"], "count": 7},
    )


def digest(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def rec(ev: dict[str, Any], seq: int = 1) -> Record:
    return record_of(ev, seq, time_ms=0)


def test_filter_include_exclude_and_globs() -> None:
    flt = SinkFilter.model_validate(
        {
            "include": [{"category": ["authentication"]}, {"vendor": ["code*"], "outcome": ["failure"]}],
            "exclude": {"action": ["*.logout"]},
        }
    )
    assert flt.accepts(event(1, category="authentication", action="user.login"))
    assert not flt.accepts(event(2, category="authentication", action="user.logout"))
    assert flt.accepts(event(3, vendor="codestax", outcome="failure"))
    assert not flt.accepts(event(4, vendor="codestax", outcome="success"))
    assert not flt.accepts(event(5, vendor="configcat", outcome="failure"))
    only_org = SinkFilter.model_validate({"include": {"organization": ["gh/*"]}})
    assert only_org.accepts(event(6)) and not only_org.accepts(event(7, org="gl/acme"))


def test_filter_values_are_checked_at_load() -> None:
    with pytest.raises(ValidationError):
        SinkFilter.model_validate({"include": {"category": ["security"]}})  # not a normalized category
    with pytest.raises(ValidationError):
        SinkFilter.model_validate({"include": {"actor": ["x"]}})


def test_hmac_replaces_every_copy_in_event_and_raw() -> None:
    redactor = Redactor([RedactRule(field="actor.email", action="hmac")], SecretStr(KEY))
    out = redactor(event(1))
    text = orjson.dumps(out).decode()
    assert "alice@example.com" not in text
    h = digest("alice@example.com")
    assert out["actor"]["email"] == out["actor"]["id"] == out["target"]["name"] == h
    assert out["raw"] == {"actor": {"email": h}, "seen": [h, "other"], "count": 7}
    assert out["details"] == {"who": h, "n": 7}
    assert out["id"] == "e1" and out["organization"] == "gh/acme"  # routing fields untouched


def test_drop_and_nested_paths() -> None:
    rules = [RedactRule(field="actor.ip"), RedactRule(field="raw.seen"), RedactRule(field="details.n")]
    out = Redactor(rules, None)(event(1))
    assert out["actor"]["ip"] is None and out["raw"]["seen"] is None
    assert out["details"]["n"] is None and out["raw"]["count"] is None  # the same value 7 in raw, too
    assert out["actor"]["email"] == "alice@example.com"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"redact": [{"field": "actor.email", "action": "hmac"}]}, "need redact_key"),
        ({"redact": [{"field": "organization"}]}, "cannot redact 'organization'"),
        ({"redact": [{"field": "actor.phone"}]}, "expected one of actor.id"),
        ({"redact": [{"field": "message.x"}]}, "has no sub-fields"),
    ],
)
def test_bad_redaction_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SINKS["file"][0].model_validate({"type": "file", "path": "/tmp/x", **config})


def test_redact_key_never_in_repr() -> None:
    cfg = SINKS["file"][0].model_validate(
        {"type": "file", "path": "/x", "redact_key": KEY, "redact": [{"field": "actor.email", "action": "hmac"}]}
    )
    assert KEY not in repr(cfg) and KEY not in str(cfg.model_dump())


def test_router_without_rules_is_the_fast_path() -> None:
    batch = [rec(event(1))]
    routed = Router(None, None).apply(batch)
    assert routed[0] is batch[0]
    only_filter = Router(SinkFilter.model_validate({"include": {"category": ["configuration"]}}), None)
    assert only_filter.apply(batch)[0] is batch[0]  # accepted records keep their journaled bytes


class CountingFileSink(FileSink):
    def __init__(self, name: str, config: FileSinkConfig) -> None:
        super().__init__(name, config)
        self.sends = 0

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        self.sends += 1
        return await super().send(batch)


async def drain(workers: list[SinkWorker], journal: SqliteJournal) -> None:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        async with asyncio.timeout(20):
            while not all(w.offset >= journal.head for w in workers):
                await asyncio.sleep(0.02)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


async def test_two_sinks_one_journal(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    await journal.register_sinks(["everything", "security"])
    batch1 = [event(1), event(2, category="authentication", action="user.login"), event(3, outcome="failure")]
    batch2 = [event(4), event(5, action="repo.read")]  # nothing for "security"
    for events in (batch1, batch2):
        entries = [JournalEntry(e["id"], e["vendor"], 0, orjson.dumps(e)) for e in events]
        await journal.append("codacy", "gh/acme", entries, {"w": 1})
    configs = {
        "everything": FileSinkConfig(type="file", path=str(tmp_path / "all.ndjson"), batch_max_age_s=0),
        "security": FileSinkConfig.model_validate(
            {
                "type": "file",
                "path": str(tmp_path / "sec.ndjson"),
                "batch_max_age_s": 0,
                "batch_max_events": 3,
                "filter": {"include": [{"category": ["authentication"]}, {"outcome": ["failure"]}]},
                "redact": [{"field": "actor.email", "action": "hmac"}, {"field": "actor.ip"}],
                "redact_key": KEY,
            }
        ),
    }
    sinks = {name: CountingFileSink(name, cfg) for name, cfg in configs.items()}
    retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.01)
    workers = [SinkWorker(name, sinks[name], configs[name], journal, retry) for name in configs]
    await drain(workers, journal)
    for sink in sinks.values():
        await sink.close()

    stored = [r.data for r in await journal.read(0, 100, 1 << 20)]
    assert (tmp_path / "all.ndjson").read_bytes().splitlines() == stored  # untouched by the other sink's rules
    secure = [orjson.loads(line) for line in (tmp_path / "sec.ndjson").read_bytes().splitlines()]
    assert [e["id"] for e in secure] == ["e2", "e3"]
    assert all(e["actor"]["email"] == digest("alice@example.com") and e["actor"]["ip"] is None for e in secure)
    assert all(e["raw"]["actor"]["email"] == digest("alice@example.com") for e in secure)
    assert b"alice@example.com" not in (tmp_path / "sec.ndjson").read_bytes()
    assert await journal.offset("security") == await journal.offset("everything") == journal.head == 5
    assert sinks["security"].sends == 1  # the all-filtered second batch was never sent
    security = next(w for w in workers if w.name == "security")
    assert security.describe()["filtered"] == 3
    assert await journal.prune() == 5  # filtered events count as delivered for pruning
    await journal.close()


@pytest.mark.parametrize("entry", [{}, {"action": []}, {"vendor": [], "outcome": []}])
def test_a_filter_entry_naming_nothing_is_refused(entry: dict[str, Any]) -> None:
    """It matches every event: as an exclude it dropped them all, and the offset moved past them."""
    with pytest.raises(ValidationError, match="must name at least one value"):
        SinkFilter.model_validate({"exclude": [entry]})


def test_redaction_reaches_the_keys_that_hold_a_redacted_value() -> None:
    """``raw`` embeds the vendor's entry: a redacted email also sat there as a key."""
    redactor = Redactor([RedactRule(field="actor.email", action="hmac")], SecretStr("k"))
    event = {"actor": {"email": "alice@x.com"}, "raw": {"members": {"alice@x.com": "admin"}}}
    assert b"alice@x.com" not in orjson.dumps(redactor(event))
    assert event["raw"]["members"] == {redactor.digest("alice@x.com"): "admin"}
    dropped = {"actor": {"email": "alice@x.com"}, "raw": {"members": {"alice@x.com": "admin"}}}
    assert Redactor([RedactRule(field="actor.email")], None)(dropped)["raw"]["members"] == {"[redacted]": "admin"}


def test_check_and_the_daemon_warn_of_a_filter_naming_a_source_not_configured(tmp_path: Path) -> None:
    """A typo in a filter's source name routed nothing to the sink, silently."""
    from tests.support.daemon import cli, write_config

    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {
                "codacy": {
                    "type": "codacy",
                    "api_token": "t0ken-for-routing",
                    "base_url": "http://127.0.0.1:9/api/v3",
                    "organizations": ["gh/acme"],
                }
            },
            "sinks": {
                "typo": {
                    "type": "file",
                    "path": str(tmp_path / "out.ndjson"),
                    "filter": {"include": [{"source": ["codaci", "cod*"]}, {"source": "codacy"}]},
                },
                "fine": {
                    "type": "file",
                    "path": str(tmp_path / "fine.ndjson"),
                    "filter": {"include": {"source": "codacy"}},
                },
            },
        },
    )
    warned = [line for line in cli(cfg, "check").stdout.splitlines() if "filter names source" in line]
    assert warned == [
        "WARN sink typo: filter names source 'codaci', which is not in sources: (configured: codacy); "
        "a typo there routes nothing"
    ]
    once = cli(cfg, "once", "--timeout", "5")
    assert "filter names source 'codaci'" in once.stderr and "'cod*'" not in once.stderr
