"""``audit-forwarder check``: one line per component, so an operator sees at once which
credential or receiver is wrong."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from forwarder.daemon import JOURNAL_FILE, BuildError, build
from forwarder.journal import StateError
from forwarder.logs import register_secrets, scrub
from forwarder.secrets import collect_secrets
from forwarder.settings import Settings
from forwarder.sources import SOURCES
from forwarder.tools.common import open_state
from sinks.registry import SINKS


async def _probe(
    kind: str, name: str, probe: Callable[[], Awaitable[str]], echo: Callable[[str], None]
) -> bool:
    try:
        detail = await asyncio.wait_for(probe(), timeout=60)
    except Exception as exc:
        echo(f"FAIL {kind} {name}: {scrub(str(exc) or type(exc).__name__)}")
        return False
    echo(f"ok   {kind} {name}: {detail}")
    return True


async def _state(settings: Settings) -> str:
    """What ``run`` needs of state_dir, without creating anything: a writable directory (or a
    writable place to create it), and a journal that opens, if there is one."""
    state_dir = settings.state_dir
    existing = next(path for path in (state_dir, *state_dir.parents) if path.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StateError(f"cannot write {existing} (state_dir {state_dir}); check its owner and permissions")
    if not (state_dir / JOURNAL_FILE).exists():
        return f"{state_dir} is writable; the journal is created at the first start"
    async with open_state(settings, change=False) as journal:
        stats = await journal.stats()
    return f"{state_dir}: the journal opens and holds {stats.events} event(s)"


async def run_checks(settings: Settings, echo: Callable[[str], None]) -> bool:
    register_secrets(collect_secrets(settings))
    ok = await _probe("state", "dir", lambda: _state(settings), echo)
    for kind, configs, registry in (("source", settings.sources, SOURCES), ("sink", settings.sinks, SINKS)):
        for name, cfg in configs.items():
            try:
                component = build(registry, name, cfg)
            except BuildError as exc:
                echo(f"FAIL {kind} {name}: {exc}")
                ok = False
                continue
            try:
                ok &= await _probe(kind, name, component.check, echo)
            finally:
                await component.close()
    return ok
