"""OCSF types an actor's address (``ip_t``) and e-mail (``email_t``, a regex): a vendor value
neither (a list of forwarded addresses, a host name, an e-mail field holding a number or a
display name) made the whole OCSF event invalid against the official schema, in every version.
Such a value is left out of the typed attribute and kept under ``unmapped.actor``, as ECS, CEF
and LEEF already leave an address that is none out of their address fields."""

from __future__ import annotations

from typing import Any

import pytest

from forwarder.formats.ocsf import VERSIONS, ocsf_event
from tests.formats.samples import events
from tests.support.ocsf_schema import problems

ODD_ACTORS = [
    {"ip": "203.0.113.9, 10.0.0.2", "email": "5"},
    {"ip": "not an ip", "email": "Ünïcødé 🙂"},
    {"ip": "build-agent.internal", "email": "Bob <bob@example.com>"},
]


def _with_actor(event: dict[str, Any], actor: dict[str, Any]) -> dict[str, Any]:
    return {**event, "actor": {**event["actor"], **actor}}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("odd", ODD_ACTORS, ids=lambda odd: odd["ip"])
def test_an_actor_value_ocsf_types_refuse_keeps_the_event_valid(version: str, odd: dict[str, Any]) -> None:
    for name, event in events().items():
        doc = ocsf_event(_with_actor(event, odd), version=version)
        assert problems(doc) == [], (name, problems(doc))
        assert doc["unmapped"]["actor"] == odd, name  # nothing lost
        assert doc.get("src_endpoint", {}).get("ip") is None


def test_a_valid_address_and_email_stay_where_ocsf_puts_them() -> None:
    event = _with_actor(events()["codestax"], {"ip": "2001:db8::1", "email": "bob@example.com"})
    doc = ocsf_event(event)
    assert doc["src_endpoint"] == {"ip": "2001:db8::1"}
    assert doc["actor"]["user"]["email_addr"] == "bob@example.com"
    assert "actor" not in doc["unmapped"]
    assert problems(doc) == []
