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

from forwarder.redaction import scrub


def plain(text: object) -> str:
    """For ``click.echo``: scrubbed of secrets and of control characters."""
    return scrub(str(text))  # scrub strips the control characters first, then the secrets


def markup(text: object) -> str:
    """For a rich table cell or ``Console.print``: ``plain``, with rich markup escaped."""
    from rich.markup import escape

    return escape(plain(text))
