"""The normalized audit event: one versioned schema for every vendor.

Events are plain dicts (built by ``make_event``) rather than model instances: the hot path
serializes each one exactly once with orjson, and per-event validation would cost more than
the rest of the pipeline. The pydantic model below exists to document the schema and to
print it as JSON Schema (``audit-forwarder schema``); tests check every mapping against it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"

Outcome = Literal["success", "failure", "unknown"]
Category = Literal[
    "authentication",
    "user_management",
    "access_management",
    "entity_management",
    "configuration",
    "data_access",
    "api",
    "analysis",
    "forwarder",
    "unknown",
]
Activity = Literal[
    "create",
    "read",
    "update",
    "delete",
    "login",
    "logout",
    "grant",
    "revoke",
    "add_member",
    "remove_member",
    "enable",
    "disable",
    "execute",
    "export",
    "other",
]


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    name: str | None = None
    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    type: Literal["user", "service", "system", "unknown"] = "unknown"


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = None
    id: str | None = None
    name: str | None = None


class Chain(BaseModel):
    """The event's place in its stream's hash chain (``forwarder.evidence.chain``, docs/evidence.md)."""

    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=1, description="Position in the stream (source x organization), from 1.")
    prev: str = Field(description="`hash` of the stream's previous event; 64 zeros for the first.")
    hash: str = Field(description="SHA-256 of the canonical content (docs/evidence.md).")


class NormalizedEvent(BaseModel):
    """Schema of every event the forwarder emits (``docs/schema.md`` explains each field)."""

    model_config = ConfigDict(extra="forbid", title="audit-forwarder normalized event")
    schema_version: Literal["1.0"] = Field(description="Version of this schema.")
    id: str = Field(description="Stable id: the vendor's id, else a SHA-256 of the canonical raw entry.")
    time: str = Field(description="When the action happened, UTC RFC 3339 with milliseconds.")
    observed_time: str = Field(description="When the forwarder fetched it, UTC RFC 3339 with milliseconds.")
    vendor: str
    source: str = Field(description="The name of the source in the configuration.")
    organization: str
    actor: Actor
    action: str = Field(description="The vendor's own action string, unchanged.")
    activity: Activity
    category: Category
    outcome: Outcome
    target: Target
    repository: str | None  # always present, like every field (null when unknown): no defaults
    message: str | None
    details: dict[str, Any]
    raw: Any = Field(description="The original entry, unchanged.")
    chain: Chain | None = Field(
        None, description="Place in the stream's hash chain; set when the event is journaled (docs/evidence.md)."
    )


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """Pydantic writes draft 2020-12 (``$defs``); the schema says so itself, so that a validator
    that defaults to another draft (ajv's is draft-07) reads it as written."""
    return {"$schema": JSON_SCHEMA_DIALECT, **NormalizedEvent.model_json_schema()}


def format_time(dt: datetime) -> str:
    """UTC RFC 3339 with exactly three fractional digits, the form every sink expects."""
    # isoformat truncates to milliseconds like the old strftime form, at half the cost (hot path)
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


_observed: tuple[datetime, str] | None = None


def format_observed(dt: datetime) -> str:
    """``format_time`` for the observed time, which is one object for a whole page: remembered
    so a page of N entries formats it once instead of N times."""
    global _observed
    last = _observed
    if last is not None and last[0] is dt:
        return last[1]
    text = format_time(dt)
    _observed = (dt, text)
    return text


def event_time(value: str) -> str:
    """``format_time(parse_time(value))``: what a normalizer puts in ``time``. Vendors mostly send
    that canonical form already; then the checked text is kept as it is, since formatting cost
    more than normalizing the rest of the entry."""
    if (
        type(value) is str
        and len(value) == 24
        and value[23] == "Z"
        and value[19] == "."
        and value[10] == "T"
        and value[4] == "-"
        and value[7] == "-"
        and value[13] == ":"
        and value[16] == ":"
        and value[20:23].isdigit()
        and value.isascii()  # the tolerant parser reads junk digits there
    ):
        try:
            datetime.fromisoformat(value)
            return value
        except ValueError:
            pass  # a leap second, read below; a date that does not exist is refused there too
    return format_time(parse_time(value))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(dt: datetime) -> int:
    """Exact milliseconds since the epoch, in integers (``dt.timestamp() * 1000`` is a float
    product, one millisecond off for some times)."""
    return (dt - _EPOCH) // _MS


def parse_ms(value: str) -> int:
    if len(value) == 24 and value[23] == "Z":  # the canonical form (hot: twice per event)
        try:  # UTC already: parse_time's conversions would change nothing
            return (datetime.fromisoformat(value) - _EPOCH) // _MS
        except ValueError:
            pass  # the tolerant parser may still read it
    return epoch_ms(parse_time(value))


def format_ms(ms: int) -> str:
    return format_time(datetime.fromtimestamp(ms / 1000, tz=UTC))


def parse_time(value: str) -> datetime:
    """Tolerant ISO 8601: 0 to 7 fractional digits, ``Z`` or an offset, naive means UTC."""
    try:  # fast path (hot: twice per event); whatever it accepts, the tolerant path reads alike
        dt = datetime.fromisoformat(value)
    except ValueError:
        dt = _parse_tolerant(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted past the calendar: unparseable, like any bad time
        raise ValueError(f"time out of range once in UTC: {value[:40]!r}") from None


_LEAP_SECOND = re.compile(r"[T ]\d\d:?\d\d:?(60)")


def _parse_tolerant(value: str) -> datetime:
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        leap = _LEAP_SECOND.search(text)
        if leap is None:
            raise
    # RFC 3339 (5.6, 5.7) allows second 60, a leap second, which datetime cannot hold: refusing
    # it quarantined a real entry. It is read as the second after 59, the instant it ends at.
    try:
        return datetime.fromisoformat(f"{text[: leap.start(1)]}59{text[leap.end(1) :]}") + timedelta(seconds=1)
    except OverflowError:  # the last second of year 9999
        raise ValueError(f"time out of range: {value[:40]!r}") from None


# orjson parses 1,024 levels of nesting but writes only 254; an entry nested deeper than it can
# write is kept cut at this depth, so it can still be hashed and quarantined, never journaled.
MAX_DEPTH = 200
TOO_DEEP = "<nested deeper than 200 levels: cut>"


def json_safe(value: Any, depth: int = MAX_DEPTH) -> Any:
    """``value`` with every container below ``depth`` levels replaced by ``TOO_DEEP``. Only
    called once orjson refused a value: a pass over every entry would cost the hot path."""
    if isinstance(value, dict):
        return {k: json_safe(v, depth - 1) for k, v in value.items()} if depth > 0 else TOO_DEEP
    if isinstance(value, list):
        return [json_safe(v, depth - 1) for v in value] if depth > 0 else TOO_DEEP
    return value


def canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # too deep: a page must not fail for good on one entry
        return orjson.dumps(json_safe(value), option=orjson.OPT_SORT_KEYS, default=str)


def content_id(vendor: str, organization: str, raw: Any) -> str:
    """Same entry, same id, across restarts and machines: the namespace keeps two vendors or
    two organizations with byte-identical entries apart."""
    return content_ids(vendor, organization, [raw])[0]


def content_ids(vendor: str, organization: str, raws: list[Any]) -> list[str]:
    """``content_id`` of each entry of a page, hashing the namespace once."""
    namespace = hashlib.sha256(f"{vendor}\x00{organization}\x00".encode())
    prefix = f"{vendor}:"
    out = []
    for raw in raws:
        digest = namespace.copy()
        digest.update(canonical_json(raw))
        out.append(prefix + digest.hexdigest())
    return out


def text_of(value: Any) -> str:
    """A vendor value as the text a string field of the schema carries: JSON for an object or
    a list (as the vendor sent it, not Python's repr), ``true``/``false``, a number's digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _strings(part: dict[str, Any]) -> None:
    """The schema's actor and target fields are strings or null. Vendors whose entry shape is
    only inferred (CodeStax, Codescoring) may send a number, an object or a list where a name
    or an address was expected; such an event broke the schema (and every format built on
    it) instead of carrying the value as text. ``raw`` keeps it as it was."""
    for name, value in part.items():
        if value is not None and type(value) is not str:
            part[name] = text_of(value)


def make_event(
    *,
    id: str,
    time: str,
    observed_time: str,
    vendor: str,
    source: str,
    organization: str,
    action: str,
    activity: str,
    category: str,
    outcome: str,
    raw: Any,
    actor: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    repository: str | None = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    actor_full = {"id": None, "name": None, "email": None, "ip": None, "user_agent": None, "type": "unknown"}
    actor_full.update(actor or {})
    target_full = {"type": None, "id": None, "name": None}
    target_full.update(target or {})
    _strings(actor_full)
    _strings(target_full)
    if repository is not None and type(repository) is not str:
        repository = text_of(repository)
    if message is not None and type(message) is not str:
        message = text_of(message)
    return {
        "schema_version": SCHEMA_VERSION,
        "id": id,
        "time": time,
        "observed_time": observed_time,
        "vendor": vendor,
        "source": source,
        "organization": organization,
        "actor": actor_full,
        "action": action,
        "activity": activity,
        "category": category,
        "outcome": outcome,
        "target": target_full,
        "repository": repository or None,
        "message": message,
        "details": details or {},
        "raw": raw,
    }
