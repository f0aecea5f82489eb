"""The Codescoring emulator over real HTTP: DRF token auth, page-number paging, filters, switches."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.support.emulators import EmulatorProcess, running
from tests.support.openapi import Start

pytestmark = pytest.mark.integration

PATH = "/api/audit_logs/"
TOKEN = {"Authorization": "Token codescoring-test-token"}
MSK = timezone(timedelta(hours=3))

# The seed's event texts (003), as patterns: every generated message must be one of them.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SEED_MESSAGES = [
    r"Object <ActivationKey: Owner: .+\. Expired: .+\. Authors limit: \d+> created",
    r"No activation key",
    r"Problem with activation key: [a-z ]+",
    r"User logged in",
    r"User logged out",
    r"Failed login attempt \w+",
    r"Object <\w+: .+> (created|updated|deleted)",
    rf"\[SCA\]\[[\w-]+\]\[\d+/{UUID}\] (Analysis started|Analysis finished|Analysis failed\. Check server logs\.)",
    rf"\[SCA\]\[[\w-]+\]\[\d+/{UUID}\] (Clone source code|Collect files data|Collect manifests|Create pipeline"
    r"|Check policies|Update project metrics|Analyze dependencies)",
    r"Failed to clone for repository [\w-]+\.",
    r'Failed to detect branch for repository "[\w-]+',
    r"\[\[SCA\]\[[\w-]+\] Analysis didn't start \(Reason: .+\)\]",
    r"Overall SCA run started for \d+ project\(s\)",
    rf"\(Run #{UUID}\) (Authors analysis (started|completed|failed\. Check server logs\.|cancelled)"
    r"|Collect commits data for project [\w-]+|Create authors|Load authors OSS contributions"
    r"|Clone source code for project [\w-]+|Analysis started via API)",
    r"Policy ignore .+ (created|activated)",
    r"To Policy ignore .+ added Policy .+",
    r'Policy ".+" \(id: \d+\) skipped\. Reason: .+',
    r"\[Secrets\]\[[\w-]+\] Analysis (started|finished|failed\. Check server logs\.)",
    r"\[Secrets\] Training run (started|finished|failed\. Check server logs\.)",
    r"In container image \S+ dependency .+ was changed",
    r"Updating images list for registry \S+ triggered via update button\.",
    r"Applying all LDAP group mapping rules triggered",
    r".+ While processing, failed to apply some of rules related to following LDAP servers: .+\. Check server logs\.",
    r"Could not connect to OSS Index, reason: .+",
    r"There is already running analysis",
    r"Another analysis in progress\. Parallel execution forbidden\.",
    r"Repo path for [\w-]+ does not exist, setting status to Not cloned",
]


def client(emulator: EmulatorProcess, headers: dict[str, str] | None = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, headers=headers, timeout=10)


def created(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["created_at"])


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorProcess]:
    emulator = running("codescoring", 45, {"span_s": 86400})
    yield emulator
    emulator.stop()


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [
        (None, 401, "Authentication credentials were not provided."),
        ("Bearer codescoring-test-token", 401, "Authentication credentials were not provided."),
        ("Token", 401, "Invalid token header. No credentials provided."),
        ("Token a b", 401, "Invalid token header. Token string should not contain spaces."),
        ("Token wrong-token", 401, "Invalid token."),
        ("token codescoring-test-token", 200, None),
        ("TOKEN codescoring-test-token", 200, None),
    ],
)
def test_token_authentication(shared: EmulatorProcess, authorization: str | None, status: int, message: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with client(shared, headers) as http:
        response = http.get(PATH)
    assert response.status_code == status
    if message:
        assert response.json() == {"detail": message}
        assert response.headers["WWW-Authenticate"] == "Token"


def test_pages_follow_absolute_links_newest_first(shared: EmulatorProcess) -> None:
    items: list[dict[str, Any]] = []
    bodies = []
    with client(shared) as http:
        url: str | None = f"{shared.url}{PATH}?per_page=20"
        while url:
            response = http.get(url)
            assert response.status_code == 200
            bodies.append(response.json())
            items += bodies[-1]["results"]
            url = bodies[-1]["next"]
        past_end = http.get(PATH, params={"per_page": 20, "page": 4})
        bad_page = http.get(PATH, params={"page": "two"})
        last = http.get(PATH, params={"per_page": 20, "page": "last"})
    assert [b["count"] for b in bodies] == [45, 45, 45]
    assert [len(b["results"]) for b in bodies] == [20, 20, 5]
    assert bodies[0]["previous"] is None
    assert bodies[0]["next"] == f"{shared.url}{PATH}?page=2&per_page=20"
    assert bodies[1]["previous"] == f"{shared.url}{PATH}?per_page=20"  # DRF drops page=1
    assert bodies[2]["previous"] == f"{shared.url}{PATH}?page=2&per_page=20"
    assert past_end.status_code == 404 and past_end.json() == {"detail": "Invalid page."}
    assert bad_page.status_code == 404
    assert last.json()["results"] == bodies[2]["results"]
    keys = [(created(i), i["id"]) for i in items]
    assert keys == sorted(keys, reverse=True)
    assert sorted(i["id"] for i in items) == sorted(e["id"] for e in shared.entries())


def test_per_page_maximum(start: Start) -> None:
    emulator = start("codescoring", 5)
    with client(emulator) as http:
        too_many = http.get(PATH, params={"per_page": 101})
        at_max = http.get(PATH, params={"per_page": 100})
        emulator.control("POST", "config", {"max_per_page": 10})
        over_new_max = http.get(PATH, params={"per_page": 20})
        default = http.get(PATH)
    assert too_many.status_code == 400
    assert "per_page" in too_many.json()
    assert at_max.status_code == 200 and at_max.json()["count"] == 5
    assert over_new_max.status_code == 400
    assert default.status_code == 200 and len(default.json()["results"]) == 5


def test_filters_by_time_actor_and_text(shared: EmulatorProcess) -> None:
    entries = sorted(shared.entries(), key=created)
    lo, hi = entries[10], entries[30]
    actor = next(e["actor"] for e in entries if e["actor"] != "system")
    params: dict[str, Any] = {"per_page": 100}
    with client(shared) as http:
        window = http.get(
            PATH, params={**params, "created_at_after": lo["created_at"], "created_at_before": hi["created_at"]}
        )
        utc_window = http.get(
            PATH,
            params={
                **params,
                "created_at_after": created(lo).astimezone(UTC).isoformat(),
                "created_at_before": created(hi).astimezone(UTC).isoformat(),
            },
        )
        by_actor = http.get(PATH, params={**params, "actor": actor})
        by_text = http.get(PATH, params={**params, "search": "sca"})
        invalid = http.get(PATH, params={"created_at_after": "last tuesday"})
    assert [i["id"] for i in window.json()["results"]] == [e["id"] for e in reversed(entries[10:31])]
    assert utc_window.json()["results"] == window.json()["results"]
    assert {i["id"] for i in by_actor.json()["results"]} == {e["id"] for e in entries if e["actor"] == actor}
    texts = [i["message"] for i in by_text.json()["results"]]
    assert texts and all("sca" in t.lower() for t in texts)
    assert len(texts) == sum("sca" in e["message"].lower() for e in entries)
    assert invalid.status_code == 400 and "created_at_after" in invalid.json()


def test_filter_names_and_presence_are_switches(start: Start) -> None:
    emulator = start("codescoring", 20)
    newest = max(emulator.entries(), key=created)["created_at"]
    with client(emulator) as http:
        emulator.control("POST", "config", {"after_param": "from"})
        renamed = http.get(PATH, params={"from": newest, "per_page": 100})
        old_name = http.get(PATH, params={"created_at_after": newest, "per_page": 100})
        emulator.control("POST", "config", {"filters_enabled": False})
        ignored = http.get(PATH, params={"from": newest, "per_page": 100})
    assert renamed.json()["count"] == 1
    assert old_name.json()["count"] == 20
    assert ignored.json()["count"] == 20


def test_switches_for_path_envelope_and_role(start: Start) -> None:
    emulator = start("codescoring", 7, {"config": {"path": "/api/settings/audit_log/", "bare_list": True}})
    with client(emulator) as http:
        default_path = http.get(PATH)
        no_slash = http.get("/api/settings/audit_log", params={"per_page": 5})
        bare = http.get("/api/settings/audit_log/", params={"per_page": 5})
        emulator.control("POST", "config", {"forbidden": True})
        forbidden = http.get("/api/settings/audit_log/")
    assert default_path.status_code == 404 and default_path.json() == {"detail": "Not found."}
    assert no_slash.status_code == 301
    assert no_slash.headers["Location"] == "/api/settings/audit_log/?per_page=5"
    assert isinstance(bare.json(), list) and len(bare.json()) == 7  # no paging without the envelope
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "You do not have permission to perform this action."}


def test_faults_and_posted_entries(start: Start) -> None:
    emulator = start("codescoring")
    emulator.control("POST", "entries", [{"actor": "jdoe", "message": "User logged in", "duration": None}])
    emulator.control(
        "POST", "faults", [{"status": 502, "body": "<html>Bad gateway</html>", "content_type": "text/html"}]
    )
    with client(emulator) as http:
        failed = http.get(PATH)
        served = http.get(PATH)
    assert failed.status_code == 502 and failed.text.startswith("<html>")
    results = served.json()["results"]
    assert [(r["actor"], r["message"]) for r in results] == [("jdoe", "User logged in")]
    assert emulator.entries()[0]["_org"] == "default"


def test_generated_entries_follow_the_seed(start: Start) -> None:
    options = {"orgs": ["onprem"], "end_ms": 1_780_000_000_123, "span_s": 7 * 86400}
    first, second = start("codescoring", 300, options), start("codescoring", 300, options)
    entries = first.entries()
    assert entries == second.entries()
    assert {e["_org"] for e in entries} == {"onprem"}
    unmatched = [e["message"] for e in entries if not any(re.fullmatch(p, e["message"]) for p in SEED_MESSAGES)]
    assert unmatched == []
    for entry in entries:
        assert set(entry) == {"id", "created_at", "actor", "message", "duration", "_org"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+03:00", entry["created_at"])
        assert created(entry).utcoffset() == timedelta(hours=3)
        assert entry["duration"] is None or isinstance(entry["duration"], float)
        assert re.fullmatch(r"[a-z]+", entry["actor"])
    messages = " ".join(e["message"] for e in entries)
    for marker in ("[SCA][", "(Run #", "User logged in", "Failed login attempt", "Object <", "Policy"):
        assert marker in messages
    assert any(e["actor"] == "system" for e in entries) and any(e["actor"] != "system" for e in entries)
    finished = [e for e in entries if e["message"].endswith("Analysis finished") and e["message"].startswith("[SCA]")]
    assert finished and all(isinstance(e["duration"], float) for e in finished)


def test_order_switch_serves_oldest_first(start: Start) -> None:
    emulator = start("codescoring", 25, {"config": {"order": "oldest_first"}})
    with client(emulator) as http:
        first = http.get(PATH, params={"per_page": 10}).json()["results"]
        last = http.get(PATH, params={"per_page": 10, "page": 3}).json()["results"]
        assert http.post("/_control/config", json={"order": "sideways"}).status_code == 400
        emulator.control("POST", "config", {"order": "newest_first"})
        newest = http.get(PATH, params={"per_page": 10}).json()["results"]
    oldest_first = sorted(emulator.entries(), key=lambda e: (created(e), e["id"]))
    assert [i["id"] for i in first] == [e["id"] for e in oldest_first[:10]]
    assert [i["id"] for i in last] == [e["id"] for e in oldest_first[20:]]
    assert [i["id"] for i in newest] == [e["id"] for e in oldest_first[::-1][:10]]
