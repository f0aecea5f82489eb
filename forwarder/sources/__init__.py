"""Source registry: adding a source is one module in this folder plus one line here.

Each entry maps the ``type`` used in the YAML to the source's config model and its class,
built as ``SourceClass(name, config)``. What else the rest of the forwarder needs of a vendor
is read off the class: ``display_name`` (the SIEM formats' vendor field, via ``display_name``
below) and ``retention_days`` (``forwarder.sources.windowed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forwarder.sources.base import Source, SourceConfig
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.codescoring import CodescoringConfig, CodescoringSource
from forwarder.sources.codestax import CodeStaxConfig, CodeStaxSource
from forwarder.sources.configcat import ConfigCatConfig, ConfigCatSource
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from forwarder.sources.presets import discover

# The factory is typed so that mypy checks each class against the Source protocol.
SOURCES: dict[str, tuple[type[SourceConfig], Callable[[str, Any], Source]]] = {
    "codacy": (CodacyConfig, CodacySource),
    "configcat": (ConfigCatConfig, ConfigCatSource),
    "http_json": (HttpJsonConfig, HttpJsonSource),
    "codescoring": (CodescoringConfig, CodescoringSource),
    "codestax": (CodeStaxConfig, CodeStaxSource),
}
# Presets (forwarder/presets/*.yaml): http_json configured, one type per file.
SOURCES.update({name: (model, HttpJsonSource) for name, model in discover().items()})

# The vendor an event carries -> how people write it; read by forwarder.formats.
DISPLAY_NAMES: dict[str, str] = {
    vendor: name
    for _, factory in SOURCES.values()
    if isinstance(vendor := getattr(factory, "vendor", None), str)
    and isinstance(name := getattr(factory, "display_name", None), str)
}


def display_name(vendor: str) -> str | None:
    """The vendor's name as its source class spells it; None for a vendor no source module
    reads (an http_json description names its own)."""
    return DISPLAY_NAMES.get(vendor)
