"""Per-sink routing: which events a sink receives (``filter``) and what it may see of them
(``redact``).

Both work on a parsed copy of each record, made by the sink's own worker, so one sink's
filter or redaction never changes what another sink receives. A sink with neither gets the
journaled records untouched (the JSON fast path); a filter alone forwards the accepted
records' original bytes; only redaction re-serializes.

Redaction replaces the value at each configured field and then every other occurrence of the
same value (an exact, whole-value match, also a number equal to its text) in the event's
``actor``, ``target``, ``repository``, ``message``, ``details`` and ``raw`` copy: vendors
repeat the actor's e-mail in several places (Codacy's actor id *is* the e-mail), and a
redaction that left one copy behind would be no redaction. A value embedded inside longer
text (an e-mail in a sentence) is not found; drop ``message`` or ``raw`` for that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Sequence
from fnmatch import fnmatchcase
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from forwarder.event import Category, Outcome, canonical_json
from forwarder.record import Record

REDACTABLE = ("actor", "target", "repository", "message", "details", "raw")
"""Top-level fields redaction may touch; the rest (id, time, vendor, action, ...) route the event."""
FIXED_FIELDS = {"actor": ("id", "name", "email", "ip", "user_agent"), "target": ("type", "id", "name")}


class Match(BaseModel):
    """Every field given must match (AND); within a field, any one value (OR). Vendor, source,
    organization and action take shell-style globs (``*``, ``?``, ``[...]``), case-sensitive."""

    model_config = ConfigDict(extra="forbid")
    vendor: list[str] = Field(default_factory=list)
    source: list[str] = Field(default_factory=list)
    organization: list[str] = Field(default_factory=list)
    category: list[Category] = Field(default_factory=list)
    action: list[str] = Field(default_factory=list)
    outcome: list[Outcome] = Field(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        """An entry naming nothing matches every event: as an exclude it dropped them all."""
        if not any(getattr(self, name) for name in type(self).model_fields):
            raise ValueError("a filter entry must name at least one value (vendor, source, organization, ...)")
        return self

    def matches(self, event: dict[str, Any]) -> bool:
        for name in ("vendor", "source", "organization", "action"):
            patterns: list[str] = getattr(self, name)
            if patterns and not any(fnmatchcase(str(event.get(name, "")), p) for p in patterns):
                return False
        if self.category and event.get("category") not in self.category:
            return False
        return not (self.outcome and event.get("outcome") not in self.outcome)


class SinkFilter(BaseModel):
    """``include``: when given, an event must match at least one entry; ``exclude``: an event
    matching any entry is dropped. Each is one match or a list of matches."""

    model_config = ConfigDict(extra="forbid")
    include: list[Match] = Field(default_factory=list)
    exclude: list[Match] = Field(default_factory=list)

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    def accepts(self, event: dict[str, Any]) -> bool:
        if self.include and not any(m.matches(event) for m in self.include):
            return False
        return not any(m.matches(event) for m in self.exclude)


def unknown_sources_warning(sink_filter: SinkFilter | None, sources: Collection[str]) -> str | None:
    """A filter's source names (without glob characters) that no configured source has: a
    typo there silently routes nothing to the sink (``include``) or drops nothing (``exclude``).
    A warning, not an error: a source may be left out of the configuration for a while."""
    if sink_filter is None:
        return None
    named = {
        p for m in (*sink_filter.include, *sink_filter.exclude) for p in m.source if not any(c in p for c in "*?[")
    }
    unknown = sorted(named - set(sources))
    if not unknown:
        return None
    return (
        f"filter names source {', '.join(map(repr, unknown))}, which is not in sources: (configured: "
        f"{', '.join(sorted(sources)) or 'none'}); a typo there routes nothing"
    )


class RedactRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(description="Dotted path: actor.email, target.name, message, details.x.y, raw, raw.x.y, ...")
    action: Literal["drop", "hmac"] = Field(
        "drop", description="drop: the value becomes null; hmac: keyed HMAC-SHA256 of the value, hex."
    )

    @field_validator("field")
    @classmethod
    def _redactable(cls, value: str) -> str:
        parts = value.split(".")
        head = parts[0]
        if head not in REDACTABLE or any(not p for p in parts):
            raise ValueError(f"cannot redact {value!r}: the path must start with one of {', '.join(REDACTABLE)}")
        if head in FIXED_FIELDS and (len(parts) != 2 or parts[1] not in FIXED_FIELDS[head]):
            allowed = ", ".join(f"{head}.{f}" for f in FIXED_FIELDS[head])
            raise ValueError(f"cannot redact {value!r}: expected one of {allowed}")
        if head in ("repository", "message") and len(parts) != 1:
            raise ValueError(f"cannot redact {value!r}: {head} has no sub-fields")
        return value


def check_redaction(rules: Sequence[RedactRule], key: SecretStr | None) -> None:
    if any(r.action == "hmac" for r in rules) and not (key and key.get_secret_value()):
        raise ValueError("redact rules with action hmac need redact_key (or redact_key_file)")


class Redactor:
    def __init__(self, rules: Sequence[RedactRule], key: SecretStr | None) -> None:
        check_redaction(rules, key)
        self.rules = [(rule.field.split("."), rule.action) for rule in rules]
        self._key = key.get_secret_value().encode() if key else b""

    def digest(self, value: Any) -> str:
        data = value.encode() if isinstance(value, str) else canonical_json(value)
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        replacements: dict[str, Any] = {}
        for path, action in self.rules:
            parent: Any = event
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or parent.get(path[-1]) is None:
                continue
            value = parent[path[-1]]
            parent[path[-1]] = new = self.digest(value) if action == "hmac" else None
            if _scalar(value):
                replacements[str(value)] = new
        if replacements:
            for name in REDACTABLE:
                if name in event:
                    event[name] = _scrub(event[name], replacements)
        return event


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _scrub(value: Any, replacements: dict[str, Any]) -> Any:
    """Values, and keys too (``{"alice@x.com": "admin"}``): a key becomes its replacement's text."""
    if isinstance(value, dict):
        return {
            (k if k not in replacements else str(replacements[k] or "[redacted]")): _scrub(v, replacements)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, replacements) for v in value]
    if _scalar(value) and str(value) in replacements:
        return replacements[str(value)]
    return value


class Router:
    """What one sink receives of a batch; see the module docstring for the guarantees."""

    def __init__(self, flt: SinkFilter | None, redactor: Redactor | None) -> None:
        self.filter = flt if flt and (flt.include or flt.exclude) else None
        self.redactor = redactor

    @classmethod
    def build(cls, flt: SinkFilter | None, redact: Sequence[RedactRule], redact_key: SecretStr | None) -> Router:
        """A sink's router from its ``filter``, ``redact`` and ``redact_key`` settings."""
        return cls(flt, Redactor(redact, redact_key) if redact else None)

    @property
    def passthrough(self) -> bool:
        return self.filter is None and self.redactor is None

    def apply(self, batch: Sequence[Record]) -> list[Record]:
        if self.passthrough:
            return list(batch)
        out = []
        for record in batch:
            event = record.event()
            if self.filter and not self.filter.accepts(event):
                continue
            if self.redactor:
                record = record._replace(data=orjson.dumps(self.redactor(event)))
            out.append(record)
        return out
