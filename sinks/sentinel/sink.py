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
  limit alone is dead-lettered with the reason, the rest delivered. A 413 for one event under
  64 KiB (and under `max_request_bytes`) is not a large event but a body limit set too low (a
  proxy in front of the endpoint): the sink stops with that message instead of dead-lettering
  the whole stream one event at a time.
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
  authorization is checked before the body, so a 400 also counts as reachable and authorized,
  unless its code or message names the api-version or the stream: that 400 fails `check` with
  what to fix, as it would stop the sink at the first batch.)
* **One cloud, checked at load.** `endpoint`, `authority_host` and `scope` must belong to the
  same cloud (public Azure, Azure Government, Azure China; hosts of neither, such as a proxy,
  are not judged): a sovereign endpoint or authority left with the public scope is refused at
  start, naming the settings to set, since its tokens would be refused at the first batch. An
  `endpoint` or `authority_host` with a path (a whole request URL pasted) is refused likewise.

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
DCR's `immutableId` (its JSON view) into `dcr_immutable_id`. Sovereign clouds: besides the DCR's
endpoint there (`*.ingest.monitor.azure.us`, `.cn`), set `authority_host`
(`https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`) and `scope`
(`https://monitor.azure.us//.default`, `https://monitor.azure.cn//.default`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import ClassVar, NoReturn

import httpx
import orjson

from forwarder.formats import get_formatter
from forwarder.record import Record
from forwarder.retry import retryable_status
from sinks.base import DeliveryReport, FatalSinkError, RetryableError, gzip_compress
from sinks.http_exchange import exchange, tls_verify
from sinks.sentinel.answers import SMALLEST_REFUSAL_BELIEVED, Answer, answer_of, names_a_setting, refusal_hint
from sinks.sentinel.auth import (
    Certificate,
    CredentialError,
    TokenCache,
    credentials_hint,
    load_certificate,
    token_form,
    token_of,
)
from sinks.sentinel.config import SentinelSinkConfig
from sinks.sentinel.rows import Row, array, chunks, row_of


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
        verify = await tls_verify(self.name, config.tls_verify, config.ca_file)
        self._client = await asyncio.to_thread(httpx.AsyncClient, verify=verify, timeout=config.timeout_s)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self) -> str:
        answer = await self._upload(b"[]")
        if 200 <= answer.status < 300 or (
            answer.status == 400 and not names_a_setting(answer, self.config.stream_name)
        ):
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
        rows: list[Row] = []
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
            rows.append(Row(record, data))
        for chunk in chunks(rows, self.config.max_request_bytes):
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
        return row_of(record, self.config.format, self._format)

    async def _post(self, rows: list[Row], report: DeliveryReport) -> None:
        body = array(rows)
        answer = await self._upload(body)
        if 200 <= answer.status < 300:
            self._confirmed.update((row.record.seq, row.record.event_id) for row in rows)
            return
        if answer.status == 413:
            if len(rows) == 1:
                if len(body) < min(SMALLEST_REFUSAL_BELIEVED, self.config.max_request_bytes):
                    # refused alone though small: every event would be dead-lettered one by one
                    raise FatalSinkError(
                        f"sink {self.name}: Logs Ingestion API refused even one {len(body)}-byte event as too "
                        f"large ({answer.describe()}), so the limit is not the events' size: check the body limit "
                        f"of a proxy in front of {self.config.endpoint}, and that max_request_bytes "
                        f"({self.config.max_request_bytes}) is not above it"
                    )
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
    async def _upload(self, body: bytes) -> Answer:
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

    async def _ingest(self, compressed: bytes, token: str) -> Answer:
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
        assertion = None
        if self._certificate is not None:
            assertion = await asyncio.to_thread(self._certificate.assertion, config.client_id, config.token_url)
        content = token_form(config, assertion)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = await self._call(config.token_url, "Entra ID", content, headers, None, token_answer=True)
        if answer.status == 200:
            found = token_of(answer.payload)
            if found is None:
                raise RetryableError(
                    f"sink {self.name}: Entra ID's token answer has no access_token/expires_in: is something else "
                    f"answering at {self.config.authority_host}?"
                )
            return found
        if retryable_status(answer.status):
            raise RetryableError(f"sink {self.name}: Entra ID answered {answer.describe()}", answer.retry_after)
        raise FatalSinkError(
            f"sink {self.name}: Entra ID refused the client credentials of {config.client_id}: "
            f"{answer.describe()}{credentials_hint(answer.message)}"
        )

    async def _call(
        self,
        url: str,
        what: str,
        body: bytes,
        headers: dict[str, str],
        params: dict[str, str] | None,
        token_answer: bool = False,
    ) -> Answer:
        await self.start()
        assert self._client is not None
        found = await exchange(
            self._client,
            "POST",
            url,
            sink=self.name,
            what=what,
            timeout_s=self.config.timeout_s,
            content=body,
            headers=headers,
            params=params,
        )
        return answer_of(found, token_answer, self._scrub)

    def _raise_for(self, answer: Answer) -> NoReturn:
        if retryable_status(answer.status):
            raise RetryableError(
                f"sink {self.name}: Logs Ingestion API answered {answer.describe()}", answer.retry_after
            )
        hint = refusal_hint(answer.status, self.config)
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
