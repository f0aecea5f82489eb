"""What the ConfigCat emulator generates: entries that look like a real organization's audit log
(mostly flag edits, every other type now and then), with the ``actionTarget``, ``where`` and
``details`` the dashboard shows for each type. Everything is drawn from the emulator's seeded
``random.Random``, in a fixed order, so one seed always gives the same log."""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
from typing import Any

from forwarder.emulators.configcat_model import (
    CURRENT_TYPES,
    LEGACY_ONLY_TYPES,
    MODEL_VERSION,
    Organization,
    Product,
    Record,
)
from forwarder.emulators.fixtures import PEOPLE, random_uuid
from forwarder.event import format_ms

# Flag edits dominate a real audit log; everything else happens now and then.
TYPE_WEIGHTS = {
    "settingValueChanged": 40,
    "settingChanged": 8,
    "settingCreated": 6,
    "changeRequestApplied": 4,
}
TYPE_DRAW = {  # by legacy_shape: the types to draw from and their cumulative weights
    legacy: (types, list(itertools.accumulate(TYPE_WEIGHTS.get(t, 1) for t in types)))
    for legacy, types in ((False, CURRENT_TYPES), (True, CURRENT_TYPES + LEGACY_ONLY_TYPES))
}
SYSTEM_TYPES = {
    "changeRequestAppliedOnSchedule",
    "changeRequestNeedsAttention",
    "codeReferenceStaleBranchDeleted",
    "syncUserDeleted",
    "syncGroupDeleted",
}

ORG_NAMES = ["Acme Inc.", "Globex Corporation", "Initech", "Umbrella Labs"]
PRODUCT_NAMES = ["Main", "Mobile App", "Checkout", "Backoffice"]
CONFIG_NAMES = ["Web", "Mobile", "Backend"]
ENVIRONMENTS = [("Production", "#e74c3c"), ("Staging", "#f39c12"), ("Development", "#27ae60")]
FLAGS: dict[str, list[Any]] = {
    "isNewCheckoutEnabled": [False, True],
    "enableDarkMode": [False, True],
    "betaDashboard": [False, True],
    "showPromoBanner": [False, True],
    "maxUploadSizeMb": [10, 25, 50, 100],
    "pricingExperimentVariant": ["control", "variantA", "variantB"],
    "searchBackend": ["elastic", "opensearch"],
}
PERMISSION_GROUPS = ["Administrators", "Developers", "Read only", "Product managers"]
TAGS = ["beta", "experiment", "ops", "marketing", "deprecated"]
SEGMENTS = ["Beta users", "Internal staff", "EU customers"]
INTEGRATIONS = ["Slack", "Datadog", "Jira", "Amplitude", "Microsoft Teams"]
REASONS = [
    "Release 2.4 rollout",
    "JIRA-1234: enable for beta users",
    "Rollback after incident INC-88",
    "Requested by the product team",
]

WORDING = [
    (r"\bweb hook\b", "webhook"),
    (r"(?<!notification )\bsettings\b", "feature flags"),
    (r"\bsetting\b", "feature flag"),
    (r"\bapi key\b", "SDK key"),
    (r"\bapi\b", "API"),
    (r"\bsaml idp\b", "SAML IdP"),
    (r"\bsaml\b", "SAML"),
    (r"\baws\b", "AWS"),
    (r"\btwo factor\b", "two-factor"),
]


@functools.cache
def type_text(kind: str) -> str:
    """The human-readable ``auditLogType``, e.g. settingValueChanged -> Feature flag value changed."""
    phrase = " ".join(w.lower() for w in re.findall(r"[A-Z]?[a-z]+", kind))
    for pattern, replacement in WORDING:
        phrase = re.sub(pattern, replacement, phrase)
    return phrase[0].upper() + phrase[1:]


def scope_of(kind: str) -> str:
    """How deep in organization > product > config/environment an action of this type lands."""
    if kind == "settingValueChanged" or kind.startswith(("changeRequest", "apiKey")):
        return "config_env"
    if kind.startswith(("setting", "predefinedVariations", "codeReference", "config")):
        return "config"
    if kind.startswith("environment"):
        return "environment"
    if kind.startswith(
        (
            "product",
            "teamMember",
            "permissionGroup",
            "webHook",
            "webhookSigningKey",
            "tag",
            "segment",
            "integration",
        )
    ):
        return "product"
    return "organization"


def new_product(rng: random.Random, index: int) -> Product:
    """The ``index``-th product of an organization, with three configs and three environments."""
    product = Product(random_uuid(rng), PRODUCT_NAMES[index % len(PRODUCT_NAMES)], index)
    product.configs = {random_uuid(rng): name for name in CONFIG_NAMES}
    product.environments = {random_uuid(rng): name for name, _ in ENVIRONMENTS}
    return product


def describe(rng: random.Random, kind: str, org: Organization, flag: str, config: str, env: str) -> tuple[str, Any]:
    """``actionTarget`` and the details object of one entry, after what the dashboard shows."""
    if kind in ("settingValueChanged", "changeRequestSettingValuesUpdated"):
        old, new = rng.sample(FLAGS[flag], 2)
        return flag, {"oldValue": old, "newValue": new}
    if kind.startswith("changeRequest"):
        return f"Change request #{rng.randint(1, 400)}", {"settingKey": flag, "environment": env}
    if kind.startswith("settingTag"):
        return flag, {"tag": rng.choice(TAGS)}
    if kind.startswith(("setting", "predefinedVariations")):
        return flag, {"key": flag, "name": type_text(flag), "hint": ""}
    if kind.startswith("codeReference"):
        return flag, {
            "repository": "github.com/acme/web",
            "branch": rng.choice(["main", "develop", "feature/x"]),
        }
    if kind.startswith("config"):
        return config, {"name": config}
    if kind.startswith("environment"):
        return env, {"name": env, "color": dict(ENVIRONMENTS)[env]}
    if kind.startswith(("teamMember", "organizationMember", "organizationAdmin", "twoFactor", "user")):
        return rng.choice(PEOPLE)[1], {"permissionGroup": rng.choice(PERMISSION_GROUPS)}
    if kind.startswith("permissionGroup"):
        return rng.choice(PERMISSION_GROUPS), {"canManageMembers": rng.random() < 0.3}
    if kind.startswith(("webHook", "webhookSigningKey")):
        url = f"https://hooks.example.com/configcat/{rng.getrandbits(32):08x}"
        return url, {"url": url, "httpMethod": "post"}
    if kind.startswith("tag"):
        return rng.choice(TAGS), {"color": rng.choice(["panther", "whale", "salmon"])}
    if kind.startswith("segment"):
        return rng.choice(SEGMENTS), {"comparisonAttribute": "Email", "comparator": "containsAnyOf"}
    if kind.startswith("integration"):
        return rng.choice(INTEGRATIONS), {"environment": env}
    if kind.startswith("apiKey"):
        return f"{config} / {env}", {"keyType": "sdkKey"}
    if kind == "organizationSubscriptionTypeChanged":
        old, new = rng.sample(["Free", "Pro", "Smart", "Enterprise"], 2)
        return org.name, {"oldValue": old, "newValue": new}
    if kind.startswith(("domain", "saml", "autoProvisioning")):
        return "example.com", {"identityProvider": rng.choice(["Okta", "Entra ID", "Google Workspace"])}
    if kind.startswith("sync"):
        return rng.choice(["Engineering", "Product", "Support"]), {}
    if kind.startswith("aws"):
        return f"AWS account {rng.randrange(10**11, 10**12)}", {}
    if kind.startswith("proxy"):
        return rng.choice(["EU proxy", "US proxy"]), {}
    return org.name, {"name": org.name}


def new_record(rng: random.Random, org: Organization, ts_ms: int, *, legacy_shape: bool, last_id: int) -> Record:
    """One generated entry, its ``auditLogId`` a little above ``last_id`` (ids have gaps)."""
    types, cum_weights = TYPE_DRAW[legacy_shape]
    kind = rng.choices(types, cum_weights=cum_weights)[0]
    scope = scope_of(kind) if org.products else "organization"
    record = Record({}, org.org_id)
    where = f"Organization: {org.name}"
    config = env = ""
    if scope != "organization":
        product = rng.choice(list(org.products.values()))
        record.product_id, where = product.product_id, f"Product: {product.name}"
        if scope in ("config", "config_env"):
            record.config_id, config = rng.choice(list(product.configs.items()))
            where += f" / Config: {config}"
        if scope in ("environment", "config_env"):
            record.environment_id, env = rng.choice(list(product.environments.items()))
            where += f" / Environment: {env}"
    target, details = describe(rng, kind, org, rng.choice(list(FLAGS)), config or "Web", env or "Production")
    text = details if "Reordered" not in kind else f"New order: {', '.join(rng.sample(PRODUCT_NAMES, 3))}"
    detail_text = text if isinstance(text, str) else json.dumps(text, separators=(",", ":"))
    truncated = rng.random() < 0.01
    if truncated:
        detail_text = detail_text[: max(len(detail_text) // 2, 1)]
    name, email = rng.choice(PEOPLE)
    system = kind in SYSTEM_TYPES
    if kind.startswith("setting") or kind.startswith("changeRequest"):
        record.change_set_id = random_uuid(rng)
    audit_log_id = last_id + 1 + rng.randrange(3)
    record.item = {
        "auditLogId": audit_log_id,
        "auditLogDateTime": format_ms(ts_ms),
        "auditLogTypeEnum": kind,
        "truncated": truncated,
        "modelVersion": MODEL_VERSION,
        "auditLogType": type_text(kind),
        "userEmail": None if system else email,
        "userName": "System" if system else name,
        "where": where,
        "why": rng.choice(REASONS) if scope.startswith("config") and rng.random() < 0.3 else None,
        "actionTarget": target,
        "details": detail_text,
    }
    return record
