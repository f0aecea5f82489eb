"""``preview``: what a source would collect, normalized, without touching anything.

No lock, no journal, no sink: it reads the vendor from ``--since`` (or the first run's
``initial_lookback_days``) and stops after ``--limit`` events, so it is safe next to a
running daemon and useful to check a new source's mapping before enabling it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from forwarder.formats import HEADERS, get_formatter
from forwarder.record import record_of
from forwarder.settings import Settings
from forwarder.sources.window import WindowCursor
from forwarder.tools.common import build_source, closing, echo_json, pick_organizations, print_table


async def collect_preview(
    settings: Settings, source_name: str, orgs: tuple[str, ...], since_ms: int | None, limit: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Returns up to ``limit`` events per organization and the reasons of entries that would be quarantined."""
    source = build_source(settings, source_name)
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for org in await pick_organizations(source, orgs):
            cursor = None if since_ms is None else WindowCursor(since_ms, {}).dump()
            taken = 0
            async with closing(source.pages(org, cursor)) as pages:
                async for page in pages:
                    observed = datetime.now(UTC)
                    for raw, key in page.entries:
                        try:
                            events.append(source.normalize(org, raw, key, observed))
                            taken += 1
                        except Exception as exc:
                            problems.append(f"{org}: would be quarantined: {type(exc).__name__}: {exc}")
                        if taken >= limit:
                            break
                    if taken >= limit:
                        break
    finally:
        await source.close()
    return events, problems


def print_preview(events: list[dict[str, Any]], output: str, fmt: str | None) -> None:
    if fmt is not None:
        formatter = get_formatter(fmt)
        if fmt in HEADERS:
            click.echo(HEADERS[fmt].decode())
        for event in events:
            click.echo(formatter(record_of(event)).decode())
        return
    if output == "json":
        echo_json(events)
        return
    rows = []
    for e in events:
        actor = e.get("actor") or {}
        rows.append(
            (
                e["time"],
                e["organization"],
                str(actor.get("email") or actor.get("name") or actor.get("id") or "-"),
                e["action"],
                e["outcome"],
                e["category"],
            )
        )
    print_table(f"{len(events)} event(s)", ("time", "organization", "actor", "action", "outcome", "category"), rows)
