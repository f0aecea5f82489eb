"""The Security Lake sink against moto's S3 server: custom-source layout, Parquet as the guide
asks, rows valid against the official OCSF 1.1.0 schema, create-only replays, the check probe,
and the optional extra kept out of the base install."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from forwarder.evidence.chain import START, link
from forwarder.formats import ocsf
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError
from sinks.security_lake.config import SecurityLakeSinkConfig
from sinks.security_lake.parquet import PAGE_BYTES, class_schema, to_parquet, unknown_attributes
from sinks.security_lake.sink import CLASS_NAMES, SecurityLakeSink
from tests.formats.test_hostile import HOSTILE, hostile_event
from tests.formats.test_ocsf import SHAPES
from tests.sinks.test_s3_moto import aws_env, s3_client  # noqa: F401
from tests.support.moto_server import MotoServer, moto_server  # noqa: F401
from tests.support.ocsf_schema import official
from tests.support.security_lake_objects import _page_sizes, read_lake
from tests.support.sts import StsEndpoint

pytestmark = pytest.mark.integration
ACCOUNT = "123456789012"


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:  # noqa: F811
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client(moto_server.endpoint_url).create_bucket(Bucket=name)
    return name


def make_sink(endpoint_url: str, bucket: str, **options: Any) -> SecurityLakeSink:
    config = SecurityLakeSinkConfig.model_validate(
        {
            "type": "security_lake",
            "bucket": bucket,
            "endpoint_url": endpoint_url,
            "force_path_style": True,
            "account_id": ACCOUNT,
            "region": "us-east-1",
            **options,
        }
    )
    return SecurityLakeSink("lake", config)


EVENTS = [{**event, "id": f"{event['id']}-{i}"} for i, event in enumerate(SHAPES[::5])]
"""Every class, with unique ids (the shapes share theirs)."""


def records() -> list[Record]:
    return [record_of(event, seq) for seq, event in enumerate(EVENTS, start=1)]


def test_the_class_names_are_the_official_ones() -> None:
    export = official("1.1.0").schema
    for class_uid, name in CLASS_NAMES.items():
        assert export.lookup_class_name_from_uid(class_uid) == name


def chained_shapes() -> list[dict[str, Any]]:
    """Every shape as the poller journals it: linked into one stream's hash chain."""
    head, out = START, []
    for i, shape in enumerate(SHAPES):
        event = {**shape, "id": f"{shape['id']}-{i}"}
        head = link(event, head)
        out.append(event)
    return out


def test_the_parquet_schema_holds_every_attribute_the_mapping_emits() -> None:
    for event in chained_shapes():
        doc = ocsf.ocsf_event(event, version="1.1.0")
        assert doc["metadata"]["sequence"] == event["chain"]["seq"]  # the chain fields are among them
        assert not unknown_attributes(doc, class_schema("1.1.0", doc["class_uid"])[1])


def test_the_chain_survives_the_parquet_round_trip() -> None:
    """The seq in the ``metadata.sequence`` column, the whole link in ``unmapped`` (JSON text)."""
    by_class: dict[int, list[dict[str, Any]]] = {}
    for event in chained_shapes():
        doc = ocsf.ocsf_event(event, version="1.1.0")
        by_class.setdefault(doc["class_uid"], []).append(doc)
    assert set(by_class) == set(CLASS_NAMES)
    for class_uid, docs in by_class.items():
        rows = pq.read_table(io.BytesIO(to_parquet(docs, "1.1.0", class_uid))).to_pylist()
        assert [row["metadata"]["sequence"] for row in rows] == [doc["metadata"]["sequence"] for doc in docs]
        assert [orjson.loads(row["unmapped"])["chain"] for row in rows] == [doc["unmapped"]["chain"] for doc in docs]


async def test_object_lock_and_sha256_checksums_reach_every_object(
    moto_server: MotoServer,  # noqa: F811
) -> None:
    """The shared object writer's Object Lock: a lock-enabled bucket refuses a PUT without a
    checksum, so every object goes with its SHA-256 and the lock."""
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client = s3_client(moto_server.endpoint_url)
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    sink = make_sink(moto_server.endpoint_url, name, object_lock={"mode": "GOVERNANCE", "retain_days": 1})
    await sink.start()
    try:
        await sink.send(records())
    finally:
        await sink.close()
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=name)["Contents"]]
    assert len({key.split("/")[1] for key in keys}) == 6  # every class
    for key in keys:
        head = client.head_object(Bucket=name, Key=key, ChecksumMode="ENABLED")
        assert head["ObjectLockMode"] == "GOVERNANCE" and head["ChecksumSHA256"], key


async def test_a_batch_lands_as_the_guide_asks_and_a_replay_stores_nothing_new(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
) -> None:
    sink = make_sink(moto_server.endpoint_url, bucket)
    batch = records()
    await sink.start()
    try:
        await sink.send(batch)
        client = s3_client(moto_server.endpoint_url)
        first = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
        documents = read_lake(client, bucket, "audit-forwarder-{class_uid}", "us-east-1", ACCOUNT)
        await sink.send(batch)  # a crash replay: the same keys, 412, nothing new
        again = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    finally:
        await sink.close()
    assert again == first
    assert len({key.split("/")[1] for key in first}) == len({doc["class_uid"] for doc in documents}) == 6
    want = {event["id"]: ocsf.ocsf_event(event, version="1.1.0") for event in EVENTS}
    assert sorted(doc["metadata"]["uid"] for doc in documents) == sorted(want)
    for doc in documents:  # the round trip loses nothing the mapping made
        assert doc == want[doc["metadata"]["uid"]]


async def test_a_versioned_custom_source_gets_its_objects_under_its_version(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
) -> None:
    """A custom source created with a ``sourceVersion`` has the location ``ext/{name}/{version}/``
    (CreateCustomLogSource's ``provider.location``); its role may write only there, and its crawler
    reads only there."""
    sink = make_sink(moto_server.endpoint_url, bucket, source_version="1.0")
    try:
        said = await sink.check()
        assert f"s3://{bucket}/ext/audit-forwarder-6003/1.0/ writable" in said
        await sink.send(records())
    finally:
        await sink.close()
    client = s3_client(moto_server.endpoint_url)
    documents = read_lake(client, bucket, "audit-forwarder-{class_uid}", "us-east-1", ACCOUNT, version="1.0")
    assert sorted(doc["metadata"]["uid"] for doc in documents) == sorted(event["id"] for event in EVENTS)


ROLE = "arn:aws:iam::123456789012:role/AmazonSecurityLake-Provider-af6003-us-east-1"


def role_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sts: StsEndpoint) -> None:
    """The custom source's provider role, assumed with its external id through a profile (the
    documented way); the base keys in the credentials file, none in the environment (they would
    win over the profile)."""
    (tmp_path / "config").write_text(
        f"[profile lake]\nrole_arn = {ROLE}\nexternal_id = ext-42\nsource_profile = base\n"
    )
    (tmp_path / "credentials").write_text(
        "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = base-secret-never-shown\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "lake")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


async def test_the_provider_role_is_assumed_again_as_its_credentials_expire(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with StsEndpoint(lifetime_s=60) as sts:  # within botocore's refresh window at once
        role_profile(monkeypatch, tmp_path, sts)
        sink = make_sink(moto_server.endpoint_url, bucket)
        try:
            for batch in (records()[:3], records()[3:]):  # a long run: each batch after the last expired
                await sink.send(batch)
        finally:
            await sink.close()
        assumed = sts.assumed()
    monkeypatch.delenv("AWS_PROFILE")  # read back with the test's own keys
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert len(assumed) >= 2 and {(a["RoleArn"], a["ExternalId"]) for a in assumed} == {(ROLE, "ext-42")}
    client = s3_client(moto_server.endpoint_url)
    documents = read_lake(client, bucket, "audit-forwarder-{class_uid}", "us-east-1", ACCOUNT)
    assert sorted(doc["metadata"]["uid"] for doc in documents) == sorted(event["id"] for event in EVENTS)


async def test_a_refused_role_assumption_says_so_not_that_s3_refused(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with StsEndpoint() as sts:
        role_profile(monkeypatch, tmp_path, sts)
        sts.refuse = f"User: arn:aws:iam::123456789012:user/fwd is not authorized to perform: sts:AssumeRole on {ROLE}"
        sink = make_sink(moto_server.endpoint_url, bucket)
        try:
            with pytest.raises(FatalSinkError) as refused:
                await sink.send(records())
            with pytest.raises(FatalSinkError) as checked:
                await sink.check()
        finally:
            await sink.close()
    for message in (str(refused.value), str(checked.value)):
        assert "AssumeRole" in message and "AccessDenied" in message and "trust policy" in message, message
        assert "external id" in message and "s3:PutObject" not in message, message
        assert "base-secret-never-shown" not in message
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert "Contents" not in s3_client(moto_server.endpoint_url).list_objects_v2(Bucket=bucket)


def test_a_large_column_is_cut_into_pages_of_about_a_megabyte() -> None:
    event = dict(SHAPES[0])
    docs = []
    for i in range(3000):
        doc = ocsf.ocsf_event({**event, "id": f"e{i}", "message": f"{i:08d}" + "x" * 2000}, version="1.1.0")
        docs.append(doc)
    body = to_parquet(docs, "1.1.0", docs[0]["class_uid"])
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    (column,) = [i for i in range(meta.num_columns) if meta.row_group(0).column(i).path_in_schema == "message"]
    assert meta.schema.to_arrow_schema().field("message").type == pa.string()
    sizes = _page_sizes(body, column)
    assert len(sizes) > 3 and max(sizes) <= PAGE_BYTES


async def test_check_probes_the_prefix_and_names_a_missing_bucket(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
) -> None:
    sink = make_sink(moto_server.endpoint_url, bucket)
    try:
        said = await sink.check()
        assert f"s3://{bucket}/ext/audit-forwarder-6003/ writable" in said
        assert "Contents" not in s3_client(moto_server.endpoint_url).list_objects_v2(Bucket=bucket)  # cleaned up
    finally:
        await sink.close()
    missing = make_sink(moto_server.endpoint_url, f"{bucket}-gone")
    try:
        with pytest.raises(FatalSinkError, match="NoSuchBucket"):
            await missing.check()
    finally:
        await missing.close()


async def test_a_missing_bucket_stops_the_sink_under_its_own_type_and_a_later_run_delivers(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
) -> None:
    """The operator reads which sink failed: a Security Lake sink's error says so, not "s3 sink"."""
    missing = f"{bucket}-later"
    sink = make_sink(moto_server.endpoint_url, missing)
    try:
        with pytest.raises(FatalSinkError) as refused:
            await sink.send(records())
        assert str(refused.value).startswith("security_lake sink lake: PutObject")
        assert "NoSuchBucket" in str(refused.value)
        s3_client(moto_server.endpoint_url).create_bucket(Bucket=missing)
        await sink.send(records())
    finally:
        await sink.close()
    client = s3_client(moto_server.endpoint_url)
    documents = read_lake(client, missing, "audit-forwarder-{class_uid}", "us-east-1", ACCOUNT)
    assert sorted(doc["metadata"]["uid"] for doc in documents) == sorted(event["id"] for event in EVENTS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source_name": "one-source"}, "one class per source"),
        ({"source_name": "bad name {class}"}, "letters, digits"),
        # CreateCustomLogSource: a custom source's name is at most 20 characters
        ({"source_name": "audit-forwarder-{class}"}, "at most 20 characters"),
        ({"source_name": "audit-forwarder-x{class_uid}"}, "at most 20 characters"),
        ({"format_options": {"version": "1.8.0"}}, "writes OCSF 1.1.0"),
        ({"batch_max_age_s": 60}, "greater than or equal to 300"),
        ({"batch_max_age_s": 90_000}, "less than or equal to 86400"),
        ({"format": "json"}, "ocsf"),
        ({"account_id": "a/b"}, "account id"),
        ({"source_version": "1.0/x"}, "sourceVersion"),
        ({"source_version": "v" * 33}, "sourceVersion"),
        # the digests list NDJSON lines and `evidence verify` reads them: not Parquet (docs/evidence.md)
        ({"evidence": {"signing_key_file": "/k"}}, "Extra inputs are not permitted"),
    ],
)
def test_settings_that_break_the_guide_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_sink("http://127.0.0.1:1", "lake-bucket", **options)


def test_the_base_install_does_not_load_pyarrow() -> None:
    """The registry lists the sink without importing pyarrow (extra ``security-lake``)."""
    code = "import sys, sinks.registry, forwarder.cli; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_check_says_when_the_extra_is_missing(tmp_path: Path) -> None:
    """pyarrow hidden from the interpreter: ``check`` names the extra to install."""
    (tmp_path / "pyarrow").mkdir()
    (tmp_path / "pyarrow" / "__init__.py").write_text("raise ImportError('hidden', name='pyarrow')\n")
    code = (
        "import asyncio\n"
        "from sinks.security_lake.config import SecurityLakeSinkConfig\n"
        "from sinks.security_lake.sink import SecurityLakeSink\n"
        "c = SecurityLakeSinkConfig(type='security_lake', bucket='lake-bucket', account_id='1')\n"
        "try:\n"
        "    asyncio.run(SecurityLakeSink('lake', c).check())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "FatalSinkError" in out.stdout and "audit-forwarder[security-lake]" in out.stdout, out.stdout + out.stderr


def test_boto3_is_the_client(bucket: str) -> None:
    assert boto3.__name__ == "boto3" and bucket.startswith("lake-")


def test_the_end_of_a_poll_does_not_send_a_small_batch_early() -> None:
    """Security Lake wants objects at most every five minutes: the poll-end flush other sinks get
    is skipped, and only a ``once`` run's final flush (force) sends a small batch at once."""
    from forwarder.delivery import SinkWorker
    from forwarder.retry import RetrySettings

    config = make_sink("http://127.0.0.1:1", "lake-bucket").config
    journal = type("J", (), {"head": 42})()
    worker = SinkWorker("lake", SecurityLakeSink("lake", config), config, journal, RetrySettings())  # type: ignore[arg-type]
    worker.flush()
    assert worker.flush_upto == 0 and not worker.wakeup.is_set()
    worker.flush(force=True)
    assert worker.flush_upto == 42 and worker.wakeup.is_set()


@given(
    st.lists(
        st.one_of(HOSTILE, st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.booleans()),
        min_size=14,
        max_size=14,
    )
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_values_never_make_a_batch_that_cannot_be_written(values: list[Any]) -> None:
    """Numbers and booleans where OCSF has strings, huge and nasty text: the object is still
    written and its rows read back."""
    event = hostile_event([str(v) for v in values[:3]] + values[3:])  # type: ignore[list-item]
    doc = ocsf.ocsf_event(event, version="1.1.0")
    body = to_parquet([doc], "1.1.0", doc["class_uid"])
    row = pq.read_table(io.BytesIO(body)).to_pylist()[0]
    assert row["class_uid"] == doc["class_uid"] and row["time"] == doc["time"]
