"""How syslog messages travel as bytes: octet counting (RFC 6587 3.4.1, RFC 5425) or LF
(RFC 6587 3.4.2) on a stream, one message per datagram capped in size over UDP.

Apart from the encoding because the same message is framed differently per transport, and
apart from the transport because framing is pure bytes, testable without a socket.
"""

from __future__ import annotations

from collections.abc import Sequence

UDP_MAX_PAYLOAD = 65_507
STREAM_DEFAULT_CAP = 8192
"""RFC 5425 4.3.1: receivers SHOULD take messages up to 8192 octets; rsyslog's default
maxMessageSize is 8k, and it reads what is beyond its limit as a new message."""


def udp_message_cap(rfc: str, limit: int | None) -> int:
    """The per-message cap over UDP: the one set, else 2048, or for RFC 3164 its 1024 (4.1:
    "The total length of the packet MUST be 1024 bytes or less"); never over a datagram."""
    default = 1024 if rfc == "3164" else 2048
    return min(limit or default, UDP_MAX_PAYLOAD)


def stream_message_cap(limit: int | None) -> int:
    """The per-message cap over TCP/TLS: the one set, else ``STREAM_DEFAULT_CAP``. Never none: a
    receiver cuts a longer message and reads the rest as messages of their own (rsyslog unless
    ``discardTruncatedMsg``), so a long value could carry a forged syslog line into the SIEM;
    cut here, the message is whole, marked ``...[truncated]`` and counted in the log."""
    return limit or STREAM_DEFAULT_CAP


def escapes_lf(transport: str, framing: str) -> bool:
    """LF framing ends a message at its first LF, so one inside a message must be escaped."""
    return transport != "udp" and framing == "lf"


def escape_lf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\\n")


def frame(messages: Sequence[bytes], framing: str) -> bytes:
    """The messages as one stream write, each delimited as ``framing`` says."""
    if framing == "lf":
        return b"".join(m + b"\n" for m in messages)
    return b"".join(b"%d %s" % (len(m), m) for m in messages)
