"""The configuration reference is generated from the models; it must not drift."""

from __future__ import annotations

from pathlib import Path

from forwarder.config_reference import render


def test_configuration_reference_is_current() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert path.read_text() == render(), "regenerate: python -m forwarder.config_reference > docs/configuration.md"
