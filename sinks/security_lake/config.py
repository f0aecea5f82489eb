"""Settings of the Security Lake sink: importable without pyarrow (the registry loads it always)."""

from __future__ import annotations

import re
import string
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sinks.s3_objects import S3ObjectsConfig

OCSF_VERSION = "1.1.0"
"""The OCSF version Amazon Security Lake validates custom sources against (its user guide's custom
sources page: "compatible with OCSF Schema 1.1"); the plain ``ocsf`` format may move on."""
SOURCE_FIELDS = frozenset({"class", "class_uid"})
SOURCE_NAME_MAX = 20
"""CreateCustomLogSource: "You must use a CustomLogSource name that is shorter than or equal to 20
characters" (its role is named ``AmazonSecurityLake-Provider-{name}-{region}``, at most 64)."""
_SOURCE_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{SOURCE_NAME_MAX}}}")
_ACCOUNT = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_SOURCE_VERSION = re.compile(r"[A-Za-z0-9._-]{1,32}")
"""CreateCustomLogSource's ``sourceVersion``: 1 to 32 of these characters."""


class SecurityLakeSinkConfig(S3ObjectsConfig):
    """Batching maps the guide's rate onto the shared delivery layer: a batch waits up to
    ``batch_max_age_s`` (at least five minutes, at most a day) unless it reaches
    ``batch_max_events`` or ``batch_max_bytes`` first ("unless it is large"), and the sink does not
    send early when a poll ends."""

    flush_on_poll_end: ClassVar[bool] = False
    type: Literal["security_lake"]
    format: Literal["ocsf"] = Field("ocsf", description="Always OCSF, in the version Security Lake accepts (1.1.0).")
    source_name: str = Field(
        "audit-forwarder-{class_uid}",
        description="Custom source name, one per OCSF class: `{class_uid}` (e.g. `3004`) or `{class}` (e.g. "
        "`entity_management`) is filled in; at most 20 characters once filled (Security Lake's limit). "
        "Register each as a custom source in Security Lake.",
    )
    source_version: str | None = Field(
        None,
        description="The custom sources' `sourceVersion`, if they were created with one: their location is then "
        "`ext/{source}/{version}/` (as CreateCustomLogSource's `provider.location` shows), and objects go there.",
    )
    account_id: str = Field(description="The AWS account id or external id the custom sources were created with.")
    region: str = Field("us-east-1", description="The lake's Region: the bucket's, and the `region=` partition.")
    # A batch is held as records, OCSF documents and Arrow columns at once: 20,000 events or 16 MiB
    # of journaled JSON keeps that to some tens of MB (an estimate, not measured like the s3 sink's).
    batch_max_events: int = Field(20_000, description="A batch this large goes out at once, however young.")
    batch_max_bytes: int = Field(16 * 1024 * 1024, description="Likewise for its size (journaled JSON).")
    batch_max_age_s: float = Field(
        300.0,
        ge=300.0,
        le=86_400.0,
        description="How long a small batch waits to fill: five minutes to one day (the guide's rate).",
    )

    @field_validator("source_name")
    @classmethod
    def _check_source_name(cls, value: str) -> str:
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
            filled = value.format(**{"class": "entity_management", "class_uid": "3004"})
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(
                f"source_name cannot be filled in: {exc}; allowed placeholders: class, class_uid"
            ) from None
        if not fields & SOURCE_FIELDS:
            raise ValueError(
                "source_name must contain {class} or {class_uid}: Security Lake takes one class per source"
            )
        if not _SOURCE_NAME.fullmatch(filled):  # filled with the longest class name
            raise ValueError(
                f"source_name must make names of letters, digits, '-' and '_', at most {SOURCE_NAME_MAX} characters "
                f"(Security Lake's limit on custom source names; {filled!r} is {len(filled)})"
            )
        return value

    @field_validator("account_id")
    @classmethod
    def _check_account(cls, value: str) -> str:
        if not _ACCOUNT.fullmatch(value):
            raise ValueError("account_id must be an account id or external id (letters, digits, '_.:-')")
        return value

    @field_validator("source_version")
    @classmethod
    def _check_source_version(cls, value: str | None) -> str | None:
        if value is not None and not _SOURCE_VERSION.fullmatch(value):
            raise ValueError(
                "source_version must be the custom source's sourceVersion: 1 to 32 letters, digits, '.', '-' or '_'"
            )
        return value

    def location(self, source: str) -> str:
        """The prefix Security Lake assigned to a custom source (its ``provider.location``)."""
        return f"ext/{source}/{self.source_version}/" if self.source_version else f"ext/{source}/"

    @model_validator(mode="before")
    @classmethod
    def _pin_version(cls, data: Any) -> Any:
        if isinstance(data, dict):
            options = dict(data.get("format_options") or {})
            if options.get("version", OCSF_VERSION) != OCSF_VERSION:
                raise ValueError(f"security_lake writes OCSF {OCSF_VERSION}, the version Security Lake accepts")
            data = {**data, "format_options": {**options, "version": OCSF_VERSION}}
        return data

    def destination(self) -> str:
        return f"Security Lake {self.endpoint_url or self.region} s3://{self.bucket}/{self.location(self.source_name)}"
