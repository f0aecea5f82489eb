"""``type: http_json``'s configuration: a JSON audit API described entirely in the YAML (the URL,
auth, paging style, where the records sit, how their time reads and how fields map), apart from
the source that walks it (``forwarder.sources.http_json``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from forwarder.mapping import FieldSpec, validate_mapping
from forwarder.sources.base import HttpUrl, SourceConfig, TimeBounds
from forwarder.sources.http_auth import Auth
from forwarder.sources.tenants import CREDENTIALS_DOC, ORGANIZATIONS_DOC, Organizations, organization_configs
from forwarder.sources.window import TimeFormat


class Pagination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    style: Literal["none", "next_link_body", "link_header", "cursor", "page_number", "offset"] = Field(
        "none",
        description="none: one answer per window; next_link_body: a next URL at next_path; link_header: RFC 8288 "
        'Link rel="next"; cursor: a token at next_path sent back as cursor_param; page_number: page_param '
        "counting from first_page; offset: offset_param and limit_param. An empty page ends page_number and offset "
        "walks; a next link or cursor is followed past an empty page.",
    )
    next_path: str = Field("next", description="next_link_body: path of the next URL; cursor: of the token.")
    cursor_param: str = Field("cursor", description="cursor: the query parameter that sends the token.")
    page_param: str = Field("page", description="page_number: the page-number parameter.")
    first_page: int = Field(1, description="page_number: the number of the first page.")
    size_param: str | None = Field("per_page", description="page_number: the page-size parameter.")
    offset_param: str = Field("offset", description="offset: the parameter of the first record's position.")
    limit_param: str = Field("limit", description="offset: the page-size parameter.")
    page_size: int = Field(100, ge=1, description="page_number and offset: records asked per page.")
    total_pages_path: str | None = Field(None, description="page_number: stop once this page is reached.")
    has_next_path: str | None = Field(
        None,
        description="Stop when this is false. True without a next link or cursor fails the poll naming next_path "
        "(a misspelled next_path would otherwise end the walk after one page); set it where the vendor has one.",
    )
    stop_on_short_page: bool = Field(True, description="page_number/offset: a page under page_size is the last.")
    max_pages: int = Field(10_000, ge=1, description="A walk longer than this fails rather than loops.")
    order: Literal["oldest_first", "newest_first"] = Field(
        "oldest_first",
        description="The order the vendor lists a window in. newest_first: a next-link or cursor walk is held "
        "to the end of its slice (bound by max_walk_bytes) and journaled oldest first, instead of page by page.",
    )


class HttpJsonConfig(SourceConfig):
    """A JSON audit API described in the configuration (docs/schema.md, "http_json")."""

    type: Literal["http_json"]
    vendor: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="The vendor name the events carry.")
    url: HttpUrl = Field(description="Full URL; {organization} is replaced by each organization.")
    organizations: list[str] | Organizations = Field(description="Values for {organization}; or " + ORGANIZATIONS_DOC)
    auth: Auth = Field(default_factory=Auth)
    credentials: dict[str, Any] = Field(default_factory=dict, description=CREDENTIALS_DOC + " Here: auth and headers.")
    credential_keys: ClassVar[tuple[str, ...]] = ("auth", "headers")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra request headers. Each value is treated as a secret (scrubbed from logs and errors), "
        "but prefer auth for credentials.",
    )
    params: dict[str, str | int] = Field(default_factory=dict, description="Fixed query parameters.")
    pagination: Pagination = Field(default_factory=Pagination)
    records_path: str = Field("", description="Dotted path of the list of records; empty: the body is the list.")
    records_optional: bool = Field(False, description="An answer without records_path holds no records (not an error).")
    split_path: str | None = Field(
        None,
        description="Path of a list in each record whose elements are events of their own (Google's events[] of "
        "one activity): a record with two or more becomes one record per element, the list holding that one; "
        "the first keeps the record's id, the others add |<position>. None: a record is one event.",
    )
    id_field: str | list[str] | None = Field(
        None,
        description="Path of the event id, or a list of paths whose values together are the id; none: a content hash.",
    )
    time_field: str = Field(description="Path of the event time.")
    time_format: TimeFormat = "iso8601"
    from_param: str | None = Field(None, description="Query parameter of the window start.")
    to_param: str | None = Field(None, description="Query parameter of the window end.")
    window_format: TimeFormat = Field("iso8601", description="How from_param/to_param are written.")
    window_param: str | None = Field(
        None,
        description="One query parameter holding the whole window, written from window_template (a search "
        "phrase), instead of from_param/to_param.",
    )
    window_template: str = Field("{from}..{to}", description="window_param's value; {from} and {to} are replaced.")
    time_bounds: TimeBounds = Field(
        "unknown",
        description="Whether the vendor returns entries at exactly the instants its time filter names "
        "(inclusive) or not (exclusive). unknown (the default, for a vendor whose documents do not say) and "
        "exclusive ask one unit of window_format (1 ms; 1 s for epoch_s and iso8601_s) beyond each end of "
        "every window, so an entry at a boundary between two windows is read whichever reading holds (the "
        "repeat is recognized and dropped); inclusive asks for the exact window. A preset whose vendor "
        "documents its bounds sets this (github: inclusive).",
    )
    slice_hours: float = Field(24.0, gt=0, description="Window width, when from_param is set.")
    retention_days: float | None = Field(None, gt=0, description="Vendor retention; a cursor older gets a gap event.")
    mapping: dict[str, FieldSpec] = Field(description="Normalized field -> path or {path, const, map, default}.")

    def own_params(self) -> set[str]:
        pg = self.pagination
        paging = {
            "cursor": {pg.cursor_param},
            "page_number": {pg.page_param, pg.size_param or ""},
            "offset": {pg.offset_param, pg.limit_param},
        }.get(pg.style, set())
        windows = {self.from_param or "", self.to_param or "", self.window_param or ""}
        return {*self.params, *windows, *paging, self.auth.query_param() or ""} - {""}

    @model_validator(mode="after")
    def _organizations(self) -> HttpJsonConfig:
        if isinstance(self.organizations, list) and not self.organizations:
            raise ValueError("organizations: list at least one, or discover them (organizations.discover)")
        host = self.url.partition("://")[2].partition("/")[0]
        if "{organization}" in host and isinstance(self.organizations, list):
            # Okta's domain: "https://acme.okta.com" made https://https://acme.okta.com, which failed
            # at the first poll as host "https" not found
            for org in self.organizations:
                if not org or any(c in org for c in "/?#@ "):
                    raise ValueError(
                        f"organizations: {org!r} goes into the URL's host ({self.url}); write the host name "
                        f"alone, e.g. {_bare_host(org)!r}"
                    )
        self.credentials = organization_configs(self, self.credentials, self.credential_keys)
        return self

    @field_validator("split_path")
    @classmethod
    def _split_through_objects(cls, value: str | None) -> str | None:
        """Each step names an object's key: the split copies the objects on the way to the list,
        and a list index there would fail every poll of the source for good."""
        if value is not None and any(not step or step.isdigit() for step in value.split(".")):
            raise ValueError(
                f"split_path {value!r}: each step must name an object's key (no list index, no empty step)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value

    @field_validator("headers")
    @classmethod
    def _header_values(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        """A line break would split the request, and httpx's error would quote the header
        whole; the message names the header only, since its value may be a credential."""
        for name, secret in value.items():
            if not secret.get_secret_value().isprintable():
                raise ValueError(f"header {name!r} holds a line break or another control character")
        return value

    @field_validator("mapping", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("mapping must be a mapping of normalized field to path or spec")
        return {k: FieldSpec(path=v) if isinstance(v, str) else v for k, v in value.items()}

    @field_validator("mapping")
    @classmethod
    def _mapping_fields(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        return validate_mapping(dict(value))


def _bare_host(text: str) -> str:
    """``acme.okta.com`` of ``https://admin@acme.okta.com/x``: what an organization in a host holds."""
    rest = text.strip().partition("://")[2] if "://" in text else text.strip()
    return rest.partition("/")[0].partition("?")[0].partition("#")[0].rpartition("@")[2].strip()
