"""Source registry: adding a source is one module in this folder plus one line here.

Each entry maps the ``type`` used in the YAML to the source's config model and its class,
built as ``SourceClass(name, config)``.
"""

from __future__ import annotations

from typing import Any

from forwarder.sources.base import SourceConfig
from forwarder.sources.codacy import CodacyConfig, CodacySource

SOURCES: dict[str, tuple[type[SourceConfig], Any]] = {
    "codacy": (CodacyConfig, CodacySource),
}
