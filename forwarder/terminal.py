"""Text someone else wrote, made safe to put in front of an operator.

Event ids, organization names, actors, a receiver's error text and a vendor's error body
reach the operator's terminal through ``check``, ``preview``, ``dlq list`` and ``state show``.
Written raw, an escape sequence in them drives the terminal (retitles it, rewrites what is
on screen, plants a hyperlink) and a ``[/]`` in them is read by rich as markup: the command
crashed, or ``[link=...]`` rendered a link. Every such text therefore goes through
``plain`` (for ``click.echo``) or ``markup`` (for anything rich renders): secrets scrubbed,
escape sequences and other control characters removed, and for rich the markup escaped, so
the text still reads as it was sent.
"""

from __future__ import annotations

import re

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


def plain(text: object) -> str:
    """For ``click.echo``: scrubbed of secrets and of control characters."""
    from forwarder.logs import scrub  # forwarder.logs uses strip_controls from here

    return scrub(str(text))  # scrub strips the control characters first, then the secrets


def markup(text: object) -> str:
    """For a rich table cell or ``Console.print``: ``plain``, with rich markup escaped."""
    from rich.markup import escape

    return escape(plain(text))
