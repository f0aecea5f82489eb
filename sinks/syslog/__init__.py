"""Syslog sink, in the parts Vector keeps apart: ``encoding`` (one RFC 5424/3164 message),
``framing`` (how messages are delimited on a stream, how big a datagram may be), ``transport``
(UDP, TCP and TLS connections) and ``sink`` (the ``Sink`` that wires them, with the guarantees);
``config`` holds the settings all of them read."""
