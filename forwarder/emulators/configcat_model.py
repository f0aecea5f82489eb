"""The ConfigCat emulator's model: what an organization holds (products, each with configs and
environments) and what is filed in its audit log, with the ids an item is filed under though
the item does not show them (the product, config and environment filters select by those)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from forwarder.emulators.fixtures import Timeline

MODEL_VERSION = 6

# The current AuditLogType enum of the OpenAPI document; the seed's v1 list is a subset of it
# plus the four values below, which only the legacy shape can carry.
CURRENT_TYPES = """
productCreated productChanged productDeleted productsReordered productPreferencesUpdated
teamMemberInvited teamMemberInvitationRevoked teamMemberJoined teamMemberPermissionGroupChanged
teamMemberRemoved teamMemberLeft teamMemberInvitationChanged teamMemberInvitationResent
teamMemberInvitationRejected teamMemberAddedToProduct configCreated configChanged configDeleted
configsReordered environmentCreated environmentChanged environmentDeleted environmentsReordered
settingCreated settingChanged settingDeleted settingsReordered predefinedVariationsChanged
settingConvertedToPredefinedVariations settingConvertedToFreeFormValues settingValueChanged
webHookCreated webHookChanged webHookDeleted permissionGroupCreated permissionGroupChanged
permissionGroupDeleted permissionGroupDefault apiKeyAdded apiKeyRemoved integrationAdded
integrationChanged integrationRemoved apiKeyConnected integrationLinkAdded integrationLinkRemoved
organizationAdded organizationChanged organizationSubscriptionTypeChanged organizationAdminChanged
organizationAdminLeft twoFactorDisabledForMember tagAdded tagChanged tagRemoved settingTagAdded
settingTagRemoved publicApiAccessTokenAdded publicApiAccessTokenRemoved domainAdded domainVerified
domainRemoved autoProvisioningConfigurationChanged samlIdpConfigurationAdded
samlIdpConfigurationRemoved samlIdpConfigurationUpdated autoProvisioningEnabledChanged
organizationMemberJoined organizationMemberProductJoinRequested
organizationMemberProductJoinRequestRejected organizationMemberProductJoinRequestApproved
organizationMemberRemoved codeReferencesUploaded codeReferenceDeleted codeReferenceStaleBranchDeleted
segmentCreated segmentChanged segmentDeleted webhookSigningKeyDeleted webhookSigningKeyCreated
userProvisioningConfigurationChanged syncGroupProvisioningRuleChanged syncGroupsReordered
syncUserProvisioningEnabled syncUserProvisioningDisabled userEmailChanged userFullNameChanged
userDisabled awsConnected awsDisconnected userEnabled syncUserDeleted syncGroupDeleted
proxyConfigurationCreated proxyConfigurationChanged proxyConfigurationDeleted
proxyConfigurationSecretRegenerated proxyNotificationSettingsUpdated proxyNotificationSettingsDeleted
proxyNotificationSigningKeyAdded proxyNotificationSigningKeyDeleted changeRequestCreated
changeRequestUpdated changeRequestSettingValuesUpdated changeRequestSettingValueRebased
changeRequestApproved changeRequestApprovalDismissed changeRequestApplied
changeRequestAppliedOnSchedule changeRequestClosed changeRequestNeedsAttention
changeRequestCommentAdded changeRequestCommentEdited changeRequestCommentDeleted
changeRequestSettingDeleted changeRequestNeedsAttentionFixed changeRequestOwnershipClaimed
""".split()
LEGACY_ONLY_TYPES = [
    "productOwnershipTransferred",
    "organizationRemoved",
    "domainSamlConfigured",
    "domainSamlDeleted",
]


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass
class Record:
    """A served item plus the ids it was filed under, which the item itself does not show."""

    item: dict[str, Any]
    org_id: str
    product_id: str | None = None
    config_id: str | None = None
    environment_id: str | None = None
    change_set_id: str | None = None


@dataclass
class Product:
    product_id: str
    name: str
    order: int
    configs: dict[str, str] = field(default_factory=dict)
    environments: dict[str, str] = field(default_factory=dict)


@dataclass
class Organization:
    org_id: str
    name: str
    products: dict[str, Product] = field(default_factory=dict)
    log: Timeline[Record] = field(default_factory=Timeline)
