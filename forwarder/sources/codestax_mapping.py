"""CodeStax entries as normalized events: the documented categories and events (seed 001), and
the entry shape, which is inferred ([INF]): its field names are settings of the source
(``action_field``, ``user_field``, ``target_field``, ``metadata_field``, ``category_field``,
``category_aliases``), passed in by ``forwarder.sources.codestax``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from forwarder.event import event_time, text
from forwarder.mapping import entry_time, get_path
from forwarder.sources.base import entry_event
from forwarder.sources.window import audit_entry

CATEGORIES = {
    "auth": "authentication",
    "authentication": "authentication",
    "repositories": "configuration",
    "scans": "analysis",
    "findings": "entity_management",
    "team": "user_management",
    "settings": "configuration",
    "integrations": "configuration",
}
CATEGORY_BY_PREFIX = {
    "auth": "auth",
    "repository": "repositories",
    "scan": "scans",
    "finding": "findings",
    "team": "team",
    "settings": "settings",
    "integration": "integrations",
}
# The audit log's "Action type" filter is documented by the values "auth, scan, triage,
# settings, etc."; an entry's category may well be spelled so (inferred, like the plural table
# names above), or in the singular of the action's prefix. Each names one documented category.
CATEGORY_ALIASES = {
    **CATEGORY_BY_PREFIX,
    "scan": "scans",
    "triage": "findings",
    "repo": "repositories",
    "member": "team",
    "setting": "settings",
    **{name: name for name in CATEGORIES},
}
TARGET_TYPES = {
    "auth": "user",
    "repositories": "repository",
    "scans": "repository",
    "findings": "finding",
    "team": "user",
    "settings": "setting",
    "integrations": "integration",
}
ACTIVITIES = {
    "login": "login",
    "logout": "logout",
    "created": "create",
    "revoked": "revoke",
    "connected": "create",
    "disconnected": "delete",
    "settings_changed": "update",
    "triggered": "execute",
    "completed": "execute",
    "failed": "execute",
    "cancelled": "execute",
    "triaged": "update",
    "ignored": "update",
    "commented": "create",
    "member_invited": "add_member",
    "role_changed": "update",
    "member_removed": "remove_member",
    "updated": "update",
    "webhook_configured": "update",
    "policy_changed": "update",
    "jira_linked": "create",
    "oauth_token_refreshed": "update",
    "webhook_enabled": "enable",
    "webhook_disabled": "disable",
    "viewed": "read",
    "exported": "export",
    "deleted": "delete",
    "login_failed": "login",
}
NAME_AND_EMAIL = re.compile(r"^(?P<name>[^<]*)<(?P<email>[^<>\s]+@[^<>\s]+)>$")
READS = {"read", "export"}  # findings read or exported are data access, not entity changes
FAILURES = ("failed", "denied", "rejected", "login_failed")


def _user(value: Any) -> dict[str, Any]:
    """The entry's user: an object (inferred: ``{name, email}``), or the documented "who
    performed the action" as plain text, an email or a name, which is still the actor (it was
    dropped, leaving the actor unknown). Anything else leaves the actor unknown."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        named = NAME_AND_EMAIL.match(value.strip())
        if named:  # the document's "name and email" written as one text, as an export would
            return {"name": named["name"].strip().strip('"') or None, "email": named["email"]}
        return {"email": value} if "@" in value else {"name": value}
    return {}


def _named(value: Any) -> tuple[str | None, str | None, str | None]:
    """The documented "Target" (repository name, finding ID, user email) as (name, id, type):
    text or a number as it is; an object (inferred shape) by its ``name``/``email``/``id`` and
    ``type``, not its Python repr; anything else (a list, an empty text) names nothing, and
    ``raw`` keeps it."""
    if isinstance(value, str):
        return (value, value, None) if value else (None, None, None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value), str(value), None
    if isinstance(value, dict):
        name = next((v for k in ("name", "email", "id") if (v := value.get(k)) not in (None, "")), None)
        ident = next((v for k in ("id", "name", "email") if (v := value.get(k)) not in (None, "")), None)
        kind = value.get("type")
        return (
            None if name is None else str(name),
            None if ident is None else str(ident),
            kind if isinstance(kind, str) and kind else None,
        )
    return None, None, None


def _category(value: Any, prefix: str, aliases: Mapping[str, str]) -> str | None:
    """The entry's own category when it names a documented one, else the action's prefix's
    (a category the table does not know, or of another type, no longer hides a known action)."""
    if isinstance(value, str):
        if value in aliases:
            return aliases[value]
        if value.strip().lower() in CATEGORY_ALIASES:
            return CATEGORY_ALIASES[value.strip().lower()]
    return CATEGORY_BY_PREFIX.get(prefix)


def normalize_entry(
    source: str,
    organization: str,
    raw: Any,
    key: str,
    observed: datetime,
    time_field: str = "timestamp",
    *,
    action_field: str = "action",
    user_field: str = "user",
    target_field: str = "target",
    metadata_field: str = "metadata",
    category_field: str = "category",
    category_aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The documented columns (User, Action, Target, Metadata) under the names the settings
    give: the entry's shape is undocumented ([INF]), like the names of its time and id fields."""
    action = get_path(audit_entry("CodeStax", raw), action_field)
    if action is None or action == "":
        raise ValueError(f"entry has no {action_field!r} action; set action_field if the vendor names it otherwise")
    if not isinstance(action, str):  # a number or an object: its text, as http_json reads it
        action = text(action)
    when = event_time(entry_time(raw, time_field))
    prefix, _, verb = action.partition(".")
    raw_category = get_path(raw, category_field)
    vendor_category = _category(raw_category, prefix, category_aliases or {})
    category = CATEGORIES.get(str(vendor_category), "unknown")
    activity = ACTIVITIES.get(verb) or ("update" if verb.endswith("_changed") else "other")
    if prefix == "api_key":  # documented under Authentication, but it grants or revokes access
        category, vendor_category = "access_management", vendor_category or "auth"
        activity = {"created": "grant", "revoked": "revoke"}.get(verb, activity)
    if category == "entity_management" and activity in READS:
        category = "data_access"
    if category == "unknown":
        activity = "other"
    outcome = "failure" if verb.endswith(FAILURES) else "success"
    if category == "unknown" or verb.endswith("cancelled"):  # a cancelled scan neither failed nor succeeded
        outcome = "unknown"
    user = _user(get_path(raw, user_field))
    metadata_value = get_path(raw, metadata_field)
    metadata: dict[str, Any] = metadata_value if isinstance(metadata_value, dict) else {}
    target_name, target_id, target_kind = _named(get_path(raw, target_field))
    target_type = "api_key" if prefix == "api_key" else TARGET_TYPES.get(str(vendor_category)) or target_kind
    repository = _named(metadata.get("repository"))[0] or (
        target_name if vendor_category in ("repositories", "scans") else None
    )
    details = {k: v for k, v in metadata.items() if k not in ("ip", "user_agent") and v is not None}
    if raw_category:
        details["vendor_category"] = raw_category
    identified = any(user.get(k) not in (None, "") for k in ("email", "id", "name"))
    return entry_event(
        "codestax",
        source,
        organization,
        key,
        when,
        observed,
        actor={
            "id": user.get("email") or user.get("id"),
            "name": user.get("name"),
            "email": user.get("email"),
            "ip": metadata.get("ip"),
            "user_agent": metadata.get("user_agent"),
            "type": "user" if identified else "unknown",
        },
        action=action,
        activity=activity,
        category=category,
        outcome=outcome,
        target={"type": target_type, "name": target_name, "id": target_id if category != "unknown" else None},
        repository=repository,
        details=details,
        raw=raw,
    )
