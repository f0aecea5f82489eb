"""Settings of the syslog sink, read by its encoding, framing and transport alike."""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal

import structlog
from pydantic import BeforeValidator, Field, field_validator, model_validator

from sinks.base import SinkConfig
from sinks.syslog.framing import stream_message_cap, udp_message_cap

log = structlog.get_logger("sinks.syslog")

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "audit": 13,
    "security": 13,
    "alert": 14,
    "clock": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}


def _facility(value: Any) -> Any:
    """Accept ``local0``, ``LOCAL0``, ``16`` or 16, as syslog configurations spell it."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in FACILITIES:
            return FACILITIES[text]
        if not text.isdigit():
            raise ValueError(f"unknown facility {value!r}; expected 0-23 or one of {', '.join(FACILITIES)}")
        return int(text)
    return value


class SyslogSinkConfig(SinkConfig):
    type: Literal["syslog"]
    host: str
    port: int = Field(0, ge=0, le=65_535, description="0 picks the transport's usual port (514, TLS 6514).")
    transport: Literal["udp", "tcp", "tls"] = "tcp"
    rfc: Literal["5424", "3164"] = "5424"
    framing: Literal["octet_counting", "lf"] = Field(
        "octet_counting",
        description="TCP/TLS only; RFC 5425 receivers expect octet counting over TLS. LF framing replaces LF inside "
        "messages by '\\n'.",
    )
    max_message_bytes: int | None = Field(
        None,
        ge=480,
        description="Cap per message; UDP defaults to 2048 (RFC 3164 over UDP: 1024, the RFC's limit; set more "
        "for receivers that take it), TCP/TLS to 8192 (RFC 5425's size every receiver should take; a receiver "
        "reads what is past its limit as new messages, which a long value could forge): raise it to the "
        "receiver's limit (rsyslog maxMessageSize, syslog-ng log-msg-size). Each structured-data value is cut "
        "at 255 bytes.",
    )
    facility: Annotated[int, BeforeValidator(_facility), Field(ge=0, le=23)] = Field(
        FACILITIES["local0"],
        description="0-23 or a name: local0 (16) to local7, auth, authpriv, audit, user, daemon... (any case).",
    )
    app_name: str = "audit-forwarder"
    hostname: str = Field(default_factory=socket.gethostname)
    sd_id: str = Field("audit@32473", description="Private SD-ID 'name@PEN'; 32473 is the documentation PEN.")
    bom: bool = Field(
        True,
        description="RFC 5424 only: start the UTF-8 MSG with a byte order mark, as RFC 5424 section 6.4 requires. "
        "false leaves it out, for receivers whose parsers take the three bytes for part of a CEF or LEEF payload "
        "(inferred: not every vendor documents it).",
    )
    ca_file: str | None = None
    server_name: str | None = Field(None, description="Name the server certificate must match; default host.")
    verify: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    connect_timeout_s: float = Field(10.0, gt=0)
    send_timeout_s: float = Field(30.0, gt=0, description="A receiver that stops reading fails the batch.")

    def transport_warnings(self) -> list[str]:
        if self.transport == "tls" and not self.verify:
            return ["verify: false: the receiver's certificate is not checked; give ca_file for a private CA instead"]
        return []

    @field_validator("sd_id")
    @classmethod
    def _check_sd_id(cls, value: str) -> str:
        name, at, pen = value.partition("@")
        bad = set('= ]"@')
        if (
            not at
            or not name
            or len(value) > 32
            or any(not "!" <= c <= "~" or c in bad for c in name)
            or not all(part.isdigit() and part.isascii() for part in pen.split("."))
        ):
            raise ValueError(f"sd_id {value!r} must look like name@PEN (printable ASCII, at most 32 chars)")
        return value

    @model_validator(mode="after")
    def _transport_defaults(self) -> SyslogSinkConfig:
        if self.port == 0:
            self.port = DEFAULT_PORTS[self.transport]
        if self.transport == "udp":
            self.max_message_bytes = udp_message_cap(self.rfc, self.max_message_bytes)
        else:
            self.max_message_bytes = stream_message_cap(self.max_message_bytes)
        if self.transport == "tls" and self.framing == "lf":  # RFC 5425 4.3: SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG
            log.warning("syslog over TLS with framing: lf; RFC 5425 receivers (syslog-ng) expect octet_counting")
        tls_options = [n for n in ("ca_file", "server_name", "client_cert", "client_key") if getattr(self, n)]
        if tls_options and self.transport != "tls":
            raise ValueError(f"{', '.join(tls_options)} need transport: tls (transport is {self.transport})")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        return self
