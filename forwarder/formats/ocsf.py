"""OCSF events (1.1.0 to 1.8.0; 1.8.0 unless ``version`` says otherwise): one class per kind of
audit event, chosen from the normalized fields.

The class choice lives in ``classify`` alone, so moving to OCSF 1.9 (where Account Change
gives way to User Management) is a change to that one function. A class is used only when its
required object can be filled from the event (a user-change class needs a target user);
otherwise the event falls back to API Activity (6003), whose requirements any event can meet.

Older versions lack attributes and enum values the newer ones have (``Features``): what a
version has no place for goes to ``unmapped`` rather than being dropped, and an activity it does
not know becomes "Other" (99) under its own name. Every class in every version is checked against
the official schema export (tests/formats/test_ocsf.py, its captions in test_ocsf_captions.py).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field

from forwarder.event import parse_time
from forwarder.formats._common import PRODUCT, Formatter, chain, time_ms, vendor_name
from forwarder.record import Record

OCSF_VERSION: Final = "1.8.0"
Version = Literal["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0"]
VERSIONS: tuple[str, ...] = get_args(Version)
IAM_CHANGES = (3004, 3005, 3006)
"""The IAM classes whose attributes moved most between versions (actor, src_endpoint, http_request)."""
CATEGORIES = {3: "Identity & Access Management", 6: "Application Activity"}
CLASSES: dict[int, tuple[str, dict[str, tuple[int, str]]]] = {
    3001: (
        "Account Change",
        {"create": (1, "Create"), "enable": (2, "Enable"), "disable": (5, "Disable"), "delete": (6, "Delete")},
    ),
    3002: ("Authentication", {"login": (1, "Logon"), "logout": (2, "Logoff")}),
    3004: (
        "Entity Management",
        {
            "create": (1, "Create"),
            "read": (2, "Read"),
            "update": (3, "Update"),
            "delete": (4, "Delete"),
            "enable": (8, "Enable"),
            "disable": (9, "Disable"),
        },
    ),
    3005: ("User Access Management", {"grant": (1, "Assign Privileges"), "revoke": (2, "Revoke Privileges")}),
    3006: (
        "Group Management",
        {
            "grant": (1, "Assign Privileges"),
            "revoke": (2, "Revoke Privileges"),
            "add_member": (3, "Add User"),
            "remove_member": (4, "Remove User"),
            "delete": (5, "Delete"),
            "create": (6, "Create"),
        },
    ),
    6003: (
        "API Activity",
        {"create": (1, "Create"), "read": (2, "Read"), "update": (3, "Update"), "delete": (4, "Delete")},
    ),
}
STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "unknown": (0, "Unknown")}
USER_TYPES = {"user": (1, "User"), "system": (3, "System"), "service": (4, "Service"), "unknown": (0, "Unknown")}
GROUP_TARGETS = ("team", "group")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_raw: bool = Field(True, description="Put the vendor's entry in raw_data (as JSON text).")
    version: Version = Field(
        OCSF_VERSION, description="OCSF schema version of the events (1.1.0 is the one Amazon Security Lake accepts)."
    )


@dataclass(frozen=True)
class Features:
    """What one OCSF version has, as far as these events need it (read off the official exports)."""

    version: str
    app_name: bool  # actor.app_name (1.2): else invoked_by names the vendor's service
    service_user: bool  # user.type_id 4 "Service" (1.6): else 99 "Other" named "Service"
    entity_type_id: bool  # managed_entity.type_id and Entity Management's Enable/Disable (1.3)
    iam_endpoints: bool  # src_endpoint and http_request in 3004/3005/3006 (1.2): else in unmapped
    iam_actor_core: bool  # actor in 3004/3005/3006 without the "host" profile (1.4)
    group_needs_user: bool  # Group Management needs a user or privileges (until 1.3)


@lru_cache(maxsize=len(VERSIONS))
def features(version: str) -> Features:
    if version not in VERSIONS:
        raise ValueError(f"OCSF version {version!r} is not supported; expected one of {', '.join(VERSIONS)}")
    v = tuple(int(part) for part in version.split("."))
    return Features(
        version=version,
        app_name=v >= (1, 2),
        service_user=v >= (1, 6),
        entity_type_id=v >= (1, 3),
        iam_endpoints=v >= (1, 2),
        iam_actor_core=v >= (1, 4),
        group_needs_user=v < (1, 4),
    )


def _compact(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None and v != {} and v != [] and v != ""}


# OCSF's email_t (``types.email_t.regex`` of every version's export): a value it refuses makes the
# whole event invalid, so it is left out of ``email_addr`` (and kept under ``unmapped.actor``).
EMAIL = re.compile(r"^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")


def email_addr(value: Any) -> str | None:
    return value if isinstance(value, str) and EMAIL.match(value) else None


def ip_addr(value: Any) -> str | None:
    """An address for OCSF's ``ip_t``, else None ("203.0.113.9, 10.0.0.2", a host name): as in
    ECS, CEF and LEEF, such a value is not put where an address is required."""
    try:
        return str(ipaddress.ip_address(str(value))) if value not in (None, "") else None
    except ValueError:
        return None


def user_object(
    uid: Any, name: Any, email: Any = None, kind: str | None = None, feats: Features | None = None
) -> dict[str, Any] | None:
    """An OCSF user, or None when it would break the rule "at least one of uid, name"."""
    name = name or email
    if not uid and not name:
        return None
    user = _compact({"uid": None if uid is None else str(uid), "name": name, "email_addr": email_addr(email)})
    if kind is not None:
        user["type_id"], user["type"] = USER_TYPES.get(kind, USER_TYPES["unknown"])
        if user["type_id"] == 4 and feats is not None and not feats.service_user:
            user["type_id"] = 99
    return user


USER_TARGET_WORDS = ("user", "member", "people", "account")
"""Words of the target types vendors give people (Codacy "people", Codescoring "team_member")."""


def _names_a_user(target: dict[str, Any]) -> bool:
    """A target without a type may be a user; a repository or an API key is not one, and
    taking it for one put the event in the account classes (3001, 3005)."""
    kind = str(target.get("type") or "").lower()
    return not kind or any(word in kind for word in USER_TARGET_WORDS)


def classify(event: dict[str, Any], feats: Features | None = None) -> tuple[int, dict[str, Any]]:
    """The class for this event and the class-specific attributes it requires."""
    feats = feats or features(OCSF_VERSION)
    category, activity = event.get("category"), event.get("activity")
    actor = event.get("actor") or {}
    target = event.get("target") or {}
    target_user = user_object(target.get("id"), target.get("name")) if _names_a_user(target) else {}
    if category == "authentication" and activity in ("login", "logout"):
        user = user_object(actor.get("id"), actor.get("name"), actor.get("email"), actor.get("type"), feats)
        if user:
            service = {"name": vendor_name(str(event.get("vendor")))}  # 3002 needs a service or a dst_endpoint
            return 3002, {"user": user, "service": service}
    if category == "user_management" and target_user:
        return 3001, {"user": target_user}
    if category == "access_management" and activity in ("add_member", "remove_member"):
        if target.get("type") in GROUP_TARGETS and (target.get("id") or target.get("name")):
            if feats.group_needs_user:
                return 3006, {
                    "group": _compact({"uid": target.get("id"), "name": target.get("name")}),
                    "privileges": [str(event.get("action"))],
                }
            return 3006, {"group": _compact({"uid": target.get("id"), "name": target.get("name")})}
        if target_user or not feats.group_needs_user:
            return 3006, {
                "group": {"name": event.get("organization"), "type": "organization"},
                **({"user": target_user} if target_user else {}),
            }
    if category == "access_management" and activity in ("grant", "revoke") and target_user:
        role = (event.get("details") or {}).get("role")
        return 3005, {"user": target_user, "privileges": [str(role or event.get("action"))]}
    if category in ("entity_management", "configuration", "access_management"):
        if target.get("id") or target.get("name"):
            entity = _compact({"uid": target.get("id"), "name": target.get("name"), "type": target.get("type")})
        else:
            entity = {"name": event.get("organization"), "type": "Organization", "type_id": 4}  # the caption of 4
        if not feats.entity_type_id:
            entity.pop("type_id", None)
        return 3004, {"entity": entity}
    resources = []
    if target.get("id") or target.get("name"):
        resources.append(_compact({"type": target.get("type"), "uid": target.get("id"), "name": target.get("name")}))
    if event.get("repository"):
        resources.append({"type": "repository", "name": event["repository"]})
    api = {"operation": event.get("action") or "unknown", "service": {"name": vendor_name(str(event.get("vendor")))}}
    return 6003, {"api": api, **({"resources": resources} if resources else {})}


def chain_metadata(event: dict[str, Any]) -> dict[str, Any]:
    """Where OCSF carries the hash chain (``forwarder.evidence.chain``), decided here once for
    every OCSF writer: the seq as ``metadata.sequence`` (OCSF's own "exact ordering of events"
    attribute, an integer in every version from 1.1.0 to 1.8.0); the whole link
    ``{seq, prev, hash}`` as ``unmapped.chain`` (no version has an integrity attribute for it)."""
    links = chain(event)
    return {} if links is None else {"sequence": links[0]}


ACTIVITIES_SINCE_1_3 = {3004: frozenset({"enable", "disable"})}
"""Activities a class gained in 1.3 (Entity Management's Enable and Disable): "Other" before."""
UNNAMED_ACTIVITIES = frozenset({"None", "other", "unknown", ""})


def other_activity_name(event: dict[str, Any], name: str) -> str:
    """``activity_name`` for ``activity_id`` 99. The schema's caption for 99 says "The event
    activity is not mapped. See the activity_name attribute, which contains a data source
    specific value": the event's own activity ("Execute"), else the vendor's action, never the
    bare "Other" (which says nothing the id does not)."""
    if name != "Other":
        return name  # a name a later version has an id for (Enable before 1.3)
    activity = str(event.get("activity"))
    if activity not in UNNAMED_ACTIVITIES:
        return activity.replace("_", " ").title()
    action = event.get("action")
    return str(action) if action not in (None, "") else "Other"


def ocsf_event(event: dict[str, Any], include_raw: bool = True, version: str = OCSF_VERSION) -> dict[str, Any]:
    feats = features(version)
    vendor = vendor_name(str(event.get("vendor", "")))
    actor = event.get("actor") or {}
    class_uid, specific = classify(event, feats)
    class_name, activities = CLASSES[class_uid]
    activity = str(event.get("activity"))
    activity_id, activity_name = activities.get(activity, (99, "Other"))
    if not feats.entity_type_id and activity in ACTIVITIES_SINCE_1_3.get(class_uid, ()):
        activity_id = 99  # the version has no id for it: "Other", under its own name
    if activity_id == 99:
        activity_name = other_activity_name(event, activity_name)
    status_id, status = STATUS.get(str(event.get("outcome")), STATUS["unknown"])
    severity_id, severity = (3, "Medium") if event.get("category") == "forwarder" else (1, "Informational")
    user = user_object(actor.get("id"), actor.get("name"), actor.get("email"), actor.get("type"), feats)
    observed = event.get("observed_time")
    iam_change = class_uid in IAM_CHANGES
    ip = ip_addr(actor.get("ip"))
    refused = _compact(  # actor values OCSF's types refuse: kept, where OCSF allows anything
        {
            "ip": actor.get("ip") if ip is None else None,
            "email": actor.get("email") if email_addr(actor.get("email")) is None else None,
        }
    )
    endpoints = {
        "src_endpoint": {"ip": ip} if ip else {"svc_name": vendor},
        "http_request": _compact({"user_agent": actor.get("user_agent")}),
    }
    unplaced = {} if feats.iam_endpoints or not iam_change else _compact(endpoints)
    if unplaced:
        endpoints = {}
    doc_actor = {"user": user} if user else {"app_name": vendor} if feats.app_name else {"invoked_by": vendor}
    return _compact(
        {
            "class_uid": class_uid,
            "class_name": class_name,
            "category_uid": class_uid // 1000,
            "category_name": CATEGORIES[class_uid // 1000],
            "activity_id": activity_id,
            "activity_name": activity_name,
            "type_uid": class_uid * 100 + activity_id,
            # the caption of type_uid, as the schema names it: "<class>: Other" for 99
            "type_name": f"{class_name}: {'Other' if activity_id == 99 else activity_name}",
            "severity_id": severity_id,
            "severity": severity,
            "time": time_ms(event),
            "status_id": status_id,
            "status": status,
            "message": event.get("message"),
            "metadata": _compact(
                {
                    "version": feats.version,
                    "product": {"name": PRODUCT, "vendor_name": vendor},
                    "uid": event.get("id"),
                    "original_time": event.get("time"),
                    "event_code": event.get("action"),
                    "logged_time": round(parse_time(observed).timestamp() * 1000) if observed else None,
                    "log_name": event.get("source"),
                    "log_provider": "audit-forwarder",
                    "tenant_uid": event.get("organization"),
                    **chain_metadata(event),
                    # before 1.4 these classes carry an actor only under the host profile
                    "profiles": ["host"] if iam_change and not feats.iam_actor_core else None,
                }
            ),
            "actor": doc_actor,
            **endpoints,
            **specific,
            "raw_data": orjson.dumps(event.get("raw")).decode() if include_raw else None,
            "unmapped": _compact(
                {
                    "vendor": event.get("vendor"),
                    "activity": event.get("activity"),
                    "category": event.get("category"),
                    "target": _compact(event.get("target") or {}),
                    "repository": event.get("repository"),
                    "details": event.get("details") or None,
                    "actor": refused or None,
                    **unplaced,
                    "chain": event.get("chain"),
                }
            ),
        }
    )


def build(options: Options) -> Formatter:
    include_raw, version = options.include_raw, options.version

    def ocsf_format(record: Record) -> bytes:
        return orjson.dumps(ocsf_event(record.event(), include_raw, version))

    return ocsf_format
