"""Replicas of the real daemon on one real PostgreSQL state, as the HA tests drive them: what
they hold (``state show`` and ``/metrics``), the database's own counters, and the check that a
duplicate is only ever the same event sent again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from tests.support.daemon import DaemonProcess, cli

TTL_S = 3


def state_config(dsn: str, name: str, ttl_s: float = TTL_S) -> dict[str, Any]:
    return {"backend": "postgresql", "dsn": dsn, "lease_ttl_s": ttl_s, "replica_id": name}


def shown_state(config: Path) -> dict[str, Any]:
    result = cli(config, "state", "show", "--output", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = orjson.loads(result.stdout)
    return value


def holders(config: Path) -> dict[str, str | None]:
    """Each unit's live holder (None: free or expired)."""
    return {row["unit"]: None if row["expired"] else row["holder"] for row in shown_state(config)["leases"]}


def assert_no_conflicting_duplicates(events: list[dict[str, Any]], volatile: tuple[str, ...] = ("observed",)) -> int:
    """A batch a replica sent but could not commit is sent again by the next holder: the same
    id with the same content. The same id with another content would be a real fault.
    Returns how many duplicates there were."""
    contents: dict[str, set[bytes]] = {}
    for event in events:
        body = {k: v for k, v in event.items() if k not in volatile}  # when it was read, per collection
        contents.setdefault(event["id"], set()).add(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    assert {i: c for i, c in contents.items() if len(c) > 1} == {}
    return len(events) - len(contents)


def metrics_port(daemon: DaemonProcess) -> int:
    for line in daemon.log().splitlines():
        if "serving /metrics" in line:
            return int(orjson.loads(line)["port"])
    raise AssertionError("no metrics line\n" + daemon.log()[-2000:])


def metric(daemon: DaemonProcess, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port(daemon)}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def counter(dsn: str, name: str) -> int:
    """A counter the replicas keep in the database (``fenced_writes``: refused by the fence)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT value FROM af_counters WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def leases(dsn: str) -> dict[str, tuple[str | None, int, float]]:
    """Each unit's holder, token and seconds until expiry, by the database's clock."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT unit, holder, token, CASE WHEN isfinite(expires_at) "
            "THEN EXTRACT(EPOCH FROM expires_at - now()) ELSE -1 END FROM af_leases"
        ).fetchall()
    return {str(u): (h, int(t), float(left)) for u, h, t, left in rows}


def stop_all(daemons: list[DaemonProcess]) -> list[int]:
    codes = [d.stop() for d in daemons]
    for d in daemons:
        assert "Traceback" not in d.log(), d.log()[-4000:]
    return codes
