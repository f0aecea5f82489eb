"""``audit-forwarder check``: one line per component, so an operator sees at once which
credential or receiver is wrong."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path

from forwarder.build import BuildError, build
from forwarder.journal import StateError
from forwarder.journal.factory import JOURNAL_FILE
from forwarder.redaction import register_secrets, scrub
from forwarder.routing import unknown_sources_warning
from forwarder.secrets import collect_secrets
from forwarder.settings import Settings
from forwarder.sources import SOURCES
from forwarder.sources.base import Source
from forwarder.state_files import try_create_file
from forwarder.terminal import plain
from forwarder.tools.common import open_state
from sinks.base import Sink
from sinks.registry import SINKS

PROBE_TIMEOUT_S = 60
CHECK_ATTEMPTS = 2  # a vendor's passing blip is retried once; an unreachable one fails in seconds


async def _probe(kind: str, name: str, probe: Callable[[], Awaitable[str]]) -> tuple[bool, str]:
    try:
        detail = await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT_S)
    except TimeoutError:
        return False, f"FAIL {kind} {name}: no answer within {PROBE_TIMEOUT_S} s"
    except Exception as exc:
        return False, f"FAIL {kind} {name}: {scrub(str(exc) or type(exc).__name__)}"
    return True, f"ok   {kind} {name}: {detail}"


async def _state(settings: Settings) -> str:
    """What ``run`` needs of state_dir, tried rather than guessed (access() said "writable" of
    a directory that did not exist): state_dir, created if missing as ``run`` would, takes a
    file; what this check created is removed again. Then the journal must open, if there is one."""
    if settings.state.backend == "postgresql":
        return await _shared_state(settings)
    state_dir = settings.state_dir
    created = await asyncio.to_thread(_try_directory, state_dir)
    if not (state_dir / JOURNAL_FILE).exists():
        if created:
            return (
                f"state_dir {state_dir} does not exist yet; created it and a file in it, then removed them "
                "(run creates it, and the journal, at its first start)"
            )
        return f"state_dir {state_dir}: created and removed a file in it; the journal is created at the first start"
    async with open_state(settings, change=False) as journal:
        stats = await journal.stats()
    return f"state_dir {state_dir}: the journal opens and holds {stats.events} event(s)"


async def _shared_state(settings: Settings) -> str:
    """A PostgreSQL state: reachable with these credentials, and of a schema this build reads
    (or empty: ``run`` creates the tables at its first start). Changes nothing."""
    from forwarder.journal.factory import postgres_conninfo
    from forwarder.journal.postgres.schema import SCHEMA_VERSION
    from forwarder.replicas import create_refusal, schema_version

    conninfo, where = postgres_conninfo(settings.state)
    version = await schema_version(conninfo, where)
    if version is None:
        refusal = await create_refusal(conninfo)
        if refusal is not None:
            raise StateError(
                f"{where}: reachable, but the state's tables do not exist yet and {refusal}: create them with the "
                'owner role (docs/high-availability.md, "The PostgreSQL role the replicas need")'
            )
        return f"{where}: reachable; the state's tables are created at the first start"
    if version != SCHEMA_VERSION:
        raise StateError(f"{where}: the state has schema version {version}; this build reads {SCHEMA_VERSION}")
    async with open_state(settings, change=False) as journal:
        stats = await journal.stats()
    return f"{where}: the state opens and holds {stats.events} event(s)"


def _try_directory(state_dir: Path) -> bool:
    """True if ``state_dir`` was missing (it was created for the probe and removed again)."""
    missing = [d for d in (state_dir, *state_dir.parents) if not d.is_dir()][::-1]
    created: list[Path] = []
    try:
        for d in missing:
            d.mkdir(mode=0o700)
            created.append(d)
        try_create_file(state_dir, 0o600)
    except OSError as exc:
        what = "create" if any(d not in created for d in missing) else "create a file in"
        raise StateError(
            f"state_dir {state_dir}: cannot {what} {exc.filename or state_dir}: {exc.strerror}; check its owner and "
            "permissions (under systemd, StateDirectory= creates it for the service's user)"
        ) from None
    finally:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
    return bool(missing)


async def run_checks(settings: Settings, echo: Callable[[str], None]) -> bool:
    """Every component is probed at once (one after the other, unreachable hosts and their
    retries added up to minutes); the lines come in configuration order."""
    register_secrets(collect_secrets(settings))
    where = "dir" if settings.state.backend == "sqlite" else "postgresql"
    probes: list[Awaitable[tuple[bool, str]]] = [_probe("state", where, lambda: _state(settings))]
    example = "(see config/example.yaml)"
    if not settings.sources:  # valid, and does nothing: say so rather than "ok" alone
        probes.append(_said(True, f"WARN sources: none configured; nothing will be collected {example}"))
    if not settings.sinks:
        probes.append(_said(True, f"WARN sinks: none configured; what is collected goes nowhere {example}"))
    built: list[Source | Sink] = []
    for kind, name, make in _factories(settings):
        try:
            component = make()
        except BuildError as exc:
            probes.append(_said(False, f"FAIL {kind} {name}: {kind}s.{name}: {exc}"))  # the YAML path, as run says it
            continue
        built.append(component)
        probes.append(_probe(kind, name, component.check))
        config = settings.sources[name] if kind == "source" else settings.sinks[name]
        warnings = config.transport_warnings()
        if kind == "sink" and (unrouted := unknown_sources_warning(settings.sinks[name].filter, settings.sources)):
            warnings.append(unrouted)
        probes.extend(_said(True, f"WARN {kind} {name}: {warning}") for warning in warnings)
    try:
        results = await asyncio.gather(*probes)
    finally:
        await asyncio.gather(*(component.close() for component in built), return_exceptions=True)
    for _, line in results:
        echo(plain(line))  # a vendor's error body may hold escape sequences
    return all(passed for passed, _ in results)


def _factories(settings: Settings) -> Iterator[tuple[str, str, Callable[[], Source | Sink]]]:
    for name, source in settings.sources.items():
        attempts = min(source.max_attempts, CHECK_ATTEMPTS)  # each within its share of the probe's time
        source = source.model_copy(
            update={"max_attempts": attempts, "timeout_s": min(source.timeout_s, PROBE_TIMEOUT_S / (attempts + 1))}
        )
        yield "source", name, partial(build, SOURCES, name, source)
    for name, sink in settings.sinks.items():
        yield "sink", name, partial(build, SINKS, name, sink)


async def _said(passed: bool, line: str) -> tuple[bool, str]:
    return passed, line
