"""Structured logs that never leak a secret.

Every log line passes through ``redact`` before it is rendered: configured secret values and
the values of credential headers are replaced by ``***`` wherever they appear, including in
exception text. JSON lines when not on a terminal (for journald and log shippers), readable
lines on one.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import structlog

from forwarder.terminal import strip_controls

_SECRETS: set[str] = set()
HEADER_RE = re.compile(
    r"(?i)((?:authorization|api-token|x-api-key|x-splunk-request-channel|proxy-authorization)\s*[:=]\s*)"
    r"(\"?)(?:(?:basic|bearer|token|splunk)\s+)?[^\s\"',}]+"
)


def register_secrets(values: set[str]) -> None:
    """Each secret also as a URL writes it (``+`` as ``%2B``, ...): a token sent in a query
    string comes back that way in a vendor's echo of the request."""
    for value in values:
        if len(value) >= 4:
            _SECRETS.update({value, quote(value, safe=""), quote_plus(value)})


def scrub(text: str) -> str:
    """Control characters out first (an escape sequence a vendor wrote inside an echoed token
    would hide it from the replacement, then vanish on the terminal), then every secret."""
    text = strip_controls(text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return HEADER_RE.sub(r"\1\2***", text)


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: scrub_value(v) for k, v in event_dict.items()}


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode())
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
