"""The ``type: codescoring`` settings: where the installation is, and the names the
undocumented audit endpoint may use (path, filters, entry fields, listing order)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from forwarder.sources.base import HttpUrl, SourceConfig, TimeBounds, time_bounds_setting


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
    time_bounds: TimeBounds = time_bounds_setting("from_param and to_param", "CodeScoring")
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
    actor_field: str = Field(
        "actor", min_length=1, description="Entry field holding its actor, a username or system (undocumented)."
    )
    message_field: str = Field(
        "message", min_length=1, description="Entry field holding its message, the text parsed (undocumented)."
    )
    duration_field: str = Field(
        "duration", min_length=1, description="Entry field holding an analysis's duration (undocumented)."
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
