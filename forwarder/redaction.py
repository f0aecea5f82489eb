"""Text someone else wrote, made safe to show or log: control characters out, secrets out.

The lowest layer of everything that prints or logs: the log pipeline (``forwarder.logs``)
redacts every line with ``scrub_value``, the terminal helpers (``forwarder.terminal``) run every
vendor text through ``scrub``, and the health endpoints, the dead-letter reasons and
``check`` do too. It imports nothing of the project, so any module may use it.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

Kept = TypeVar("Kept")

_SECRETS: set[str] = set()
# Access tokens the forwarder obtained itself (an OAuth exchange): replaced each hour or so, so
# only the latest few (each in its forms) are kept, or months of refreshes would grow every scrub.
_TOKENS: deque[str] = deque(maxlen=32)
_ORDER: tuple[str, ...] = ()  # both, longest first (a secret inside another goes after it); made at registration
# A credential header's value, also where it is quoted as a JSON or a Python mapping key (a
# receiver's echo of the request: ``{"authorization": "Basic ..."}``), escaped once or not.
HEADER_RE = re.compile(
    r"(?i)((?:authorization|api-token|x-api-key|x-splunk-request-channel|proxy-authorization)(?:\\?['\"])?\s*[:=]\s*)"
    r"((?:\\?['\"])?)(?:(?:basic|bearer|token|splunk)\s+)?[^\s\"',}\\]+"
)
# ESC-introduced sequences (and their 8-bit C1 forms): CSI (colours, cursor moves), string
# commands ended by BEL or ST (OSC titles and hyperlinks, DCS, APC...), then any other escape.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 but tab and line feed, DEL, C1: what is left once the sequences are gone.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """Escape sequences and control characters out; tabs and line feeds stay (tracebacks)."""
    if text.isprintable():  # the common case, at the cost of one scan
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def _forms(value: str) -> set[str]:
    """A secret as it may come back: as is, as a URL writes it (``+`` as ``%2B``, ...: a token
    sent in a query string comes back that way in a vendor's echo of the request) and base64
    encoded (a header or a credential file that carries it encoded)."""
    return {value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()}


def register_secrets(values: set[str]) -> None:
    for value in values:
        if len(value) >= 4:
            _SECRETS.update(_forms(value))
    _order()


def register_token(value: str) -> None:
    """An access token obtained at run time (not in the configuration), masked like a secret
    from now on: a receiver that refuses it may quote it back."""
    if len(value) >= 4 and value not in _TOKENS:
        _TOKENS.extend(_forms(value))
        _order()


def _order() -> None:
    global _ORDER
    _ORDER = tuple(sorted(_SECRETS.union(_TOKENS), key=len, reverse=True))


def scrub(text: str) -> str:
    """Control characters out first (an escape sequence a vendor wrote inside an echoed token
    would hide it from the replacement, then vanish on the terminal), then every secret."""
    text = strip_controls(text)
    for secret in _ORDER:
        if secret in text:
            text = text.replace(secret, "***")
    return HEADER_RE.sub(r"\1\2***", text)


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, scrubbed before it is cut: a cut made first
    could fall inside a secret and leave its beginning where no scrub recognizes it."""
    return scrub(text)[:limit]


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (a URL, a path, a model) is rendered with str() after this: scrubbed as
    # that text, and left as it is when it holds no secret, so its rendering does not change.
    text = str(value)
    clean = scrub(text)
    return value if clean == text else clean


def scrub_reasons(dead: list[tuple[Kept, str]]) -> list[tuple[Kept, str]]:
    """A dead letter's reason is the receiver's text: it is kept, and shown by ``dlq list``,
    without the secrets and escape sequences it may quote. Once per distinct reason: a whole
    batch shares one."""
    clean = {reason: scrub(reason) for reason in {reason for _, reason in dead}}
    return [(record, clean[reason]) for record, reason in dead]
