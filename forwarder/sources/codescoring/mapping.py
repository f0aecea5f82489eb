"""A CodeScoring entry as a normalized event: its message parsed by the templates
(``templates.py``), the actor as recorded, the rest kept as details."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from forwarder.event import event_time, text
from forwarder.mapping import entry_time, get_path
from forwarder.sources.base import entry_event
from forwarder.sources.codescoring.templates import OBJECT_REPR, STATUS_OUTCOME, VERB_ACTIVITY, parse_message
from forwarder.sources.window import audit_entry


def _actor(value: Any) -> dict[str, Any]:
    """The documented Actor: a username, ``system`` for system actions. An empty or missing one
    names nobody (``unknown``, not a user called ""); another JSON type is kept as text by
    ``make_event``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {"name": None, "id": None, "type": "unknown"}
    return {"name": value, "id": value, "type": "system" if value == "system" else "user"}


def normalize_entry(
    source: str,
    organization: str,
    raw: Any,
    key: str,
    observed: datetime,
    time_field: str = "created_at",
    *,
    actor_field: str = "actor",
    message_field: str = "message",
    duration_field: str = "duration",
) -> dict[str, Any]:
    """The documented columns (Actor, Message, Duration) under the names the settings give:
    the entry's shape is undocumented ([INF]), like the names of its time and id fields."""
    message = get_path(audit_entry("CodeScoring", raw), message_field)
    if message is None:
        raise ValueError(f"entry has no {message_field!r} message; set message_field if the vendor names it otherwise")
    if not isinstance(message, str):  # a number or an object: matches no template, kept as text
        message = text(message)
    when = event_time(entry_time(raw, time_field))
    actor_name = get_path(raw, actor_field)
    actor = _actor(actor_name)
    template, fields = parse_message(message)
    target: dict[str, Any] = {}
    if template is None:
        action, category, activity, outcome = "unknown", "unknown", "other", "unknown"
    else:
        verb, status = fields.pop("verb", None), fields.get("status")
        action = template.action.format(verb=verb, status=status)
        category = template.category
        activity = template.activity or VERB_ACTIVITY.get(verb or "", "other")
        outcome = template.outcome or STATUS_OUTCOME.get(status or verb or "", "unknown")
        if template.target:
            kind, name_group, id_group = template.target
            target = {"type": kind, "name": fields.get(name_group or ""), "id": fields.get(id_group or "")}
            if target["id"] is not None:
                target["id"] = str(target["id"])
        if "object_repr" in fields:
            parsed = OBJECT_REPR.match(fields["object_repr"])
            target = {"type": parsed["type"], "name": parsed["name"]} if parsed else {"name": fields["object_repr"]}
        if action == "user.login_failed":  # the recorded actor is whoever logged it; the attempt names the user
            actor = _actor(fields.get("username"))
            if actor["type"] == "system":  # a login attempt as "system" is a user's attempt, not the system's
                actor["type"] = "user"
            fields["recorded_actor"] = actor_name
    duration = get_path(raw, duration_field)
    if duration is not None:
        fields["duration"] = duration
    return entry_event(
        "codescoring",
        source,
        organization,
        key,
        when,
        observed,
        actor=actor,
        action=action,
        activity=activity,
        category=category,
        outcome=outcome,
        target=target,
        repository=fields.get("repository"),
        message=message,
        details=fields,
        raw=raw,
    )
