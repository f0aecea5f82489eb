"""``config/example.yaml`` is what an operator copies: it must load as shipped (with the one
variable it leaves without a default set), and so must each commented alternative once
uncommented as its comment says (dropping the line it is an alternative to).

The files the alternatives name (credentials, keys, certificates) are made in a temporary
directory and the example's ``/etc/audit-forwarder/`` pointed there; nothing else is changed.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from forwarder.emulators.google_workspace import GoogleWorkspaceEmulator
from forwarder.evidence.keys import generate
from forwarder.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
LINES = EXAMPLE.read_text().splitlines()

# name: (lines to uncomment as (the first one's text, how many), active lines replaced, read-only)
# Read-only: an alternative read from AWS loads as `state show` loads it, without asking AWS.
Block = tuple[str, int]
ALTERNATIVES: dict[str, tuple[list[Block], list[str], bool]] = {
    "postgresql state": ([("# state:", 7)], [], False),
    "codacy api_token_file": ([("# api_token_file: codacy_token", 1)], ["api_token: ${CODACY_API_TOKEN}"], False),
    "codacy api_token_from": ([("# api_token_from:", 2)], ["api_token: ${CODACY_API_TOKEN}"], True),
    "codacy max_walk_bytes": ([("# max_walk_bytes:", 1)], [], False),
    "codescoring filters": ([("# user: jdoe", 5)], [], False),
    "configcat password_file": (
        [("# password_file: configcat_password", 1)],
        ["password: ${CONFIGCAT_PASSWORD"],
        False,
    ),
    "configcat discovery": (
        [("# organizations: {discover: true", 1)],
        ["organizations: [0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10]"],
        False,
    ),
    "configcat credentials": ([("# credentials: {0a3c4b52", 1)], [], False),
    "configcat product_ids": ([("# product_ids:", 1)], [], False),
    "configcat audit_log_type": ([("# audit_log_type:", 1)], [], False),
    "github discovery": (
        [("# organizations:                                  # or: the", 5)],
        ["organizations: [octo-org]"],
        False,
    ),
    "github credentials": ([("# credentials: {octo-other", 1)], [], False),
    "github enterprise": ([("# enterprise audit log instead: url:", 1)], [], False),
    "google_workspace": ([("# google_workspace:", 7)], [], False),
    "file evidence": ([("#   digest_directory: /var/log/audit-forwarder/_digests", -4)], [], False),
    "syslog mutual TLS": ([("# client_cert:", 2)], [], False),
    "splunk token_from": ([("# token_from:", 2)], ["token: ${SPLUNK_HEC_TOKEN"], True),
    "sentinel certificate": ([("# certificate_file:", 2)], ["client_secret: ${SENTINEL_CLIENT_SECRET"], False),
    "sentinel sovereign cloud": (
        [("# endpoint: https://audit-dcr-abcd.usgov", 3)],
        ["endpoint: https://audit-dcr-abcd.westeurope-1"],
        False,
    ),
    "s3 compatible store": ([("# endpoint_url: https://minio", 2)], [], False),
    "s3 object lock": ([("# object_lock:", 1)], [], False),
    "s3 evidence": ([("#   digest_prefix: audit-digests/", -4)], [], False),
}


def _line(text: str) -> int:
    """The index of the one line holding ``text`` (line numbers move as the example grows)."""
    found = [i for i, line in enumerate(LINES) if text in line]
    assert len(found) == 1, f"{text!r} is on {len(found)} lines of config/example.yaml"
    return found[0]


def _variant(blocks: list[Block], replaced: list[str]) -> str:
    """A negative count names a block by its last line (the first is not unique)."""
    lines = list(LINES)
    for text, count in blocks:
        at = _line(text)
        for i in range(at + count + 1, at + 1) if count < 0 else range(at, at + count):
            lines[i] = re.sub(r"^(\s*)# (enterprise audit log instead: )?", r"\1", lines[i], count=1)
    for text in replaced:
        lines[_line(text)] = ""
    return "\n".join(lines) + "\n"


def _certificate(directory: Path, stem: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What the example's paths point at, and the environment it documents."""
    etc = tmp_path / "etc"
    credentials = tmp_path / "credentials"
    etc.mkdir()
    credentials.mkdir()
    for name, value in {
        "codacy_token": "a-codacy-token",
        "configcat_password": "a-password",
        "other_password": "another-password",
        "af-dsn": "host=127.0.0.1 dbname=audit_forwarder user=af_replica",
        "af-db-password": "a-db-password",
    }.items():
        (credentials / name).write_text(value + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("CODACY_API_TOKEN", "a-codacy-token")
    monkeypatch.setenv("HOSTNAME", "replica-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    generate(etc / "evidence.key", etc / "evidence.pub")
    emulator = GoogleWorkspaceEmulator()
    (etc / "google-service-account.json").write_bytes(orjson.dumps(emulator.key_file("https://oauth2.example")))
    _certificate(etc, "client")
    _certificate(etc, "sentinel")
    return tmp_path


def _load(files: Path, text: str, read_only: bool = False) -> Settings:
    path = files / "config.yaml"
    path.write_text(text.replace("/etc/audit-forwarder/", f"{files / 'etc'}/"))
    return load_settings(path, read_only=read_only)


def test_the_example_loads_as_shipped(files: Path) -> None:
    settings = _load(files, EXAMPLE.read_text())
    assert {"codacy", "codescoring", "codestax", "configcat", "acme_audit", "okta", "github"} <= set(settings.sources)
    assert set(settings.sinks) == {"archive", "siem_syslog", "splunk", "sentinel", "archive_s3", "security_lake"}


@pytest.mark.parametrize("name", list(ALTERNATIVES))
def test_each_commented_alternative_loads_once_uncommented(files: Path, name: str) -> None:
    blocks, replaced, read_only = ALTERNATIVES[name]
    text = _variant(blocks, replaced)
    assert text != EXAMPLE.read_text()
    _load(files, text, read_only)
