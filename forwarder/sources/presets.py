"""Presets: a vendor's audit API as a packaged ``http_json`` configuration, chosen with one line.

Each ``forwarder/presets/<name>.yaml`` is an ``http_json`` source described in YAML alone (URL,
auth method, paging, time fields, rate-limit headers, mapping, retention) plus a
``description``. ``type: <name>`` in the configuration selects it, and every key the
configuration gives overrides the preset's, key by key: mappings (``params``, ``auth``,
``pagination``, ``rate_limit``, ``mapping``...) are merged, other values replaced, a ``null``
takes the key back to the ``http_json`` default, and one ``mapping`` field is replaced whole.

A preset that needs something the engine cannot express is the engine's gap, filled in a
vendor-neutral module (``forwarder/sources/http_auth.py``, ``ratelimit.py``, ``http_json``'s time
formats and window parameter), never with vendor code: a new vendor is one YAML file here,
its fixtures and its emulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import yaml
from pydantic import Field, create_model, model_validator

from forwarder.sources.http_json_config import HttpJsonConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
# The packaged files are read by every command that loads a configuration: libyaml's loader
# reads them in a tenth of the pure-Python one's CPU (~1 ms against ~10, docs/performance.md
# round 10), with the same result. An operator's own file keeps the pure-Python loader
# (``forwarder.settings``): its error messages are the ones the tests and docs show.
LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
# Keys of a preset file that describe it rather than configure the source.
META_KEYS = ("description",)


def merged(preset: Mapping[str, Any], override: Mapping[str, Any], *, whole: bool = False) -> dict[str, Any]:
    """``override`` over ``preset``: nested mappings merge, anything else replaces, ``None``
    removes. Under ``mapping`` (``whole``) each field's spec is replaced whole: a spec merged
    with the preset's would keep a ``map`` the operator meant to drop."""
    out = dict(preset)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif not whole and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value, whole=key == "mapping")
        else:
            out[key] = value
    return out


class PresetConfig(HttpJsonConfig):
    """Base of the generated preset models; ``preset`` holds the YAML file's settings."""

    preset: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return merged({**cls.preset, "type": data.get("type")}, data)


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)  # noqa: S506  # a safe loader (C or pure-Python)
    if not isinstance(data, dict):
        raise ValueError(f"preset {path.name} is not a mapping")
    if "type" in data:
        raise ValueError(f"preset {path.name}: the file name is its type; remove type")
    return data


def preset_model(name: str, data: dict[str, Any]) -> type[PresetConfig]:
    """The configuration model of ``type: <name>``: ``http_json``'s, with the preset's values
    merged under what the configuration says."""
    settings = {k: v for k, v in data.items() if k not in META_KEYS}
    title = "".join(part.title() for part in name.split("_"))
    model = create_model(
        f"{title}PresetConfig",
        __base__=PresetConfig,
        __doc__=(
            f"{str(data.get('description', '')).strip()}\n\nA preset: every `http_json` setting applies, and the "
            f"values in `forwarder/presets/{name}.yaml` are the defaults (docs/presets.md)."
        ),
        type=(cast(Any, Literal)[name], Field(description=f"`{name}` selects this preset.")),
    )
    model.preset = settings
    return cast(type[PresetConfig], model)


def discover() -> dict[str, type[PresetConfig]]:
    """Every packaged preset by type name, in file-name order."""
    return {path.stem: preset_model(path.stem, load(path)) for path in sorted(PRESET_DIR.glob("*.yaml"))}
