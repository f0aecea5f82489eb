"""Splunk HTTP Event Collector sink.

One POST of concatenated JSON envelopes per batch (``shared/research/sinks-schemas.md`` §1).
What each answer means decides whether the batch is done, retried, split or partly
dead-lettered, and every branch is chosen so that no record is ever silently lost:

* 200 with HEC's ``{"code": 0}`` is done (a 200 without it is something else answering, a
  proxy's page: retried); with indexer acknowledgement the batch is done only once every ackId
  read true, otherwise it is redelivered (Splunk's own advice: resend, accept duplicates).
  Answers are read streamed, at most 64 KiB, within ``timeout_s``.
* 408, 429, 5xx except 501 and network errors are retryable, honouring ``Retry-After``.
* 413 splits the batch in halves, recursively; a lone event still too big is dead-lettered.
* 400 codes 6/12/13 name the bad envelope in ``invalid-event-number``: it is dead-lettered and
  all the other records are resent. Splunk keeps the envelopes before the bad one, so those
  may arrive twice; ``fields.event_id`` lets Splunk searches deduplicate them.
* 401/403 and other 4xx are configuration errors that retrying cannot fix: the sink stops, its
  message naming what to change for each documented code (``refusal_hint``): a disabled token,
  an index the token may not write (code 7, the same for every event: never dead-lettered one by
  one), a proxy dropping the Authorization or channel header, ACK disabled on the token.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator

from forwarder.formats import JSON_FORMATS, get_formatter
from forwarder.http_shared import HttpUrl
from forwarder.record import Record
from forwarder.redaction import clip
from forwarder.retry import retryable_status
from forwarder.secret_stores import credentials_refused
from sinks.base import (
    DeliveryReport,
    FatalSinkError,
    RetryableError,
    SinkConfig,
    gzip_compress,
    plain_fields,
)
from sinks.http_exchange import exchange, tls_verify

PER_EVENT_CODES = {6, 12, 13}  # answers that name one bad envelope
EVENT_FIELDS = ("vendor", "action", "category", "outcome")  # copied from the record into ``fields``
TEMPLATE_KEYS = {*EVENT_FIELDS, "organization", "source", "event_id"}
# Any endpoint URL Splunk's docs show, reduced to the base the sink adds its paths to
_ENDPOINT = re.compile(r"/services/collector(?:/(?:event|raw|health|ack))?(?:/1\.0)?$")


class SplunkHecSinkConfig(SinkConfig):
    type: Literal["splunk_hec"]
    url: HttpUrl = Field(description="Base URL of the HEC listener, e.g. https://splunk.example.com:8088")
    token: SecretStr
    index: str | None = None
    source: str = "{vendor}:{organization}"
    sourcetype: str = "audit-forwarder:json"
    host: str = Field(default_factory=socket.gethostname)
    gzip: bool = Field(
        False,
        description="Compress each request with gzip. Off by default (as in Vector and Fluent Bit): on a LAN "
        "it costs more CPU than it saves; turn it on across a WAN or a metered link.",
    )
    use_ack: bool = False
    channel: str = Field(default_factory=lambda: str(uuid.uuid4()))
    ack_timeout_s: float = Field(300.0, gt=0)
    ack_poll_interval_s: float = Field(2.0, gt=0)
    tls_verify: bool = True
    ca_file: str | None = None
    timeout_s: float = Field(30.0, gt=0)

    def transport_warnings(self) -> list[str]:
        found = super().transport_warnings()
        if not self.tls_verify and self.url.startswith("https://"):
            found.append(
                "tls_verify: false: the server's certificate is not checked, so the HEC token goes to whoever "
                "answers for the host; give ca_file for a private CA instead"
            )
        return found

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """Accept the base URL or a full endpoint URL copied from Splunk's docs."""
        return _ENDPOINT.sub("", value.rstrip("/"))

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("token must not be empty")
        return value

    @field_validator("source")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format_map(dict.fromkeys(TEMPLATE_KEYS, ""))
        except (KeyError, ValueError, IndexError) as exc:
            keys = ", ".join(sorted(TEMPLATE_KEYS))
            raise ValueError(f"source template {value!r} is invalid ({exc!r}); keys: {keys}") from None
        return value

    @field_validator("channel")
    @classmethod
    def _guid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("channel must be a GUID") from None


def refusal_hint(status: int, code: int | None, config: SplunkHecSinkConfig) -> str:
    """What the operator must fix when HEC refuses for good. The codes' meanings are Splunk's
    (``shared/research/sinks-schemas.md`` §1.8); a refusal names the setting or the Splunk
    side to change, since the sink stops until someone does."""
    proxy = "a proxy between the forwarder and Splunk may drop or change"
    hints = {
        1: "check the HEC token: it is disabled in Splunk; enable it (Settings > Data inputs > HTTP Event "
        "Collector) or set another `token`",
        2: f"no token reached HEC: {proxy} the Authorization header",
        3: f"HEC could not read the Authorization header: {proxy} it",
        4: "check the HEC token: this Splunk does not know it (`token`)",
        6: "HEC could not read the request as a whole: "
        + (f"{proxy} the gzip body; try gzip: false" if config.gzip else f"{proxy} the body"),
        7: (
            f"the token may not write to index {config.index!r}: add it to the token's allowed indexes in Splunk, "
            "or fix `index`"
            if config.index
            else "the token's default index is not among its allowed indexes: fix the token in Splunk or set `index`"
        ),
        10: f"HEC wants the channel header: {proxy} X-Splunk-Request-Channel",
        11: f"HEC refused channel {config.channel}: {proxy} X-Splunk-Request-Channel; or set another `channel`",
        14: "indexer acknowledgement is off on this token: enable it on the token in Splunk, or set use_ack: false",
        15: "HEC could not index the envelope's `fields` (the sink sends flat strings): check the token's and "
        "index's indexed-field settings in Splunk",
        16: "HEC refused query-string authorization: remove any `?token=` from `url` (the sink sends the token "
        "in the Authorization header)",
    }
    if code in hints:
        return hints[code]
    if status in (401, 403):
        return "check the HEC token"
    if status == 404:
        return f"no HEC endpoint at {config.url}: check `url` (the listener's base URL, e.g. https://splunk:8088)"
    return "the request cannot succeed as it is; the batch stays journaled: fix the cause, then restart or reload"


@dataclass(slots=True)
class _Item:
    record: Record
    envelope: bytes


@dataclass(slots=True)
class _Answer:
    status: int
    code: int | None
    text: str
    body: dict[str, Any]
    retry_after: float | None

    def describe(self) -> str:
        code = f" code {self.code}" if self.code is not None else ""
        return f"HTTP {self.status}{code} {self.text}"


class SplunkHecSink:
    type_name: ClassVar[str] = "splunk_hec"

    def __init__(self, name: str, config: SplunkHecSinkConfig) -> None:
        self.name = name
        self.config = config
        self._format = get_formatter(config.format, config.format_options)
        self._json_formats = JSON_FORMATS
        self._client: httpx.AsyncClient | None = None
        self._envelopes: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        self._source_per_event = "event_id" in config.source  # any use, even nested: formatted per event

    def __repr__(self) -> str:
        return f"SplunkHecSink(name={self.name!r}, url={self.config.url!r})"

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        verify = await tls_verify(self.name, self.config.tls_verify, self.config.ca_file)
        self._client = await asyncio.to_thread(  # loading the CA bundle takes ~60 ms: not on the loop
            httpx.AsyncClient,
            base_url=self.config.url,
            verify=verify,
            timeout=self.config.timeout_s,
            headers={
                "Authorization": f"Splunk {self.config.token.get_secret_value()}",
                "X-Splunk-Request-Channel": self.config.channel,
            },
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self) -> str:
        """Health, then an empty POST: Splunk checks the token before the body, so the
        expected "No data" (code 5) proves the token is accepted without indexing anything."""
        health = await self._call("GET", "/services/collector/health")
        if health.status != 200:
            raise RuntimeError(f"HEC at {self.config.url} is unhealthy: {health.describe()}")
        probe = await self._call("POST", "/services/collector/event", b"")
        if probe.status in (401, 403):
            self._fatal(probe)
        if probe.code != 5 and probe.status != 200:
            raise RuntimeError(f"HEC token probe answered {probe.describe()}")
        ack = " (indexer acknowledgement on)" if self.config.use_ack else ""
        return f"HEC at {self.config.url} is healthy and accepts the token{ack}"

    # --- delivery --------------------------------------------------------------------------
    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        report = DeliveryReport()
        items: list[_Item] = []
        for record in batch:
            try:
                items.append(_Item(record, self._envelope(record)))
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                report.rejected.append((record, f"cannot build HEC envelope: {exc}"))
        ack_ids: list[int] = []
        if items:
            await self._post(items, report, ack_ids)
        if ack_ids:
            await self._await_acks(ack_ids)
        return report if report.rejected else None

    def _envelope(self, record: Record) -> bytes:
        """``{"time", "host", "source", "sourcetype", "index", "event", "fields"}``, assembled from
        bytes: everything but the time, the event and its id repeats for each combination of
        organization, source, vendor, action, category and outcome, so it is built once per
        combination and remembered (a dict and a dump per event were most of this sink's CPU)."""
        key = (record.organization, record.source, record.vendor, record.action, record.category, record.outcome)
        cacheable = not self._source_per_event and plain_fields(record)
        parts = self._envelopes.get(key) if cacheable else None
        if parts is None:
            parts = self._envelope_parts(record)
            if cacheable and len(self._envelopes) < 10_000:
                self._envelopes[key] = parts
        if self.config.format == "json":
            # Embedded as it is, never parsed: the journal only holds orjson's output. (A broken
            # record still cannot pass: HEC refuses its envelope and names it, code 6.)
            body = record.data
        elif self.config.format in self._json_formats:
            body = self._format(record)  # ECS, OCSF: searchable objects in Splunk
        else:
            body = orjson.dumps(self._format(record).decode(errors="replace"))
        # epoch seconds with milliseconds ("<sec>.<ms>", Splunk's format), signed as a whole:
        # divmod would write -1 ms as -1.999
        seconds, millis = divmod(abs(record.time_ms), 1000)
        head, fields = parts
        return b'{"time":%s%d.%03d,%s%s,"fields":%s%s}}' % (
            b"-" if record.time_ms < 0 else b"",
            seconds,
            millis,
            head,
            body,
            fields,
            orjson.dumps(record.event_id),
        )

    def _envelope_parts(self, record: Record) -> tuple[bytes, bytes]:
        """The envelope's bytes before the event, and its fields up to the event id's value."""
        values = (record.vendor, record.action, record.category, record.outcome)
        fields = {k: str(v) for k, v in zip(EVENT_FIELDS, values, strict=True) if v is not None}
        fields.update(organization=record.organization, source=record.source)
        envelope: dict[str, Any] = {
            "host": self.config.host,
            "source": self.config.source.format_map(defaultdict(str, fields, event_id=record.event_id)),
            "sourcetype": self.config.sourcetype,
        }
        if self.config.index:
            envelope["index"] = self.config.index
        head = orjson.dumps(envelope)[1:-1] + b',"event":'
        return head, orjson.dumps(fields)[:-1] + b',"event_id":'

    async def _post(self, items: list[_Item], report: DeliveryReport, ack_ids: list[int]) -> None:
        while items:
            body = b"".join(item.envelope for item in items)
            answer = await self._call("POST", "/services/collector/event", body, compress=self.config.gzip)
            if answer.status == 200 and answer.code != 0:
                # a proxy's or a load balancer's page: HEC itself always answers {"code": 0}
                raise RetryableError(
                    f"sink {self.name}: {self.config.url} answered 200 without HEC's success answer "
                    f"({answer.text!r}): is something else listening there, or a proxy in between?"
                )
            if answer.status == 200:
                if self.config.use_ack:
                    ack_ids.append(self._ack_id(answer))
                return
            if answer.status == 413:
                if len(items) == 1:
                    report.rejected.append((items[0].record, "event larger than the HEC request size limit"))
                    return
                middle = len(items) // 2
                await self._post(items[:middle], report, ack_ids)
                await self._post(items[middle:], report, ack_ids)
                return
            bad = answer.body.get("invalid-event-number")
            if answer.status == 400 and answer.code in PER_EVENT_CODES and isinstance(bad, int):
                if not 0 <= bad < len(items):
                    raise FatalSinkError(f"sink {self.name}: HEC named event {bad} of {len(items)}")
                reason = f"HEC rejected the event: {answer.describe()}"
                report.rejected.append((items[bad].record, reason))
                items = items[:bad] + items[bad + 1 :]
                continue
            self._raise_for(answer)

    def _ack_id(self, answer: _Answer) -> int:
        ack_id = answer.body.get("ackId")
        if not isinstance(ack_id, int):
            raise FatalSinkError(
                f"sink {self.name}: use_ack is on but HEC returned no ackId; "
                "enable indexer acknowledgement on the token or turn use_ack off"
            )
        return ack_id

    async def _await_acks(self, ack_ids: list[int]) -> None:
        """Poll until every ackId read true once; on timeout the whole batch is sent again."""
        waiting = set(ack_ids)
        deadline = time.monotonic() + self.config.ack_timeout_s
        while True:
            try:
                query = orjson.dumps({"acks": sorted(waiting)})
                answer = await self._call("POST", "/services/collector/ack", query)
            except RetryableError:
                answer = None  # a lost poll is not a lost ack: keep polling until the deadline
            if answer is not None and answer.status == 200:
                acks = answer.body.get("acks") or {}
                if not isinstance(acks, dict):
                    raise RetryableError(f"sink {self.name}: HEC's ack answer is malformed (acks is not an object)")
                waiting -= {ack for ack in waiting if acks.get(str(ack)) is True}
                if not waiting:
                    return
            elif answer is not None and answer.status not in (408, 429) and answer.status < 500:
                self._raise_for(answer)
            if time.monotonic() + self.config.ack_poll_interval_s > deadline:
                raise RetryableError(
                    f"sink {self.name}: {len(waiting)} HEC ack(s) not confirmed within "
                    f"{self.config.ack_timeout_s:g}s; redelivering the batch"
                )
            await asyncio.sleep(self.config.ack_poll_interval_s)

    # --- HTTP --------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, body: bytes | None = None, compress: bool = False) -> _Answer:
        await self.start()
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        if compress and body:
            body = await asyncio.to_thread(gzip_compress, body)
            headers["Content-Encoding"] = "gzip"
        answer = await exchange(
            self._client,
            method,
            path,
            sink=self.name,
            what="HEC",
            timeout_s=self.config.timeout_s,
            content=body,
            headers=headers,
        )
        payload = answer.payload  # read for its code, text and ackId
        code = payload.get("code")
        text = clip(self._scrub(str(payload.get("text") or answer.reason)), 200)
        code = code if isinstance(code, int) else None
        return _Answer(answer.status, code, text, payload, answer.retry_after)

    def _raise_for(self, answer: _Answer) -> NoReturn:
        status = answer.status
        if retryable_status(status):
            raise RetryableError(f"sink {self.name}: HEC answered {answer.describe()}", answer.retry_after)
        self._fatal(answer)

    def _fatal(self, answer: _Answer) -> NoReturn:
        if answer.status in (401, 403):  # an invalid token is Splunk's 403 (code 4)
            credentials_refused()  # a token from AWS may have rotated: read it again
        hint = refusal_hint(answer.status, answer.code, self.config)
        raise FatalSinkError(f"sink {self.name}: HEC refused: {answer.describe()} ({hint})")

    def _scrub(self, text: str) -> str:
        """A proxy or a future Splunk could echo the token back; it must not reach a log."""
        secret = self.config.token.get_secret_value()
        return text.replace(secret, "***") if secret else text
