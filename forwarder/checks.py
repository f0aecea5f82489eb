"""``audit-forwarder check``: one line per component, so an operator sees at once which
credential or receiver is wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from forwarder.logs import register_secrets, scrub
from forwarder.secrets import collect_secrets
from forwarder.settings import Settings
from forwarder.sources import SOURCES
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


async def run_checks(settings: Settings, echo: Callable[[str], None]) -> bool:
    register_secrets(collect_secrets(settings))
    ok = True
    for kind, configs, registry in (("source", settings.sources, SOURCES), ("sink", settings.sinks, SINKS)):
        for name, cfg in configs.items():
            try:  # a constructor may refuse what validation let through (a token httpx cannot send)
                component = registry[cfg.type][1](name, cfg)
            except Exception as exc:
                echo(f"FAIL {kind} {name}: cannot be built: {scrub(f'{type(exc).__name__}: {exc}')}")
                ok = False
                continue
            try:
                ok &= await _probe(kind, name, component.check, echo)
            finally:
                await component.close()
    return ok
