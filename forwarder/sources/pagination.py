"""Where the next answer of an ``http_json`` walk is, for the styles that name it: a next link
(in the body or an RFC 8288 ``Link`` header) or a cursor token.

The styles that count (page numbers, offsets) need nothing but their counters; these rules are
the ones a vendor's answer can get wrong, so each refuses what would loop or leak: a link or
token that repeats the one that fetched the page just read ends the walk (``PageGuard``), and
a link to another origin fails it rather than carry the source's credentials there.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from forwarder.mapping import get_path
from forwarder.sources.errors import MalformedResponse
from forwarder.sources.walk import PageGuard

# One link-value of RFC 8288: ``<target>`` then its ``; name=value`` parameters (a quoted value
# may hold ``,`` and ``;``). The target is read between its brackets, never split on a comma: a
# URL may hold commas and semicolons (``fields=a,b``), and splitting on them lost the next link,
# which ended the walk after its first page as if there were no more.
LINK_VALUE = re.compile(r'<([^>]*)>((?:\s*;\s*[^\s;,=]+\s*(?:=\s*(?:"(?:[^"\\]|\\.)*"|[^\s;,"]*))?)*)')
LINK_PARAM = re.compile(r'\s*;\s*([^\s;,=]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?')


def next_link(header: str | None) -> str | None:
    """The target of RFC 8288's ``Link: <url>; rel="next"``: ``rel`` is a list of relation types
    (``rel="next last"``), compared without case; several Link headers arrive joined by commas."""
    for match in LINK_VALUE.finditer(header or ""):
        for name, value in LINK_PARAM.findall(match.group(2)):
            if name.lower() == "rel" and "next" in value.strip('"').lower().split():
                return match.group(1).strip()
    return None


def next_token(body: Any, path: str, guard: PageGuard) -> str | None:
    """The cursor token at ``path``; None at the end (none, or the one that fetched this page)."""
    token = get_path(body, path)
    if token in (None, "") or guard.repeats(str(token)):
        return None
    return str(token)


def follow_link(
    nxt: Any,
    url: str,
    last: httpx.Response | None,
    auth_param: str | None,
    guard: PageGuard,
    *,
    vendor: str,
    organization: str,
) -> str | None:
    """A next link resolved against the answer that sent it (``url`` before any came); None at
    the end (no link, or one back to the page just read). ``auth_param``, the query parameter
    the credential rides in, is left out of that comparison and out of the link returned."""
    if not nxt or not isinstance(nxt, str):
        return None
    base = last.url if last is not None else httpx.URL(url)
    if auth_param is not None:  # as asked for: a link back to this page must look like one
        base = base.copy_remove_param(auth_param)
    try:
        joined = str(base.join(nxt))
    except httpx.InvalidURL:
        raise MalformedResponse(
            f"{vendor} sent a next link that is not a URL for organization {organization!r}"
        ) from None
    if auth_param is not None:
        # The link leaves as it came without the credential: every request gets it again
        # (``forwarder.sources.http_auth``), and a link is kept in the state to resume a walk.
        joined = str(httpx.URL(joined).copy_remove_param(auth_param))
    guard.token = str(base)
    if guard.repeats(joined):
        return None
    if httpx.URL(joined).netloc != httpx.URL(url).netloc or httpx.URL(joined).scheme != httpx.URL(url).scheme:
        raise MalformedResponse(
            f"{vendor} sent a next link to another origin for organization {organization!r}; "
            "refusing to send the source's credentials there"
        )
    return joined
