"""Format options are validated when the configuration loads, not at the first event."""

from __future__ import annotations

import csv

import pytest
from pydantic import ValidationError

from forwarder.formats import get_formatter
from forwarder.formats.csv import COLUMNS
from sinks.registry import SINKS
from tests.formats.samples import events, parse_leef, record


@pytest.mark.parametrize(("given", "announced"), [("^", "^"), ("x5E", "^"), ("0x09", "x09"), ("\t", "x09")])
def test_leef_delimiter(given: str, announced: str) -> None:
    line = get_formatter("leef", {"delimiter": given})(record(events()["codacy"])).decode()
    assert line.split("|")[5] == announced
    assert parse_leef(line)[1]["usrEmail"] == "alice@example.com"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("leef", {"delimiter": "="}, "delimiter must be one ASCII"),
        ("leef", {"delimiter": "xZZ"}, "not a hex code"),
        ("leef", {"delimiter": " "}, "no letter, digit, space"),  # values keep their spaces: they would split
        ("leef", {"delimiter": "x20"}, "no letter, digit, space"),
        ("leef", {"delim": "^"}, "delim"),
        ("json", {"x": 1}, "format_options for 'json'"),
        ("syslog5424", {}, "unknown format 'syslog5424'"),
    ],
)
def test_bad_options_fail_clearly(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_formatter(name, options)


def test_sink_config_rejects_a_bad_format_at_load() -> None:
    model = SINKS["syslog"][0]
    with pytest.raises(ValidationError, match="unknown format 'cef2'"):
        model.model_validate({"type": "syslog", "host": "127.0.0.1", "format": "cef2"})
    leef = {"type": "syslog", "host": "127.0.0.1", "format": "leef"}
    with pytest.raises(ValidationError, match="delimiter"):
        model.model_validate(leef | {"format_options": {"delimiter": "|"}})
    ok = model.model_validate(leef | {"format_options": {"delimiter": "^"}})
    assert ok.format_options == {"delimiter": "^"}
    file_model = SINKS["file"][0]
    assert file_model.model_validate({"type": "file", "path": "/tmp/x", "format": "ocsf"}).format == "ocsf"


def test_csv_defuses_formulas_and_names_the_actor_id() -> None:
    """Audit data is text anyone with an account writes; a spreadsheet must not run it."""
    sample = next(iter(events().values()))
    event = {
        **sample,
        "message": '=HYPERLINK("http://evil/","x")',
        "repository": "+cmd|' /C calc'!A0",
        "actor": {"id": "svc-42", "email": None, "name": None, "ip": None},
    }
    row = next(csv.reader([get_formatter("csv")(record(event)).decode()]))
    by_column = dict(zip(COLUMNS, row, strict=True))
    assert by_column["message"] == '\'=HYPERLINK("http://evil/","x")'
    assert by_column["repository"] == "'+cmd|' /C calc'!A0"
    assert by_column["actor_id"] == "svc-42" and COLUMNS[-4:-3] == ["actor_id"]


def test_csv_escape_formulas_false_writes_values_exactly_rfc_4180() -> None:
    """RFC 4180 carries a field as it is (quoted when it holds a comma, a quote or a line break):
    with ``escape_formulas: false`` a reader gets back every value exactly."""
    sample = next(iter(events().values()))
    values = {"message": '=SUM(1,2) "q"\r\nnext', "repository": "-1", "organization": "@acme"}
    event = {**sample, **values}
    line = get_formatter("csv", {"escape_formulas": False})(record(event)).decode()
    by_column = dict(zip(COLUMNS, next(csv.reader([line], strict=True)), strict=True))
    assert {key: by_column[key] for key in values} == values
    assert '"=SUM(1,2) ""q""\r\nnext"' in line  # quoted, quotes doubled, the line break inside
    defused = dict(zip(COLUMNS, next(csv.reader([get_formatter("csv")(record(event)).decode()])), strict=True))
    assert defused["repository"] == "'-1" and defused["organization"] == "'@acme"
    with pytest.raises(ValueError, match="escape_formula"):
        get_formatter("csv", {"escape_formula": False})
