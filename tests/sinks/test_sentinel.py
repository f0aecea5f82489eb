"""The Sentinel sink against the Entra ID + Logs Ingestion receiver, over real loopback sockets.

The receiver (``python -m forwarder.emulators sentinel``) runs in its own process; the first
part drives the sink directly, the second checks the receiver's protocol edge cases, the third
runs the real daemon against it under faults (429 storms, a token revoked mid-run, short-lived
tokens, 413 on bodies over a size) and proves every event arrives under its id.
"""

from __future__ import annotations

import datetime as dt
import gzip
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from forwarder.emulators.sentinel import CLIENT_ID, CLIENT_SECRET, DCR, STREAM, TENANT
from forwarder.event import format_ms, make_event
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError, RetryableError
from sinks.sentinel.auth import TokenCache
from sinks.sentinel.config import SentinelSinkConfig
from sinks.sentinel.sink import SentinelSink
from tests.support.config import make_config
from tests.support.daemon import DaemonProcess, cli
from tests.support.emulators import EmulatorProcess, running
from tests.support.vendors import ORGS, codacy_source, expected_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

BASE_MS = 1_700_000_000_000
INGEST = "/dataCollectionRules/"


class Receiver:
    def __init__(self, process: EmulatorProcess) -> None:
        self.process = process
        self.url = process.url
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def config(self, **switches: Any) -> None:
        self.http.post("/_control/config", json=switches).raise_for_status()

    def fault(self, **fault: Any) -> None:
        self.http.post("/_control/faults", json=fault).raise_for_status()

    def revoke(self) -> None:
        self.http.post("/_control/revoke").raise_for_status()

    def rows(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_control/entries").json())

    def batches(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_control/batches").json())

    def token_requests(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_control/tokens").json())

    def statuses(self) -> list[int]:
        return [status for _, _, path, status in self.http.get("/_control/requests").json() if INGEST in path]

    def token(self, secret: str = CLIENT_SECRET) -> str:
        reply = self.http.post(
            f"/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": secret,
                "scope": "https://monitor.azure.com//.default",
            },
        )
        return str(reply.json().get("access_token", ""))

    def upload(
        self, body: bytes, token: str | None = None, version: str = "2023-01-01", **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post(
            f"/dataCollectionRules/{DCR}/streams/{STREAM}",
            params={"api-version": version},
            content=body,
            headers={k.replace("_", "-"): v for k, v in headers.items()},
        )


@pytest.fixture
def azure() -> Iterator[Receiver]:
    process = running("sentinel")
    receiver = Receiver(process)
    try:
        yield receiver
    finally:
        receiver.http.close()
        process.stop()


def records(count: int, start: int = 0, pad: int = 0) -> list[Record]:
    out = []
    for i in range(start, start + count):
        ms = BASE_MS + i * 1001
        event = make_event(
            id=f"codacy:{i:04d}",
            time=format_ms(ms),
            observed_time=format_ms(ms + 5),
            vendor="codacy",
            source="codacy-prod",
            organization="gh/acme",
            action="user.login",
            activity="login",
            category="authentication",
            outcome="success",
            raw={"n": i, "pad": "x" * pad},
            actor={"email": "alice@example.com", "type": "user", "ip": "192.0.2.7"},
            target={"type": "repository", "id": "r1", "name": "api"},
            repository="acme/api",
        )
        out.append(record_of(event, i, ms))
    return out


def settings(url: str, **options: Any) -> dict[str, Any]:
    return {
        "type": "sentinel",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority_host": url,
        "endpoint": url,
        "dcr_immutable_id": DCR,
        "stream_name": STREAM,
        **options,
    }


def make_sink(url: str, **options: Any) -> SentinelSink:
    return SentinelSink("sentinel", SentinelSinkConfig(**settings(url, **options)))


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["EventId"] for row in rows]


# --- the sink --------------------------------------------------------------------------------
async def test_delivers_gzipped_rows_with_the_documented_columns(azure: Receiver) -> None:
    sink = make_sink(azure.url)
    batch = records(3)
    assert await sink.send(batch) is None
    assert await sink.send(records(2, start=3)) is None
    await sink.close()
    rows = azure.rows()
    assert ids(rows) == [f"codacy:{i:04d}" for i in range(5)]
    assert [b["content_encoding"] for b in azure.batches()] == ["gzip", "gzip"]
    assert len(azure.token_requests()) == 1  # cached across sends
    first = rows[1]
    assert first == {
        "TimeGenerated": "2023-11-14T22:13:21.001Z",
        "EventId": "codacy:0001",
        "ObservedTime": "2023-11-14T22:13:21.006Z",
        "Vendor": "codacy",
        "Source": "codacy-prod",
        "Organization": "gh/acme",
        "Action": "user.login",
        "Activity": "login",
        "Category": "authentication",
        "Outcome": "success",
        "ActorId": None,
        "ActorName": None,
        "ActorEmail": "alice@example.com",
        "ActorIp": "192.0.2.7",
        "ActorUserAgent": None,
        "ActorType": "user",
        "TargetType": "repository",
        "TargetId": "r1",
        "TargetName": "api",
        "Repository": "acme/api",
        "Message": None,
        "SchemaVersion": batch[1].event()["schema_version"],
        "Details": {},
        "Raw": {"n": 1, "pad": ""},
    }
    assert dt.datetime.fromisoformat(first["TimeGenerated"]).timestamp() * 1000 == batch[1].time_ms


async def test_hostile_values_become_strings_and_a_broken_record_is_dead_lettered(azure: Receiver) -> None:
    [good] = records(1)
    event = good.event() | {"id": "codacy:odd", "action": 7, "outcome": True, "actor": "not-an-object"}
    odd = record_of(event, 2, good.time_ms)
    broken = Record(9, "codacy:bad", "codacy-prod", "gh/acme", BASE_MS, b"{not json")
    report = await make_sink(azure.url).send([good, odd, broken])
    assert report is not None and [r.event_id for r, _ in report.rejected] == ["codacy:bad"]
    rows = azure.rows()
    assert ids(rows) == ["codacy:0000", "codacy:odd"]
    assert (rows[1]["Action"], rows[1]["Outcome"], rows[1]["ActorEmail"]) == ("7", "True", None)


async def test_ecs_format_sends_the_formatted_object(azure: Receiver) -> None:
    await make_sink(azure.url, format="ecs").send(records(1))
    [row] = azure.rows()
    assert set(row) == {"TimeGenerated", "EventId", "Event"} and row["Event"]["event"]["module"] == "codacy"


async def test_a_batch_is_cut_into_requests_within_max_request_bytes(azure: Receiver) -> None:
    sink = make_sink(azure.url, max_request_bytes=4096)
    batch = records(40, pad=300)
    assert await sink.send(batch) is None
    batches = azure.batches()
    assert len(batches) > 3 and all(b["uncompressed"] <= 4096 for b in batches)
    assert sum(b["rows"] for b in batches) == 40
    assert ids(azure.rows()) == [r.event_id for r in batch]  # each once, in order


async def test_event_over_the_limit_is_dead_lettered_before_sending(azure: Receiver) -> None:
    sink = make_sink(azure.url, max_request_bytes=4096)
    huge = records(1, start=5, pad=5000)[0]
    report = await sink.send([*records(2), huge])
    assert report is not None and [(r.event_id, "per-call limit" in why) for r, why in report.rejected] == [
        ("codacy:0005", True)
    ]
    assert ids(azure.rows()) == ["codacy:0000", "codacy:0001"]


async def test_413_splits_the_request_and_rejects_a_lone_oversized_event(azure: Receiver) -> None:
    sink = make_sink(azure.url)
    batch = records(9, pad=30_000)  # rows large enough that a lone one refused is believed too large
    row_size = len(sink._row(batch[0]))
    azure.config(max_body_bytes=int(row_size * 2.5))  # decoded: two rows fit, three do not
    huge = records(1, start=9, pad=row_size * 3)[0]
    report = await sink.send([*batch[:4], huge, *batch[4:]])
    assert report is not None
    [(record, reason)] = report.rejected
    assert record.event_id == "codacy:0009" and "413 ContentLengthLimitExceeded" in reason
    assert sorted(ids(azure.rows())) == [r.event_id for r in batch]
    assert 413 in azure.statuses() and all(b["rows"] <= 2 for b in azure.batches())


async def test_413_for_a_small_event_stops_the_sink_instead_of_dead_lettering_the_stream(azure: Receiver) -> None:
    # a body limit far below any event (a proxy in front of the endpoint, or a gateway's setting)
    # refuses every event alone: that is a misconfigured limit, not large events
    azure.config(max_body_bytes=50)
    sink = make_sink(azure.url)
    with pytest.raises(FatalSinkError) as caught:
        await sink.send(records(5))
    message = str(caught.value)
    assert "413" in message and "body limit" in message and "max_request_bytes" in message
    assert azure.rows() == []


async def test_check_fails_on_a_400_that_names_the_api_version_or_the_stream(azure: Receiver) -> None:
    with pytest.raises(FatalSinkError, match=r"InvalidApiVersion.*api_version 2099-01-01"):
        await make_sink(azure.url, api_version="2099-01-01").check()
    azure.fault(
        status=400,
        path_contains=INGEST,
        body='{"error": {"code": "InvalidStream", "message": "Stream Custom-X_CL is not in the rule."}}',
    )
    with pytest.raises(FatalSinkError, match=r"InvalidStream.*stream_name"):
        await make_sink(azure.url).check()
    # a 400 about the empty body itself still counts as reached and authorized (inferred)
    azure.fault(
        status=400,
        path_contains=INGEST,
        body='{"error": {"code": "InvalidPayload", "message": "The request body has no records."}}',
    )
    assert "reached (HTTP 400 InvalidPayload" in await make_sink(azure.url).check()
    azure.fault(
        status=400,
        path_contains=INGEST,
        body='{"error": {"code": "InvalidPayload", "message": "The request stream could not be read."}}',
    )
    assert "reached (HTTP 400 InvalidPayload" in await make_sink(azure.url).check()


async def test_429_is_retryable_with_its_retry_after(azure: Receiver) -> None:
    sink = make_sink(azure.url)
    azure.fault(status=429, retry_after="7", path_contains=INGEST)
    with pytest.raises(RetryableError, match="429 TooManyRequests") as caught:
        await sink.send(records(2))
    assert caught.value.retry_after == 7.0 and azure.rows() == []
    assert await sink.send(records(2)) is None
    assert ids(azure.rows()) == ["codacy:0000", "codacy:0001"]


async def test_a_batch_throttled_midway_resends_only_what_azure_did_not_confirm(azure: Receiver) -> None:
    sink = make_sink(azure.url, max_request_bytes=4096)
    batch = records(20, pad=300)
    azure.config(throttle_after_accepted=2)  # the third request of the batch gets a 429
    with pytest.raises(RetryableError, match="429"):
        await sink.send(batch)
    stored = ids(azure.rows())
    assert stored == [r.event_id for r in batch[: len(stored)]] and 0 < len(stored) < 20
    assert await sink.send(batch) is None  # the delivery layer's retry: the same batch
    assert ids(azure.rows()) == [r.event_id for r in batch]  # nothing twice, nothing missing


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, RetryableError),
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (400, FatalSinkError),
        (501, FatalSinkError),
    ],
)
async def test_status_classification(azure: Receiver, status: int, error: type[Exception]) -> None:
    azure.fault(status=status, path_contains=INGEST)
    with pytest.raises(error, match=f"HTTP {status}"):
        await make_sink(azure.url).send(records(1))
    assert azure.rows() == []


async def test_network_error_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError, match="unreachable"):
        await make_sink(f"http://127.0.0.1:{port}", timeout_s=2).send(records(1))


async def test_missing_role_403_is_fatal_and_names_the_role_and_the_dcr(azure: Receiver) -> None:
    azure.config(publishers=[])
    with pytest.raises(FatalSinkError) as caught:
        await make_sink(azure.url).send(records(1))
    message = str(caught.value)
    assert "HTTP 403 OperationFailed" in message and "Monitoring Metrics Publisher" in message and DCR in message
    assert CLIENT_SECRET not in message and azure.rows() == []


async def test_unknown_dcr_or_stream_is_fatal(azure: Receiver) -> None:
    for option in ({"dcr_immutable_id": "dcr-ffff"}, {"stream_name": "Custom-Other_CL"}):
        with pytest.raises(FatalSinkError, match=r"HTTP 404.*check dcr_immutable_id"):
            await make_sink(azure.url, **option).send(records(1))


async def test_revoked_token_is_replaced_once_then_a_refused_fresh_token_is_fatal(azure: Receiver) -> None:
    sink = make_sink(azure.url)
    await sink.send(records(1))
    azure.revoke()  # the cached token is no longer valid: what an expiry mid-run looks like
    assert await sink.send(records(1, start=1)) is None
    assert len(azure.token_requests()) == 2 and ids(azure.rows()) == ["codacy:0000", "codacy:0001"]
    assert azure.statuses() == [204, 401, 204]
    azure.fault(status=401, path_contains=INGEST, count=5)
    sink.tokens.invalidate(sink.tokens.current() or "")
    with pytest.raises(FatalSinkError, match=r"HTTP 401.*a fresh token was refused"):
        await sink.send(records(1, start=2))


@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ({"client_secret": "wrong-secret-9d0e"}, "AADSTS7000215.*client_secret is wrong"),
        ({"tenant_id": "00000000-0000-0000-0000-000000000000"}, "AADSTS90002.*tenant_id names no tenant"),
        ({"client_id": "11111111-2222-3333-4444-555555555555"}, "AADSTS700016.*client_id is not an application"),
        ({"scope": "https://graph.example/.default"}, "AADSTS70011"),
    ],
)
async def test_refused_credentials_are_fatal_with_what_to_fix(
    azure: Receiver, option: dict[str, str], hint: str
) -> None:
    sink = make_sink(azure.url, **option)
    with pytest.raises(FatalSinkError, match=hint) as caught:
        await sink.send(records(1))
    assert "wrong-secret-9d0e" not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    assert "wrong-secret-9d0e" not in repr(sink) + repr(sink.config)


async def test_token_endpoint_busy_is_retryable(azure: Receiver) -> None:
    azure.fault(status=503, retry_after="3", path_contains="/oauth2/")
    with pytest.raises(RetryableError, match="Entra ID answered HTTP 503") as caught:
        await make_sink(azure.url).send(records(1))
    assert caught.value.retry_after == 3.0


async def test_token_is_refreshed_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("sinks.sentinel.auth.time.monotonic", lambda: clock[0])
    issued = iter(["t1", "t2", "t3"])

    async def fetch() -> tuple[str, float]:
        return next(issued), 3600.0

    cache = TokenCache(fetch, margin_s=300)
    assert await cache.get() == "t1"
    clock[0] += 3299
    assert await cache.get() == "t1"
    clock[0] += 1  # 300 s before expiry
    assert await cache.get() == "t2"

    async def fetch_short() -> tuple[str, float]:
        return "s", 60.0

    short = TokenCache(fetch_short, margin_s=300)
    await short.get()
    clock[0] += 29
    await short.get()
    assert short.fetched == 1
    clock[0] += 1  # half its life
    await short.get()
    assert short.fetched == 2


async def test_certificate_credential_signs_a_ps256_assertion(azure: Receiver, tmp_path: Path) -> None:
    cert_pem, key_pem = make_certificate()
    azure.config(clients={}, certificates={CLIENT_ID: cert_pem.decode()})
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    options = {
        "client_secret": None,
        "certificate_file": str(tmp_path / "cert.pem"),
        "private_key_file": str(tmp_path / "key.pem"),
    }
    assert await make_sink(azure.url, **options).send(records(2)) is None
    assert ids(azure.rows()) == ["codacy:0000", "codacy:0001"]
    assert azure.token_requests()[0]["assertion"] is True
    (tmp_path / "both.pem").write_bytes(key_pem + cert_pem)  # one file holding both
    both = {"client_secret": None, "certificate_file": str(tmp_path / "both.pem")}
    assert await make_sink(azure.url, **both).send(records(1, start=2)) is None
    other_cert, other_key = make_certificate()  # a certificate Entra ID does not know
    (tmp_path / "other.pem").write_bytes(other_key + other_cert)
    with pytest.raises(FatalSinkError, match="AADSTS700027"):
        await make_sink(azure.url, client_secret=None, certificate_file=str(tmp_path / "other.pem")).send(records(1))
    (tmp_path / "mismatch.pem").write_bytes(other_key + cert_pem)
    with pytest.raises(FatalSinkError, match="does not belong to the certificate"):
        await make_sink(azure.url, client_secret=None, certificate_file=str(tmp_path / "mismatch.pem")).send(records(1))


def make_certificate() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "audit-forwarder")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_check_probes_the_token_and_the_dcr(azure: Receiver) -> None:
    detail = await make_sink(azure.url).check()
    assert "token obtained" in detail and f"stream {STREAM} of DCR {DCR}" in detail and "accepted" in detail
    assert azure.rows() == [] and [b["rows"] for b in azure.batches()] == [0]
    azure.config(publishers=[])
    with pytest.raises(FatalSinkError, match="Monitoring Metrics Publisher"):
        await make_sink(azure.url).check()
    with pytest.raises(FatalSinkError, match="AADSTS7000215"):
        await make_sink(azure.url, client_secret="nope-secret").check()


def test_config_validation() -> None:
    base = settings("https://dce.westeurope-1.ingest.monitor.azure.com/")
    config = SentinelSinkConfig(**base)
    assert config.endpoint == "https://dce.westeurope-1.ingest.monitor.azure.com"
    assert CLIENT_SECRET not in repr(config)
    assert config.token_url.endswith(f"/{TENANT}/oauth2/v2.0/token")
    bad_options: list[dict[str, Any]] = [
        {"client_secret": None},
        {"certificate_file": "/x.pem"},
        {"tenant_id": "a/b"},
        {"client_id": "app"},
        {"dcr_immutable_id": "my-dcr"},
        {"stream_name": "AuditForwarder_CL"},
        {"format": "cef"},
        {"endpoint": "dce.example"},
        {"client_secret": None, "private_key_file": "/k.pem"},
        {"max_request_bytes": 2_000_000},
    ]
    for bad in bad_options:
        with pytest.raises(ValidationError):
            SentinelSinkConfig(**(base | bad))
    assert SentinelSinkConfig(**(base | {"client_secret": None, "certificate_file": "/c.pem"})).certificate_file


PROXY = "https://ingest-proxy.example.org"  # a host of no cloud in particular


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # a sovereign cloud's endpoint or authority with the public cloud's scope: Entra ID would hand
        # out a token for the wrong audience, and the sink would stop at the first batch
        ({"endpoint": "https://dce.usgovvirginia-1.ingest.monitor.azure.us"}, "scope https://monitor.azure.us//"),
        ({"authority_host": "https://login.microsoftonline.us", "endpoint": PROXY}, "scope https://monitor.azure.us//"),
        ({"authority_host": "https://login.chinacloudapi.cn", "endpoint": PROXY}, "scope https://monitor.azure.cn//"),
        (
            {
                "endpoint": "https://dce.chinaeast2-1.ingest.monitor.azure.cn",
                "scope": "https://monitor.azure.us//.default",
            },
            "endpoint .* Azure China",
        ),
        # the whole request URL pasted as the endpoint
        ({"endpoint": f"https://dce.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/{DCR}"}, "no path"),
        ({"authority_host": f"https://login.microsoftonline.com/{TENANT}"}, "authority_host .* no path"),
    ],
)
def test_settings_of_different_clouds_or_a_pasted_url_are_refused_at_load(
    options: dict[str, Any], message: str
) -> None:
    base = settings("https://dce.westeurope-1.ingest.monitor.azure.com") | {
        "authority_host": "https://login.microsoftonline.com"
    }
    with pytest.raises(ValidationError, match=message):
        SentinelSinkConfig(**(base | options))


def test_an_endpoint_behind_a_gateway_with_a_path_prefix_is_accepted() -> None:
    """Only the API's own path pasted into ``endpoint`` is refused: a gateway's prefix worked."""
    gateway = settings("https://gw.corp.example/azure-logs/") | {"authority_host": "https://login.microsoftonline.com"}
    config = SentinelSinkConfig(**gateway)
    assert config.endpoint == "https://gw.corp.example/azure-logs"


def test_a_sovereign_cloud_configured_throughout_is_accepted() -> None:
    us = {
        "endpoint": "https://dce.usgovvirginia-1.ingest.monitor.azure.us",
        "authority_host": "https://login.microsoftonline.us",
        "scope": "https://monitor.azure.us//.default",
    }
    assert SentinelSinkConfig(**(settings("http://127.0.0.1:1") | us)).scope == us["scope"]
    assert SentinelSinkConfig(**settings("http://127.0.0.1:1")).endpoint == "http://127.0.0.1:1"  # no cloud


def test_client_secret_file_form(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(CLIENT_SECRET + "\n")
    base = {k: v for k, v in settings("https://dce.example").items() if k != "client_secret"}
    config = SentinelSinkConfig(**(base | {"client_secret_file": str(tmp_path / "secret")}))
    assert config.client_secret is not None and config.client_secret.get_secret_value() == CLIENT_SECRET


async def test_the_printed_emulator_entry_reaches_the_receiver(azure: Receiver) -> None:
    from forwarder.emulators.__main__ import config_entry
    from forwarder.emulators.sentinel import SentinelEmulator

    section, entry = config_entry("sentinel", SentinelEmulator(), azure.url)
    assert section == "sinks"
    sink = SentinelSink("sentinel", SentinelSinkConfig(**entry["sentinel"]))
    assert await sink.send(records(1)) is None and ids(azure.rows()) == ["codacy:0000"]


# --- the receiver's protocol -----------------------------------------------------------------
def test_receiver_token_and_ingestion_codes(azure: Receiver) -> None:
    token = azure.token()
    assert token and azure.token("bad") == ""
    body = b'[{"EventId":"a"}]'
    assert azure.upload(body).status_code == 401
    assert azure.upload(body, "forged").json()["error"]["code"] == "InvalidToken"
    assert azure.upload(body, token, version="").json()["error"]["code"] == "InvalidApiVersion"
    assert azure.upload(body, token).status_code == 204
    assert azure.upload(gzip.compress(body), token, Content_Encoding="gzip").status_code == 204
    assert azure.upload(body, token, Content_Encoding="br").status_code == 415
    assert azure.upload(b"[1]", token).status_code == 400
    assert azure.upload(b"[]", token).status_code == 204
    azure.config(max_body_bytes=1000)
    bomb = gzip.compress(b'[{"x":"' + b"y" * 5000 + b'"}]')
    assert len(bomb) < 1000 and azure.upload(bomb, token, Content_Encoding="gzip").status_code == 413
    assert azure.upload(b'[{"x":"' + b"y" * 1000 + b'"}]', token).status_code == 413
    azure.revoke()
    assert azure.upload(body, token).status_code == 401
    assert ids(azure.rows()) == ["a", "a"]


def test_receiver_faults_carry_azure_bodies(azure: Receiver) -> None:
    azure.fault(status=429, retry_after="5", path_contains=INGEST)
    reply = azure.upload(b"[]", azure.token())
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "5"
    assert reply.json()["error"]["code"] == "TooManyRequests" and reply.headers["x-ms-error-code"] == "TooManyRequests"


# --- the real daemon -------------------------------------------------------------------------
@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=40, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


def sentinel_sink(url: str, **options: Any) -> dict[str, Any]:
    return settings(url, batch_max_age_s=0.05, **options)


def delivered(azure: Receiver) -> list[str]:
    return ids(azure.rows())


def test_daemon_delivers_every_event_through_429_storms_token_expiry_and_413(
    tmp_path: Path, codacy: EmulatorProcess, azure: Receiver
) -> None:
    # a receiver taking at most 3 KB per request against the sink's 1 MB (so 413s and splits),
    # a storm of 429s with Retry-After, later a revocation of the token in use and 503s
    azure.config(max_body_bytes=3000)
    azure.fault(status=429, retry_after="1", count=6, path_contains=INGEST)
    cfg = make_config(tmp_path, codacy_source(codacy.url), {"sentinel": sentinel_sink(azure.url, batch_max_events=50)})
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        want = expected_ids(codacy)
        wait_until("the first events", lambda: set(delivered(azure)) & want != set(), detail=daemon.log)
        azure.revoke()  # every token issued so far is now invalid: an expiry mid-run
        azure.fault(status=503, retry_after="1", count=3, path_contains=INGEST)
        codacy.control("POST", "entries", {"generate": 20, "orgs": ORGS, "span_s": 5})
        want = expected_ids(codacy)
        wait_until("every event", lambda: set(delivered(azure)) >= want, timeout=90, detail=daemon.log)
        crashed = daemon.crashed()
        assert daemon.stop() == 0
        assert not crashed, daemon.log()[-3000:]
    finally:
        daemon.kill()
    got = delivered(azure)
    assert set(got) == want  # none lost, none under another id
    statuses = azure.statuses()
    assert statuses.count(429) >= 6, statuses
    assert 413 in statuses, statuses
    assert 401 in statuses and 503 in statuses, statuses
    assert len(azure.token_requests()) == 2  # the first, and a new one after the revocation
    assert all(b["uncompressed"] <= 3000 for b in azure.batches())
    logs = daemon.log()
    assert "sink delivery failed, retrying" in logs and CLIENT_SECRET not in logs


def test_daemon_stops_the_sink_on_a_missing_role_and_check_says_why(
    tmp_path: Path, codacy: EmulatorProcess, azure: Receiver
) -> None:
    azure.config(publishers=[])
    out = tmp_path / "out"
    file_sink = {"type": "file", "path": str(out / "{organization}.ndjson"), "batch_max_age_s": 0.05}
    cfg = make_config(tmp_path, codacy_source(codacy.url), {"sentinel": sentinel_sink(azure.url), "file": file_sink})
    result = cli(cfg, "check")
    assert result.returncode != 0
    assert "FAIL sink sentinel" in result.stdout and "Monitoring Metrics Publisher" in result.stdout
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        want = expected_ids(codacy)
        wait_until("the sink to stop", lambda: "sink stopped" in daemon.log(), detail=daemon.log)
        from tests.support.daemon import read_ndjson

        wait_until("the other sink to carry on", lambda: {e["id"] for e in read_ndjson(out)} == want, detail=daemon.log)
        assert daemon.alive()
        assert "Monitoring Metrics Publisher" in daemon.log() and CLIENT_SECRET not in daemon.log()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert azure.rows() == []
    azure.config(publishers=[CLIENT_ID])  # the role assigned: a restart delivers everything
    result = cli(cfg, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   sink sentinel: token obtained" in result.stdout
    assert cli(cfg, "once").returncode == 0
    assert set(delivered(azure)) == want
