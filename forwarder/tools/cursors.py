"""``state set-cursor`` and ``state reset``: move or forget where a source resumes.

Moving a cursor back re-collects (sinks see the same ids again); moving it forward skips
history for good; forgetting it restarts that organization from ``initial_lookback_days``.
Hence the confirmation, and the lock: the daemon must not overwrite the edit a moment later.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from forwarder.event import format_ms
from forwarder.settings import Settings
from forwarder.sources.window import WindowCursor
from forwarder.tools.backfill_keys import window_of
from forwarder.tools.common import ToolError, build_source, open_state, pick_organizations

Confirm = Callable[[str], bool]
# a backfill's progress row is polled by no one: forgotten, the same command starts its window over
BACKFILL_ROW = " (a backfill's progress: the same backfill command collects its whole window again)"


async def set_cursor(
    settings: Settings, source_name: str, organization: str, to_ms: int, confirm: Confirm, say: Callable[[str], None]
) -> bool:
    source = build_source(settings, source_name)
    try:
        await pick_organizations(source, [organization])
    finally:
        await source.close()
    if to_ms > time.time() * 1000 - settings.sources[source_name].lag_s * 1000:
        # a typo of a year (2999) would skip, silently and for good, everything until then
        raise ToolError("--to is later than now minus the source's lag_s: entries up to it would never be collected")
    overlap_ms = int(settings.sources[source_name].overlap_s * 1000)
    async with open_state(settings, change=True) as journal:
        current = await journal.get_cursor(source_name, organization)
        was_ms = current.get("watermark_ms") if current else None
        was = format_ms(was_ms) if isinstance(was_ms, int) else "none (initial_lookback)"
        if not confirm(
            f"move the cursor of {source_name} / {organization} from {was} to {format_ms(to_ms)}? "
            + consequence(was_ms if isinstance(was_ms, int) else None, to_ms, overlap_ms)
        ):
            return False
        # recent keys only dedupe the overlap of the old position; kept, they could hide entries
        await journal.set_cursor(source_name, organization, WindowCursor(to_ms, {}).dump())
    say(f"cursor of {source_name} / {organization} set to {format_ms(to_ms)}")
    return True


def consequence(was_ms: int | None, to_ms: int, overlap_ms: int) -> str:
    """What the move does, in its own direction. One sentence for every move ("earlier entries
    are collected again, later ones are skipped") told an operator moving back that entries
    would be skipped, and one moving forward that entries would be sent again. The next poll
    reads from --to minus overlap_s with no remembered keys, so what lies between that and the
    old position is either sent again or never collected."""
    reread_ms = to_ms - overlap_ms
    reread = f"{format_ms(reread_ms)} (--to minus overlap_s)"
    if was_ms is None:
        return f"Its first poll reads from {reread}; nothing earlier is collected"
    if reread_ms > was_ms:
        return f"Entries between {format_ms(was_ms)} and {reread} are never collected: skipped for good"
    if reread_ms < was_ms:
        return (
            f"Entries from {reread} to {format_ms(was_ms)} are collected and sent again, with the same ids; "
            "nothing is skipped"
        )
    return "Nothing is skipped or sent again"


async def reset_cursors(
    settings: Settings, source: str | None, organization: str | None, confirm: Confirm, say: Callable[[str], None]
) -> bool:
    async with open_state(settings, change=True) as journal:
        stats = await journal.stats()
        matching = [
            (s, o)
            for s, o, _, _ in stats.cursors
            if (source is None or s == source) and (organization is None or o == organization)
        ]
        if not matching:
            raise ToolError("no cursor matches; `state show` lists them")
        listing = "\n".join(f"  {s} / {o}" + (BACKFILL_ROW if window_of(s) else "") for s, o in matching)
        if not confirm(
            f"forget {len(matching)} cursor(s)? Their next poll starts again from initial_lookback_days:\n{listing}\n"
        ):
            return False
        deleted = await journal.delete_cursors(source, organization)
    say(f"{deleted} cursor(s) reset")
    return True
