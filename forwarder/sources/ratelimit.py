"""Rate limits read from the vendor's answers, for every source, in the shared HTTP layer.

Most audit APIs say in each answer how many requests are left and when the count resets
(``X-RateLimit-Remaining``/``-Reset`` and their spellings). Waiting for a 429 wastes the
request and, with some vendors, counts as abuse (Okta warns about orgs that use the whole
limit). So ``HttpFetcher`` asks a ``RateBudget`` before every attempt and tells it every
answer's headers: once no more than ``early_limit`` requests are left, requests wait for the
reset instead of being sent.

One budget is shared by every request made with the same credential (the organizations of a
source, and two sources configured with the same token), since the vendor counts them
together. The budget never keeps a credential: its key is a hash.

A 403 whose remaining count is zero (GitHub's primary limit), or that carries a
``Retry-After`` (GitHub's secondary limits), or whose body names a rate limit
(``refusal_words``, e.g. Google's ``rateLimitExceeded``) is a rate limit to wait out, not a
missing permission.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from forwarder.retry import until_http_date
from forwarder.secrets import collect_secrets
from forwarder.sources.errors import SourceError

log = structlog.get_logger("forwarder.sources.ratelimit")

ResetFormat = Literal["auto", "seconds", "epoch_s", "epoch_ms", "http_date"]


class RateLimitSettings(BaseModel):
    """How the vendor's answers state its rate limit, and how close to it the source may go."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Read the rate-limit headers and wait for the reset before running out.")
    remaining_header: list[str] = Field(
        default_factory=lambda: ["X-RateLimit-Remaining", "X-Rate-Limit-Remaining", "RateLimit-Remaining"],
        description="Header(s) with the requests left in the current window; the first one present is read.",
    )
    reset_header: list[str] = Field(
        default_factory=lambda: ["X-RateLimit-Reset", "X-Rate-Limit-Reset", "RateLimit-Reset"],
        description="Header(s) saying when the window resets; the first one present is read.",
    )
    reset_format: ResetFormat = Field(
        "auto",
        description="seconds (until the reset), epoch_s, epoch_ms or http_date; auto: a number above 10^12 is "
        "epoch ms, above 10^9 epoch seconds, else seconds; text is an HTTP date.",
    )
    early_limit: int = Field(
        1, ge=0, description="Requests left unused in each window: the source waits for the reset at this many."
    )
    max_wait_s: float = Field(
        900.0,
        ge=0,
        description="Longest wait for a reset; a later reset fails the poll of that organization (its cursor "
        "stays) and the next poll tries again.",
    )
    refusal_words: list[str] = Field(
        default_factory=list,
        description="A 403 whose body contains one of these words is a rate limit (retried), not a refusal.",
    )
    refusal_wait_s: float | None = Field(
        None,
        ge=0,
        description="A rate-limit refusal (429, or a 403 taken for one) without Retry-After waits at least this "
        "long unless the remaining count is 0 and a reset is stated; none: until the stated reset.",
    )

    @field_validator("remaining_header", "reset_header", "refusal_words", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def reset_delay(value: str | None, fmt: ResetFormat, now: float | None = None) -> float | None:
    """Seconds until the reset a header value states, or None if it says nothing usable."""
    if value is None or not value.strip():
        return None
    now = time.time() if now is None else now
    text = value.strip()
    number: float | None
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number != number:  # NaN
        return None
    if fmt == "http_date" or (fmt == "auto" and number is None):
        return until_http_date(text, now)
    if number is None:
        return None
    if fmt == "auto":
        fmt = "epoch_ms" if number > 1e12 else "epoch_s" if number > 1e9 else "seconds"
    if fmt == "epoch_ms":
        number = number / 1000 - now
    elif fmt == "epoch_s":
        number = number - now
    return max(0.0, min(number, 1e9))


def _first(headers: httpx.Headers, names: list[str]) -> str | None:
    for name in names:
        value = headers.get(name)
        if isinstance(value, str):
            return value
    return None


class RateBudget:
    """The requests left with one credential, learnt from the answers.

    Requests in flight are counted against what the last answer said, so organizations polled
    concurrently do not all take the last request. A budget with nothing known (no header yet,
    or a reset passed) lets requests through: the next answer tells."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self.remaining: int | None = None
        self.reset_at: float | None = None  # time.monotonic()
        self.in_flight = 0
        self.waits = 0

    def _forget_if_reset(self, now: float) -> None:
        if self.reset_at is not None and now >= self.reset_at:
            self.remaining = None
            self.reset_at = None

    async def acquire(self, vendor: str, organization: str) -> None:
        """Wait until a request may be sent, and count it as sent."""
        while True:
            now = time.monotonic()
            self._forget_if_reset(now)
            if self.remaining is None or self.remaining > self.settings.early_limit or self.reset_at is None:
                if self.remaining is not None:
                    self.remaining -= 1
                self.in_flight += 1
                return
            wait = self.reset_at - now
            if wait > self.settings.max_wait_s:
                # forgotten, so the next poll asks and learns afresh: a garbled reset far ahead
                # must not block this credential until a restart
                self.remaining, self.reset_at = None, None
                raise RateLimitWaitTooLong(
                    f"{vendor}'s rate limit for this credential is used up to rate_limit.early_limit="
                    f"{self.settings.early_limit} and resets in {wait:.0f}s, over rate_limit.max_wait_s="
                    f"{self.settings.max_wait_s:g}; organization {organization!r} is polled again next cycle "
                    "(its cursor stays)"
                )
            self.waits += 1
            log.info(
                "rate limit nearly used; waiting for its reset",
                vendor=vendor,
                organization=organization,
                remaining=self.remaining,
                early_limit=self.settings.early_limit,
                wait_s=round(wait, 2),
            )
            await asyncio.sleep(wait)

    def release(self) -> None:
        """A request counted by ``acquire`` got no answer (a network error)."""
        self.in_flight = max(0, self.in_flight - 1)

    def observe(self, headers: httpx.Headers) -> None:
        """An answer arrived: learn the remaining count and the reset from its headers."""
        self.release()
        remaining = self.stated_remaining(headers)
        delay = self.stated_reset(headers)
        if delay is not None:
            self.reset_at = time.monotonic() + delay
        if remaining is not None:
            self.remaining = max(0, remaining - self.in_flight)

    def stated_remaining(self, headers: httpx.Headers) -> int | None:
        value = _first(headers, self.settings.remaining_header)
        try:
            return int(float(value)) if value is not None else None
        except (ValueError, OverflowError):
            return None

    def stated_reset(self, headers: httpx.Headers) -> float | None:
        return reset_delay(_first(headers, self.settings.reset_header), self.settings.reset_format)

    def refusal_wait(self, headers: httpx.Headers) -> float | None:
        """How long a rate-limit refusal without ``Retry-After`` waits. A spent count waits for
        its reset; one with requests left was refused by another limit (GitHub's secondary limits,
        which state no window), which the primary window's reset, up to an hour away, says
        nothing about: ``refusal_wait_s`` then, as the vendor asks ("wait at least one minute")."""
        reset = self.stated_reset(headers)
        wait_s = self.settings.refusal_wait_s
        if wait_s is None or (reset is not None and self.stated_remaining(headers) == 0):
            return reset
        return wait_s

    def is_rate_limit(self, status: int, headers: httpx.Headers, body: bytes) -> bool:
        """Whether a 403 is the vendor's rate limit rather than a missing permission."""
        if status != 403:
            return False
        if headers.get("Retry-After") is not None or self.stated_remaining(headers) == 0:
            return True
        text = body.decode("utf-8", "replace")
        return any(word and word in text for word in self.settings.refusal_words)


class RateLimitWaitTooLong(SourceError):
    """The reset is further away than ``max_wait_s``: that organization's poll fails, the others carry on."""


# Budgets by credential; weak, so a closed source's budget goes with it (a reload starts afresh).
_BUDGETS: weakref.WeakValueDictionary[str, RateBudget] = weakref.WeakValueDictionary()


def credential_key(config: BaseModel) -> str:
    """A hash of what identifies one rate-limit bucket: the source type, the endpoint's host and
    every secret of the configuration (never the secrets themselves)."""
    url = str(getattr(config, "base_url", None) or getattr(config, "url", None) or "")
    host = httpx.URL(url).host if url.startswith(("http://", "https://")) else ""
    parts = [str(getattr(config, "type", "")), host, *sorted(collect_secrets(config))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def shared_budget(config: BaseModel) -> RateBudget | None:
    """The budget for the credential of ``config`` (a source configuration), shared with every
    other source and organization using the same one; None when rate limits are off."""
    settings: RateLimitSettings | None = getattr(config, "rate_limit", None)
    if settings is None or not settings.enabled:
        return None
    key = credential_key(config) + settings.model_dump_json()
    budget = _BUDGETS.get(key)
    if budget is None:
        budget = RateBudget(settings)
        _BUDGETS[key] = budget
    return budget
