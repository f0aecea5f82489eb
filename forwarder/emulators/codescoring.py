"""Codescoring audit-log emulator (an on-premise installation, so a single tenant).

The audit endpoint is not documented publicly (see ``shared/research/sources-api.md`` §3), so
everything unverified is a switch: the path (default ``/api/audit_logs/``), the filter names,
the envelope (DRF page-number ``{count, next, previous, results}`` or a bare list). What is
documented or follows from Django REST Framework is fixed: ``Authorization: Token <t>`` with
DRF's 401 messages, 403 for a user who is neither Administrator nor Auditor, ``page`` and
``per_page`` with 400 above the maximum and 404 "Invalid page." past the end, absolute
``next``/``previous`` links. The order is a switch too (``order``: ``newest_first``, the
default, or ``oldest_first`` as DRF lists by primary key unless told otherwise). Messages
are rendered from the seed's templates and come in the bursts a real installation writes
(an SCA run logs every step, then its result).
"""

from __future__ import annotations

import hmac
import math
import random
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from forwarder.emulators.base import Emulator, Request, Response
from forwarder.emulators.fixtures import PEOPLE, Timeline, epoch_us, random_uuid, renamed, timeline_ms

DEFAULT_TOKEN = "codescoring-test-token"  # a test credential of a loopback emulator
DEFAULT_PATH = "/api/audit_logs/"
SERVER_TZ = timezone(timedelta(hours=3))  # installations in Moscow time write +03:00

Event = tuple[str, str, float | None]  # actor, message, duration in seconds

PROJECTS = ["backend-api", "web-frontend", "payments-service", "mobile-app", "infra-tools", "data-pipeline"]
SCA_STEPS = [
    "Clone source code",
    "Collect files data",
    "Collect manifests",
    "Create pipeline",
    "Analyze dependencies",
    "Check policies",
    "Update project metrics",
]
POLICIES = [
    "Block critical CVEs",
    "No GPL in production",
    "Forbid abandoned packages",
    "Secrets must not leak",
]
DEPENDENCIES = [
    "openssl 3.0.13",
    "log4j-core 2.17.1",
    "lodash 4.17.21",
    "requests 2.31.0",
    "jackson-databind 2.15.2",
]
IMAGES = ["registry.example.com/backend:1.4.2", "registry.example.com/web:2.0.0", "nginx:1.25-alpine"]
REGISTRIES = ["registry.example.com", "harbor.internal.example.com"]
TEAMS = ["Platform team", "Payments team", "Mobile team"]


def username(full_name: str) -> str:
    first, _, last = full_name.partition(" ")
    return re.sub(r"[^a-z]", "", (first[:1] + last).lower())


USERNAMES = [username(name) for name, _ in PEOPLE]


def format_created_at(ts_us: int) -> str:
    """Django serializes aware datetimes with ``isoformat()``: the fraction disappears at 0 µs."""
    return datetime.fromtimestamp(ts_us / 1_000_000, SERVER_TZ).isoformat()


def parse_filter_time(value: str) -> int:
    """A filter date-time in µs; a naive one (or a bare date) means the server's time zone."""
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=SERVER_TZ)
    return epoch_us(dt)


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json({"detail": message}, status, headers)


class CodescoringEmulator(Emulator):
    name = "codescoring"
    source_type = "codescoring"

    def __init__(self, token: str = DEFAULT_TOKEN, seed: int = 1) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.token = token
        self.path = DEFAULT_PATH
        self.forbidden = False  # the token's user is neither Administrator nor Auditor
        self.bare_list = False  # serve every matching entry as a bare list, no paging
        self.max_per_page = 100  # CODESCORING_API_MAX_PAGE_SIZE
        self.default_per_page = 20
        self.filters_enabled = True  # False: filter parameters are ignored, as DRF ignores unknown ones
        self.field_names: dict[str, str] = {}  # served entries' fields renamed, e.g. {"created_at": "time"}
        self.order = "newest_first"  # or "oldest_first": the order is undocumented (research §3, [INF])
        self.after_param = "created_at_after"
        self.before_param = "created_at_before"
        self.actor_param = "actor"
        self.search_param = "search"
        self.installation = "default"
        self.log: Timeline[dict[str, Any]] = Timeline()
        self._next_id = 41_000 + self.rng.randrange(1000)
        self._sequences = dict.fromkeys(PROJECTS, 0)
        self._queue: list[Event] = []
        self.route("GET", r"(?P<path>/.*)", self.serve)

    # --- data ----------------------------------------------------------------------------
    def _sca_run(self, actor: str) -> list[Event]:
        rng = self.rng
        project = rng.choice(PROJECTS)
        self._sequences[project] += 1
        head = f"[SCA][{project}][{self._sequences[project]}/{random_uuid(rng)}]"
        steps = [(actor, f"{head} {step}", round(rng.uniform(0.2, 45.0), 3)) for step in SCA_STEPS]
        total = round(sum(d or 0.0 for _, _, d in steps), 3)
        ok = rng.random() < 0.9
        end = (
            actor,
            f"{head} Analysis finished" if ok else f"{head} Analysis failed. Check server logs.",
            total,
        )
        return [(actor, f"{head} Analysis started", None), *steps, end]

    def _tqi_run(self, actor: str) -> list[Event]:
        rng = self.rng
        run, project = random_uuid(rng), rng.choice(PROJECTS)
        outcome = rng.choices(["completed", "failed. Check server logs.", "cancelled"], [8, 1, 1])[0]
        return [
            (actor, f"(Run #{run}) Authors analysis started", None),
            (actor, f"(Run #{run}) Clone source code for project {project}", round(rng.uniform(1, 30), 3)),
            (actor, f"(Run #{run}) Collect commits data for project {project}", round(rng.uniform(1, 90), 3)),
            (actor, f"(Run #{run}) Create authors", round(rng.uniform(0.1, 5), 3)),
            (actor, f"(Run #{run}) Load authors OSS contributions", round(rng.uniform(1, 60), 3)),
            (actor, f"(Run #{run}) Authors analysis {outcome}", round(rng.uniform(30, 600), 3)),
        ]

    def _instance_repr(self) -> str:
        """``{instance!r}`` of a Django model: ``<Model: str(instance)>``."""
        rng = self.rng
        model, text = rng.choice(
            [
                ("Project", rng.choice(PROJECTS)),
                ("User", rng.choice(USERNAMES)),
                ("Policy", rng.choice(POLICIES)),
                ("Team", rng.choice(TEAMS)),
                ("Webhook", f"https://hooks.example.com/codescoring/{rng.randint(1, 99)}"),
            ]
        )
        return f"<{model}: {text}>"

    def _single(self, user: str) -> Event:
        rng = self.rng
        project, pk = rng.choice(PROJECTS), rng.randint(1, 400)
        choices: list[Event] = [
            (user, "User logged in", None),
            (user, "User logged out", None),
            ("system", f"Failed login attempt {rng.choice(USERNAMES)}", None),
            (
                user,
                f"Object {self._instance_repr()} {rng.choice(['created', 'updated', 'deleted'])}",
                None,
            ),
            (user, f"Policy ignore PolicyIgnore object ({pk}) {rng.choice(['created', 'activated'])}", None),
            (user, f"To Policy ignore PolicyIgnore object ({pk}) added Policy {rng.choice(POLICIES)}", None),
            (
                "system",
                f"Policy \"{rng.choice(POLICIES)}\" (id: {pk}) skipped. Reason: KeyError('severity')",
                None,
            ),
            ("system", f"[Secrets][{project}] Analysis {rng.choice(['started', 'finished'])}", None),
            (
                "system",
                f"[Secrets][{project}] Analysis failed. Check server logs.",
                round(rng.uniform(1, 60), 3),
            ),
            ("system", "[Secrets] Training run finished", round(rng.uniform(10, 900), 3)),
            (
                "system",
                f"In container image {rng.choice(IMAGES)} dependency {rng.choice(DEPENDENCIES)} was changed",
                None,
            ),
            (
                user,
                f"Updating images list for registry {rng.choice(REGISTRIES)} triggered via update button.",
                None,
            ),
            (user, "Applying all LDAP group mapping rules triggered", round(rng.uniform(0.5, 20), 3)),
            (
                "system",
                "LDAP sync finished. While processing, failed to apply some of rules related to following "
                "LDAP servers: ldap.example.com. Check server logs.",
                round(rng.uniform(0.5, 20), 3),
            ),
            (
                user,
                "Object <ActivationKey: Owner: Example LLC. Expired: 2027-12-31. Authors limit: 500> created",
                None,
            ),
            ("system", "Problem with activation key: expired", None),
            ("system", f"Overall SCA run started for {rng.randint(2, 40)} project(s)", None),
            ("system", f"Failed to clone for repository {project}.", None),
            ("system", f'Failed to detect branch for repository "{project}', None),
            ("system", f"[[SCA][{project}] Analysis didn't start (Reason: Repository is not cloned)]", None),
            (user, f"(Run #{random_uuid(rng)}) Analysis started via API", None),
            ("system", "Could not connect to OSS Index, reason: HTTPSConnectionPool: Read timed out.", None),
            ("system", "Another analysis in progress. Parallel execution forbidden.", None),
            ("system", f"Repo path for {project} does not exist, setting status to Not cloned", None),
        ]
        weights = [12, 8, 4, 6, *([1] * (len(choices) - 4))]
        return rng.choices(choices, weights)[0]

    def _next_event(self) -> Event:
        if not self._queue:
            user = self.rng.choice(USERNAMES)
            actor = self.rng.choice([user, "system"])
            kind = self.rng.choices(["sca", "tqi", "single"], [2, 1, 10])[0]
            if kind == "sca":
                self._queue = self._sca_run(actor)
            elif kind == "tqi":
                self._queue = self._tqi_run(actor)
            else:
                self._queue = [self._single(user)]
        return self._queue.pop(0)

    def _file(self, item: dict[str, Any]) -> None:
        self.log.add(parse_filter_time(str(item["created_at"])), int(item["id"]), item)

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        """``count`` entries for the one installation; ``orgs[0]``, if given, names it."""
        if options.get("orgs"):
            self.installation = str(options["orgs"][0])
        created = []
        for ts_ms in timeline_ms(count, options):
            actor, message, duration = self._next_event()
            self._next_id += 1
            item = {
                "id": self._next_id,
                "created_at": format_created_at(ts_ms * 1000),
                "actor": actor,
                "message": message,
                "duration": duration,
            }
            self._file(item)
            created.append(item)
        return created

    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            item = {k: v for k, v in entry.items() if k != "_org"}
            if "id" not in item:
                self._next_id += 1
                item["id"] = self._next_id
            item.setdefault("created_at", format_created_at(int(time.time() * 1_000_000)))
            self._file(item)

    def all_entries(self) -> list[dict[str, Any]]:
        return [{**item, "_org": self.installation} for item in self.log.all()]

    # --- the emulator contract (``forwarder.emulators.base.Emulator``) --------------------
    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        """One installation per source; ``organizations``, if given, holds its name."""
        return {
            "type": "codescoring",
            "base_url": url,
            "token": self.token,
            "path": self.path,
            "installation": (organizations or [self.installation])[0],
        }

    def entry_key(self, entry: dict[str, Any]) -> str:
        return f"codescoring:{entry['_org']}:{entry['id']}"

    def configure(self, options: dict[str, Any]) -> None:
        if options.get("order", "newest_first") not in ("newest_first", "oldest_first"):
            raise KeyError(f"order={options['order']!r} (newest_first or oldest_first)")
        super().configure(options)

    # --- the endpoint --------------------------------------------------------------------
    def _authenticate(self, req: Request) -> Response | None:
        """DRF ``TokenAuthentication``: another scheme is no credentials at all, not a bad one."""
        challenge = {"WWW-Authenticate": "Token"}
        parts = (req.header("authorization") or "").split()
        if not parts or parts[0].lower() != "token":
            return detail(401, "Authentication credentials were not provided.", challenge)
        if len(parts) == 1:
            return detail(401, "Invalid token header. No credentials provided.", challenge)
        if len(parts) > 2:
            return detail(401, "Invalid token header. Token string should not contain spaces.", challenge)
        if not hmac.compare_digest(parts[1].encode(), self.token.encode()):
            return detail(401, "Invalid token.", challenge)
        if self.forbidden:
            return detail(403, "You do not have permission to perform this action.")
        return None

    def _matching(self, req: Request) -> list[dict[str, Any]] | Response:
        lo = hi = None
        if self.filters_enabled:
            bounds: dict[str, int | None] = {}
            for name in (self.after_param, self.before_param):
                value = req.arg(name)
                try:
                    bounds[name] = parse_filter_time(value) if value else None
                except ValueError:
                    return Response.json({name: ["Enter a valid date/time."]}, 400)
            lo, hi = bounds[self.after_param], bounds[self.before_param]
        items = self.log.window(lo, hi)
        actor = req.arg(self.actor_param) if self.filters_enabled else None
        search = (req.arg(self.search_param) or "").lower() if self.filters_enabled else ""
        if actor or search:
            items = [
                i
                for i in items
                if (not actor or i.get("actor") == actor)
                and (not search or search in str(i.get("message", "")).lower() or search in str(i.get("actor")).lower())
            ]
        return items[::-1] if self.order == "oldest_first" else items

    def _link(self, req: Request, page: int) -> str:
        """DRF rebuilds the request URL with the page replaced and the parameters sorted."""
        query = {k: v for k, v in req.query.items() if k != "page"}
        if page > 1:
            query["page"] = [str(page)]
        encoded = urlencode(sorted(query.items()), doseq=True)
        return f"{req.base_url}{req.path}" + (f"?{encoded}" if encoded else "")

    def serve(self, req: Request, path: str) -> Response:
        if path != self.path:
            if path + "/" == self.path:  # Django's APPEND_SLASH
                query = urlencode(sorted(req.query.items()), doseq=True)
                return Response(301, b"", {"Location": self.path + (f"?{query}" if query else "")})
            return detail(404, "Not found.")
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        per_page = self.default_per_page
        raw = req.arg("per_page")
        if raw and raw.isdigit() and int(raw) > 0:  # DRF falls back to the default on junk
            per_page = int(raw)
            if per_page > self.max_per_page:
                return Response.json(
                    {"per_page": [f"Ensure this value is less than or equal to {self.max_per_page}."]}, 400
                )
        with self.lock:
            items = self._matching(req)
        if isinstance(items, Response):
            return items
        items = [renamed(i, self.field_names) for i in items] if self.field_names else items
        if self.bare_list:
            return Response.json(items)
        pages = max(1, math.ceil(len(items) / per_page))  # Django allows an empty first page
        raw_page = req.arg("page") or "1"
        page = pages if raw_page == "last" else int(raw_page) if raw_page.isdigit() else 0
        if not 1 <= page <= pages:
            return detail(404, "Invalid page.")
        return Response.json(
            {
                "count": len(items),
                "next": self._link(req, page + 1) if page < pages else None,
                "previous": self._link(req, page - 1) if page > 1 else None,
                "results": items[(page - 1) * per_page : page * per_page],
            }
        )
