"""The S3 sinks' botocore session keeps of ``endpoints.json`` only S3 and the credential chain's
services (``sinks.s3_endpoints``): the clients it builds resolve exactly as stock botocore's do,
and the endpoint data it holds for the client's life is the lean one."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import botocore.session
import orjson
import pytest
from botocore.config import Config

from sinks.s3 import S3Sink, S3SinkConfig
from sinks.s3_endpoints import KEPT_SERVICES, lean_endpoints, use_lean_loader

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1", "us-iso-east-1"]


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)


def described(client: Any) -> tuple[str, str, str, str]:
    meta = client.meta
    return meta.endpoint_url, meta.region_name, meta.partition, meta.service_model.signing_name


def stock_client(service: str, region: str, **options: Any) -> Any:
    return botocore.session.Session().create_client(service, region_name=region, **options)


def lean_client(service: str, region: str, **options: Any) -> Any:
    session = botocore.session.Session()
    use_lean_loader(session)
    return session.create_client(service, region_name=region, **options)


def held_endpoints(session: Any) -> dict[str, Any]:
    data: dict[str, Any] = session.get_component("data_loader").load_data("endpoints")
    return data


@pytest.mark.parametrize("region", REGIONS)
def test_the_sinks_client_resolves_as_stock_botocore(region: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sessions: list[Any] = []
    create_client = botocore.session.Session.create_client

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        sessions.append(self)
        return create_client(self, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", spy)
    sink = S3Sink("archive", S3SinkConfig(type="s3", bucket="bucket", region=region))
    ours = sink._make_client()
    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    assert all(set(p["services"]) <= KEPT_SERVICES for p in held_endpoints(sessions[0])["partitions"])
    stock = stock_client("s3", region, config=Config(s3={"addressing_style": "auto"}))
    try:
        assert described(ours) == described(stock)
        request = {"Bucket": "bucket", "Key": "k"}
        assert (
            ours.generate_presigned_url("get_object", request).split("?")[0]
            == stock.generate_presigned_url("get_object", request).split("?")[0]
        )
    finally:
        ours.close()
        stock.close()


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("service", ["sts", "sso", "sso-oidc"])
def test_the_credential_chains_clients_resolve_as_stock_botocore(service: str, region: str) -> None:
    ours, stock = lean_client(service, region), stock_client(service, region)
    try:
        assert described(ours) == described(stock)
    finally:
        ours.close()
        stock.close()


def test_fips_and_dual_stack_endpoints_resolve_as_stock_botocore() -> None:
    for options in ({"use_fips_endpoint": True}, {"use_dualstack_endpoint": True}):
        ours = lean_client("s3", "us-gov-west-1", config=Config(**options))
        stock = stock_client("s3", "us-gov-west-1", config=Config(**options))
        try:
            assert described(ours) == described(stock)
        finally:
            ours.close()
            stock.close()


def test_the_session_holds_only_the_kept_services() -> None:
    session = botocore.session.Session()
    use_lean_loader(session)
    session.create_client("s3", region_name="eu-west-1").close()
    held = held_endpoints(session)
    stock = held_endpoints(botocore.session.Session())
    assert [p["partition"] for p in held["partitions"]] == [p["partition"] for p in stock["partitions"]]
    for ours, theirs in zip(held["partitions"], stock["partitions"], strict=True):
        assert set(ours["services"]) == KEPT_SERVICES & set(theirs["services"])
        assert {k: v for k, v in ours.items() if k != "services"} == {
            k: v for k, v in theirs.items() if k != "services"
        }
    assert "ec2" in stock["partitions"][0]["services"]  # what is left out is there in the stock file


def test_aws_data_path_is_still_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = {"partitions": [{"partition": "test", "services": {"s3": {}, "ec2": {}}}], "version": 3}
    (tmp_path / "endpoints.json").write_bytes(orjson.dumps(custom))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    session = botocore.session.Session()
    use_lean_loader(session)
    held = held_endpoints(session)
    assert [p["partition"] for p in held["partitions"]] == ["test"]
    assert set(held["partitions"][0]["services"]) == {"s3"}


def test_anything_but_the_endpoints_file_is_left_as_it_is() -> None:
    assert lean_endpoints([1, 2]) == [1, 2]
    assert lean_endpoints({"version": 3}) == {"version": 3}
    odd = {"partitions": [{"partition": "aws", "services": ["s3"]}, "x"]}
    assert lean_endpoints(odd) == {"partitions": [{"partition": "aws", "services": ["s3"]}, "x"]}


def test_the_heap_the_data_files_freed_is_given_back_once_the_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    import sinks.s3_objects

    built: list[bool] = []
    create_client = botocore.session.Session.create_client

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(True)
        return create_client(self, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", spy)
    monkeypatch.setattr(sinks.s3_objects, "release_freed_heap", lambda: built.append(False))
    S3Sink("archive", S3SinkConfig(type="s3", bucket="bucket", region="eu-west-1"))._make_client().close()
    assert built == [True, False]  # after the build, not before


def _ordered_dicts(obj: Any) -> int:
    if isinstance(obj, dict):
        return isinstance(obj, OrderedDict) + sum(_ordered_dicts(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_ordered_dicts(v) for v in obj)
    return 0


def _documentation(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        own = [obj["documentation"]] if "documentation" in obj else []
        return own + [text for v in obj.values() for text in _documentation(v)]
    if isinstance(obj, list):
        return [text for v in obj for text in _documentation(v)]
    return []


def test_the_data_files_are_held_as_plain_dicts_and_the_model_without_its_documentation() -> None:
    """Half of the memory the S3 client holds for its life (docs/performance.md, round 11):
    botocore's OrderedDicts, and the service model's documentation text."""
    session = botocore.session.Session()
    use_lean_loader(session)
    client = session.create_client("s3", region_name="eu-west-1")
    try:
        model = client.meta.service_model
        held = model._service_description
        loader = session.get_component("data_loader")
        for data in (held, loader.load_service_model("s3", "endpoint-rule-set-1"), held_endpoints(session)):
            assert type(data) is dict and _ordered_dicts(data) == 0
        texts = _documentation(held)
        assert texts and set(texts) == {""}  # every documentation key kept, its text emptied
        assert held["clientContextParams"] and all("documentation" in p for p in held["clientContextParams"].values())
        assert client.put_object.__doc__ is not None  # docstrings still build, only without the prose
        stock = botocore.session.Session().create_client("s3", region_name="eu-west-1")
        try:
            theirs = stock.meta.service_model
            assert _documentation(theirs._service_description) != texts  # the stock model has the prose
            assert model.operation_names == theirs.operation_names
            for name in ("PutObject", "HeadObject", "GetObject", "HeadBucket", "ListObjectsV2"):
                ours_op, stock_op = model.operation_model(name), theirs.operation_model(name)
                assert ours_op.input_shape.members.keys() == stock_op.input_shape.members.keys()
                assert ours_op.output_shape.members.keys() == stock_op.output_shape.members.keys()
                assert ours_op.http == stock_op.http
        finally:
            stock.close()
    finally:
        client.close()


def _sent_put(client: Any) -> Any:
    """The PutObject request botocore would send, captured before it leaves the process."""
    from botocore.awsrequest import AWSResponse

    sent: list[Any] = []

    class Empty:
        def stream(self) -> Any:
            return iter([b""])

    def capture(request: Any, **_: Any) -> Any:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, Empty())

    client.meta.events.register("before-send.s3.PutObject", capture)
    client.put_object(
        Bucket="bucket",
        Key="source=x/2024/05/01/10/o.ndjson.gz",
        Body=b"abc",
        IfNoneMatch="*",
        ContentType="application/x-ndjson",
        ContentMD5="kAFQmDzST7DWlj99KOF/cg==",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="key",
        StorageClass="STANDARD_IA",
        Metadata={"event-count": "1"},
    )
    return sent[0]


def test_a_put_is_the_request_stock_botocore_sends() -> None:
    config = Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required")
    ours = lean_client("s3", "eu-west-1", config=config)
    stock = stock_client("s3", "eu-west-1", config=config)
    try:
        mine, theirs = _sent_put(ours), _sent_put(stock)
        varying = {"X-Amz-Date", "Authorization", "User-Agent", "amz-sdk-invocation-id", "amz-sdk-request"}
        assert (mine.method, mine.url, mine.body.getvalue()) == (theirs.method, theirs.url, theirs.body.getvalue())
        assert {k: v for k, v in mine.headers.items() if k not in varying} == {
            k: v for k, v in theirs.headers.items() if k not in varying
        }
    finally:
        ours.close()
        stock.close()


def test_a_file_format_it_does_not_read_is_left_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    import sinks.s3_endpoints

    monkeypatch.setattr(sinks.s3_endpoints, "_OPENERS", ())  # as if botocore shipped a newer format
    session = botocore.session.Session()
    use_lean_loader(session)
    held = held_endpoints(session)
    assert all(set(p["services"]) <= KEPT_SERVICES for p in held["partitions"])  # still cut
    assert isinstance(session.get_component("data_loader").load_service_model("s3", "service-2"), OrderedDict)


@pytest.mark.parametrize(
    ("endpoint_url", "warned"),
    [
        ("http://minio.example.net:9000", True),  # events (and signed requests) readable on the path
        ("https://minio.example.net:9000", False),
        ("http://127.0.0.1:9000", False),  # loopback: nothing crosses a network
        (None, False),
    ],
)
def test_a_plain_http_endpoint_to_another_machine_is_warned_of(endpoint_url: str | None, warned: bool) -> None:
    """Like the HTTP sinks' URLs (README: `insecure transport` at start, `WARN` in `check`), for the
    object sinks too (`security_lake` shares the setting)."""
    from sinks.security_lake.config import SecurityLakeSinkConfig

    s3 = S3SinkConfig(type="s3", bucket="bucket", endpoint_url=endpoint_url)
    lake = SecurityLakeSinkConfig(
        type="security_lake", bucket="bucket", account_id="123456789012", endpoint_url=endpoint_url
    )
    for config in (s3, lake):
        warnings = config.transport_warnings()
        assert bool(warnings) is warned, warnings
        assert all("endpoint_url http://minio.example.net is plain HTTP" in w for w in warnings)
