"""``dlq list|replay|purge``: the records a sink gave up on.

Replay sends the dead letters straight to their own sink, from this process, rather than
re-journaling them: a journaled event is read by every sink, so the sinks that already
delivered it would receive it twice. A dead letter is deleted only after its sink confirmed
it; a record the receiver rejects again stays as it was. Replay and purge hold
the state lock, so the daemon is stopped meanwhile and cannot dead-letter concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from forwarder.event import format_ms
from forwarder.journal import DeadLetter, StateJournal
from forwarder.redaction import register_secrets
from forwarder.secrets import collect_secrets
from forwarder.settings import Settings
from forwarder.terminal import plain
from forwarder.tools.common import ToolError, echo_json, open_state, print_table
from sinks.base import Sink
from sinks.registry import SINKS

Say = Callable[[str], None]


def as_dict(letter: DeadLetter) -> dict[str, Any]:
    r = letter.record
    return {
        "id": letter.id,
        "sink": letter.sink,
        "reason": plain(letter.reason),
        "dead_lettered_at": format_ms(int(letter.at * 1000)),
        "seq": r.seq,
        "event_id": r.event_id,
        "source": r.source,
        "organization": r.organization,
        "time": format_ms(r.time_ms),
        "event": r.event(),
    }


def _check_sink(settings: Settings, sink: str | None, letters: Sequence[DeadLetter]) -> None:
    """A mistyped ``--sink`` named nothing and the command said "0 dead letters", as if all was
    well. A sink no longer configured still names its own dead letters (to list or purge them)."""
    if sink is not None and sink not in settings.sinks and not letters:
        known = ", ".join(sorted(settings.sinks)) or "none"
        raise ToolError(f"no sink named {sink!r} in the configuration or the dead-letter store (configured: {known})")


async def list_dead_letters(settings: Settings, sink: str | None, output: str) -> None:
    async with open_state(settings, change=False) as journal:
        letters = await journal.dead_letters(sink)
    _check_sink(settings, sink, letters)
    if output == "json":
        echo_json([as_dict(d) for d in letters])
        return
    print_table(
        f"{len(letters)} dead letter(s)",
        ("id", "sink", "event time", "source", "organization", "event id", "reason", "when"),
        (
            (
                d.id,
                d.sink,
                format_ms(d.record.time_ms),
                d.record.source,
                d.record.organization,
                d.record.event_id,
                d.reason,
                format_ms(int(d.at * 1000)),
            )
            for d in letters
        ),
    )


async def replay_dead_letters(settings: Settings, sink: str | None, ids: Sequence[int], say: Say) -> bool:
    """True if every selected dead letter was delivered (and deleted)."""
    register_secrets(collect_secrets(settings))
    async with open_state(settings, change=True) as journal:
        letters = await journal.dead_letters(sink, ids)
        _check_sink(settings, sink, letters)
        missing = set(ids) - {d.id for d in letters}
        if missing:
            raise ToolError(
                f"no dead letter with id(s) {', '.join(map(str, sorted(missing)))}"
                + (f" for sink {sink!r}" if sink else "")
            )
        by_sink: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            by_sink.setdefault(letter.sink, []).append(letter)
        unknown = sorted(set(by_sink) - set(settings.sinks))
        if unknown:
            raise ToolError(f"sink(s) {', '.join(unknown)} no longer configured; purge their dead letters instead")
        ok = True
        for name, group in by_sink.items():
            ok = await _replay_to(settings, name, group, journal, say) and ok
        if not letters:
            say("no dead letters to replay")
        return ok


async def _replay_to(settings: Settings, name: str, letters: list[DeadLetter], journal: StateJournal, say: Say) -> bool:
    config = settings.sinks[name]
    sink: Sink = SINKS[config.type][1](name, config)
    delivered = 0
    try:
        await sink.start()
        for i in range(0, len(letters), config.batch_max_events):
            batch = letters[i : i + config.batch_max_events]
            report = await sink.send([d.record for d in batch])
            rejected = {r.seq for r, _ in report.rejected} if report else set()
            done = [d.id for d in batch if d.record.seq not in rejected]
            await journal.delete_dead_letters(done, delivered=True)
            delivered += len(done)
            if rejected:
                say(f"sink {name}: {len(rejected)} record(s) rejected again; they stay in the dead-letter store")
    except Exception as exc:
        say(
            f"sink {name}: replay stopped after {delivered} record(s): {plain(exc)}; the rest stay dead-lettered, "
            "run the replay again once the receiver works"
        )
        return False
    finally:
        await sink.close()
    say(f"sink {name}: {delivered} of {len(letters)} dead letter(s) replayed")
    return delivered == len(letters)


async def purge_dead_letters(settings: Settings, sink: str | None, confirm: Callable[[str], bool], say: Say) -> bool:
    async with open_state(settings, change=True) as journal:
        letters = await journal.dead_letters(sink)
        _check_sink(settings, sink, letters)
        if not letters:
            say("no dead letters to purge")
            return True
        if not confirm(f"delete {len(letters)} dead letter(s) for good? These events never reached their sink"):
            return False
        deleted = await journal.delete_dead_letters([d.id for d in letters])
    say(f"{deleted} dead letter(s) purged")
    return True
