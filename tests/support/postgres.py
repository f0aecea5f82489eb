"""A real PostgreSQL server for the tests: ``initdb`` into a temporary directory, listening on
127.0.0.1 only, stopped at the end. PostgreSQL refuses to run as root, so under root (as CI
runs) the server runs as the ``postgres`` user that Debian's package creates."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.ports import free_port

PASSWORD = "af-test-password"


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    return found[-1].parent


class PostgresServer:
    def __init__(self, root: Path) -> None:
        self.bin = _bin_dir()
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.log = root / "postgres.log"
        self._demote: Callable[[], None] | None = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            shutil.chown(root, user.pw_uid, user.pw_gid)

            def demote() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            self._demote = demote

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            preexec_fn=self._demote,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            cwd=self.root,
        )

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD)
        if self._demote is not None:
            user = pwd.getpwnam("postgres")
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        pwfile.unlink()

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def dsn(self, database: str = "postgres", password: bool = True) -> str:
        auth = f" password={PASSWORD}" if password else ""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}{auth}"

    def create_database(self) -> str:
        name = f"af_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name
