"""ConfigCat's mapping as data (``MAPPING``) for the generic mapper of ``http_json``
(``forwarder.mapping``), so the same table drives this source and an ``http_json`` description
of ConfigCat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from forwarder.event import parse_time
from forwarder.mapping import FieldSpec, Mapper, validate_mapping

# auditLogTypeEnum -> category and target type. Containers (organization, product, config,
# environment) are entity_management; what lives in them (feature flags and their values,
# segments, tags, webhooks, integrations, proxies, change requests) is configuration; people
# are user_management; whatever grants access (permission groups, SDK keys, Public API tokens,
# 2FA, SAML, domains, signing keys and secrets) is access_management. Most specific glob wins.
CATEGORY_BY_TYPE = {
    "teamMember*": "user_management",
    "organizationMember*": "user_management",
    "organizationAdmin*": "user_management",
    "user*": "user_management",
    "sync*": "user_management",
    "twoFactor*": "access_management",
    "permissionGroup*": "access_management",
    "apiKey*": "access_management",
    "publicApiAccessToken*": "access_management",
    "domain*": "access_management",
    "saml*": "access_management",
    "autoProvisioning*": "access_management",
    "webhookSigningKey*": "access_management",
    "proxyConfigurationSecretRegenerated": "access_management",
    "proxyNotificationSigningKey*": "access_management",
    "organization*": "entity_management",
    "product*": "entity_management",
    "config*": "entity_management",
    "environment*": "entity_management",
    "setting*": "configuration",
    "predefinedVariations*": "configuration",
    "segment*": "configuration",
    "tag*": "configuration",
    "webHook*": "configuration",
    "integration*": "configuration",
    "codeReference*": "configuration",
    "changeRequest*": "configuration",
    "proxy*": "configuration",
    "aws*": "configuration",
}
TARGET_BY_TYPE = {
    "teamMember*": "team_member",
    "organizationMember*": "organization_member",
    "organizationAdmin*": "organization_admin",
    "user*": "user",
    "syncUser*": "user",
    "syncGroup*": "group",
    "twoFactor*": "user",
    "permissionGroup*": "permission_group",
    "apiKey*": "sdk_key",
    "publicApiAccessToken*": "public_api_token",
    "domain*": "domain",
    "saml*": "saml_idp",
    "autoProvisioning*": "auto_provisioning",
    "webhookSigningKey*": "webhook_signing_key",
    "organization*": "organization",
    "product*": "product",
    "config*": "config",
    "environment*": "environment",
    "setting*": "setting",
    "predefinedVariations*": "setting",
    "segment*": "segment",
    "tag*": "tag",
    "webHook*": "webhook",
    "integration*": "integration",
    "codeReference*": "code_reference",
    "changeRequest*": "change_request",
    "proxy*": "proxy",
    "aws*": "aws",
}
# The verb the type ends with -> activity; member moves before plain removals.
ACTIVITY_BY_TYPE = {
    "*Created": "create",
    "*Added": "create",
    "*Connected": "create",
    "*Uploaded": "create",
    "*Requested": "create",
    "*Deleted": "delete",
    "*Removed": "delete",
    "*Disconnected": "delete",
    "*Revoked": "revoke",
    "*Invited": "add_member",
    "*Joined": "add_member",
    "*AddedToProduct": "add_member",
    "*JoinRequestApproved": "add_member",
    "teamMemberRemoved": "remove_member",
    "organizationMemberRemoved": "remove_member",
    "*Left": "remove_member",
    "*Disabled": "disable",
    "*DisabledForMember": "disable",
    "*Enabled": "enable",
    "*Changed": "update",
    "*Updated": "update",
    "*Reordered": "update",
    "*Edited": "update",
    "*Rebased": "update",
    "*Resent": "update",
    "*Verified": "update",
    "*Default": "update",
    "*Regenerated": "update",
    "*Fixed": "update",
    "*Claimed": "update",
    "*Applied": "update",
    "*AppliedOnSchedule": "update",
    "*Closed": "update",
    "*NeedsAttention": "update",
    "*Approved": "update",
    "*Dismissed": "update",
    "*Rejected": "update",
    "*ConvertedTo*": "update",
    "*Transferred": "update",
    "*Configured": "update",
}
MAPPING: dict[str, FieldSpec] = validate_mapping(
    {
        "action": FieldSpec(path="auditLogTypeEnum", default="unknown"),
        "category": FieldSpec(path="auditLogTypeEnum", map=CATEGORY_BY_TYPE, default="unknown"),
        "activity": FieldSpec(path="auditLogTypeEnum", map=ACTIVITY_BY_TYPE, default="other"),
        "outcome": FieldSpec(const="success"),  # the audit log records performed changes only
        "actor.id": "userEmail",
        "actor.email": "userEmail",
        "actor.name": "userName",
        "actor.type": FieldSpec(path="userEmail", map={"*": "user"}, default="system"),
        "target.type": FieldSpec(path="auditLogTypeEnum", map=TARGET_BY_TYPE),
        "target.name": "actionTarget",
        "message": "auditLogType",
        "details.where": "where",
        "details.why": "why",
        "details.details": FieldSpec(path="details", parse_json=True),
        "details.truncated": "truncated",
        "details.changeSetId": "changeSetId",
        "details.modelVersion": "modelVersion",
    }
)
MAPPER = Mapper(MAPPING)


def normalize_entry(source: str, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"a ConfigCat audit entry is an object, not {type(raw).__name__}")
    return MAPPER.event(
        raw=raw,
        key=key,
        time=parse_time(str(raw.get("auditLogDateTime"))),
        observed=observed,
        vendor="configcat",
        source=source,
        organization=organization,
    )
