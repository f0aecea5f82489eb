"""The HTTP layer shared by all sources: retries, backoff and clear errors.

Retry policy (``docs/architecture.md``): network errors, timeouts, 429 and every 5xx are
retried with exponential backoff and full jitter, honouring ``Retry-After``; every other 4xx is a
configuration problem that retrying cannot fix, so it fails at once with a message saying
what to check. Messages name the vendor, the organization and the status, never a header.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from forwarder import lenient_json, metrics
from forwarder.http_shared import read_at_most
from forwarder.retry import BackoffWait, parse_retry_after
from forwarder.secret_stores import credentials_refused
from forwarder.sources.errors import MalformedResponse as MalformedResponse
from forwarder.sources.errors import RetryableHTTPError as RetryableHTTPError
from forwarder.sources.errors import SourceError as SourceError
from forwarder.sources.http_errors import ERROR_BODY_BYTES, HINTS, describe, transport_error
from forwarder.sources.ratelimit import RateBudget, shared_budget

if TYPE_CHECKING:
    from forwarder.sources.base import SourceConfig

log = structlog.get_logger("forwarder.http")

RETRY_STATUSES = {429, 502, 503, 504}
# Connections one source's client opens to its vendor at once (httpx's own default, made explicit:
# the request slots below are counted against it).
MAX_CONNECTIONS = 100
_slots: weakref.WeakKeyDictionary[httpx.AsyncClient, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def connection_slot(client: httpx.AsyncClient) -> asyncio.Semaphore:
    """One of the client's ``MAX_CONNECTIONS``, taken before a request's deadline starts. Every
    organization of a source is polled at once through one client: past a hundred of them,
    the rest waited inside httpx for a free connection with their deadline running, and a
    vendor answering in a few seconds made them time out ("no complete answer within the
    request deadline"), retried and failed polls for a wait that was the forwarder's own."""
    slots = _slots.get(client)
    if slots is None:
        slots = _slots[client] = asyncio.Semaphore(MAX_CONNECTIONS)
    return slots


class Budget(Protocol):
    """What one walk may hold (``forwarder.sources.walk.WalkBudget``): each complete answer is
    charged to it. A protocol, so that this layer needs nothing of the walk's module."""

    def charge(self, size: int) -> None: ...


RequestHook = Callable[[httpx.Request], Awaitable[None]]


def make_client(
    config: SourceConfig,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    *,
    follow_redirects: bool = False,
    request_hooks: Sequence[RequestHook] = (),
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """The one place a source's HTTP client is made: every source asks for JSON, times out after
    the source's ``timeout_s`` and verifies TLS unless told otherwise, so a new source cannot
    forget any of it. ``base_url`` loses its trailing slash (paths are written with their own)."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers={"Accept": "application/json", **(headers or {})},
        auth=auth,
        timeout=config.timeout_s,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20),
        follow_redirects=follow_redirects,
        event_hooks={"request": list(request_hooks)} if request_hooks else None,
        verify=verify,
    )


class HttpFetcher:
    """Sends one request with the source's retry policy and returns the parsed JSON."""

    @classmethod
    def for_source(
        cls,
        client: httpx.AsyncClient,
        vendor: str,
        config: SourceConfig,
        on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> HttpFetcher:
        """The fetcher of a source: its retry settings, ``extra_params`` and the rate budget of its
        credential (``rate_limit``, shared with every source using the same one) read from its config."""
        return cls(
            client,
            vendor,
            config.max_attempts,
            config.backoff_initial_s,
            config.backoff_max_s,
            on_response=on_response,
            before_attempt=before_attempt,
            extra_params=config.extra_params,
            rate_limit=shared_budget(config),
        )

    def __init__(
        self,
        client: httpx.AsyncClient,
        vendor: str,
        max_attempts: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
        max_body_bytes: int = 64 * 1024 * 1024,
        timeout_s: float | None = None,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
        extra_params: Mapping[str, str] | None = None,
        rate_limit: RateBudget | None = None,
    ) -> None:
        """``timeout_s`` bounds one whole attempt; None takes the client's own timeout.

        httpx's timeout applies to each read, so a server trickling a byte now and then would
        hold a request (and the source's poll job) for ever; the deadline is what makes the
        configured ``timeout_s`` mean "one request" as documented. ``before_attempt`` runs
        before the deadline starts: a request budget may wait longer than ``timeout_s``.
        ``extra_params`` (the source's ``extra_params`` setting) join every request here, the
        one place each source's requests pass through; the configuration refuses a name the
        source sends itself, so nothing the source asked for is replaced. ``rate_limit``, the
        budget of the source's credential (``forwarder.sources.ratelimit.shared_budget``), is
        asked before every attempt and told every answer's headers.
        """
        self.rate_limit = rate_limit
        self.extra_params = dict(extra_params or {})
        self.before_attempt = before_attempt
        self.client = client
        self.vendor = vendor
        self.max_attempts = max_attempts
        self.wait = BackoffWait(backoff_initial_s, backoff_max_s)
        self.on_response = on_response
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s

    async def get_json(
        self, organization: str, url: str, params: Mapping[str, Any] | None = None, *, budget: Budget | None = None
    ) -> Any:
        """``budget``: the walk this answer joins, charged with its size once it came complete."""
        retrying = AsyncRetrying(
            # A Retry-After longer than the backoff honours (``Retry-After: 999999``, a date next
            # year) held the poll, and every organization of the source with it, for
            # max_attempts x 10 x backoff_max_s (50 minutes by default), at every cycle, and a
            # ``once`` as long: this poll gives up at once, the next one asks again.
            stop=lambda state: state.attempt_number >= self.max_attempts or self.wait.asks_too_long(state),
            wait=self.wait,
            retry=retry_if_exception_type((RetryableHTTPError, httpx.TransportError)),
            reraise=True,
            before_sleep=self._log_retry(organization),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(organization, url, params, budget)
        except RetryableHTTPError as exc:
            if exc.retry_after is None or exc.retry_after <= self.wait.longest:
                raise
            raise RetryableHTTPError(
                f"{exc}; it asks to wait {exc.retry_after:.0f}s, longer than a poll waits "
                f"({self.wait.longest:.0f}s, 10 x backoff_max_s): this poll gives up and the next one asks again",
                exc.retry_after,
            ) from None
        except httpx.TransportError as exc:
            raise SourceError(
                f"{self.vendor} could not be reached for organization {organization!r} after "
                f"{self.max_attempts} attempts: {transport_error(exc)}"
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
                error=transport_error(exc) if isinstance(exc, httpx.TransportError) else str(exc),
            )

        return before_sleep

    def _deadline(self) -> float | None:
        if self.timeout_s is not None:
            return self.timeout_s
        timeout = self.client.timeout
        phases = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t is not None]
        return max(phases) if phases else None

    async def _once(
        self, organization: str, url: str, params: Mapping[str, Any] | None, budget: Budget | None = None
    ) -> Any:
        deadline = self._deadline()
        if self.before_attempt is not None:
            await self.before_attempt()
        limiter = self.rate_limit
        if limiter is not None:
            await limiter.acquire(self.vendor, organization)
        try:
            async with connection_slot(self.client), asyncio.timeout(deadline):
                response, body, size = await self._receive(url, params)
        except TimeoutError:
            if limiter is not None:
                limiter.release()
            # the same retryable error as httpx's own timeouts, so the retry policy, the log and
            # the final message treat a slow trickle like any other timeout
            raise httpx.ReadTimeout(f"no complete answer within the {deadline}s request deadline") from None
        except httpx.DecodingError:
            if limiter is not None:
                limiter.release()
            # not a TransportError: it escaped the retry policy and the poller logged a traceback
            # naming neither the vendor nor the remedy. A proxy may have cut or garbled it: retried.
            raise RetryableHTTPError(
                f"{self.vendor} sent a body that does not decode as its Content-Encoding says (corrupt "
                f"or cut compression) for organization {organization!r}; the cursor stays where it was. "
                "If it persists, a proxy in between may be rewriting the answer",
                None,
            ) from None
        except SourceError as exc:  # an auth flow's (a token endpoint's refusal), which knows no organization
            if limiter is not None:
                limiter.release()
            exc.args = (f"{exc} (organization {organization!r})",)
            raise
        except BaseException:
            if limiter is not None:
                limiter.release()
            raise
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if limiter is not None:
            limiter.observe(response.headers)
            if retry_after is None and response.status_code in (403, 429):
                retry_after = limiter.refusal_wait(response.headers)
            elif retry_after is None and response.status_code in RETRY_STATUSES:
                retry_after = limiter.stated_reset(response.headers)
            if limiter.is_rate_limit(response.status_code, response.headers, body):
                raise RetryableHTTPError(
                    describe(self.vendor, organization, response, body).replace(
                        HINTS[403], "the rate limit for this credential is used up (the vendor answers 403 for it)"
                    ),
                    retry_after,
                )
        # after the body and outside the deadline: a hook may sleep (ConfigCat's throttle)
        if self.on_response is not None:
            await self.on_response(response)
        if response.status_code in RETRY_STATUSES:
            raise RetryableHTTPError(describe(self.vendor, organization, response, body), retry_after)
        if response.status_code >= 500:
            raise RetryableHTTPError(describe(self.vendor, organization, response, body), None)
        if response.status_code >= 400:
            if response.status_code == 401:  # a token from AWS may have rotated since it was read
                credentials_refused()
            raise SourceError(describe(self.vendor, organization, response, body))
        if size > self.max_body_bytes:
            raise MalformedResponse(
                f"{self.vendor} sent a {size}-byte page for organization {organization!r}, "
                f"over the {self.max_body_bytes}-byte limit; lower the window or page size"
            )
        if budget is not None:  # the one place a walk's answers are counted (forwarder.sources.walk)
            budget.charge(size)

        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        try:
            # Valid JSON orjson refuses is still read (see there), by the standard library: seconds
            # for a large page, which held every source and sink on the loop meanwhile.
            notes: list[str] = []
            value = await asyncio.to_thread(lenient_json.loads, body, notes)
            for note in notes:
                log.warning(
                    "source page not quite JSON, read anyway",
                    vendor=self.vendor,
                    organization=organization,
                    repaired=note,
                )
            return value
        except ValueError:
            kind = response.headers.get("Content-Type", "unknown content type")
            what = "an empty body" if not body else f"a body that is not JSON ({kind}, {size} bytes)"
            raise MalformedResponse(
                f"{self.vendor} answered {response.status_code} with {what} for organization "
                f"{organization!r}; the cursor stays where it was. If it persists, check the source's URL: "
                "a proxy, a login page or a maintenance page may be answering in the vendor's place"
            ) from None

    async def _receive(self, url: str, params: Mapping[str, Any] | None) -> tuple[httpx.Response, bytes, int]:
        """The (closed) response, its body and the body's size, reading no more than the limit.

        Reading ``response.content`` first and measuring it afterwards let an endless or huge
        page grow memory until the process was killed; the body is streamed instead and the
        connection dropped as soon as it passes the limit. A page over the limit comes back
        with a size above it and an empty body; an error page is cut at ``ERROR_BODY_BYTES``.
        """
        if self.extra_params:  # merged into a next link's own query too (same names replaced, not doubled)
            params = {**self.extra_params, **(params or {})}
        async with self.client.stream("GET", url, params=params) as response:
            metrics.http_response(response.status_code)
            if response.status_code >= 400:
                return response, await read_at_most(response, ERROR_BODY_BYTES), 0
            try:
                declared = int(response.headers.get("Content-Length", ""))
            except ValueError:
                declared = -1
            if declared > self.max_body_bytes:
                return response, b"", declared
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_body_bytes:
                    return response, b"", size
                chunks.append(chunk)
            return response, b"".join(chunks), size
