"""Replicas of the real daemon sharing one real PostgreSQL state: the work is split, a paused
replica's late writes are refused by the fence, a database restart is survived, and a SQLite
state moves over with ``state migrate`` without loss or re-collection."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import yaml

from tests.support.config import file_sink
from tests.support.daemon import DaemonProcess, cli, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.postgres import PASSWORD, PostgresServer
from tests.support.receivers import events_in_hec, hec_sink
from tests.support.replicas import (
    TTL_S,
    assert_no_conflicting_duplicates,
    counter,
    holders,
    metric,
    metrics_port,
    state_config,
    stop_all,
)
from tests.support.vendors import codacy_source, expected_ids
from tests.support.waiting import wait_until

ORGS = [f"gh/org{i}" for i in range(4)]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.dsn(postgres.create_database())


def replica_config(tmp_path: Path, name: str, url: str, dsn: str, **source: Any) -> Path:
    """One replica's configuration: the same sources, sink and state as the others; only its
    replica_id and where its file sink writes differ (a directory per replica)."""
    config = {
        "state_dir": str(tmp_path / f"state-{name}"),
        "state": state_config(dsn, name),
        "shutdown_timeout_s": 5,
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.5},
        "metrics": {"enabled": True, "listen": "127.0.0.1:0"},
        "sources": {"codacy": codacy_source(url, organizations=ORGS, **source)},
        "sinks": {"out": file_sink(tmp_path / "out" / name)},
    }
    return write_config(tmp_path / f"{name}.yaml", config)


def start_replicas(tmp_path: Path, url: str, dsn: str, *names: str, **source: Any) -> list[DaemonProcess]:
    return [
        DaemonProcess(replica_config(tmp_path, name, url, dsn, **source), tmp_path / f"{name}.log") for name in names
    ]


def delivered(tmp_path: Path) -> list[dict[str, Any]]:
    return read_ndjson(tmp_path / "out")


def each_entry_once_in_content(tmp_path: Path, emulator: EmulatorProcess) -> None:
    """Every entry delivered; a duplicate only with the same id and content."""
    events = delivered(tmp_path)
    assert {e["id"] for e in events} == expected_ids(emulator)
    assert_no_conflicting_duplicates(events)


def all_delivered(tmp_path: Path, emulator: EmulatorProcess, daemons: list[DaemonProcess]) -> None:
    wanted = expected_ids(emulator)
    wait_until(
        "every entry delivered",
        lambda: wanted <= {e["id"] for e in delivered(tmp_path)},
        timeout=120,
        detail=lambda: "\n".join(d.log()[-3000:] for d in daemons),
    )


def test_two_replicas_split_the_work_and_deliver_everything(tmp_path: Path, codacy: EmulatorProcess, dsn: str) -> None:
    daemons = start_replicas(tmp_path, codacy.url, dsn, "a", "b")
    config = tmp_path / "a.yaml"
    try:
        all_delivered(tmp_path, codacy, daemons)
        units = [f"source/codacy/{org}" for org in ORGS] + ["sink/out"]
        wait_until("the units split between both replicas", lambda: (
            set(holders(config)) == set(units)
            and sorted(Counter(holders(config).values()).values()) == [2, 3]
            and set(holders(config).values()) == {"a", "b"}
        ), timeout=60)  # fmt: skip
        held = {d: metric(d, "audit_forwarder_leases_held") for d in daemons}
        assert sum(held.values()) == len(units) and all(n >= 2 for n in held.values()), held
        assert metric(daemons[0], "audit_forwarder_fenced_writes_total") >= 0  # exposed (counted in test 2)
        ready = httpx.get(f"http://127.0.0.1:{metrics_port(daemons[0])}/readyz", timeout=10).json()
        assert ready["leases"]["replica"] == "a" and len(ready["leases"]["held"]) == held[daemons[0]]
        # everything delivered: the sink is behind by nothing, as every replica tells it, the one
        # standing by too (it showed the place it last stood at, further behind with every event)
        wait_until("no replica shows the delivered sink behind", lambda: all(
            metric(d, 'audit_forwarder_sink_lag_events{sink="out"}') == 0
            and httpx.get(f"http://127.0.0.1:{metrics_port(d)}/readyz", timeout=10).json()["sinks"]["out"]["lag_events"]
            == 0 for d in daemons
        ), timeout=30, detail=lambda: str([(d.log_path.name, metric(d, 'audit_forwarder_sink_lag_events{sink="out"}'))
                                          for d in daemons]))  # fmt: skip

        # a state-changing tool is refused while any replica runs, worded as the SQLite lock's refusal
        for tool in (("state", "reset", "--yes"), ("dlq", "purge", "--yes"),
                     ("backfill", "--source", "codacy", "--since", "2026-01-01")):  # fmt: skip
            refused = cli(config, *tool, timeout=60)
            assert refused.returncode == 1, (tool, refused.stderr)
            assert "is running on PostgreSQL 127.0.0.1" in refused.stderr and "stop it first" in refused.stderr
            assert PASSWORD not in refused.stderr + refused.stdout

        def cut(name: str) -> None:  # its sessions, named after it in pg_stat_activity
            with psycopg.connect(dsn, autocommit=True) as conn:
                found = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                    (f"audit-forwarder/{name}",),
                ).fetchone()
            assert found is not None and found[0] >= 1

        for _ in range(5):  # again and again: it reconnects by itself
            cut("a")
            time.sleep(TTL_S / 3)

        # a sink added as documented: one replica reloaded after the other, the sink only a's meanwhile,
        # each reload right after the replica's sessions were cut (a dropped connection lent by the pool
        # failed the reload, half applied)
        before = expected_ids(codacy)
        for d, name in ((daemons[0], "a"), (daemons[1], "b")):
            settings = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
            settings["sinks"]["extra"] = file_sink(tmp_path / "extra" / name)
            write_config(tmp_path / f"{name}.yaml", settings)
            cut(name)
            d.signal(signal.SIGHUP)
            wait_until("reloaded", lambda: "configuration reloaded" in d.log(), timeout=30, detail=d.log)  # noqa: B023
            codacy.control("POST", "entries", {"generate": 10, "orgs": ORGS, "span_s": 60})
            time.sleep(TTL_S)
        all_delivered(tmp_path, codacy, daemons)
        added = expected_ids(codacy) - before
        wait_until("every entry collected since the sink was added in it", lambda: added <= {
            e["id"] for e in read_ndjson(tmp_path / "extra")}, timeout=60, detail=daemons[0].log)  # fmt: skip
        assert stop_all(daemons) == [0, 0]
    finally:
        for d in daemons:
            d.kill()
    each_entry_once_in_content(tmp_path, codacy)
    assert_no_conflicting_duplicates(read_ndjson(tmp_path / "extra"))
    assert set(holders(config).values()) == {None}  # a clean stop released every lease
    for d in daemons:
        assert "sinks no longer configured" not in d.log() and "reload failed" not in d.log()
    for d in daemons:
        assert PASSWORD not in d.log()


def test_a_paused_replica_is_fenced_and_nothing_is_lost(tmp_path: Path, codacy: EmulatorProcess, dsn: str) -> None:
    # a generous request timeout: the paused replica's request must still be answered when it wakes
    a, b = daemons = start_replicas(tmp_path, codacy.url, dsn, "a", "b", timeout_s=60)
    config = tmp_path / "a.yaml"
    try:
        all_delivered(tmp_path, codacy, daemons)
        wait_until("both replicas hold units", lambda: set(holders(config).values()) == {"a", "b"}, timeout=60)
        org = next(u.split("/", 2)[2] for u, h in holders(config).items() if h == "a" and u.startswith("source/"))
        # a's next request for its organization hangs 3 s: a is paused in the middle of that poll
        codacy.control("POST", "faults", {"status": 0, "delay_s": 3, "count": 1, "path_contains": f"/{org}/audit"})
        time.sleep(1.5)
        a.process.send_signal(signal.SIGSTOP)
        try:
            wait_until(
                "b took over a's units",
                lambda: set(holders(config).values()) == {"b"},
                timeout=60,
                detail=b.log,
            )
            codacy.control("POST", "entries", {"generate": 10, "orgs": ORGS, "span_s": 60})
        finally:
            a.process.send_signal(signal.SIGCONT)
        wait_until("a's late write refused", lambda: counter(dsn, "fenced_writes") >= 1, timeout=30, detail=a.log)
        assert metric(a, "audit_forwarder_fenced_writes_total") >= 1
        assert metric(b, "audit_forwarder_lease_takeovers_total") >= 1
        assert "took over an expired lease" in b.log()
        all_delivered(tmp_path, codacy, daemons)
        assert stop_all(daemons) == [0, 0]
    finally:
        for d in daemons:
            d.process.send_signal(signal.SIGCONT)
            d.kill()
    each_entry_once_in_content(tmp_path, codacy)


def test_replicas_ride_out_a_database_restart(
    tmp_path: Path, codacy: EmulatorProcess, postgres: PostgresServer, dsn: str
) -> None:
    daemons = start_replicas(tmp_path, codacy.url, dsn, "a", "b")
    try:
        all_delivered(tmp_path, codacy, daemons)
        postgres.stop("immediate")
        try:
            codacy.control("POST", "entries", {"generate": 10, "orgs": ORGS, "span_s": 60})
            wait_until(
                "both replicas report the outage",
                lambda: all("cannot renew leases" in d.log() for d in daemons),
                timeout=30,
            )
            time.sleep(TTL_S)  # past every lease: the replicas stopped working on their units
            port = metrics_port(daemons[0])
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert ready.status_code == 503 and "cannot renew leases" in ready.text
            assert ready.json()["leases"]["held"] == []
            assert metric(daemons[0], "audit_forwarder_leases_held") == 0  # /metrics answers without the database
            # a third replica started during the outage waits for the database (it exited, and stayed
            # down unless a supervisor started it again), and starts by itself when it answers
            (late,) = start_replicas(tmp_path, codacy.url, dsn, "c")
            daemons.append(late)
            wait_until("the late replica waits", lambda: "starts when it answers" in late.log(), timeout=30,
                       detail=late.log)  # fmt: skip
            time.sleep(TTL_S)
            assert late.alive(), late.log()[-2000:]
        finally:
            postgres.start()
        wait_until("the late replica started", lambda: "replica started" in late.log(), timeout=30, detail=late.log)
        assert "the PostgreSQL state answers" in late.log() and PASSWORD not in late.log()
        all_delivered(tmp_path, codacy, daemons)
        assert all(d.alive() for d in daemons)
        wait_until("renewals resumed", lambda: all("leases renewed again" in d.log() for d in daemons[:2]), timeout=30)
        wait_until("the late replica holds a share", lambda: "c" in holders(tmp_path / "a.yaml").values(), timeout=30)
        assert stop_all(daemons) == [0, 0, 0]
    finally:
        for d in daemons:
            d.kill()
    each_entry_once_in_content(tmp_path, codacy)


def test_a_sink_retrying_stops_sending_once_its_lease_lapses(
    tmp_path: Path, codacy: EmulatorProcess, postgres: PostgresServer, dsn: str
) -> None:
    """A replica retrying a batch against a receiver that is down, whose lease then lapses (the
    database out of reach here; a pause or a partition alike), stops sending: the batch is the
    next holder's, from the offset the database has. It went on retrying (for ever, with the
    default retry) a batch it could no longer record, beside the holder's."""
    hec = running("splunk_hec")
    config = replica_config(tmp_path, "a", codacy.url, dsn)
    settings = yaml.safe_load(config.read_text())
    settings["sinks"]["hec"] = hec_sink(hec.url)
    daemon = DaemonProcess(write_config(config, settings), tmp_path / "a.log")

    def posts() -> int:
        return sum(1 for _, method, *_ in hec.control("GET", "requests") if method == "POST")

    try:
        hec.control("POST", "faults", {"status": 503, "count": 100_000})
        wait_until("the sink retries", lambda: "sink delivery failed, retrying" in daemon.log(), timeout=60,
                   detail=daemon.log)  # fmt: skip
        postgres.stop("immediate")
        try:
            wait_until("the leases lapsed", lambda: "leases expired without renewal" in daemon.log(), timeout=30,
                       detail=daemon.log)  # fmt: skip
            time.sleep(1)  # a send already under way when they lapsed ends
            sent = posts()
            time.sleep(TTL_S)  # a retry every 0.5 s at most (retry.max_backoff_s)
            assert posts() == sent, daemon.log()[-3000:]
            assert "batch not confirmed after every attempt" not in daemon.log()  # nothing dead-lettered
        finally:
            postgres.start()
        hec.control("DELETE", "faults")
        wanted = expected_ids(codacy)
        wait_until("every entry in the receiver", lambda: wanted <= {e["id"] for e in events_in_hec(hec)},
                   timeout=60, detail=daemon.log)  # fmt: skip
        assert stop_all([daemon]) == [0]
        assert_no_conflicting_duplicates(events_in_hec(hec))
    finally:
        daemon.kill()
        hec.stop()


def test_a_sink_one_replica_cannot_deliver_is_handed_to_another(
    tmp_path: Path, codacy: EmulatorProcess, dsn: str
) -> None:
    """The replica holding the sink cannot write where it must (on its host, its directory's
    place is a file): after ``sink_handover_s`` of failing it hands the sink to the other
    replica, which delivers everything. It held the sink, undelivered, for as long as it ran.
    Six units on two replicas: the other is at its share when the sink is handed over, and
    takes it beyond (then gives up another unit for the balance)."""
    (tmp_path / "blocked").write_text("")
    configs = {name: replica_config(tmp_path, name, codacy.url, dsn) for name in ("a", "b")}
    for name, config in configs.items():
        settings = yaml.safe_load(config.read_text())
        settings["state"]["sink_handover_s"] = 2
        settings["sinks"]["spare"] = file_sink(tmp_path / "spare" / name)
        if name == "a":
            settings["sinks"]["out"]["path"] = str(tmp_path / "blocked" / "a" / "{organization}.ndjson")
        write_config(config, settings)
    a = DaemonProcess(configs["a"], tmp_path / "a.log")
    daemons = [a]
    try:
        wait_until("a fails to deliver", lambda: "sink delivery failed, retrying" in a.log(), timeout=60,
                   detail=a.log)  # fmt: skip
        time.sleep(3)  # failing past sink_handover_s, alone: there is nobody to hand it to
        assert "handing the unit" not in a.log() and holders(configs["a"])["sink/out"] == "a"
        daemons.append(DaemonProcess(configs["b"], tmp_path / "b.log"))
        all_delivered(tmp_path, codacy, daemons)
        assert "handing the unit to another replica" in a.log()
        assert holders(configs["a"])["sink/out"] == "b"
        wait_until("the units balanced again, 3 and 3", lambda: sorted(Counter(holders(configs["a"]).values()).values())
                   == [3, 3], timeout=30)  # fmt: skip
        assert stop_all(daemons) == [0, 0]
    finally:
        for d in daemons:
            d.kill()
    each_entry_once_in_content(tmp_path, codacy)


def test_state_migrate_moves_a_sqlite_state_without_loss_or_recollection(
    tmp_path: Path, codacy: EmulatorProcess, dsn: str
) -> None:
    # the SQLite state: everything collected once; sink "late" could not deliver (its directory is a file)
    (tmp_path / "blocked").write_text("")
    sinks = {"out": file_sink(tmp_path / "out" / "sqlite"), "late": file_sink(tmp_path / "blocked" / "late")}
    sqlite_config: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "shutdown_timeout_s": 5,
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        "metrics": {"enabled": False},
        "sources": {"codacy": codacy_source(codacy.url, organizations=ORGS)},
        "sinks": sinks,
    }
    config = write_config(tmp_path / "sqlite.yaml", sqlite_config)
    once = cli(config, "once", "--timeout", "20")
    assert once.returncode == 1, once.stderr  # "late" did not deliver
    before = cli(config, "state", "show", "--output", "json")
    lag = {row["sink"]: row["lag_events"] for row in orjson.loads(before.stdout)["sinks"]}
    assert lag["out"] == 0 and lag["late"] == 4 * 30

    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(dsn)
    moved = cli(config, "state", "migrate", "--to-dsn-file", str(dsn_file), "--output", "json")
    assert moved.returncode == 0, moved.stderr
    counts = orjson.loads(moved.stdout)
    assert counts["cursors"] == 4 and counts["sink_offsets"] == 2 and counts["events"] == 4 * 30
    assert PASSWORD not in moved.stdout + moved.stderr

    again = cli(config, "state", "migrate", "--to", dsn)  # the target now holds a state
    assert again.returncode == 1 and "is not empty" in again.stderr
    assert PASSWORD not in again.stdout + again.stderr

    (tmp_path / "blocked").unlink()
    shared = {**sqlite_config, "state": {"backend": "postgresql", "dsn": dsn, "lease_ttl_s": TTL_S}}
    shared["sinks"] = {"out": file_sink(tmp_path / "out" / "pg"), "late": file_sink(tmp_path / "late")}
    daemon = DaemonProcess(write_config(tmp_path / "pg.yaml", shared), tmp_path / "pg.log")
    try:
        codacy.control("POST", "entries", {"generate": 5, "orgs": ORGS, "span_s": 60})
        wanted = expected_ids(codacy)
        wait_until(
            "the new entries in out and everything in late",
            lambda: (
                {e["id"] for e in read_ndjson(tmp_path / "late")} == wanted
                and len(read_ndjson(tmp_path / "out")) >= len(wanted)
            ),
            timeout=90,
            detail=daemon.log,
        )
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    out = Counter(e["id"] for e in read_ndjson(tmp_path / "out"))
    assert set(out) == wanted and set(out.values()) == {1}  # the cursors moved over: nothing collected twice
    assert Counter(e["id"] for e in read_ndjson(tmp_path / "late")) == Counter(wanted)
    assert PASSWORD not in daemon.log()


def test_the_dsn_password_never_shows_in_errors(tmp_path: Path, postgres: PostgresServer) -> None:
    wrong = "not-the-password-4711"
    dsn = postgres.dsn(password=False) + f" password={wrong}"
    config = write_config(
        tmp_path / "c.yaml",
        {"state_dir": str(tmp_path / "s"), "state": {"backend": "postgresql", "dsn": dsn}, "sources": {},
         "sinks": {}},
    )  # fmt: skip
    checked = cli(config, "check", timeout=60)
    assert checked.returncode == 1 and "password authentication failed" in checked.stdout, checked.stdout
    for result in (checked, cli(config, "state", "show", timeout=60)):
        assert result.returncode != 0
        assert "PostgreSQL 127.0.0.1" in result.stdout + result.stderr  # the server is named, not the DSN
        assert wrong not in result.stderr + result.stdout


def documented_grants() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "high-availability.md").read_text()
    return text.split("-- af_replica: the grants\n", 1)[1].split("-- end of grants", 1)[0]


async def create_tables(dsn: str) -> None:
    from forwarder.journal.postgres.journal import PostgresJournal

    journal = PostgresJournal(dsn)  # as the owner's first start does
    await journal.open()
    await journal.close()


def test_the_documented_replica_role_is_enough(
    tmp_path: Path, codacy: EmulatorProcess, postgres: PostgresServer
) -> None:
    database = postgres.create_database()
    asyncio.run(create_tables(postgres.dsn(database)))
    role, password = f"af_replica_{database[3:]}", "replica-password-4711"
    with psycopg.connect(postgres.dsn(database), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(re.sub(r"\baf_replica\b", role, documented_grants()))
    dsn = f"host=127.0.0.1 port={postgres.port} dbname={database} user={role} password={password}"
    (daemon,) = start_replicas(tmp_path, codacy.url, dsn, "a")
    try:
        all_delivered(tmp_path, codacy, [daemon])
        assert set(holders(tmp_path / "a.yaml").values()) == {"a"}
        assert stop_all([daemon]) == [0]
    finally:
        daemon.kill()
    assert "permission denied" not in daemon.log()
    assert password not in daemon.log()
