"""Microsoft Sentinel (Azure Monitor Logs Ingestion API).

Events go to a Log Analytics workspace, where Sentinel reads them, through a data collection
rule (DCR): ``POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream_name}
?api-version=2023-01-01`` with a gzip-compressed JSON array and an Entra ID bearer token. This
replaces the HTTP Data Collector API that Microsoft retired in September 2026. Facts below come
from Microsoft's Logs Ingestion API overview, the API's REST specification (2023-01-01), the
Azure Monitor service limits and the Entra ID client-credentials and certificate-credentials
pages; what those pages do not say is marked *inferred* and is a setting where it matters.

What is guaranteed, and how:

* **Confirmed or retried.** A batch is done only when every request of it was answered 2xx (the
  API answers 204). 408, 429 and 5xx (except 501) and network errors are retried by the shared
  delivery layer, never sooner than the answer's `Retry-After` (the service limits say to wait
  that long on throttling). Records of a batch that Azure already confirmed are not sent again
  when the rest of the batch is retried (until a restart): a retry duplicates as little as it can.
* **Under the size limit.** Azure takes at most 1 MB per call, "for both compressed and
  uncompressed data": each batch is cut into requests whose *uncompressed* JSON array stays
  within `max_request_bytes` (default 1,000,000), then gzipped. Should Azure still answer 413,
  that request is split in halves and each half sent (recursively); a single event over the
  limit alone is dead-lettered with the reason, the rest delivered.
* **Token.** Entra ID client credentials (`tenant_id`, `client_id`, and `client_secret` or a
  certificate: a PS256 JWT assertion signed with `private_key_file`, its `x5t#S256` the SHA-256
  thumbprint of `certificate_file`), scope `https://monitor.azure.com//.default`. The token is
  cached and fetched again `token_refresh_margin_s` before it expires (at half its life when that
  is shorter). An ingestion 401 on a cached token drops it and fetches a new one once.
* **Stops loudly, loses nothing.** Wrong credentials (the token endpoint's 400/401, with what its
  AADSTS code means), a 401 with a fresh token, a 403 (the app registration lacks the
  **Monitoring Metrics Publisher** role on the DCR), 404 (unknown DCR or stream) and other 4xx
  stop this sink with a message saying what to fix; its offset stays, so restarting after the fix
  delivers everything. Secrets and tokens never appear in messages.
* **`check`** fetches a token, then POSTs an empty array `[]` to the stream: no record is stored
  whatever the answer. 2xx proves the token, the role and the DCR; 401/403/404 fail with the
  message above. (Whether Azure answers 204 or 400 to an empty array is not documented; *inferred*:
  authorization is checked before the body, so a 400 also counts as reachable and authorized.)

Each event becomes one row of these columns (for `format: json`, the default):

| column | type | from the event |
| --- | --- | --- |
| `TimeGenerated` | datetime | `time` (when it happened at the vendor) |
| `EventId` | string | `id`: the same event always has the same id; deduplicate on it |
| `ObservedTime` | datetime | `observed_time` |
| `Vendor`, `Source`, `Organization` | string | `vendor`, `source`, `organization` |
| `Action`, `Activity`, `Category`, `Outcome` | string | `action`, `activity`, `category`, `outcome` |
| `ActorId`, `ActorName`, `ActorEmail`, `ActorIp`, `ActorUserAgent`, `ActorType` | string | `actor.*` |
| `TargetType`, `TargetId`, `TargetName` | string | `target.*` |
| `Repository`, `Message`, `SchemaVersion` | string | `repository`, `message`, `schema_version` |
| `Details`, `Raw` | dynamic | `details`, `raw` (the vendor's entry as it was read) |

Azure truncates a field value over 32 KB, so a very large `Raw` arrives cut; the other columns and
the forwarder's file or S3 sinks keep the whole event. With `format: ecs` or `format: ocsf` each
row is `TimeGenerated`, `EventId` and `Event` (dynamic, the formatted object); text formats
are refused.

Setting up Azure (once): a custom table, a DCR whose stream declares these columns, and the role.
The table, with `az monitor log-analytics workspace table create --name AuditForwarder_CL
--columns TimeGenerated=datetime EventId=string ObservedTime=datetime Vendor=string
Source=string Organization=string Action=string Activity=string Category=string Outcome=string
ActorId=string ActorName=string ActorEmail=string ActorIp=string ActorUserAgent=string
ActorType=string TargetType=string TargetId=string TargetName=string Repository=string
Message=string SchemaVersion=string Details=dynamic Raw=dynamic` (plus `-g`/`--workspace-name`).
The DCR (`kind: Direct` gives it its own ingestion endpoint, the `endpoint` to configure; with a
data collection endpoint, use the DCE's logs ingestion URL and add `dataCollectionEndpointId`):

```json
{
  "location": "westeurope",
  "kind": "Direct",
  "properties": {
    "streamDeclarations": {
      "Custom-AuditForwarder_CL": {"columns": [
        {"name": "TimeGenerated", "type": "datetime"}, {"name": "EventId", "type": "string"},
        {"name": "ObservedTime", "type": "datetime"}, {"name": "Vendor", "type": "string"},
        {"name": "Source", "type": "string"}, {"name": "Organization", "type": "string"},
        {"name": "Action", "type": "string"}, {"name": "Activity", "type": "string"},
        {"name": "Category", "type": "string"}, {"name": "Outcome", "type": "string"},
        {"name": "ActorId", "type": "string"}, {"name": "ActorName", "type": "string"},
        {"name": "ActorEmail", "type": "string"}, {"name": "ActorIp", "type": "string"},
        {"name": "ActorUserAgent", "type": "string"}, {"name": "ActorType", "type": "string"},
        {"name": "TargetType", "type": "string"}, {"name": "TargetId", "type": "string"},
        {"name": "TargetName", "type": "string"}, {"name": "Repository", "type": "string"},
        {"name": "Message", "type": "string"}, {"name": "SchemaVersion", "type": "string"},
        {"name": "Details", "type": "dynamic"}, {"name": "Raw", "type": "dynamic"}
      ]}
    },
    "destinations": {"logAnalytics": [{"name": "workspace", "workspaceResourceId":
      "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.OperationalInsights/workspaces/<ws>"}]},
    "dataFlows": [{"streams": ["Custom-AuditForwarder_CL"], "destinations": ["workspace"],
      "transformKql": "source", "outputStream": "Custom-AuditForwarder_CL"}]
  }
}
```

Then give the app registration the **Monitoring Metrics Publisher** role on that DCR (Access
control (IAM) of the DCR; Microsoft says it may take up to 30 minutes to apply), and copy the
DCR's `immutableId` (its JSON view) into `dcr_immutable_id`. Sovereign clouds: set
`authority_host` (`https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`) and
`scope` (`https://monitor.azure.us//.default`, `https://monitor.azure.cn//.default`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn, Self

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from forwarder.event import format_ms
from forwarder.formats import JSON_FORMATS, get_formatter
from forwarder.http_shared import HttpUrl, read_at_most
from forwarder.record import Record
from forwarder.retry import parse_retry_after
from sinks.base import DeliveryReport, FatalSinkError, RetryableError, SinkConfig, gzip_compress
from sinks.sentinel_auth import AADSTS_HINTS, ASSERTION_TYPE, Certificate, CredentialError, TokenCache, load_certificate

ANSWER_BYTES = 64 * 1024  # an answer is read for its status, error code and message only
ROLE = "Monitoring Metrics Publisher"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")  # a GUID or a domain (contoso.onmicrosoft.com)
_DCR = re.compile(r"^dcr-[0-9A-Za-z]+$")
_STREAM = re.compile(r"^(Custom|Microsoft)-[A-Za-z0-9_-]+$")


class SentinelSinkConfig(SinkConfig):
    type: Literal["sentinel"]
    tenant_id: str = Field(description="Directory (tenant) ID of the app registration, a GUID or a domain.")
    client_id: str = Field(description="Application (client) ID of the app registration.")
    client_secret: SecretStr | None = Field(None, description="Client secret (its Value); or use a certificate.")
    certificate_file: str | None = Field(
        None, description="PEM certificate uploaded to the app registration (instead of client_secret)."
    )
    private_key_file: str | None = Field(
        None, description="PEM private key (RSA) of certificate_file; omitted: read from certificate_file."
    )
    private_key_password: SecretStr | None = Field(None, description="Password of an encrypted private key.")
    endpoint: HttpUrl = Field(
        description="Logs ingestion URL of the DCR (kind Direct) or of its data collection endpoint, "
        "e.g. https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com"
    )
    dcr_immutable_id: str = Field(description="The DCR's immutableId, dcr-... (its JSON view).")
    stream_name: str = Field(description="Stream of the DCR, e.g. Custom-AuditForwarder_CL.")
    api_version: str = Field("2023-01-01", description="api-version of the Logs Ingestion API.")
    authority_host: HttpUrl = Field(
        "https://login.microsoftonline.com", description="Entra ID host; another for sovereign clouds."
    )
    scope: str = Field(
        "https://monitor.azure.com//.default",
        description="Token scope: the Logs Ingestion audience plus /.default (monitor.azure.us, .cn elsewhere).",
    )
    max_request_bytes: int = Field(
        1_000_000, ge=1024, le=1_048_576,
        description="Largest uncompressed JSON array per request; Azure takes at most 1 MB per call.",
    )  # fmt: skip
    token_refresh_margin_s: float = Field(300.0, ge=0, description="Fetch a new token this long before expiry.")
    tls_verify: bool = True
    ca_file: str | None = None
    timeout_s: float = 30.0

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not _TENANT.match(value):
            raise ValueError("tenant_id must be the directory (tenant) ID, a GUID, or a domain such as contoso.com")
        return value

    @field_validator("client_id")
    @classmethod
    def _client(cls, value: str) -> str:
        if not _GUID.match(value):
            raise ValueError("client_id must be the application (client) ID, a GUID")
        return value

    @field_validator("dcr_immutable_id")
    @classmethod
    def _dcr(cls, value: str) -> str:
        if not _DCR.match(value):
            raise ValueError("dcr_immutable_id must be the DCR's immutableId, dcr-<hex> (not its name or ARM id)")
        return value

    @field_validator("stream_name")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not _STREAM.match(value):
            raise ValueError("stream_name must be a stream of the DCR, e.g. Custom-AuditForwarder_CL")
        return value

    @field_validator("endpoint", "authority_host")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if self.format not in JSON_FORMATS:
            raise ValueError(f"format {self.format!r} is text; the Logs Ingestion API takes JSON (json, ecs or ocsf)")
        has_secret = self.client_secret is not None and bool(self.client_secret.get_secret_value().strip())
        if has_secret == (self.certificate_file is not None):
            raise ValueError("give exactly one credential: client_secret, or certificate_file (and private_key_file)")
        if self.private_key_file and not self.certificate_file:
            raise ValueError("private_key_file needs certificate_file")
        return self

    def transport_warnings(self) -> list[str]:
        found = super().transport_warnings()
        if not self.tls_verify:
            found.append(
                "tls_verify: false: Entra ID's and the endpoint's certificates are not checked, so the client "
                "credential goes to whoever answers; give ca_file for a private CA instead"
            )
        return found

    @property
    def token_url(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def ingestion_path(self) -> str:
        return f"/dataCollectionRules/{self.dcr_immutable_id}/streams/{self.stream_name}"


@dataclass(slots=True)
class _Row:
    record: Record
    data: bytes


@dataclass(slots=True)
class _Answer:
    status: int
    code: str
    message: str
    retry_after: float | None
    payload: dict[str, Any]

    def describe(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status}{code}: {self.message}" if self.message else f"HTTP {self.status}{code}"


class SentinelSink:
    type_name: ClassVar[str] = "sentinel"

    def __init__(self, name: str, config: SentinelSinkConfig) -> None:
        self.name = name
        self.config = config
        self._format = get_formatter(config.format, config.format_options)
        self._client: httpx.AsyncClient | None = None
        self._certificate: Certificate | None = None
        self.tokens = TokenCache(self._fetch_token, config.token_refresh_margin_s)
        self._confirmed: set[tuple[int, str]] = set()  # (seq, id) of the current batch Azure already took

    def __repr__(self) -> str:
        return f"SentinelSink(name={self.name!r}, endpoint={self.config.endpoint!r})"

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        config = self.config
        if config.certificate_file and self._certificate is None:
            password = config.private_key_password.get_secret_value() if config.private_key_password else None
            try:
                self._certificate = await asyncio.to_thread(
                    load_certificate, config.certificate_file, config.private_key_file, password
                )
            except CredentialError as exc:  # a missing file or a wrong key: retrying cannot help
                raise FatalSinkError(f"sink {self.name}: {exc}") from None
        verify: ssl.SSLContext | bool = config.tls_verify
        if config.tls_verify and config.ca_file:
            try:
                verify = await asyncio.to_thread(ssl.create_default_context, cafile=config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise FatalSinkError(f"sink {self.name}: cannot use ca_file {config.ca_file}: {exc}") from None
        self._client = await asyncio.to_thread(httpx.AsyncClient, verify=verify, timeout=config.timeout_s)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self) -> str:
        answer = await self._upload(b"[]")
        if 200 <= answer.status < 300 or answer.status == 400:
            how = "accepted an empty upload" if answer.status < 300 else f"reached ({answer.describe()})"
            return (
                f"token obtained from {self.config.authority_host}; stream {self.config.stream_name} of DCR "
                f"{self.config.dcr_immutable_id} at {self.config.endpoint} {how}"
            )
        self._raise_for(answer)

    # --- delivery --------------------------------------------------------------------------
    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        report = DeliveryReport()
        self._confirmed &= {(record.seq, record.event_id) for record in batch}
        rows: list[_Row] = []
        for record in batch:
            if (record.seq, record.event_id) in self._confirmed:
                continue
            try:
                data = self._row(record)
            except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
                report.rejected.append((record, f"cannot build the Sentinel row: {exc}"))
                continue
            if len(data) + 2 > self.config.max_request_bytes:
                report.rejected.append((record, self._too_large(len(data) + 2)))
                continue
            rows.append(_Row(record, data))
        for chunk in self._chunks(rows):
            await self._post(chunk, report)
        self._confirmed.clear()
        return report if report.rejected else None

    def _too_large(self, size: int) -> str:
        return (
            f"event is {size} bytes as JSON, over the Logs Ingestion API's per-call limit "
            f"(max_request_bytes={self.config.max_request_bytes})"
        )

    def _row(self, record: Record) -> bytes:
        """One row of the table (the mapping in this module's docstring)."""
        time_generated = format_ms(record.time_ms)
        if self.config.format != "json":
            event = orjson.loads(self._format(record))
            return orjson.dumps({"TimeGenerated": time_generated, "EventId": record.event_id, "Event": event})
        event = record.event()
        actor = _mapping(event.get("actor"))
        target = _mapping(event.get("target"))
        row = {
            "TimeGenerated": time_generated,
            "EventId": record.event_id,
            "ObservedTime": _text(event.get("observed_time")),
            "Vendor": record.vendor or _text(event.get("vendor")),
            "Source": record.source,
            "Organization": record.organization,
            "Action": _text(event.get("action")),
            "Activity": _text(event.get("activity")),
            "Category": _text(event.get("category")),
            "Outcome": _text(event.get("outcome")),
            "ActorId": _text(actor.get("id")),
            "ActorName": _text(actor.get("name")),
            "ActorEmail": _text(actor.get("email")),
            "ActorIp": _text(actor.get("ip")),
            "ActorUserAgent": _text(actor.get("user_agent")),
            "ActorType": _text(actor.get("type")),
            "TargetType": _text(target.get("type")),
            "TargetId": _text(target.get("id")),
            "TargetName": _text(target.get("name")),
            "Repository": _text(event.get("repository")),
            "Message": _text(event.get("message")),
            "SchemaVersion": _text(event.get("schema_version")),
            "Details": event.get("details"),
            "Raw": event.get("raw"),
        }
        return orjson.dumps(row)

    def _chunks(self, rows: list[_Row]) -> list[list[_Row]]:
        """Consecutive runs of rows whose JSON array (``[`` rows joined by ``,`` ``]``) fits."""
        chunks: list[list[_Row]] = []
        current: list[_Row] = []
        size = 2
        for row in rows:
            extra = len(row.data) + (1 if current else 0)
            if current and size + extra > self.config.max_request_bytes:
                chunks.append(current)
                current, size, extra = [], 2, len(row.data)
            current.append(row)
            size += extra
        if current:
            chunks.append(current)
        return chunks

    async def _post(self, rows: list[_Row], report: DeliveryReport) -> None:
        body = b"[" + b",".join(row.data for row in rows) + b"]"
        answer = await self._upload(body)
        if 200 <= answer.status < 300:
            self._confirmed.update((row.record.seq, row.record.event_id) for row in rows)
            return
        if answer.status == 413:
            if len(rows) == 1:
                report.rejected.append(
                    (rows[0].record, self._too_large(len(body)) + f"; Azure said {answer.describe()}")
                )
                return
            middle = len(rows) // 2
            await self._post(rows[:middle], report)
            await self._post(rows[middle:], report)
            return
        self._raise_for(answer)

    # --- HTTP --------------------------------------------------------------------------------
    async def _upload(self, body: bytes) -> _Answer:
        """POST ``body``; a 401 on a token from the cache (revoked, or expired sooner than it said)
        drops it and tries once more with a new one. A 401 on a new token is the answer."""
        compressed = await asyncio.to_thread(gzip_compress, body) if len(body) > 4096 else gzip_compress(body)
        fetched = self.tokens.fetched
        token = await self.tokens.get()
        answer = await self._ingest(compressed, token)
        if answer.status == 401 and self.tokens.fetched == fetched:
            self.tokens.invalidate(token)
            answer = await self._ingest(compressed, await self.tokens.get())
        return answer

    async def _ingest(self, compressed: bytes, token: str) -> _Answer:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "x-ms-client-request-id": str(uuid.uuid4()),
        }
        url = f"{self.config.endpoint}{self.config.ingestion_path}"
        params = {"api-version": self.config.api_version}
        return await self._call(url, "the Logs Ingestion endpoint", compressed, headers, params)

    async def _fetch_token(self) -> tuple[str, float]:
        await self.start()  # loads the certificate
        config = self.config
        form = {"grant_type": "client_credentials", "client_id": config.client_id, "scope": config.scope}
        if self._certificate is not None:
            assertion = await asyncio.to_thread(self._certificate.assertion, config.client_id, config.token_url)
            form |= {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        elif config.client_secret is not None:
            form["client_secret"] = config.client_secret.get_secret_value()
        content = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = await self._call(config.token_url, "Entra ID", content, headers, None, token_answer=True)
        if answer.status == 200:
            return self._token_from(answer)
        if answer.status in (408, 429) or (answer.status >= 500 and answer.status != 501):
            raise RetryableError(f"sink {self.name}: Entra ID answered {answer.describe()}", answer.retry_after)
        hints = [hint for code, hint in AADSTS_HINTS.items() if f"AADSTS{code}:" in answer.message]
        hint = f" ({'; '.join(hints)})" if hints else " (check tenant_id, client_id and the secret or certificate)"
        raise FatalSinkError(
            f"sink {self.name}: Entra ID refused the client credentials of {config.client_id}: "
            f"{answer.describe()}{hint}"
        )

    def _token_from(self, answer: _Answer) -> tuple[str, float]:
        payload = answer.payload
        token = payload.get("access_token")
        lifetime = payload.get("expires_in")
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float) or lifetime <= 0:
            raise RetryableError(
                f"sink {self.name}: Entra ID's token answer has no access_token/expires_in: is something else "
                f"answering at {self.config.authority_host}?"
            )
        return token, float(lifetime)

    async def _call(
        self, url: str, what: str, body: bytes, headers: dict[str, str], params: dict[str, str] | None,
        token_answer: bool = False,
    ) -> _Answer:  # fmt: skip
        await self.start()
        assert self._client is not None
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with self._client.stream("POST", url, content=body, headers=headers, params=params) as resp:
                    content = await read_at_most(resp, ANSWER_BYTES)
        except TimeoutError:
            raise RetryableError(
                f"sink {self.name}: {what} gave no complete answer within timeout_s={self.config.timeout_s:g}s"
            ) from None
        except httpx.LocalProtocolError as exc:  # its text may quote our headers, token and all
            raise RetryableError(f"sink {self.name}: request to {what} not sent: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"sink {self.name}: {what} unreachable: {type(exc).__name__}: {exc}") from None
        try:
            parsed = orjson.loads(content) if content else {}
        except orjson.JSONDecodeError:
            parsed = {}
        payload: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if token_answer:  # {"error", "error_description"}; the description's first line has the AADSTS code
            code = str(payload.get("error") or "")
            lines = str(payload.get("error_description") or resp.reason_phrase or "").splitlines()
            message = lines[0] if lines else ""
        else:  # Azure.Core ErrorResponse: {"error": {"code", "message"}}
            error = _mapping(payload.get("error"))
            code = str(error.get("code") or resp.headers.get("x-ms-error-code") or "")
            message = str(error.get("message") or resp.reason_phrase or "")
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return _Answer(resp.status_code, self._scrub(code)[:100], self._scrub(message)[:300], retry_after, payload)

    def _raise_for(self, answer: _Answer) -> NoReturn:
        status = answer.status
        config = self.config
        if status in (408, 429) or (status >= 500 and status != 501):
            raise RetryableError(
                f"sink {self.name}: Logs Ingestion API answered {answer.describe()}", answer.retry_after
            )
        if status == 403:
            hint = (
                f"the app registration {config.client_id} needs the '{ROLE}' role on the data collection rule "
                f"{config.dcr_immutable_id}: assign it under the DCR's Access control (IAM); a new assignment "
                "may take up to 30 minutes to apply, then restart or reload"
            )
        elif status == 401:
            hint = (
                f"a fresh token was refused: check that scope {config.scope} matches the endpoint's cloud and that "
                f"tenant_id {config.tenant_id} is the DCR's tenant"
            )
        elif status == 404:
            hint = (
                f"no DCR {config.dcr_immutable_id} with stream {config.stream_name} at {config.endpoint}: check "
                "dcr_immutable_id (immutableId in the DCR's JSON view), stream_name (its streamDeclarations) and "
                "that endpoint is this DCR's (or its DCE's) logs ingestion URL"
            )
        else:
            hint = f"check api_version {config.api_version} and that the DCR's stream declares this sink's columns"
        raise FatalSinkError(f"sink {self.name}: Logs Ingestion API refused: {answer.describe()} ({hint})")

    def _scrub(self, text: str) -> str:
        """The secret, the password or a token echoed back must not reach a log."""
        secrets = [self.tokens.current() or ""]
        for field in (self.config.client_secret, self.config.private_key_password):
            if field is not None:
                secrets.append(field.get_secret_value())
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _text(value: Any) -> str | None:
    """A string column's value: hostile events may hold numbers, booleans or objects there."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
