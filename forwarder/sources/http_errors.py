"""What an operator is told when a vendor refuses a request or the network fails it: the status
with what to check, the vendor's own words (bounded, scrubbed), and where a transport error
happened, never a header, a path or the bytes of a request or an answer."""

from __future__ import annotations

import httpx
import orjson

from forwarder.redaction import clip

HINTS = {
    400: "the request was refused; check the organization and filter settings",
    401: "the credentials were refused; check the source's token",
    403: "the token lacks the role or plan needed for audit logs",
    404: "the organization or endpoint was not found; check the organization name and base_url",
    422: "the request parameters were refused; check the filter settings",
    429: "the vendor's rate limit was reached; each retry waits as the vendor asks (at most 10 x backoff_max_s), "
    "and a limit reached at every poll calls for a longer interval_s or a rate_limit setting",
}
# Retried like 429; past max_attempts the organization waits for its next poll, where its cursor is.
SERVER_HINT = "the vendor's service failed; it is retried with backoff and the cursor stays where it was"
# An error body is read only for the vendor's message in it: a bound keeps a hostile or endless
# error page from costing more than this, and a longer one is simply not quoted.
ERROR_BODY_BYTES = 64 * 1024


def describe(vendor: str, organization: str, response: httpx.Response, body: bytes = b"") -> str:
    """The error message for a refused request; ``body`` is the (bounded) error page.

    The vendor's own words are a courtesy: any body that does not parse, however hostile
    (orjson refuses deep nesting rather than recursing), leaves them out instead of
    replacing the status with an unrelated exception.
    """
    hint = HINTS.get(response.status_code) or (
        SERVER_HINT if response.status_code >= 500 else "the vendor reported an error"
    )
    detail = ""
    try:
        parsed = orjson.loads(body) if body else None
        if isinstance(parsed, dict):
            # Okta's errorSummary with its errorCode; Google's error object ({"error": {"code",
            # "message", "status"}}); GitHub's message with its documentation_url. The codes and the
            # link are what the vendor's documentation and support look an error up by.
            said = parsed.get("message") or parsed.get("detail") or parsed.get("errorSummary") or parsed.get("error")
            code = parsed.get("errorCode")
            if isinstance(said, dict):
                code = said.get("status") or code
                said = said.get("message")
            text = str(said or "")
            if text and isinstance(code, str) and code and code not in text:
                text = f"{code}: {text}"
            detail = clip(text, 200)  # scrubbed before the cut: a cut secret is not recognized
            link = parsed.get("documentation_url")
            if detail and isinstance(link, str) and link.startswith("https://"):
                detail += f"; see {clip(link, 200)}"
    except Exception:  # a vendor's error page must never mask the status
        detail = ""
    reason = f"{response.status_code} {response.reason_phrase}".strip()
    return f"{vendor} answered {reason} for organization {organization!r}: {hint}" + (
        f" (vendor says: {detail})" if detail else ""
    )


def transport_error(exc: httpx.TransportError) -> str:
    """Where and why a request failed (refused, no DNS, a certificate), which the exception's
    name alone does not say; never the path or query (a token may ride there) and never a
    protocol error's text, which quotes the bytes of the request or the answer."""
    why = type(exc).__name__
    if isinstance(exc, httpx.NetworkError | httpx.TimeoutException):  # not a protocol error: those quote bytes
        # the innermost message: "All connection attempts failed" wraps the refusal itself
        link: BaseException | None = exc
        detail = ""
        for _ in range(10):  # a chain is a few links; never follow a cycle for ever
            if link is None:
                break
            detail = str(link) or detail
            link = link.__cause__ or link.__context__
        if detail:
            why += f": {clip(detail, 200)}"
    elif isinstance(exc, httpx.RemoteProtocolError):
        said = str(exc)
        why += next((f": {meaning}" for phrase, meaning in PROTOCOL_ERRORS.items() if phrase in said), "")
    try:
        url = exc.request.url
    except RuntimeError:  # raised without its request
        return why
    return f"{why} ({url.scheme}://{url.host}{f':{url.port}' if url.port else ''})"


# A protocol error's text may quote the answer's bytes, so it is never shown; these phrases of
# httpx and h11 quote nothing, and each gets a sentence saying what the answer did wrong.
PROTOCOL_ERRORS = {
    "without sending complete message body": "the connection closed before the whole answer came "
    "(a Content-Length longer than the body, or a proxy cutting it)",
    "disconnected without sending a response": "the connection closed before any answer came",
}
