"""Retrying, in one place: the delivery retry settings, the full-jitter backoff both sources
and sinks wait with, and what a server's ``Retry-After`` asks for.

Kept apart from the delivery layer and from the HTTP helpers so that the settings, the
sources, the sinks and the delivery layer all depend on this one small module rather than
on each other.
"""

from __future__ import annotations

import email.utils
import random
import time
from datetime import UTC

from pydantic import BaseModel, ConfigDict, Field
from tenacity import RetryCallState


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    initial_backoff_s: float = Field(
        0.5, gt=0, description="The first retry waits a random time up to this (full jitter); it doubles each attempt."
    )
    max_backoff_s: float = Field(
        60.0, gt=0, description="Cap of that doubling; a receiver's Retry-After is honoured up to 10 times this."
    )
    max_attempts: int | None = Field(None, ge=1, description="None retries forever (the default).")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds the server asked to wait, or None when the header says nothing usable.

    A garbled value (``soon``, ``120s``) must not fail the request: ``parsedate_to_datetime``
    raises on it rather than returning None, and an exception here would escape the retry
    policy, so such a value is ignored and the normal backoff applies. An HTTP-date without
    a zone (``-0000``) is UTC, as RFC 9110 dates always are.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    return until_http_date(value)


def until_http_date(value: str, now: float | None = None) -> float | None:
    """Seconds from ``now`` until an HTTP-date (never negative), None for text that is not one.
    Shared with the rate-limit reset headers (``forwarder.sources.ratelimit``)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer is worth the same request again: 408 and 429 (the receiver asks
    for time), 5xx but 501 (Not Implemented says the request itself is wrong)."""
    return status in (408, 429) or (status >= 500 and status != 501)


class BackoffWait:
    """Full-jitter exponential backoff that never waits less than the server's Retry-After."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.longest = cap * 10  # the longest Retry-After honoured by waiting

    def asks_too_long(self, state: RetryCallState) -> bool:
        """Whether the last attempt's ``Retry-After`` asks for more than ``longest``: waiting
        ``longest`` instead would only ask again too early, holding the caller meanwhile."""
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return retry_after is not None and float(retry_after) > self.longest

    def __call__(self, state: RetryCallState) -> float:
        ceiling = min(self.cap, self.initial * 2 ** (state.attempt_number - 1))
        wait = random.uniform(0, ceiling)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, min(float(retry_after), self.longest))
        return wait
