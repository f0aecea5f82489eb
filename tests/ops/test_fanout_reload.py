"""The whole product at once, as a customer runs it: four vendors and an ``http_json`` source
fanned out to a file sink per format, rsyslog, a HEC receiver and moto S3, with filters, through
reloads, a receiver outage and a restart.

Each sink's expected events are worked out from the outside, from what the unfiltered NDJSON
sink holds and the filter rules of docs/formats.md, and compared with what each receiver
actually holds (rsyslog's capture file, the HEC receiver's entries, the S3 objects, the files).
The reload's effects are the README's ("What a reload's changes receive").
"""

from __future__ import annotations

import csv
import gzip
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.daemon import daemon, write_config
from tests.support.emulators import EmulatorProcess, running_all
from tests.support.health import get, health, metric
from tests.support.ports import free_port
from tests.support.receivers import AWS_ENV, Receivers, events_in_hec, hec_sink
from tests.support.vendors import VENDORS, configcat_as_http_json, entry_keys
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SECURITY = ["authentication", "access_management", "user_management"]
S3_BATCH = 10
HEC_BATCH = 5


@pytest.fixture
def emulators() -> Iterator[dict[str, EmulatorProcess]]:
    with running_all(6, {name: vendor.options for name, vendor in VENDORS.items()}) as started:
        yield started


# --- what each receiver holds, by event id ---------------------------------------------------
def file_ids(directory: Path, fmt: str) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in sorted(directory.glob("*")) if directory.exists() else []:
        text = path.read_text()
        if fmt == "csv":
            ids.update(row["id"] for row in csv.DictReader(text.splitlines()))
            continue
        for line in text.splitlines():
            if fmt == "json":
                ids[orjson.loads(line)["id"]] += 1
            elif fmt == "ecs":
                ids[orjson.loads(line)["event"]["id"]] += 1
            elif fmt == "ocsf":
                ids[orjson.loads(line)["metadata"]["uid"]] += 1
            else:  # cef: the whole id in flexString1 when externalId had to be cut; leef: externalId
                found = re.search(r"flexString1=(\S+)", line) or re.search(r"externalId=([^\t ]+)", line)
                assert found, line
                ids[found.group(1)] += 1
    return ids


def s3_objects(receivers: Receivers) -> list[list[str]]:
    client = receivers.s3()
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=receivers.bucket):
        for item in page.get("Contents", []):
            body = gzip.decompress(client.get_object(Bucket=receivers.bucket, Key=item["Key"])["Body"].read())
            objects.append([orjson.loads(line)["id"] for line in body.splitlines() if line])
    return objects


# --- the filter rules of docs/formats.md, applied from the outside ---------------------------
def matches(event: dict[str, Any], entry: dict[str, Any]) -> bool:
    for field, values in entry.items():
        values = values if isinstance(values, list) else [values]
        if field in ("category", "outcome"):
            if event[field] not in values:
                return False
        elif not any(fnmatchcase(event[field] or "", glob) for glob in values):
            return False
    return True


def routed(event: dict[str, Any], rule: dict[str, Any] | None) -> bool:
    if not rule:
        return True
    include, exclude = rule.get("include"), rule.get("exclude")
    if include is not None and not any(
        matches(event, e) for e in (include if isinstance(include, list) else [include])
    ):
        return False
    return not (
        exclude is not None and any(matches(event, e) for e in (exclude if isinstance(exclude, list) else [exclude]))
    )


def test_every_source_reaches_every_routed_sink_through_reloads_an_outage_and_a_restart(
    tmp_path: Path, emulators: dict[str, EmulatorProcess], receivers: Receivers
) -> None:
    assert receivers.hec is not None
    hec = receivers.hec
    port = free_port()
    out = tmp_path / "out"
    configcat = emulators["configcat"]

    def file_sink(name: str, fmt: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "file",
            "format": fmt,
            "path": str(out / name / "{source}.log"),
            "batch_max_age_s": 0.1,
            **extra,
        }

    # the same ConfigCat log described in YAML alone, under a vendor name of its own
    mirror = {**configcat_as_http_json(configcat.url), "vendor": "configcat_yaml", "interval_s": 1, "jitter_s": 0}
    sources: dict[str, Any] = {name: VENDORS[name].source(emulators[name].url) for name in VENDORS}
    sources["mirror"] = {**mirror, "initial_lookback_days": 7}
    filters: dict[str, dict[str, Any]] = {
        "ecs": {"include": {"source": ["codacy", "configcat"]}},
        "ocsf": {"exclude": {"vendor": "codestax"}},
        "cef": {"include": [{"category": SECURITY}, {"outcome": ["failure"]}]},
        "leef": {"include": {"organization": "gh/*"}},
        "csv": {"exclude": {"source": "mirror", "action": "*.create*"}},
        "syslog": {"exclude": {"source": "mirror"}},
    }
    sinks: dict[str, Any] = {
        "json": file_sink("json", "json"),
        **{fmt: file_sink(fmt, fmt, filter=filters[fmt]) for fmt in ("ecs", "ocsf", "cef", "leef", "csv")},
        "syslog": {**receivers.sinks()["syslog"], "filter": filters["syslog"]},
        "hec": hec_sink(hec.url, batch_max_events=HEC_BATCH),
        "s3": {**receivers.sinks()["s3"], "batch_max_events": S3_BATCH, "batch_max_age_s": 0.5},
    }
    config: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "shutdown_timeout_s": 10,
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.3},
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "sources": sources,
        "sinks": sinks,
    }
    cfg = write_config(tmp_path / "config.yaml", config)

    def holds(name: str) -> Counter[str]:
        if name == "syslog":
            return Counter(orjson.loads(r["msg"].removeprefix("\ufeff"))["id"] for r in receivers.rsyslog.records())
        if name == "hec":
            return Counter(e["id"] for e in events_in_hec(hec))
        if name == "s3":
            return Counter(i for ids in s3_objects(receivers) for i in ids)
        fmt = sinks[name]["format"] if name in sinks else "json"
        return file_ids(out / name, fmt)

    def truth() -> dict[str, dict[str, Any]]:
        """The unfiltered NDJSON sink's events; checked against the vendors below."""
        return {
            e["id"]: e
            for e in (orjson.loads(line) for p in (out / "json").glob("*") for line in p.read_bytes().splitlines())
        }

    def vendor_ids() -> set[str]:
        want = set().union(*(entry_keys(emulators[name], name) for name in VENDORS))
        return want | {f"configcat_yaml:{e['auditLogId']}" for e in configcat.entries()}

    def more(n: int) -> None:
        for name, vendor in VENDORS.items():
            emulators[name].control("POST", "entries", {"generate": n, "span_s": 2, **vendor.generate})

    def collected() -> Callable[[], bool]:
        return lambda: (
            set(truth()) == vendor_ids() and all(not s["lag_events"] for s in health(port)[1]["sinks"].values())
        )

    def expect(name: str, events: dict[str, dict[str, Any]], rule: dict[str, Any] | None) -> set[str]:
        return {i for i, e in events.items() if routed(e, rule)}

    with daemon(cfg, env=AWS_ENV) as proc:
        more(4)
        wait_until("every entry in every sink", collected(), detail=proc.log)
        before_outage = truth()
        wait_until("the journal pruned", lambda: health(port)[1]["journal"]["events"] == 0, detail=proc.log)

        # the HEC receiver refuses: it falls behind and holds the journal, the others carry on
        hec.control("POST", "faults", {"status": 503, "count": 1_000_000})
        more(3)
        wait_until("the outage's entries", lambda: set(truth()) == vendor_ids(), detail=proc.log)
        backlog = set(truth()) - set(before_outage)
        answer = wait_until(
            "HEC behind by the backlog",
            lambda: (a := health(port)[1])["sinks"]["hec"]["lag_events"] == len(backlog) and a,
            detail=proc.log,
        )
        assert answer["sinks"]["hec"]["state"] == "retrying" and answer["sinks"]["hec"]["failing_since"], answer
        assert all(s["lag_events"] == 0 for name, s in answer["sinks"].items() if name != "hec"), answer
        metrics = get(f"http://127.0.0.1:{port}/metrics").text
        assert metric(metrics, "audit_forwarder_sink_lag_events", sink="hec") == len(backlog)
        assert metric(metrics, "audit_forwarder_sink_failing", sink="hec") == 1
        assert metric(metrics, "audit_forwarder_sink_failing", sink="json") == 0
        for name in sources:
            for org, state in answer["sources"][name].items():
                assert state["state"] == "ok" and state["last_success"], (name, org, state)

        # a broken file and an unknown key are refused; the running configuration carries on
        cfg.write_text(cfg.read_text() + "sinks: [unclosed\n")
        proc.signal(signal.SIGHUP)
        wait_until("the YAML refusal", lambda: proc.log().count("configuration reload refused") == 1)
        write_config(cfg, {**config, "sinks": {**sinks, "json": {**sinks["json"], "batch_max_evnets": 3}}})
        proc.signal(signal.SIGHUP)
        wait_until("the key refusal", lambda: proc.log().count("configuration reload refused") == 2)
        refusals = [orjson.loads(line) for line in proc.log().splitlines() if "reload refused" in line]
        assert "not valid YAML" in refusals[0]["problems"][0], refusals
        assert refusals[1]["problems"][0].startswith("line "), refusals
        assert "sinks.json.batch_max_evnets: unknown key" in refusals[1]["problems"][0], refusals
        assert set(health(port)[1]["sinks"]) == set(sinks)

        # add a sink, remove one, change a filter, add an organization
        emulators["codacy"].control("POST", "entries", {"generate": 3, "orgs": ["gh/initech"], "span_s": 2})
        sources["codacy"] = {**sources["codacy"], "organizations": [*sources["codacy"]["organizations"], "gh/initech"]}
        old_ecs = filters["ecs"]
        new_sinks = {k: v for k, v in sinks.items() if k != "leef"}
        new_sinks["ecs"] = {**sinks["ecs"], "filter": {"include": {"source": "codestax"}}}
        new_sinks["late"] = file_sink("late", "json")
        write_config(cfg, {**config, "sources": sources, "sinks": new_sinks})
        before_reload = truth()
        proc.signal(signal.SIGHUP)
        wait_until("the reload", lambda: "configuration reloaded" in proc.log(), detail=proc.log)
        reloaded = orjson.loads(next(line for line in proc.log().splitlines() if "configuration reloaded" in line))
        assert reloaded["sinks_started"] == ["late"] and reloaded["sinks_stopped"] == ["leef"], reloaded
        assert reloaded["sinks_rebuilt"] == ["ecs"] and reloaded["sources_restarted"] == ["codacy"], reloaded
        wait_until("the new organization", lambda: set(truth()) == vendor_ids(), detail=proc.log)
        hec.control("DELETE", "faults")
        more(2)
        wait_until("every entry in every sink", collected(), detail=proc.log)
        assert proc.stop() == 0, proc.log()[-3000:]
    stopped = {name: holds(name) for name in (*new_sinks, "leef")}

    # a restart resumes: nothing lost, nothing sent again
    with daemon(cfg, env=AWS_ENV) as proc:
        more(2)
        wait_until("every entry in every sink after the restart", collected(), detail=proc.log)
        assert proc.stop() == 0, proc.log()[-3000:]
    everything = truth()
    assert set(everything) == vendor_ids()
    assert {e["source"] for e in everything.values()} == {*VENDORS, "mirror"}
    assert any(e["organization"] == "gh/initech" for e in everything.values())
    after_reload = {i: e for i, e in everything.items() if i not in before_reload}
    want = {name: expect(name, everything, filters.get(name)) for name in new_sinks}
    want["ecs"] = expect("ecs", before_reload, old_ecs) | expect("ecs", after_reload, new_sinks["ecs"]["filter"])
    want["leef"] = expect("leef", before_reload, filters["leef"])
    # the added sink: the backlog HEC still held when it was added, and everything since
    want["late"] = backlog | set(after_reload)
    assert backlog and not set(before_outage) & want["late"]
    for name, ids in want.items():
        got = holds(name)
        assert set(got) == ids, f"{name}: missing {sorted(ids - set(got))[:5]}, unwanted {sorted(set(got) - ids)[:5]}"
        assert max(got.values()) == 1, f"{name} holds an event twice: {got.most_common(3)}"
        if name in stopped:
            assert all(got[i] == n for i, n in stopped[name].items()), f"{name}: the restart sent again"
    assert all(0 < len(ids) <= S3_BATCH for ids in s3_objects(receivers))
    assert any(len(ids) > 1 for ids in s3_objects(receivers))  # batched, not one object per event
