"""The configuration and sink references are generated from the models; they must not drift."""

from __future__ import annotations

from pathlib import Path

from forwarder.config_reference import render, render_sinks
from sinks.registry import SINKS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_reference_is_current() -> None:
    current = (DOCS / "configuration.md").read_text()
    assert current == render(), "regenerate: python -m forwarder.config_reference > docs/configuration.md"


def test_sinks_reference_is_current() -> None:
    current = (DOCS / "sinks.md").read_text()
    assert current == render_sinks(), "regenerate: python -m forwarder.config_reference sinks > docs/sinks.md"
    for sink in SINKS:
        assert f"## `type: {sink}`" in current
        assert f"    type: {sink}\n" in current, f"config/example.yaml has no {sink} example"
