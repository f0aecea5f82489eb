"""``sslmode=verify-full`` passes through to libpq: a PostgreSQL server with a certificate from
a test CA made with ``openssl`` is accepted under its name and refused under another name or
with another CA."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import cli, write_config
from tests.support.postgres import PASSWORD, PostgresServer

pytestmark = pytest.mark.timeout(180)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


class TlsPostgres(PostgresServer):
    """The test server with ssl=on and a certificate for ``localhost`` only (not 127.0.0.1)."""

    def start(self) -> None:
        certs = self.root
        make_ca(certs, "test-ca")
        make_ca(certs, "other-ca")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
                "-out", "server.csr", cwd=certs)  # fmt: skip
        (certs / "san.ext").write_text("subjectAltName=DNS:localhost\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=certs)  # fmt: skip
        os.chmod(certs / "server.key", 0o600)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for name in ("server.key", "server.crt"):
                os.chown(certs / name, user.pw_uid, user.pw_gid)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} -c ssl=on "
            f"-c ssl_cert_file={certs / 'server.crt'} -c ssl_key_file={certs / 'server.key'}"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    root = Path(tempfile.mkdtemp(prefix="af-postgres-tls-"))
    os.chmod(root, 0o755)
    server = TlsPostgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def show(tmp_path: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    config = write_config(
        tmp_path / "c.yaml",
        {"state_dir": str(tmp_path / "s"), "state": {"backend": "postgresql", "dsn": dsn}, "sources": {}, "sinks": {}},
    )
    return cli(config, "check", timeout=60)


def dsn(server: TlsPostgres, host: str, ca: str) -> str:
    return (
        f"host={host} port={server.port} user=postgres dbname=postgres password={PASSWORD} "
        f"sslmode=verify-full sslrootcert={server.root / ca}"
    )


def test_verify_full_accepts_the_server_under_its_name(tmp_path: Path, tls_postgres: TlsPostgres) -> None:
    result = show(tmp_path, dsn(tls_postgres, "localhost", "test-ca.pem"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   state postgresql: PostgreSQL localhost" in result.stdout


@pytest.mark.parametrize(
    ("host", "ca", "why"),
    [
        ("127.0.0.1", "test-ca.pem", "does not match host name"),
        ("localhost", "other-ca.pem", "certificate verify failed"),
    ],
)
def test_verify_full_refuses_another_name_or_another_ca(
    tmp_path: Path, tls_postgres: TlsPostgres, host: str, ca: str, why: str
) -> None:
    result = show(tmp_path, dsn(tls_postgres, host, ca))
    assert result.returncode == 1
    assert "FAIL state postgresql" in result.stdout and why in result.stdout, result.stdout
    assert PASSWORD not in result.stdout + result.stderr
