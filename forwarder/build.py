"""A source or a sink made from its configuration, through its registry.

The daemon (at start-up and at each reload), ``check`` and the operator tools all build
through ``build``, so each of them refuses a constructor's error the same way and warns of an
insecure transport every time a component is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog

from forwarder.redaction import scrub

log = structlog.get_logger("forwarder.build")
Built = TypeVar("Built")


class BuildError(Exception):
    """A constructor refused what validation let through (httpx refuses a token it cannot put
    in a header, such as ``tök“en``); the message says so without a traceback."""


def build(registry: Mapping[str, tuple[Any, Callable[[str, Any], Built]]], name: str, config: Any) -> Built:
    """The source or sink ``config`` describes, from its registry (``SOURCES`` or ``SINKS``)."""
    try:
        built = registry[config.type][1](name, config)
    except Exception as exc:
        raise BuildError(scrub(f"cannot be built: {type(exc).__name__}: {exc}")) from None
    for warning in config.transport_warnings():  # every start, reload, tool and check builds through here
        log.warning(f"insecure transport: {warning}", component=name, type=config.type)
    return built
