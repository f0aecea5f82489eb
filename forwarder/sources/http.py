"""The HTTP layer shared by all sources: retries, backoff and clear errors.

Retry policy (``docs/architecture.md``): network errors, 429, 502, 503 and 504 are retried
with exponential backoff and full jitter, honouring ``Retry-After``; every other 4xx is a
configuration problem that retrying cannot fix, so it fails at once with a message saying
what to check. Messages name the vendor, the organization and the status, never a header.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from forwarder import metrics

log = structlog.get_logger("forwarder.http")

RETRY_STATUSES = {429, 502, 503, 504}
HINTS = {
    400: "the request was refused; check the organization and filter settings",
    401: "the credentials were refused; check the source's token",
    403: "the token lacks the role or plan needed for audit logs",
    404: "the organization or endpoint was not found; check the organization name and base_url",
    422: "the request parameters were refused; check the filter settings",
}


class SourceError(Exception):
    """A poll of one organization failed; that organization waits for its next cycle."""


class RetryableHTTPError(SourceError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponse(SourceError):
    """The vendor answered 200 with something that is not the documented JSON."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class BackoffWait:
    """Full-jitter exponential backoff that never waits less than the server's Retry-After."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap

    def __call__(self, state: RetryCallState) -> float:
        ceiling = min(self.cap, self.initial * 2 ** (state.attempt_number - 1))
        wait = random.uniform(0, ceiling)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, min(float(retry_after), self.cap * 10))
        return wait


def describe(vendor: str, organization: str, response: httpx.Response) -> str:
    hint = HINTS.get(response.status_code, "the vendor reported an error")
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("message") or body.get("detail") or body.get("error") or "")[:200]
    except ValueError:
        pass
    reason = f"{response.status_code} {response.reason_phrase}".strip()
    return f"{vendor} answered {reason} for organization {organization!r}: {hint}" + (
        f" (vendor says: {detail})" if detail else ""
    )


class HttpFetcher:
    """Sends one request with the source's retry policy and returns the parsed JSON."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        vendor: str,
        max_attempts: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
        max_body_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.client = client
        self.vendor = vendor
        self.max_attempts = max_attempts
        self.wait = BackoffWait(backoff_initial_s, backoff_max_s)
        self.on_response = on_response
        self.max_body_bytes = max_body_bytes

    async def get_json(self, organization: str, url: str, params: Mapping[str, Any] | None = None) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            retry=retry_if_exception_type((RetryableHTTPError, httpx.TransportError)),
            reraise=True,
            before_sleep=self._log_retry(organization),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(organization, url, params)
        except httpx.TransportError as exc:
            raise SourceError(
                f"{self.vendor} could not be reached for organization {organization!r} after "
                f"{self.max_attempts} attempts: {type(exc).__name__}"
            ) from None
        raise AssertionError("unreachable")

    def _log_retry(self, organization: str) -> Callable[[RetryCallState], None]:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            metrics.source_retry(state.upcoming_sleep, getattr(exc, "retry_after", None) is not None)
            log.warning(
                "source request retried",
                vendor=self.vendor,
                organization=organization,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 2),
                error=str(exc) if isinstance(exc, SourceError) else type(exc).__name__,
            )

        return before_sleep

    async def _once(self, organization: str, url: str, params: Mapping[str, Any] | None) -> Any:
        response = await self.client.get(url, params=params)
        metrics.http_response(response.status_code)
        if self.on_response is not None:
            await self.on_response(response)
        if response.status_code in RETRY_STATUSES:
            raise RetryableHTTPError(
                describe(self.vendor, organization, response),
                parse_retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code >= 500:
            raise RetryableHTTPError(describe(self.vendor, organization, response), None)
        if response.status_code >= 400:
            raise SourceError(describe(self.vendor, organization, response))
        if len(response.content) > self.max_body_bytes:
            raise MalformedResponse(
                f"{self.vendor} sent a {len(response.content)}-byte page for organization {organization!r}, "
                f"over the {self.max_body_bytes}-byte limit; lower the window or page size"
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("Content-Type", "unknown content type")
            raise MalformedResponse(
                f"{self.vendor} answered 200 with a body that is not JSON ({kind}) for organization "
                f"{organization!r}; the cursor stays where it was"
            ) from None
