"""The declarative field mapping from a vendor's raw entry to the normalized event.

``http_json`` sources take it from the YAML and the ConfigCat module declares its own with it,
so a vendor described in configuration and a dedicated module map entries the same way: dotted
paths into the entry, constants and defaults, and glob tables for the enumerated fields.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field

from forwarder.event import Activity, Category, Outcome, format_time, make_event
from forwarder.event import text_of as _text

ENUMS: dict[str, tuple[str, set[str]]] = {  # field -> (fallback, allowed values)
    "category": ("unknown", set(get_args(Category))),
    "activity": ("other", set(get_args(Activity))),
    "outcome": ("unknown", set(get_args(Outcome))),
}
STRING_FIELDS = {
    "action",
    "message",
    "repository",
    "actor.id",
    "actor.name",
    "actor.email",
    "actor.ip",
    "actor.user_agent",
    "actor.type",
    "target.type",
    "target.id",
    "target.name",
}
ACTOR_TYPES = {"user", "service", "system", "unknown"}


class FieldSpec(BaseModel):
    """One normalized field: read ``path`` (or take ``const``), optionally translate it through
    ``map`` (glob patterns; the most specific match wins) and fall back to ``default``."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="Dotted path into the raw entry (list items by index).")
    const: Any = Field(None, description="A fixed value instead of a path.")
    map: dict[str, Any] | None = Field(None, description="Glob pattern -> value; unmatched values get default.")
    default: Any = None
    parse_json: bool = Field(False, description="A string holding a JSON object or array is parsed.")


def get_path(raw: Any, path: str | None) -> Any:
    """``a.b.0.c``; a missing step gives None rather than an error (schema drift is normal)."""
    if not path:
        return raw
    value = raw
    for step in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.lstrip("-").isdigit() and -len(value) <= int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def id_value(raw: Any, path: str | list[str]) -> Any:
    """The id at ``path``, or the values at each path of a list joined by ``|`` (a composite
    id, such as a time plus a qualifier); a composite with a part missing is no id at all."""
    if isinstance(path, str):
        return get_path(raw, path)
    parts = [get_path(raw, step) for step in path]
    if any(part is None or part == "" or isinstance(part, dict | list) for part in parts):
        return None
    return "|".join(str(part) for part in parts)


def maybe_json(value: Any) -> Any:
    """Vendors put serialized objects in string fields; a string that is not JSON stays text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        if isinstance(parsed, dict | list):
            return parsed
    return value


def _specificity(pattern: str) -> tuple[bool, int, str]:
    wild = any(c in pattern for c in "*?[")
    return (not wild, len(re.sub(r"[*?]|\[[^]]*]", "", pattern)), pattern)


def match_glob(value: str, table: Mapping[str, Any]) -> Any:
    """The most specific matching pattern wins (an exact value, then the most literal
    characters), so the result never depends on the order of keys in the YAML."""
    best: tuple[bool, int, str] | None = None
    for pattern in table:
        if fnmatch.fnmatchcase(value, pattern):
            score = _specificity(pattern)
            if best is None or score[:2] > best[:2] or (score[:2] == best[:2] and pattern < best[2]):
                best = score
    return table[best[2]] if best is not None else None




class Mapper:
    """Applies a validated mapping to raw entries; built once per source."""

    def __init__(self, mapping: Mapping[str, FieldSpec]) -> None:
        self.mapping = dict(mapping)

    def resolve(self, name: str, raw: Any, action: str | None) -> Any:
        spec = self.mapping.get(name)
        if spec is None:
            return None
        if spec.const is not None:
            value = spec.const
        elif spec.path is None and spec.map is not None and name in ENUMS:
            value = action  # category, activity, outcome: globs on the action by default
        else:
            value = get_path(raw, spec.path)
        if spec.map is not None and value is not None:
            value = match_glob(_text(value), spec.map)
        if value is None:
            value = spec.default
        if spec.parse_json:
            value = maybe_json(value)
        return value

    def fields(self, raw: Any) -> dict[str, Any]:
        """Every mapped field, enums checked and strings coerced, keyed by dotted name."""
        action_value = self.resolve("action", raw, None) if "action" in self.mapping else get_path(raw, "action")
        if action_value is None or action_value == "":
            raise ValueError("entry has no action")
        action = _text(action_value)
        out: dict[str, Any] = {"action": action}
        for name in self.mapping:
            if name == "action":
                continue
            value = self.resolve(name, raw, action)
            if name in STRING_FIELDS and value is not None and not isinstance(value, str):
                value = _text(value)
            out[name] = value
        for name, (fallback, allowed) in ENUMS.items():
            value = out.get(name)  # a list or an object (schema drift) falls back too, never raises
            if not isinstance(value, str) or value not in allowed:
                out[name] = fallback
        actor_type = out.get("actor.type")
        if not isinstance(actor_type, str) or actor_type not in ACTOR_TYPES:
            out["actor.type"] = "unknown"
        return out

    def event(
        self, *, raw: Any, key: str, time: datetime, observed: datetime, vendor: str, source: str, organization: str
    ) -> dict[str, Any]:
        f = self.fields(raw)
        actor = {k[6:]: v for k, v in f.items() if k.startswith("actor.")}
        target = {k[7:]: v for k, v in f.items() if k.startswith("target.")}
        details = {k[8:]: v for k, v in f.items() if k.startswith("details.") and v is not None}
        return make_event(
            id=key,
            time=format_time(time),
            observed_time=format_time(observed),
            vendor=vendor,
            source=source,
            organization=organization,
            actor=actor,
            action=f["action"],
            activity=f["activity"],
            category=f["category"],
            outcome=f["outcome"],
            target=target,
            repository=f.get("repository"),
            message=f.get("message"),
            details=details,
            raw=raw,
        )


def validate_mapping(value: dict[str, FieldSpec | str]) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for name, spec in value.items():
        if name not in STRING_FIELDS and name not in ENUMS and not name.startswith("details."):
            raise ValueError(
                f"mapping key {name!r} is not a normalized field; use action, activity, category, outcome, "
                "message, repository, actor.*, target.* or details.<name>"
            )
        spec = FieldSpec(path=spec) if isinstance(spec, str) else spec
        if name in ENUMS:
            allowed = ENUMS[name][1]
            values = [spec.const, spec.default, *(spec.map or {}).values()]
            bad = sorted({str(v) for v in values if v is not None and v not in allowed})
            if bad:
                raise ValueError(f"mapping {name}: {', '.join(bad)} not among {', '.join(sorted(allowed))}")
        out[name] = spec
    return out


EPOCH_MS_FROM = 1e11  # an epoch number at least this big is milliseconds (1973 in ms, year 5138 in s)


def entry_time(raw: Any, time_field: str) -> str:
    """The entry's time as sent; a missing field says which setting to look at.

    An epoch number (a JSON number, or a string of 10 or more digits) is read as epoch
    milliseconds from ``EPOCH_MS_FROM`` up, else epoch seconds, and returned as RFC 3339: the
    dedicated sources' time fields are ISO 8601 where a vendor documents them, but CodeStax
    and CodeScoring document only "the time (UTC)", and such an entry was quarantined
    (inferred; ``http_json`` says its format with ``time_format`` instead)."""
    value = get_path(raw, time_field)
    if value is None or value == "":
        raise ValueError(f"entry has no {time_field!r} time; set time_field if the vendor names it otherwise")
    if type(value) is str:
        if len(value) < 10 or not value.isdigit() or not value.isascii():
            return value
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= EPOCH_MS_FROM else value
        try:
            return format_time(datetime.fromtimestamp(seconds, tz=UTC))
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"entry time {value!r} is out of range") from None
    return str(value)
