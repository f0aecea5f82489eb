"""``audit-forwarder state show``: a read-only view of the journal, safe while the daemon runs."""

from __future__ import annotations

import time
from typing import Any

import click
import orjson

from forwarder.event import format_ms
from forwarder.journal import StateError
from forwarder.journal.factory import JOURNAL_FILE, make_journal
from forwarder.settings import Settings
from forwarder.tools.backfill_keys import window_of
from forwarder.tools.common import print_table


async def collect_state(settings: Settings) -> dict[str, Any]:
    shared = settings.state.backend == "postgresql"
    path = settings.state_dir / JOURNAL_FILE
    if not shared and not path.exists():
        raise StateError(f"no state database at {path} yet: the daemon has not run with this state_dir")
    journal = make_journal(settings.state, settings.state_dir, migrate=False)  # read-only: no lock held
    await journal.open()
    leases: list[dict[str, Any]] = []
    try:
        stats = await journal.stats()
        if shared:
            from forwarder.replicas import lease_rows

            leases = await lease_rows(journal)
    finally:
        await journal.close()
    now = time.time()
    data = {
        "state_file": str(journal.path),
        "journal": {
            "events": stats.events,
            "bytes": stats.bytes,
            "head_seq": stats.head_seq,
            # the configured cap: at it, the daemon pauses polling until the sinks drain
            "max_events": settings.journal.max_events,
            "max_bytes": settings.journal.max_bytes,
            "full": stats.events >= settings.journal.max_events or stats.bytes >= settings.journal.max_bytes,
        },
        "cursors": [
            {
                "source": s,
                "organization": o,
                "watermark": format_ms(c["watermark_ms"]) if "watermark_ms" in c else None,
                **_lag(s, c, now),
                "updated_at": format_ms(int(at * 1000)),
                "quarantined": stats.quarantined.get((s, o), 0),
            }
            for s, o, c, at in stats.cursors
        ],
        "sinks": [
            {
                "sink": lag.sink,
                "offset": lag.offset,
                "lag_events": lag.events,
                "lag_s": round(now - lag.oldest_ms / 1000, 1) if lag.oldest_ms else 0.0,
                "dead_letters": stats.dead_letters.get(lag.sink, 0),
            }
            for lag in stats.sinks
        ],
    }
    if shared:
        data["leases"] = leases
    return data


def _lag(name: str, cursor: dict[str, Any], now: float) -> dict[str, Any]:
    """A backfill's progress row is no live cursor: "now minus its watermark" read as a lag of
    days for a window finished long ago, and a `lag_s > 3600` alert on `state show` fired for
    good after any backfill. It has ``lag_s`` null and says whether its window is complete."""
    watermark = cursor.get("watermark_ms")
    window = window_of(name)
    if window is not None:
        complete = isinstance(watermark, int) and watermark >= window.until_ms
        return {"lag_s": None, "backfill": "complete" if complete else "unfinished"}
    lag = round(now - watermark / 1000, 1) if isinstance(watermark, int) else None
    return {"lag_s": lag, "backfill": None}


async def show_state(settings: Settings, output: str) -> None:
    data = await collect_state(settings)
    if output == "json":
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    j = data["journal"]
    click.echo(f"State {data['state_file']}: {j['events']} events journaled, {j['bytes']} bytes")
    if j["full"]:
        click.echo(
            f"The journal is full (journal.max_events {j['max_events']}, max_bytes {j['max_bytes']}): polling is "
            "paused until the sinks behind drain it; nothing is dropped."
        )
    print_table(
        "Cursors",
        ("source", "organization", "watermark", "lag (s)", "quarantined", "updated"),
        (
            (
                c["source"],
                c["organization"],
                c["watermark"],
                c["lag_s"] if c["backfill"] is None else f"backfill {c['backfill']}",
                c["quarantined"],
                c["updated_at"],
            )
            for c in data["cursors"]
        ),
    )
    print_table(
        "Sinks",
        ("sink", "offset", "lag (events)", "lag (s)", "dead letters"),
        ((s["sink"], s["offset"], s["lag_events"], s["lag_s"], s["dead_letters"]) for s in data["sinks"]),
    )
    if "leases" in data:
        print_table(
            "Leases", ("unit", "holder", "expires", "token", "takeovers"),
            ((row["unit"], row["holder"], row["expires_at"], row["token"], row["takeovers"]) for row in data["leases"]),
        )  # fmt: skip
