"""How the contract suite reaches each registered source: the emulator that declares its
``source_type`` (``forwarder.emulators.base.Emulator``, the usual and only registration a
new vendor needs), or, for a source no emulator names, an entry in ``EXTRA``.

``http_json`` is generic: it is proven against the ConfigCat emulator, ConfigCat being
described to it in YAML alone (``tests/support/vendors.py::configcat_as_http_json``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forwarder.emulators import EMULATORS
from forwarder.emulators.configcat import ConfigCatEmulator
from tests.support.vendors import FAST_POLLING, configcat_as_http_json, source_entry


@dataclass(frozen=True)
class SourceCase:
    emulator: str  # a key of EMULATORS
    config: Callable[[str], dict[str, Any]]  # the emulator's URL -> a working source entry
    key: Callable[[dict[str, Any]], str]  # an entry of /_control/entries -> its event id
    options: dict[str, Any] = field(default_factory=dict)  # emulator start-up options


EXTRA: dict[str, SourceCase] = {
    "http_json": SourceCase(
        "configcat", lambda url: {**configcat_as_http_json(url), **FAST_POLLING}, ConfigCatEmulator().entry_key
    ),
}

MISSING = (
    "source type {type!r} is registered in forwarder/sources/__init__.py but no emulator declares it: give "
    "its emulator in forwarder/emulators/ source_type = {type!r}, source_config() and entry_key() (the "
    "emulator contract, forwarder/emulators/base.py) and register it in EMULATORS; a generic source "
    "without its own emulator goes in EXTRA in tests/contract/sources.py"
)


def _entry(source_type: str) -> Callable[[str], dict[str, Any]]:
    return lambda url: source_entry(source_type, url)


def case_of(source_type: str) -> SourceCase | None:
    for name, cls in EMULATORS.items():
        if cls.source_type == source_type:
            return SourceCase(name, _entry(source_type), cls().entry_key)
    return EXTRA.get(source_type)
