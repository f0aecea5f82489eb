"""A real rsyslogd on loopback, as the receiver of syslog sink tests.

Configuration as verified in ``shared/research/sinks-schemas.md`` §2.4: everything lives in a
temp dir (work dir, pid file, outputs), no imuxsock, no privileged port. One daemon listens on
four inputs, each named so a test can see which one a message came in on:

* ``udp``  imudp on a free port found by binding port 0 (imudp cannot report its port);
* ``tcp``  imtcp, plain, octet counting and LF framing auto-detected;
* ``tls``  imtcp with the gtls driver, server-authenticated (anon client);
* ``mtls`` imtcp with gtls and ``x509/certvalid``: clients must present a cert from the test CA.

Every message is written as one JSON line with the fields rsyslog parsed, the structured data
both raw and decoded by mmpstrucdata, and the raw message. Control characters stay escaped by
rsyslog (``#012``), so a message with an LF can never split a line of the capture file.

Use it as a context manager (``with Rsyslog(tmp_dir) as server:``), typically from a
module-scoped fixture; ``Rsyslog(dir, pki=other.pki)`` shares one PKI between daemons.

The PKI is throw-away: a CA, a server cert for localhost/127.0.0.1, a client cert, and an
unrelated CA for "wrong CA" tests, generated with ``cryptography`` (EC keys, fast).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.ports import free_port
from tests.support.processes import stop_process

RSYSLOGD = "/usr/sbin/rsyslogd"

Received = dict[str, Any]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _make_ca(cn: str, directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, cn: str, server: bool, directory: Path
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert_path, key_path = directory / f"{cn}.pem", directory / f"{cn}.key"
    cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, ca_path = _make_ca("test-ca", directory)
    server_cert, server_key = _issue(ca_key, ca, "server", True, directory)
    client_cert, client_key = _issue(ca_key, ca, "client", False, directory)
    _, _, other_ca = _make_ca("other-ca", directory)
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, other_ca)


CONFIG = """\
global(workDirectory="{dir}/work"
       maxMessageSize="{max_message}"
       defaultNetstreamDriverCAFile="{pki.ca}"
       defaultNetstreamDriverCertFile="{pki.server_cert}"
       defaultNetstreamDriverKeyFile="{pki.server_key}")
module(load="imudp")
module(load="imtcp" maxSessions="100")
module(load="mmpstrucdata")

template(name="fields" type="list" option.jsonf="on") {{
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="sd_parsed" name="$!rfc5424-sd" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="rawmsg" name="rawmsg" format="jsonf")
}}

ruleset(name="capture") {{
  action(type="mmpstrucdata" sd_name.lowercase="off")
  action(type="omfile" file="{dir}/out/received.jsonl" template="fields")
}}

input(type="imudp" name="udp" address="127.0.0.1" port="{udp}" ruleset="capture")
input(type="imtcp" name="tcp" address="127.0.0.1" port="{tcp}"
      listenPortFileName="{dir}/tcp.port" ruleset="capture")
input(type="imtcp" name="tls" address="127.0.0.1" port="{tls}"
      listenPortFileName="{dir}/tls.port" ruleset="capture"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" name="mtls" address="127.0.0.1" port="{mtls}"
      listenPortFileName="{dir}/mtls.port" ruleset="capture"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
"""

STREAM_INPUTS = ("tcp", "tls", "mtls")
RSYSLOG_MAX_MESSAGE = 65_536
"""rsyslog's maxMessageSize here: it cuts a longer message and reads the rest as a new one."""


def as_shown(text: str) -> str:
    """How rsyslog shows a received string: control characters as ``#`` and three octal digits."""
    return "".join(f"#{ord(c):03o}" if ord(c) < 0x20 else c for c in text)


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _tcp_listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class Rsyslog:
    """``start`` picks the ports; ``stop`` then ``start`` again reuses them, as a restarted
    receiver would, so a connected sink can reconnect to the same address."""

    def __init__(self, directory: Path, pki: Pki | None = None) -> None:
        self.dir = directory
        self.pki = pki or make_pki(directory / "pki")
        self.ports: dict[str, int] = {"udp": 0, **dict.fromkeys(STREAM_INPUTS, 0)}
        self.output = directory / "out" / "received.jsonl"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> Rsyslog:
        for sub in ("work", "out"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.ports["udp"]:
            self.ports["udp"] = free_port(udp=True)
        for name in STREAM_INPUTS:
            (self.dir / f"{name}.port").unlink(missing_ok=True)
        conf = self.dir / "rsyslog.conf"
        conf.write_text(CONFIG.format(dir=self.dir, pki=self.pki, max_message=RSYSLOG_MAX_MESSAGE, **self.ports))
        log = (self.dir / "rsyslogd.log").open("ab")
        self._proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not come up; its log:\n{self.log_text()}")
            time.sleep(0.02)
        return self

    def _ready(self) -> bool:
        """A first start reads the ports rsyslog picked from its port files; a restart on fixed
        ports (rsyslog then writes no port file) probes them with a connect."""
        for name in STREAM_INPUTS:
            if self.ports[name]:
                if not _tcp_listening(self.ports[name]):
                    return False
                continue
            path = self.dir / f"{name}.port"
            text = path.read_text().strip() if path.exists() else ""
            if not text.isdigit() or int(text) == 0:
                return False
            self.ports[name] = int(text)
        return _udp_port_taken(self.ports["udp"])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_process(proc, 10)

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_text(self) -> str:
        path = self.dir / "rsyslogd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def records(self, where: Callable[[Received], bool] = lambda r: True) -> list[Received]:
        """Every message received so far, decoded strictly as UTF-8 (a sink that cuts a
        character in half fails here)."""
        if not self.output.exists():
            return []
        out = []
        data = self.output.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # rsyslog may be mid-write: skip a partial last line
        for line in complete.decode("utf-8").splitlines():
            record = json.loads(line)
            record["sd_parsed"] = json.loads(record["sd_parsed"]) if record["sd_parsed"] else {}
            if where(record):
                out.append(record)
        return out

    async def wait_for(
        self, count: int, where: Callable[[Received], bool] = lambda r: True, timeout: float = 10.0
    ) -> list[Received]:
        """Wait until ``count`` matching messages arrived, then a little longer to catch any
        extra (duplicate or split) message, which fails the count check."""
        deadline = time.monotonic() + timeout
        while len(found := self.records(where)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(found)} of {count} messages; rsyslog log:\n{self.log_text()}")
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.15)
        found = self.records(where)
        assert len(found) == count, f"expected {count} messages, got {len(found)}"
        return found
