"""Three JSON audit APIs invented for black-box tests of ``type: http_json`` (none is a preset),
each served from loopback with hostile but valid pages.

* ``link``: bearer token, RFC 8288 ``Link: <...>; rel="next"``, the records at the top level,
  times in epoch seconds (``ts``), a string id; filters ``since``/``until`` in epoch seconds.
* ``cursor``: an API key in ``X-Audit-Key``, ``{"data": {"events": [...]}, "next_cursor": ...,
  "has_more": ...}``, ISO times with offsets (``occurred_at``), numeric ids; filters
  ``start``/``end`` in ISO 8601.
* ``offset``: basic auth, ``offset``/``limit`` with ``{"results": [...], "total": n}``, times in
  epoch milliseconds at ``meta.when.ms``, no id; filters ``from_ms``/``to_ms``.

Every API lists a window oldest first. ``bounds`` says whether its time filter keeps the instants
it names (``inclusive``) or not (``exclusive``); ``plant_at_to`` puts an entry at exactly the end
of every window older than a minute that is asked for, as a log with an entry at every instant
would hold at the slice boundaries.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlencode

from tests.support.spec_emulators import Answer, Bounds, Request, SpecServer

Kind = Literal["link", "cursor", "offset"]


@dataclass
class Entry:
    ms: int  # the entry's time, epoch ms (whole seconds for ``link``)
    n: int  # its serial number, unique per API
    who: str


@dataclass
class Hostile:
    """Faults of valid pages, each given once unless said otherwise."""

    empty_first: bool = False  # the first page of a walk empty, with a next link or cursor
    repeat_last: bool = False  # the last page points on to itself (a link/cursor that does not change)
    shift_after_first: bool = False  # an older entry written between the first and second page
    too_many: int = 0  # 429 with Retry-After before the first page, this many times
    error_mid: int = 0  # 500 on the second page, this many times
    shifted: list[Entry] = field(default_factory=list)


class AuditApi(SpecServer):
    def __init__(self, kind: Kind, bounds: Bounds = "inclusive", page_size: int = 3) -> None:
        super().__init__(bounds)
        self.kind: Kind = kind
        self.page_size = page_size
        self.entries: list[Entry] = []
        self.serial = 0
        self.plant_at_to = False
        self.planted: list[Entry] = []
        self.hostile = Hostile()
        self.token = "tok-LINK-s3cr3t-0123456789"
        self.api_key = "key-CURSOR-s3cr3t-abcdef"
        self.user, self.password = "svc-audit", "pw-OFFSET-s3cr3t-987"

    # -- entries ---------------------------------------------------------------------------
    def add(self, when: datetime, who: str = "alice") -> Entry:
        ms = int(when.timestamp() * 1000)
        if self.kind == "link":
            ms = ms // 1000 * 1000
        with self.lock:
            self.serial += 1
            entry = Entry(ms, self.serial, who)
            self.entries.append(entry)
        return entry

    def render(self, e: Entry) -> dict[str, Any]:
        if self.kind == "link":
            return {"id": f"evt-{e.n}", "ts": e.ms // 1000, "actor": e.who, "action": "user.login"}
        if self.kind == "cursor":
            offset = timezone(timedelta(hours=5, minutes=30))
            moment = datetime.fromtimestamp(e.ms / 1000, UTC).astimezone(offset)
            text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{e.ms % 1000:03d}+05:30"
            return {
                "id": 10_000_000_000 + e.n,
                "occurred_at": text,
                "user": {"email": f"{e.who}@ex.example"},
                "type": "repo.delete",
            }
        return {"meta": {"when": {"ms": e.ms}}, "principal": e.who, "op": "token.create", "seq": e.n}

    def time_of(self, raw: dict[str, Any]) -> int:
        """An event's ``raw`` back to its time, epoch ms (what the test compares)."""
        if self.kind == "link":
            return int(raw["ts"]) * 1000
        if self.kind == "cursor":
            return int(datetime.fromisoformat(raw["occurred_at"]).timestamp() * 1000)
        return int(raw["meta"]["when"]["ms"])

    # -- the HTTP side -----------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        h = request.headers
        if self.kind == "link":
            return h.get("authorization") == f"Bearer {self.token}"
        if self.kind == "cursor":
            return h.get("x-audit-key") == self.api_key
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return h.get("authorization") == f"Basic {basic}"

    def bound(self, request: Request, name: str) -> int | None:
        values = request.query.get(name)
        if not values:
            return None
        text = values[-1]
        if self.kind == "link":
            return int(text) * 1000
        if self.kind == "cursor":
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
        return int(text)

    def keep(self, ms: int, lo: int | None, hi: int | None) -> bool:
        if self.bounds == "inclusive":
            return (lo is None or lo <= ms) and (hi is None or ms <= hi)
        return (lo is None or lo < ms) and (hi is None or ms < hi)

    def answer(self, request: Request) -> Answer:
        if request.path != "/audit":
            return Answer(404, {"error": "not found"})
        if not self.authorized(request):
            return Answer(401, {"error": "unauthorized"})
        names = {"link": ("since", "until"), "cursor": ("start", "end"), "offset": ("from_ms", "to_ms")}[self.kind]
        try:
            lo, hi = self.bound(request, names[0]), self.bound(request, names[1])
        except ValueError as exc:
            return Answer(400, {"error": str(exc)})
        position = self.position(request)
        with self.lock:
            hostile = self.hostile
            if position == 0 and hostile.too_many:
                hostile.too_many -= 1
                return Answer(429, {"error": "slow down"}, {"Retry-After": "1"})
            if position > 0 and hostile.error_mid:
                hostile.error_mid -= 1
                return Answer(500, {"error": "internal"})
            if self.plant_at_to and hi is not None and hi < (datetime.now(UTC).timestamp() - 60) * 1000:
                if all(e.ms != hi for e in self.entries):
                    self.serial += 1
                    planted = Entry(hi, self.serial, "edge")
                    self.entries.append(planted)
                    self.planted.append(planted)
            chosen = sorted((e for e in self.entries if self.keep(e.ms, lo, hi)), key=lambda e: (e.ms, e.n))
            if position == 0 and hostile.empty_first:
                hostile.empty_first = False  # an empty page, then the walk from its start
                return self.page(request, [], 0, True, len(chosen))
            if position > 0 and hostile.shift_after_first and chosen:
                hostile.shift_after_first = False
                self.serial += 1
                older = Entry(chosen[0].ms, self.serial, "shifted")
                self.entries.append(older)
                hostile.shifted.append(older)
                chosen = sorted((e for e in self.entries if self.keep(e.ms, lo, hi)), key=lambda e: (e.ms, e.n))
            items = chosen[position : position + self.page_size]
            more = position + self.page_size < len(chosen)
            if not more and hostile.repeat_last and items:
                return self.page(request, items, position, True, len(chosen))  # points to itself
            return self.page(request, items, position + self.page_size, more, len(chosen))

    def position(self, request: Request) -> int:
        name = {"link": "after", "cursor": "cursor", "offset": "offset"}[self.kind]
        values = request.query.get(name)
        if not values:
            return 0
        text = values[-1]
        if self.kind == "cursor":
            return int(base64.b64decode(text).decode().removeprefix("pos:"))
        return int(text)

    def page(self, request: Request, items: list[Entry], nxt: int, more: bool, total: int) -> Answer:
        records = [self.render(e) for e in items]
        if self.kind == "link":
            headers = {}
            if more:
                query = {k: v[-1] for k, v in request.query.items() if k != "after"}
                headers["Link"] = f'<{self.url}/audit?{urlencode({**query, "after": nxt})}>; rel="next"'
            return Answer(200, records, headers)
        if self.kind == "cursor":
            token = base64.b64encode(f"pos:{nxt}".encode()).decode() if more else None
            return Answer(200, {"data": {"events": records}, "next_cursor": token, "has_more": more})
        return Answer(200, {"results": records, "total": total})


def source(api: AuditApi, **extra: Any) -> dict[str, Any]:
    """The YAML an operator would write for ``api`` (from README and docs/configuration.md)."""
    common: dict[str, Any] = {
        "type": "http_json",
        "url": f"{api.url}/audit",
        "organizations": ["main"],
        "initial_lookback_days": 1,
        "slice_hours": 6,
        "lag_s": 1,
        "interval_s": 1,
        "jitter_s": 0,
        "max_attempts": 3,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    if api.kind == "link":
        own: dict[str, Any] = {
            "vendor": "linkco",
            "auth": {"type": "bearer", "token": api.token},
            "pagination": {"style": "link_header"},
            "id_field": "id",
            "time_field": "ts",
            "time_format": "epoch_s",
            "from_param": "since",
            "to_param": "until",
            "window_format": "epoch_s",
            "mapping": {"action": "action", "actor.name": "actor"},
        }
    elif api.kind == "cursor":
        own = {
            "vendor": "cursorco",
            "auth": {"type": "header", "header": "X-Audit-Key", "token": api.api_key},
            "pagination": {
                "style": "cursor",
                "next_path": "next_cursor",
                "cursor_param": "cursor",
                "has_next_path": "has_more",
            },
            "records_path": "data.events",
            "id_field": "id",
            "time_field": "occurred_at",
            "time_format": "iso8601",
            "from_param": "start",
            "to_param": "end",
            "window_format": "iso8601",
            "mapping": {"action": "type", "actor.email": "user.email"},
        }
    else:
        own = {
            "vendor": "offsetco",
            "auth": {"type": "basic", "username": api.user, "password": api.password},
            "pagination": {
                "style": "offset",
                "offset_param": "offset",
                "limit_param": "limit",
                "page_size": api.page_size,
            },
            "records_path": "results",
            "time_field": "meta.when.ms",
            "time_format": "epoch_ms",
            "from_param": "from_ms",
            "to_param": "to_ms",
            "window_format": "epoch_ms",
            "mapping": {"action": "op", "actor.name": "principal"},
        }
    return {**common, **own, **extra}
