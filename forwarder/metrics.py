"""What the daemon counts for Prometheus, as the pollers, fetchers and sink workers report it.

The counting is switched on by ``enable`` (a daemon serving ``/metrics``, before its first
poll); until then these calls do nothing and prometheus-client is not imported
(``forwarder.metrics_registry`` holds the registry, the counters and the scrape). ``once``,
cron and the tools serve no ``/metrics``: what they would count nobody could read, and the
library with its registry and process collector cost ~1 MB of a drain's RSS.

The fetcher labels what it counts through a context variable the poller sets, so it never
needs to know its source.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forwarder.status import StatusView

_polling: ContextVar[tuple[str, str]] = ContextVar("audit_forwarder_polling", default=("", ""))
_registry: ModuleType | None = None  # forwarder.metrics_registry once enabled


def enable() -> None:
    """Counts from now on (idempotent): called before the first poll of a daemon that serves
    ``/metrics``."""
    global _registry
    if _registry is None:
        from forwarder import metrics_registry

        _registry = metrics_registry


def enabled() -> bool:
    return _registry is not None


def polling(source: str, organization: str) -> None:
    """Called by the poller at the start of an organization's poll (its own task)."""
    _polling.set((source, organization))


def http_response(status: int) -> None:
    if _registry is not None:
        _registry.http_response(_polling.get(), status)


def source_retry(wait_s: float, paced_by_server: bool) -> None:
    if _registry is not None:
        _registry.source_retry(_polling.get(), wait_s, paced_by_server)


def delivered(sink: str, oldest_journaled_at: float | None, confirmed_at: float) -> None:
    if _registry is not None and oldest_journaled_at is not None:
        _registry.delivered(sink, max(0.0, confirmed_at - oldest_journaled_at))


async def render(daemon: StatusView) -> tuple[str, bytes]:
    """``/metrics``: its content type and body (counting from here on if it was not yet)."""
    enable()
    assert _registry is not None
    content_type: str
    body: bytes
    content_type, body = await _registry.render(daemon)
    return content_type, body
