"""An AWS STS endpoint on 127.0.0.1 answering AssumeRole as the query API does, for the role a
Security Lake custom source's writer assumes: it records each request (role, external id,
session name), hands out credentials living ``lifetime_s`` (short, so botocore must assume the
role again mid-run), or refuses with AccessDenied the way STS words it.

botocore reaches it through ``AWS_ENDPOINT_URL_STS`` (its service-specific endpoint variable);
moto's S3 does not check signatures, so the credentials it hands out work there.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class StsEndpoint:
    def __init__(self, lifetime_s: int = 3600) -> None:
        self.lifetime_s = lifetime_s
        self.refuse: str | None = None  # an AccessDenied message to answer with instead
        self.requests: list[dict[str, str]] = []
        self.issued: list[str] = []  # secret access keys handed out (they must never reach a log)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def assumed(self) -> list[dict[str, str]]:
        with self._lock:
            return [r for r in self.requests if r.get("Action") == "AssumeRole"]

    def __enter__(self) -> StsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, form: dict[str, str]) -> tuple[int, str]:
        with self._lock:
            self.requests.append(form)
            refuse = self.refuse
        if form.get("Action") != "AssumeRole":
            return 400, _error("InvalidAction", f"Could not find operation {form.get('Action')}")
        if refuse is not None:
            return 403, _error("AccessDenied", refuse)
        secret = secrets.token_urlsafe(30)
        with self._lock:
            self.issued.append(secret)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.lifetime_s)
        role = form.get("RoleArn", "")
        session = form.get("RoleSessionName", "")
        return 200, (
            f'<AssumeRoleResponse xmlns="{NS}"><AssumeRoleResult><Credentials>'
            f"<AccessKeyId>ASIA{secrets.token_hex(8).upper()}</AccessKeyId>"
            f"<SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{secrets.token_urlsafe(40)}</SessionToken>"
            f"<Expiration>{expires:%Y-%m-%dT%H:%M:%SZ}</Expiration>"
            f"</Credentials><AssumedRoleUser><AssumedRoleId>AROATEST:{session}</AssumedRoleId>"
            f"<Arn>{role.replace(':iam:', ':sts:').replace(':role/', ':assumed-role/')}/{session}</Arn>"
            f"</AssumedRoleUser></AssumeRoleResult>"
            f"<ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata>"
            f"</AssumeRoleResponse>"
        )

    def _handler(self) -> Any:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
                status, text = endpoint._answer(form)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _error(code: str, message: str) -> str:
    return (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>"
    )
