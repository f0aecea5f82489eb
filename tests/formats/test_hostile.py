"""Hostile strings in every text field: each line still parses back by its format's rules,
carries the value (cut to the format's limit, sanitized where LEEF cannot escape) and never
contains a raw line break that would split it on a syslog or file transport."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarder.event import make_event
from forwarder.formats import cef, get_formatter, leef
from forwarder.formats._common import cut, visible
from tests.formats.samples import parse_cef, parse_leef, record

NASTY = st.sampled_from(
    [
        "|",
        "\\",
        "=",
        "\n",
        "\r",
        "\r\n",
        "]",
        '"',
        "'",
        "^",
        "\t",
        " ",
        "x=y",
        "\\n",
        "\\=",
        "é",
        "日本語",
        "🙂",
        "\u2028",
        "\x00",
        "a",
        "key=",
        " k=v",
    ]
)
HOSTILE = st.one_of(
    st.lists(NASTY, min_size=1, max_size=12).map("".join),
    st.text(min_size=1, max_size=40),
    st.sampled_from(["x" * 65_536, ("|\\=\n" * 16_384)]),
)
DELIMITERS = st.sampled_from(["\t", "^", "x5E", "0x01", ";", "~"])


def hostile_event(values: list[str]) -> dict[str, Any]:
    v = itertools.cycle(values)
    return make_event(
        id=next(v),
        time="2026-01-01T00:00:00.000Z",
        observed_time="2026-01-01T00:00:00.000Z",
        vendor="codacy",
        source=next(v),
        organization=next(v),
        action=next(v),
        activity="update",
        category="configuration",
        outcome="success",
        raw={"text": next(v)},
        message=next(v),
        repository=next(v),
        actor={"id": next(v), "name": next(v), "email": next(v), "ip": next(v), "user_agent": next(v)},
        target={"type": next(v), "id": next(v), "name": next(v)},
    )


def check_line(line: bytes) -> str:
    assert b"\n" not in line and b"\r" not in line
    return line.decode()


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(HOSTILE, min_size=1, max_size=15))
def test_cef_round_trips(values: list[str]) -> None:
    event = hostile_event(values)
    header, ext = parse_cef(check_line(get_formatter("cef")(record(event))))
    assert len(header) == 7 and header[0] == "0"
    expected_action = visible(cut(event["action"], 1023).replace("\r", " ").replace("\n", " "))
    assert header[4] == expected_action
    assert ext["externalId"] == visible(event["id"][:40])
    assert ext["msg"] == visible(cut(event["message"], cef.VALUE_MAX))
    assert ext["cs5"] == visible(cut(event["repository"], cef.CUSTOM_MAX))
    assert ext["suid"] == visible(cut(event["actor"]["id"], cef.VALUE_MAX))
    assert ext["cs4Label"] == "targetId" and ext["cs4"] == visible(cut(event["target"]["id"], cef.CUSTOM_MAX))


@FAST
@given(st.lists(HOSTILE, min_size=1, max_size=15), DELIMITERS)
def test_leef_round_trips(values: list[str], delimiter: str) -> None:
    event = hostile_event(values)
    formatter = get_formatter("leef", {"delimiter": delimiter})
    header, attrs = parse_leef(check_line(formatter(record(event))))
    char = leef.Options(delimiter=delimiter).delimiter

    def clean(value: str, limit: int = leef.VALUE_MAX) -> str:
        return visible(leef.sanitize(cut(value, limit), char + "|\t\r\n"))

    assert header[3] == visible(leef.sanitize(cut(event["action"], leef.VALUE_MAX), "|\t\r\n"))
    assert attrs["externalId"] == clean(event["id"])
    assert attrs["msg"] == clean(event["message"], leef.MESSAGE_MAX)
    assert attrs["usrEmail"] == clean(event["actor"]["email"])
    assert attrs["targetName"] == clean(event["target"]["name"])
    assert attrs["devTime"] == "2026-01-01T00:00:00.000Z"


@FAST
@given(st.lists(HOSTILE, min_size=1, max_size=15))
def test_json_formats_round_trip(values: list[str]) -> None:
    event = hostile_event(values)
    rec = record(event)
    ecs_doc = orjson.loads(check_line(get_formatter("ecs")(rec)))
    assert ecs_doc["message"] == event["message"] and orjson.loads(ecs_doc["event"]["original"]) == event["raw"]
    assert ecs_doc["user"]["email"] == event["actor"]["email"]
    ocsf_doc = orjson.loads(check_line(get_formatter("ocsf")(rec)))
    assert ocsf_doc["metadata"]["uid"] == event["id"] and ocsf_doc["metadata"]["event_code"] == event["action"]
    assert ocsf_doc["class_uid"] == 3004 and ocsf_doc["entity"]["name"] == event["target"]["name"]
    assert orjson.loads(check_line(get_formatter("json")(rec))) == event


def test_cef_parser_rejects_what_the_formatter_must_never_write() -> None:
    import pytest

    with pytest.raises(AssertionError):
        parse_cef("CEF:0|a|b|c|d|e|3|msg=bad\\q")  # an escape ArcSight does not define
    with pytest.raises(AssertionError):
        parse_leef("LEEF:2.0|a|b|c|d|^|k=v^k=w")  # a duplicate key


def test_cef_src_is_an_ipv4_address_only() -> None:
    """The CEF key dictionary types ``src`` (sourceAddress) "IPv4 Address": an IPv6 actor goes to
    c6a2 ("Source IPv6 Address"), a value that is no address is left out."""

    def ext(ip: str) -> dict[str, str]:
        values = ["a"] * 15
        values[10] = ip  # the actor's ip in hostile_event's order
        return parse_cef(check_line(get_formatter("cef")(record(hostile_event(values)))))[1]

    assert ext("192.0.2.7")["src"] == "192.0.2.7" and "c6a2" not in ext("192.0.2.7")
    six = ext("2001:db8::7")
    assert "src" not in six and (six["c6a2Label"], six["c6a2"]) == ("Source IPv6 Address", "2001:db8::7")
    for garbage in ("203.0.113.9, 10.0.0.2", "unknown", "a=b"):
        assert not {"src", "c6a2", "c6a2Label"} & set(ext(garbage)), garbage


def test_cef_values_keep_to_the_key_dictionary_lengths() -> None:
    """The ArcSight key dictionary gives externalId 40 characters, act and outcome 63,
    deviceExternalId 255, the header's vendor and product 63 and version 31: a longer value is
    cut to its key's length (and a cut event id is sent whole in flexString1)."""
    long_id = "http_json:acme:" + "0123456789abcdef" * 4
    event = hostile_event(["a"] * 15)
    event |= {"id": long_id, "vendor": "v" * 100, "source": "s" * 300, "activity": "x" * 80}
    header, ext = parse_cef(check_line(get_formatter("cef")(record(event))))
    assert len(header[1]) == 63 and ext["externalId"] == long_id[:40]
    assert (ext["flexString1Label"], ext["flexString1"]) == ("eventId", long_id)
    assert len(ext["act"]) == 63 and len(ext["deviceExternalId"]) == 255
    short = parse_cef(check_line(get_formatter("cef")(record(hostile_event(["a"] * 15)))))[1]
    assert short["externalId"] == "a" and "flexString1" not in short


def test_leef_src_is_an_ip_address_only() -> None:
    """LEEF's predefined ``src`` is the source IP address QRadar normalizes: IPv4 and IPv6 go
    there, a value that is no address is left out."""

    def attrs(ip: str) -> dict[str, str]:
        values = ["a"] * 15
        values[10] = ip  # the actor's ip in hostile_event's order
        return parse_leef(check_line(get_formatter("leef")(record(hostile_event(values)))))[1]

    assert attrs("192.0.2.7")["src"] == "192.0.2.7"
    assert attrs("2001:db8::7")["src"] == "2001:db8::7"
    for garbage in ("203.0.113.9, 10.0.0.2", "unknown", "a=b"):
        assert "src" not in attrs(garbage), garbage


UNSAFE = "\x00\x01\x07\x0b\x0c\x1b\x1c\x1d\x1e\x7f\x85\x9b\u2028\u2029"
"""C0 controls but tab/LF/CR, DEL, C1 (NEL, CSI) and the Unicode line and paragraph separators."""


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("cef", {}), ("leef", {}), ("leef", {"delimiter": "^"}), ("leef", {"delimiter": "x01"})],
)
def test_line_formats_carry_no_control_character(fmt: str, options: dict[str, str]) -> None:
    """CEF and LEEF have no escape for these: raw, a NUL ends the line for a C reader, an escape
    sequence drives the terminal of whoever tails the file, and ``str.splitlines()`` (Python,
    and JavaScript's and Java's ``\\R`` line terminators) splits the record at \\x0b, \\x0c,
    \\x1c-\\x1e, NEL and U+2028/9, where a vendor-controlled value can start a forged record.
    Each becomes U+FFFD, in the header and in every value."""
    hostile = "".join(f"{c}CEF:0|Evil|x|1|a|b|10|" for c in UNSAFE)
    event = hostile_event([hostile])
    line = get_formatter(fmt, options)(record(event)).decode()
    delimiter = leef.Options(**options).delimiter if fmt == "leef" else ""
    assert not set(UNSAFE.replace(delimiter, "")) & set(line)
    assert line.splitlines() == [line]
    shown = "\ufffdCEF:0|Evil|x|1|a|b|10|" * len(UNSAFE)
    if fmt == "cef":
        header, ext = parse_cef(line)
        assert header[4] == shown and ext["msg"] == ext["cs5"] == ext["suid"] == shown
    else:
        header, attrs = parse_leef(line)
        assert header[3] == shown.replace("|", " ")
        in_values = "".join(f"{' ' if c == delimiter else chr(0xFFFD)}CEF:0 Evil x 1 a b 10 " for c in UNSAFE)
        assert attrs["msg"] == attrs["repository"] == in_values  # the delimiter is a space, as ever


def test_a_cut_value_says_so() -> None:
    """A value over its key's length is cut (the ArcSight dictionary's, LEEF's 1023/4000); the
    cut one ends in "…" (U+2026, within the limit), so an analyst reading "deleted repository
    a" knows the text went on. A value at the limit is whole and unmarked."""
    values = ["a"] * 15
    values[5] = "m" * 5000  # the message, in hostile_event's order
    values[3] = "A" * 2000  # the action
    values[7] = "i" * cef.VALUE_MAX  # the actor's id: exactly at the limit
    event = hostile_event(values)
    header, ext = parse_cef(check_line(get_formatter("cef")(record(event))))
    assert ext["msg"] == "m" * (cef.VALUE_MAX - 1) + "…"
    assert header[4] == "A" * 1022 + "…" and header[5] == ("A" * 511 + "…")
    assert ext["suid"] == "i" * cef.VALUE_MAX
    header, attrs = parse_leef(check_line(get_formatter("leef")(record(event))))
    assert attrs["msg"] == "m" * (leef.MESSAGE_MAX - 1) + "…" and header[3] == "A" * 1022 + "…"
    assert attrs["usrId"] == "i" * leef.VALUE_MAX
