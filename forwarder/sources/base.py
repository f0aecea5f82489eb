"""What every source implements, and the settings every source shares.

A source only knows its vendor: how to ask for the next page after a cursor, and how to map
one raw entry to the normalized event. Journaling, quarantine, the journal cap and the
scheduling live in ``forwarder.polling`` once for all sources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import ConfigDict, Field, model_validator

from forwarder.event import format_time, make_event
from forwarder.http_shared import HttpUrl as HttpUrl  # each source's base_url
from forwarder.http_shared import cleartext_urls
from forwarder.secrets import SecretFilesModel
from forwarder.sources.ratelimit import RateLimitSettings


@dataclass
class Page:
    """Entries not seen before, with the cursor that is true once they are journaled.

    ``entries`` pairs each raw entry with its stable key (the vendor's id, or a content hash
    for vendors without one). ``cursor`` is JSON-serializable and opaque to everyone but the
    source that wrote it.
    """

    entries: list[tuple[Any, str]]
    cursor: dict[str, Any]
    extra_events: list[dict[str, Any]] = field(default_factory=list)


class SourceConfig(SecretFilesModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    interval_s: float = Field(300.0, gt=0, description="Seconds between two polls of this source.")
    jitter_s: float = Field(
        10.0,
        ge=0,
        description="Random delay, up to this, added to each scheduled poll to spread load; "
        "the first poll after start-up is not delayed.",
    )
    initial_lookback_days: float = Field(
        365.0,
        gt=0,
        description="How far back the first run starts; sources that know the vendor's retention start at most "
        "that far back.",
    )
    lag_s: float = Field(60.0, ge=0, description="Never ask for entries newer than now minus this.")
    overlap_s: float = Field(600.0, ge=0, description="Each window re-reads this much before the cursor.")
    timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of one request.")
    max_attempts: int = Field(6, ge=1, description="Attempts of one request before the poll gives up.")
    backoff_initial_s: float = Field(
        1.0, gt=0, description="A retried request waits a random time up to this (full jitter), doubling each attempt."
    )
    backoff_max_s: float = Field(
        60.0, gt=0, description="Cap of that doubling; a vendor's Retry-After is honoured up to 10 times this."
    )
    max_walk_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="Bytes of vendor answers one walk may hold before any of it is journaled: one time slice, or "
        "a listing that cannot be committed page by page (parsed, they take a few times this in memory). A walk "
        "over it fails that organization's poll, the cursor stays and the other organizations carry on; the "
        "remedy is a smaller slice_hours (ConfigCat: window_days) rather than a higher limit. A walk committed "
        "page by page (http_json next links and cursors) holds one page; only the hashes it keeps to number "
        "twins of entries without an id count against this.",
    )

    rate_limit: RateLimitSettings = Field(
        default_factory=RateLimitSettings,
        description="The vendor's rate-limit headers: read them, keep early_limit requests in reserve and wait "
        "for the reset, one budget per credential (forwarder/sources/ratelimit.py).",
    )

    def transport_warnings(self) -> list[str]:
        """What is allowed but exposes the credentials: logged at start, shown by ``check``."""
        return cleartext_urls(self)

    extra_params: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed query parameters added to every request to the vendor, for a vendor filter no setting "
        "models yet; a parameter the source sends itself is refused.",
    )

    def own_params(self) -> set[str]:
        """The query parameters this source may send itself (its windows, paging and filters):
        an extra parameter of the same name would replace or double one of them."""
        return set()

    @model_validator(mode="after")
    def _extra_params_apart(self) -> SourceConfig:
        clash = sorted(set(self.extra_params) & self.own_params())
        if clash:
            raise ValueError(
                f"extra_params {', '.join(clash)}: the {self.type} source sends "
                f"{'this parameter' if len(clash) == 1 else 'these parameters'} itself; use its own setting "
                "or rename the setting that names it"
            )
        return self


def lookback_setting(days: float, note: str = "") -> Any:
    """An ``initial_lookback_days`` for a vendor with a ``retention_days`` setting, which bounds it."""
    return Field(days, gt=0, description=f"How far back the first run starts, at most retention_days{note}.")


TimeBounds = Literal["unknown", "inclusive", "exclusive"]


def time_bounds_setting(params: str, vendor: str) -> Any:
    """A ``time_bounds`` setting, for a vendor whose documents do not say whether its time filter
    includes the instants it names (``forwarder.sources.windowed.WindowedSource.bound_pad_ms``)."""
    return Field(
        "unknown",
        description=f"Whether {vendor} returns entries at exactly {params} (inclusive) or not (exclusive); its "
        "documents do not say. unknown (the default) and exclusive ask 1 ms beyond each end of every window, so "
        "an entry at a window's end is read whichever reading holds (the repeat is recognized and dropped); "
        "inclusive asks for the exact window. Under the exclusive reading, exact windows lose every entry "
        "stamped at a boundary between two windows.",
    )


def retention_setting(days: float, plans: str, vendor: str, longer: str = "") -> Any:
    """A ``retention_days`` setting, for a vendor whose retention depends on the plan: ``plans``
    says which keeps how long, ``longer`` which plans keep longer than the default."""
    return Field(
        days,
        gt=0,
        description=f"{plans} Every run starts at most this far back; a cursor older than this (the forwarder "
        "was stopped longer) skips to it and journals a forwarder.gap event for the interval. A plan that keeps "
        f"entries longer{longer} must raise this, or entries {vendor} still serves are skipped and reported lost.",
    )


def entry_event(
    vendor: str, source: str, organization: str, key: str, time: str, observed: datetime, **fields: Any
) -> dict[str, Any]:
    """The normalized event of one vendor entry: its key as the id, the time it happened and
    the time it was read; ``fields`` are the rest of ``make_event``."""
    return make_event(
        id=key,
        time=time,
        observed_time=format_time(observed),
        vendor=vendor,
        source=source,
        organization=organization,
        **fields,
    )


class Source(Protocol):
    """Implemented by each module in ``forwarder/sources/``; registered in its ``__init__``."""

    type_name: ClassVar[str]
    vendor: ClassVar[str]
    name: str

    def organizations(self) -> list[str]: ...

    def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Yield pages oldest window first; the caller journals each before asking for the next."""
        ...

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        """Map one raw entry to a normalized event; raise on anything it cannot map."""
        ...

    async def check(self) -> str:
        """Try the credentials against every organization; raise with a clear message on failure."""
        ...

    async def close(self) -> None: ...
