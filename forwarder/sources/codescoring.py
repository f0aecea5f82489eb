"""Codescoring: the audit log of an on-premise installation (research notes §3).

The audit endpoint is not documented publicly, so its path and filter names are settings.
What is documented or follows from Django REST Framework is fixed: ``Authorization: Token``,
``page``/``per_page`` paging (a DRF envelope, or a bare list), 404 "Invalid page." past the
end. The order is a guess too (``order``, newest first by default): newest first, one poll
walks pages down to the cursor's watermark minus the overlap; oldest first (or pages that are
not in the order configured) it walks every page, since the new entries are at the end. Either
way the whole walk is journaled as one page, oldest first: a walk cut short must not move the
cursor past entries it never reached.

The entry shape is a guess as well ([INF]): the names of the time and id fields are settings
(``time_field``, ``id_field``; ``created_at`` and ``id`` by default).

Entries carry only a rendered message (Python format strings listed in the vendor's audit-log
page), so the mapping parses each known template back into structured fields.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx
import structlog
from pydantic import Field, SecretStr, model_validator

from forwarder.event import event_time, format_ms
from forwarder.mapping import entry_time
from forwarder.sources.base import HttpUrl, Page, SourceConfig, entry_event
from forwarder.sources.http import MalformedResponse, make_client
from forwarder.sources.walk import WalkBudget
from forwarder.sources.window import WindowCursor, entry_keys, now_ms, time_at
from forwarder.sources.windowed import DAY_MS, HttpSource

log = structlog.get_logger("forwarder.sources.codescoring")
MAX_PAGES = 100_000  # a server that always says "next" must not keep a poll alive forever
REMEDY = (
    "poll more often (interval_s), lower initial_lookback_days for a first run, or set order: newest_first "
    "if the server lists newest first"
)


class CodescoringConfig(SourceConfig):
    type: Literal["codescoring"]
    base_url: HttpUrl = Field(description="The installation's URL, e.g. https://codescoring.example.com")
    token: SecretStr = Field(description="API token of an Administrator or Auditor (profile → API token).")
    installation: str | None = Field(None, description="Name of the installation, used as the organization.")
    organizations: list[str] = Field(
        default_factory=list, max_length=1, description="Alternative to installation: [name]."
    )
    path: str = Field("/api/audit_logs/", description="Audit-log endpoint (undocumented; see /api/swagger).")
    use_time_filter: bool = Field(True, description="Send the date-range filter; off: walk pages only.")
    from_param: str = Field("created_at_after", description="Name of the 'from' date-time filter.")
    to_param: str = Field("created_at_before", description="Name of the 'to' date-time filter.")
    per_page: int = Field(100, ge=1, description="Page size; at most the server's CODESCORING_API_MAX_PAGE_SIZE.")
    user: str | None = Field(None, description="Collect only this username's entries (the audit log's user filter).")
    user_param: str = Field("actor", min_length=1, description="Name of the user filter (undocumented).")
    search: str | None = Field(None, description="Collect only entries matching this text (the audit log's Search).")
    search_param: str = Field("search", min_length=1, description="Name of the search filter (undocumented).")
    time_field: str = Field(
        "created_at", min_length=1, description="Entry field holding its time (undocumented; a dotted path)."
    )
    id_field: str | None = Field(
        "id", min_length=1, description="Entry field holding its id (undocumented; dotted path); null: a content hash."
    )
    order: Literal["newest_first", "oldest_first"] = Field(
        "newest_first",
        description="Order the server lists entries in (undocumented). newest_first stops a walk at the "
        "watermark while pages really come newest first; oldest_first always walks every page.",
    )

    def own_params(self) -> set[str]:
        return {"page", "per_page", self.from_param, self.to_param, self.user_param, self.search_param}

    @model_validator(mode="after")
    def _one_name(self) -> CodescoringConfig:
        if self.installation and self.organizations and self.organizations != [self.installation]:
            raise ValueError("give either installation or organizations, not two different names")
        return self

    @property
    def installation_name(self) -> str:
        return self.installation or (self.organizations[0] if self.organizations else "default")


# --- message templates -------------------------------------------------------------------
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


@dataclass(frozen=True)
class Template:
    """One audit message template. ``action`` may name the ``{status}`` or ``{verb}`` group;
    ``activity``/``outcome`` of ``None`` come from those groups."""

    action: str
    pattern: re.Pattern[str]
    category: str
    activity: str | None
    outcome: str | None
    target: tuple[str, str | None, str | None] | None = None  # type, group for name, group for id


def _t(
    action: str,
    regex: str,
    category: str,
    activity: str | None,
    outcome: str | None,
    target: tuple[str, str | None, str | None] | None = None,
) -> Template:
    return Template(action, re.compile(f"^{regex}$", re.DOTALL), category, activity, outcome, target)


PROJECT = ("project", "project", None)
TEMPLATES = [
    # license activation (before the generic object template: it is an Object ... created)
    _t(
        "license.activation_key_created",
        r"Object <ActivationKey: Owner: (?P<owner>.*?)\. Expired: (?P<expires>.*?)\. "
        r"Authors limit: (?P<authors_limit>\d+)> created",
        "configuration",
        "create",
        "success",
        ("activation_key", "owner", None),
    ),
    _t("license.no_activation_key", r"No activation key", "configuration", "other", "failure"),
    _t(
        "license.activation_key_problem",
        r"Problem with activation key: (?P<reason>.*)",
        "configuration",
        "other",
        "failure",
    ),
    # user authentication
    _t("user.login", r"User logged in", "authentication", "login", "success"),
    _t("user.logout", r"User logged out", "authentication", "logout", "success"),
    _t(
        "user.login_failed",
        r"Failed login attempt (?P<username>.*)",
        "authentication",
        "login",
        "failure",
        ("user", "username", None),
    ),
    # object management
    _t(
        "object.{verb}",
        r"Object (?P<object_repr>.*) (?P<verb>created|updated|deleted)",
        "entity_management",
        None,
        None,
    ),
    # SCA analysis
    _t("sca.analysis_{status}", rf"{SCA_HEAD} Analysis {FAILED}", "analysis", "execute", None, PROJECT),
    _t("sca.step", rf"{SCA_HEAD} (?P<step>.+)", "analysis", "execute", "success", PROJECT),
    _t(
        "sca.analysis_not_started",
        r"\[\[SCA\]\[(?P<project>.+)\] Analysis didn't start \(Reason: (?P<reason>.*)\)\]",
        "analysis",
        "execute",
        "failure",
        PROJECT,
    ),
    _t(
        "sca.overall_run_started",
        r"Overall SCA run started for (?P<project_count>\d+) project\(s\)",
        "analysis",
        "execute",
        "success",
    ),
    _t(
        "sca.clone_failed_project_deleted",
        r"Failed to clone for repository (?P<repository>.+) because project was deleted",
        "analysis",
        "execute",
        "failure",
        ("repository", "repository", None),
    ),
    _t(
        "sca.clone_failed",
        r"Failed to clone for repository (?P<repository>.+)\.",
        "analysis",
        "execute",
        "failure",
        ("repository", "repository", None),
    ),
    _t(
        "sca.branch_detection_failed",
        r'Failed to detect branch for repository "(?P<repository>.+?)"?',
        "analysis",
        "execute",
        "failure",
        ("repository", "repository", None),
    ),
    # TQI analysis and analyses started via the API
    _t("analysis.started_via_api", rf"{RUN_HEAD} Analysis started via API", "analysis", "execute", "success"),
    _t("tqi.authors_analysis_{status}", rf"{RUN_HEAD} Authors analysis {FAILED}", "analysis", "execute", None),
    _t("tqi.clones_analysis_{status}", rf"{RUN_HEAD} Clones analysis {FAILED}", "analysis", "execute", None),
    _t(
        "tqi.step",
        rf"{RUN_HEAD} (?P<step>(?:Collect commits data for|Update|Clone source code for) "
        r"project) (?P<project>.+)",
        "analysis",
        "execute",
        "success",
        PROJECT,
    ),
    _t("tqi.step", rf"{RUN_HEAD} (?P<step>.+)", "analysis", "execute", "success"),
    _t(
        "tqi.rebuild_author",
        r"Rebuild author (?P<author_email>.+)",
        "analysis",
        "update",
        "success",
        ("author", "author_email", None),
    ),
    _t("tqi.generate_merge_rules", r"Generate authors merge rules", "analysis", "create", "success"),
    # policy management
    _t(
        "policy_ignore.{verb}",
        r"Policy ignore (?P<policy_ignore>.+) (?P<verb>created|activated)",
        "configuration",
        None,
        None,
        ("policy_ignore", "policy_ignore", None),
    ),
    _t(
        "policy_ignore.policy_added",
        r"To Policy ignore (?P<policy_ignore>.+) added Policy (?P<policy>.+)",
        "configuration",
        "update",
        "success",
        ("policy_ignore", "policy_ignore", None),
    ),
    _t(
        "policy.skipped",
        r'Policy "(?P<policy>.*)" \(id: (?P<policy_id>\d+)\) skipped\. Reason: (?P<reason>.*)',
        "analysis",
        "execute",
        "failure",
        ("policy", "policy", "policy_id"),
    ),
    # secrets analysis
    _t(
        "secrets.analysis_{status}",
        rf"\[Secrets\]\[(?P<analysis_object>.+)\] Analysis {FAILED}",
        "analysis",
        "execute",
        None,
        ("analysis_object", "analysis_object", None),
    ),
    _t("secrets.training_{status}", rf"\[Secrets\] Training run {FAILED}", "analysis", "execute", None),
    # container images
    _t(
        "container_image.dependency_changed",
        r"In container image (?P<container_image>.+) dependency (?P<dependency>.+) was changed",
        "analysis",
        "update",
        "success",
        ("container_image", "container_image", None),
    ),
    _t(
        "container_registry.update_triggered",
        r"Updating images list for registry (?P<container_registry>.+) triggered via update button\.",
        "analysis",
        "execute",
        "success",
        ("container_registry", "container_registry", None),
    ),
    # LDAP
    _t(
        "ldap.group_mapping_triggered",
        r"Applying all LDAP group mapping rules triggered",
        "access_management",
        "update",
        "success",
    ),
    _t(
        "ldap.group_mapping_failed",
        r"(?P<summary>.*?) ?While processing, failed to apply some of rules related to following LDAP servers: "
        r"(?P<ldap_servers>.+)\. Check server logs\.",
        "access_management",
        "update",
        "failure",
    ),
    # miscellaneous
    _t("analysis.some_tasks_failed", r"Some tasks in analysis failed", "analysis", "execute", "failure"),
    _t(
        "analysis.oss_index_unreachable",
        r"Could not connect to OSS Index, reason: (?P<reason>.*)",
        "analysis",
        "execute",
        "failure",
    ),
    _t("analysis.already_running", r"There is already running analysis", "analysis", "execute", "failure"),
    _t(
        "analysis.parallel_forbidden",
        r"Another analysis in progress\. Parallel execution forbidden\.",
        "analysis",
        "execute",
        "failure",
    ),
    _t(
        "project.repo_path_missing",
        r"Repo path for (?P<project>.+) does not exist, setting status to Not cloned",
        "analysis",
        "update",
        "failure",
        PROJECT,
    ),
]
OBJECT_REPR = re.compile(r"^<(?P<type>\w+): (?P<name>.*)>$", re.DOTALL)


def parse_message(message: str) -> tuple[Template | None, dict[str, Any]]:
    for template in TEMPLATES:
        match = template.pattern.match(message)
        if match:
            fields: dict[str, Any] = {k: v for k, v in match.groupdict().items() if v is not None}
            for name in INT_FIELDS & fields.keys():
                fields[name] = int(fields[name])
            if "ldap_servers" in fields:
                fields["ldap_servers"] = fields["ldap_servers"].split(", ")
            return template, fields
    return None, {}


def normalize_entry(
    source: str, organization: str, raw: Any, key: str, observed: datetime, time_field: str = "created_at"
) -> dict[str, Any]:
    message = raw.get("message")
    if not isinstance(message, str):
        raise ValueError("entry has no message")
    when = event_time(entry_time(raw, time_field))
    actor_name = raw.get("actor")
    actor = {"name": actor_name, "id": actor_name, "type": "system" if actor_name == "system" else "user"}
    if not actor_name:
        actor["type"] = "unknown"
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
            actor = {"name": fields.get("username"), "id": fields.get("username"), "type": "user"}
            fields["recorded_actor"] = actor_name
    if raw.get("duration") is not None:
        fields["duration"] = raw["duration"]
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


class _PastLastPage(Exception):
    """DRF answers 404 "Invalid page." past the last page: the end of the walk, not an error."""


async def _past_last_page(response: httpx.Response) -> None:
    if response.status_code == 404 and response.request.url.params.get("page", "1") != "1":
        raise _PastLastPage


class CodescoringSource(HttpSource[CodescoringConfig]):
    type_name: ClassVar[str] = "codescoring"
    vendor: ClassVar[str] = "codescoring"
    display_name: ClassVar[str] = "CodeScoring"
    unit: ClassVar[str] = "installation"

    def __init__(self, name: str, config: CodescoringConfig) -> None:
        super().__init__(name, config, on_response=_past_last_page)

    def make_client(self) -> httpx.AsyncClient:
        cfg = self.config
        return make_client(
            cfg,
            cfg.base_url,
            {"Authorization": f"Token {cfg.token.get_secret_value()}"},
            follow_redirects=True,  # Django's APPEND_SLASH redirects a path without its slash
        )

    def organizations(self) -> list[str]:
        return [self.config.installation_name]

    async def fetch_page(
        self,
        organization: str,
        page: int,
        per_page: int,
        window: tuple[int, int] | None,
        *,
        budget: WalkBudget | None = None,
    ) -> tuple[list[Any], bool | None]:
        """One page of entries, and whether the server says another follows (None: a bare
        list, which says nothing; another page is asked for while pages come back full)."""
        cfg = self.config
        params: dict[str, Any] = {"page": page, "per_page": per_page}
        if window is not None and cfg.use_time_filter:
            params[cfg.from_param], params[cfg.to_param] = format_ms(window[0]), format_ms(window[1])
        for name, value in ((cfg.user_param, cfg.user), (cfg.search_param, cfg.search)):
            if value:
                params[name] = value
        try:
            body = await self.fetcher.get_json(organization, cfg.path, params, budget=budget)
        except _PastLastPage:
            return [], False
        if isinstance(body, list):
            return body, None
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            return body["results"], bool(body.get("next"))
        raise MalformedResponse(
            f"CodeScoring answered with {type(body).__name__} for installation {organization!r}, "
            "expected a list of audit entries or a {count, next, results} envelope"
        )

    async def walk(self, organization: str, floor: int, end: int) -> list[tuple[Any, str, int]]:
        """Every entry from ``floor`` to ``end`` (ms, inclusive) as (raw, key, time), each key
        once: entries written during the walk push older ones onto the next page, which then
        repeats them. Newest first, the walk stops at the first page reaching below ``floor``,
        but only while every page so far really came newest first: an entry older than the one
        before it proves the order wrong, and a walk stopped there would skip the new entries
        at the end of an oldest-first listing."""
        per_page = self.config.per_page
        newest_first = self.config.order == "newest_first"
        time_ms = time_at(self.config.time_field)
        walked: list[tuple[Any, int]] = []
        guard = self.page_guard(organization, MAX_PAGES)
        seen = guard.seen
        previous: int | None = None  # time of the last parseable entry walked, across pages
        out_of_order = descending = False
        # One walk, journaled as one page (the module's docstring), so what it holds is bound.
        budget = self.walk_budget(organization, REMEDY)
        while True:
            page = guard.next_page()
            items, more = await self.fetch_page(organization, page, per_page, (floor, end), budget=budget)
            keys = self._keys(organization, items, self.config.id_field)
            if guard.stale(keys):
                if more is None:
                    break  # a bare list that ignores ``page``: the same entries again
                raise guard.looped(str(page))
            reached_floor = False
            for item, key in zip(items, keys, strict=True):
                read = time_ms(item)
                ts = end if read is None else read  # unparseable: quarantined by normalize, kept in the overlap
                if read is not None and key not in seen:  # a page shift's repeat says nothing of the order
                    if previous is not None:
                        out_of_order |= ts > previous
                        descending |= ts < previous
                    previous = ts
                if ts < floor:
                    reached_floor = True
                elif ts <= end:  # newer than now - lag: the next poll takes it, once it has settled
                    walked.append((item, ts))
            guard.remember(keys)
            if reached_floor and newest_first and not out_of_order:
                break
            if not items or more is False or (more is None and len(items) < per_page):
                break
        if newest_first and out_of_order:
            log.warning(
                "CodeScoring listed entries oldest first (or unordered) although order is newest_first; "
                "every page was walked instead of stopping at the watermark. Set order: oldest_first "
                "if the server lists oldest first",
                source=self.name,
                installation=organization,
            )
        elif not newest_first and descending and not out_of_order:
            log.info(
                "CodeScoring listed every entry newest first although order is oldest_first; "
                "order: newest_first would stop walks at the watermark",
                source=self.name,
                installation=organization,
            )
        found: dict[str, tuple[Any, str, int]] = {}  # keyed over the whole walk: no twin is lost
        for (item, ts), key in zip(
            walked, self._keys(organization, [i for i, _ in walked], self.config.id_field), strict=True
        ):
            found.setdefault(key, (item, key, ts))
        return list(found.values())

    @staticmethod
    def _keys(organization: str, items: list[Any], id_field: str | None = "id") -> list[str]:
        """``codescoring:<installation>:<id>``, or a hash of the whole entry without an id."""
        return entry_keys("codescoring", "CodeScoring", organization, items, id_field, f"codescoring:{organization}:")

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        cfg = self.config
        now = now_ms()
        state = WindowCursor.load(cursor, now - int(cfg.initial_lookback_days * DAY_MS))
        overlap = int(cfg.overlap_s * 1000)
        end = now - int(cfg.lag_s * 1000)
        found = await self.walk(organization, state.watermark_ms - overlap, end)
        fresh = sorted((f for f in found if f[1] not in state.recent), key=lambda f: (f[2], f[1]))
        state.advance(end, {key: ts for _, key, ts in fresh}, overlap)
        yield Page(entries=[(item, key) for item, key, _ in fresh], cursor=state.dump())

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        return normalize_entry(self.name, organization, raw, key, observed, self.config.time_field)

    async def check(self) -> str:
        await self.fetch_page(self.config.installation_name, 1, 1, None)
        return f"credentials accepted for installation {self.config.installation_name!r}"
