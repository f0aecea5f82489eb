"""The errors of a source's poll, apart from the HTTP layer that raises most of them, so that the
modules it uses (``forwarder.sources.ratelimit``) can raise them too without importing it.
``forwarder.sources.http`` re-exports them, where sources have always imported them from."""

from __future__ import annotations


class SourceError(Exception):
    """A poll of one organization failed; that organization waits for its next cycle."""


class RetryableHTTPError(SourceError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponse(SourceError):
    """The vendor answered 200 with something that is not the documented JSON."""
