"""CodeScoring's audit messages parsed back into fields.

Entries carry only a rendered message (the Python format strings listed in the vendor's
audit-log page), so each template here is one of those strings as a regular expression. They
are tried in order, the first match wins: a specific template stands before a general one that
would match it too (an activation key before any object, a named run step before any step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

STATUS_OUTCOME = {
    "started": "success",
    "finished": "success",
    "completed": "success",
    "failed": "failure",
    "cancelled": "unknown",
    "created": "success",
    "updated": "success",
    "deleted": "success",
    "activated": "success",
}
VERB_ACTIVITY = {"created": "create", "updated": "update", "deleted": "delete", "activated": "enable"}
INT_FIELDS = {"sequence", "project_count", "policy_id", "authors_limit"}
SCA_HEAD = r"\[SCA\]\[(?P<project>.+)\]\[(?P<sequence>\d+)/(?P<run_id>[^\]]+)\]"
RUN_HEAD = r"\(Run #(?P<run_id>[^)]+)\)"
FAILED = r"(?P<status>started|finished|completed|failed|cancelled)(?:\. Check server logs\.)?"

Kind = tuple[str, str | None, str | None]  # category, activity, outcome; None: from {verb} or {status}
Target = tuple[str, str | None, str | None]  # type, group for name, group for id


@dataclass(frozen=True)
class Template:
    """One audit message template. ``action`` may name the ``{status}`` or ``{verb}`` group;
    ``activity``/``outcome`` of ``None`` come from those groups.

    The expression is compiled when a message is first matched, not at import: every command
    that validates a configuration imports this module (``state show``'s budget is 0.3 s of
    CPU, docs/performance.md round 10), and only a running Codescoring source matches."""

    action: str
    regex: str
    category: str
    activity: str | None
    outcome: str | None
    target: Target | None = None  # type, group for name, group for id

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(f"^{self.regex}$", re.DOTALL)


def _t(action: str, regex: str, kind: Kind, target: Target | None = None) -> Template:
    category, activity, outcome = kind
    return Template(action, regex, category, activity, outcome, target)


# What a template records (category, activity, outcome) and what it acts on, named once.
RUN: Kind = ("analysis", "execute", "success")
RUN_FAILED: Kind = ("analysis", "execute", "failure")
RUN_STATUS: Kind = ("analysis", "execute", None)
ANALYSIS_UPDATE: Kind = ("analysis", "update", "success")
LICENSE_FAILED: Kind = ("configuration", "other", "failure")
LDAP_MAPPING: Kind = ("access_management", "update", "success")
PROJECT: Target = ("project", "project", None)
REPOSITORY: Target = ("repository", "repository", None)
POLICY_IGNORE: Target = ("policy_ignore", "policy_ignore", None)
ACTIVATION_KEY = (
    r"Object <ActivationKey: Owner: (?P<owner>.*?)\. Expired: (?P<expires>.*?)\. "
    r"Authors limit: (?P<authors_limit>\d+)> created"
)
LDAP_FAILED = (
    r"(?P<summary>.*?) ?While processing, failed to apply some of rules related to following LDAP servers: "
    r"(?P<ldap_servers>.*)\. Check server logs\."
)
NOT_STARTED = r"\[\[SCA\]\[(?P<project>.+)\] Analysis didn't start \(Reason: (?P<reason>.*)\)\]"
TQI_PROJECT_STEP = (
    rf"{RUN_HEAD} (?P<step>(?:Collect commits data for|Update|Clone source code for) project) (?P<project>.+)"
)
CLONE_DELETED = r"Failed to clone for repository (?P<repository>.+) because project was deleted"
POLICY_SKIPPED = r'Policy "(?P<policy>.*)" \(id: (?P<policy_id>\d+)\) skipped\. Reason: (?P<reason>.*)'
IMAGE_CHANGED = r"In container image (?P<container_image>.+) dependency (?P<dependency>.+) was changed"
REGISTRY_UPDATE = r"Updating images list for registry (?P<container_registry>.+) triggered via update button\."
REPO_PATH_MISSING = r"Repo path for (?P<project>.+) does not exist, setting status to Not cloned"

TEMPLATES = [
    # license activation (before the generic object template: it is an Object ... created)
    _t(
        "license.activation_key_created",
        ACTIVATION_KEY,
        ("configuration", "create", "success"),
        ("activation_key", "owner", None),
    ),
    # the vendor's page lists the activation as the bare text "Object created" (no object named)
    _t("license.activation_key_created", r"Object created", ("configuration", "create", "success")),
    _t("license.no_activation_key", r"No activation key", LICENSE_FAILED),
    _t("license.activation_key_problem", r"Problem with activation key: (?P<reason>.*)", LICENSE_FAILED),
    # user authentication
    _t("user.login", r"User logged in", ("authentication", "login", "success")),
    _t("user.logout", r"User logged out", ("authentication", "logout", "success")),
    _t(
        "user.login_failed",
        r"Failed login attempt (?P<username>.*)",
        ("authentication", "login", "failure"),
        ("user", "username", None),
    ),
    # object management
    _t(
        "object.{verb}",
        r"Object (?P<object_repr>.*) (?P<verb>created|updated|deleted)",
        ("entity_management", None, None),
    ),
    # SCA analysis
    _t("sca.analysis_{status}", rf"{SCA_HEAD} Analysis {FAILED}", RUN_STATUS, PROJECT),
    _t("sca.step", rf"{SCA_HEAD} (?P<step>.+)", RUN, PROJECT),
    _t("sca.analysis_not_started", NOT_STARTED, RUN_FAILED, PROJECT),
    _t("sca.overall_run_started", r"Overall SCA run started for (?P<project_count>\d+) project\(s\)", RUN),
    _t("sca.clone_failed_project_deleted", CLONE_DELETED, RUN_FAILED, REPOSITORY),
    _t("sca.clone_failed", r"Failed to clone for repository (?P<repository>.+)\.", RUN_FAILED, REPOSITORY),
    _t(
        "sca.branch_detection_failed",
        r'Failed to detect branch for repository "(?P<repository>.+?)"?',
        RUN_FAILED,
        REPOSITORY,
    ),
    # TQI analysis and analyses started via the API
    _t("analysis.started_via_api", rf"{RUN_HEAD} Analysis started via API", RUN),
    _t("tqi.authors_analysis_{status}", rf"{RUN_HEAD} Authors analysis {FAILED}", RUN_STATUS),
    _t("tqi.clones_analysis_{status}", rf"{RUN_HEAD} Clones analysis {FAILED}", RUN_STATUS),
    _t("tqi.step", TQI_PROJECT_STEP, RUN, PROJECT),
    _t("tqi.step", rf"{RUN_HEAD} (?P<step>.+)", RUN),
    _t("tqi.rebuild_author", r"Rebuild author (?P<author_email>.+)", ANALYSIS_UPDATE, ("author", "author_email", None)),
    _t("tqi.generate_merge_rules", r"Generate authors merge rules", ("analysis", "create", "success")),
    # policy management
    _t(
        "policy_ignore.{verb}",
        r"Policy ignore (?P<policy_ignore>.+) (?P<verb>created|activated)",
        ("configuration", None, None),
        POLICY_IGNORE,
    ),
    _t(
        "policy_ignore.policy_added",
        r"To Policy ignore (?P<policy_ignore>.+) added Policy (?P<policy>.+)",
        ("configuration", "update", "success"),
        POLICY_IGNORE,
    ),
    _t("policy.skipped", POLICY_SKIPPED, RUN_FAILED, ("policy", "policy", "policy_id")),
    # secrets analysis
    _t(
        "secrets.analysis_{status}",
        rf"\[Secrets\]\[(?P<analysis_object>.+)\] Analysis {FAILED}",
        RUN_STATUS,
        ("analysis_object", "analysis_object", None),
    ),
    _t("secrets.training_{status}", rf"\[Secrets\] Training run {FAILED}", RUN_STATUS),
    # container images
    _t(
        "container_image.dependency_changed",
        IMAGE_CHANGED,
        ANALYSIS_UPDATE,
        ("container_image", "container_image", None),
    ),
    _t("container_registry.update_triggered", REGISTRY_UPDATE, RUN, ("container_registry", "container_registry", None)),
    # LDAP
    _t("ldap.group_mapping_triggered", r"Applying all LDAP group mapping rules triggered", LDAP_MAPPING),
    _t("ldap.group_mapping_failed", LDAP_FAILED, ("access_management", "update", "failure")),
    # miscellaneous
    _t("analysis.some_tasks_failed", r"Some tasks in analysis failed", RUN_FAILED),
    _t("analysis.oss_index_unreachable", r"Could not connect to OSS Index, reason: (?P<reason>.*)", RUN_FAILED),
    _t("analysis.already_running", r"There is already running analysis", RUN_FAILED),
    _t("analysis.parallel_forbidden", r"Another analysis in progress\. Parallel execution forbidden\.", RUN_FAILED),
    _t("project.repo_path_missing", REPO_PATH_MISSING, ("analysis", "update", "failure"), PROJECT),
]
OBJECT_REPR = re.compile(r"^<(?P<type>\w+): (?P<name>.*)>$", re.DOTALL)


def parse_message(message: str) -> tuple[Template | None, dict[str, Any]]:
    for template in TEMPLATES:
        match = template.pattern.match(message)
        if match:
            fields: dict[str, Any] = {k: v for k, v in match.groupdict().items() if v is not None}
            for name in INT_FIELDS & fields.keys():
                fields[name] = int(fields[name])
            if "ldap_servers" in fields:  # ", ".join(...) of the servers; of none, the empty text
                fields["ldap_servers"] = fields["ldap_servers"].split(", ") if fields["ldap_servers"] else []
            return template, fields
    return None, {}
