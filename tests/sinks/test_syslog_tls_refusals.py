"""A TLS syslog receiver whose certificate does not verify: refused by default, retried (the
events stay journaled), with a message saying what the operator must change.

The receiver is a loopback TLS server started by the test with certificates it makes itself:
issued by a CA the sink was not given, expired, or for another name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from forwarder.event import format_ms, make_event
from forwarder.record import record_of
from sinks.base import RetryableError
from sinks.syslog.config import SyslogSinkConfig
from sinks.syslog.sink import SyslogSink

pytestmark = pytest.mark.integration


def _cert(
    subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
    *, ca: bool, expired: bool = False, names: tuple[str, ...] = (),
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired else (now, now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(hours=1))
        .not_valid_after(end + (dt.timedelta(0) if expired else dt.timedelta(days=2)))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names if not n[0].isdigit()]
        sans += [x509.IPAddress(ipaddress.ip_address(n)) for n in names if n[0].isdigit()]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    return path


class Receiver:
    def __init__(self, ca_file: Path, chain: Path) -> None:
        self.ca_file, self.chain = ca_file, chain
        self.received = b""
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.received += await reader.read()
        except (OSError, ssl.SSLError):
            pass
        writer.close()


@pytest.fixture(params=["untrusted", "expired", "wrong-name"])
async def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Receiver]]:
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("refusal-ca", "refusal-ca", ca_key, ca_key, ca=True)
    ca_file = _pem(tmp_path / "ca.pem", ca)
    case = request.param
    if case == "untrusted":  # a self-signed server certificate, not the CA the sink trusts
        server = _cert("receiver", "receiver", server_key, server_key, ca=False, names=("localhost", "127.0.0.1"))
    elif case == "expired":
        server = _cert("receiver", "refusal-ca", server_key, ca_key, ca=False, expired=True, names=("127.0.0.1",))
    else:
        server = _cert("receiver", "refusal-ca", server_key, ca_key, ca=False, names=("collector.example.net",))
    chain = _pem(tmp_path / "server.pem", server, server_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    found = Receiver(ca_file, chain)
    listener = await asyncio.start_server(found.handle, "127.0.0.1", 0, ssl=context)
    found.port = listener.sockets[0].getsockname()[1]
    try:
        yield case, found
    finally:
        listener.close()


HINTS = {
    "untrusted": "set ca_file to the CA that signed the receiver's certificate",
    "expired": "renew the receiver's certificate, or check this host's clock",
    "wrong-name": "the certificate does not name 127.0.0.1: set server_name",
}
REASONS = {"untrusted": "self-signed certificate", "expired": "certificate has expired", "wrong-name": "mismatch"}


async def test_a_certificate_that_does_not_verify_is_refused_saying_what_to_fix(
    receiver: tuple[str, Receiver],
) -> None:
    case, found = receiver
    config = SyslogSinkConfig.model_validate(
        {"type": "syslog", "host": "127.0.0.1", "port": found.port, "transport": "tls", "ca_file": str(found.ca_file)}
    )
    sink = SyslogSink("siem", config)
    event = make_event(
        id="codacy:1", time=format_ms(1_700_000_000_000), observed_time=format_ms(1_700_000_000_000),
        vendor="codacy", source="codacy-prod", organization="gh/acme", action="user.login", activity="login",
        category="authentication", outcome="success", raw={},
    )  # fmt: skip
    try:
        with pytest.raises(RetryableError) as caught:
            await sink.send([record_of(event, 1, 1_700_000_000_000)])
    finally:
        await sink.close()
    message = str(caught.value)
    assert message.startswith(f"syslog sink 'siem': tls 127.0.0.1:{found.port}: TLS certificate verification failed")
    assert REASONS[case] in message and HINTS[case] in message
    assert found.received == b""  # nothing went to a receiver that was not verified
