"""``<field>_from``: secrets read from AWS Secrets Manager and SSM Parameter Store, against a
real moto server on loopback (``tests/helpers/moto_server.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from forwarder import secret_stores
from forwarder.settings import ConfigError, load_settings, reread_secrets
from tests.support.daemon import write_config
from tests.support.moto_server import MotoServer, moto_server  # noqa: F401 (fixture)

REGION = "us-east-1"
PLAIN = "sm-plain-token-4f1d9a"
IN_JSON = "sm-json-token-8c2e77"
HEC = "0f2a7c1e-ssm-hec-token-93b1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from boto3's standard chain (here the environment); moto accepts any."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def stores(moto_server: MotoServer) -> Iterator[MotoServer]:  # noqa: F811
    kwargs: dict[str, Any] = {
        "endpoint_url": moto_server.endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sm = boto3.client("secretsmanager", **kwargs)
    sm.create_secret(Name="codacy/plain", SecretString=PLAIN)
    sm.create_secret(Name="codacy/json", SecretString=json.dumps({"token": IN_JSON, "user": "svc"}))
    sm.create_secret(Name="not-json", SecretString="plain-value-not-json-5521")
    ssm = boto3.client("ssm", **kwargs)
    ssm.put_parameter(Name="/audit/hec-token", Value=HEC, Type="SecureString")
    yield moto_server


def sm_ref(moto: MotoServer, secret_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "aws_secrets_manager": {"secret_id": secret_id, "region": REGION, "endpoint_url": moto.endpoint_url, **extra}
    }


def codacy(token_from: dict[str, Any]) -> dict[str, Any]:
    return {"type": "codacy", "organizations": ["gh/acme"], "api_token_from": token_from}


def config(tmp_path: Path, sources: dict[str, Any], sinks: dict[str, Any] | None = None) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": sources,
            "sinks": sinks or {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
        },
    )


def problems(path: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, **kwargs)
    return "\n".join(caught.value.problems)


def test_source_tokens_from_secrets_manager_plain_and_json_key(tmp_path: Path, stores: MotoServer) -> None:
    path = config(
        tmp_path,
        {
            "plain": codacy(sm_ref(stores, "codacy/plain")),
            "keyed": codacy(sm_ref(stores, "codacy/json", json_key="token")),
        },
    )
    settings = load_settings(path)
    assert settings.sources["plain"].api_token.get_secret_value() == PLAIN  # type: ignore[attr-defined]
    assert settings.sources["keyed"].api_token.get_secret_value() == IN_JSON  # type: ignore[attr-defined]
    assert settings.stored_secrets == {
        "AWS Secrets Manager secret 'codacy/plain'",
        "AWS Secrets Manager secret 'codacy/json'",
    }
    # the values join the redaction set like any secret (logs, check, /readyz, dlq)
    assert {PLAIN, IN_JSON} <= secret_stores_secrets(settings)


def secret_stores_secrets(settings: Any) -> set[str]:
    from forwarder.secrets import collect_secrets

    return collect_secrets(settings)


def test_sink_token_from_an_ssm_securestring(tmp_path: Path, stores: MotoServer) -> None:
    hec = {
        "type": "splunk_hec",
        "url": "https://127.0.0.1:8088",
        "token_from": {
            "aws_ssm_parameter": {"name": "/audit/hec-token", "region": REGION, "endpoint_url": stores.endpoint_url}
        },
    }
    path = config(tmp_path, {"plain": codacy(sm_ref(stores, "codacy/plain"))}, {"hec": hec})
    settings = load_settings(path)
    assert settings.sinks["hec"].token.get_secret_value() == HEC  # type: ignore[attr-defined]
    assert "SSM parameter '/audit/hec-token'" in settings.stored_secrets


def test_a_rotated_secret_is_read_again_without_the_file(tmp_path: Path, stores: MotoServer) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=stores.endpoint_url, region_name=REGION)
    sm.create_secret(Name="codacy/rotating", SecretString="before-rotation-1111")
    path = config(tmp_path, {"codacy": codacy(sm_ref(stores, "codacy/rotating"))})
    settings = load_settings(path)
    sm.put_secret_value(SecretId="codacy/rotating", SecretString="after-rotation-2222")
    path.write_text("not: [valid")  # an edit not yet SIGHUPed must not apply with the re-read
    fresh = reread_secrets(settings)
    assert fresh.sources["codacy"].api_token.get_secret_value() == "after-rotation-2222"  # type: ignore[attr-defined]


def test_a_missing_secret_is_named_with_the_aws_error(tmp_path: Path, stores: MotoServer) -> None:
    text = problems(config(tmp_path, {"codacy": codacy(sm_ref(stores, "codacy/absent"))}))
    assert "sources.codacy: api_token_from: AWS Secrets Manager secret 'codacy/absent'" in text
    assert "ResourceNotFoundException" in text and "check the name and the region" in text


def test_a_missing_parameter_is_named_with_the_aws_error(tmp_path: Path, stores: MotoServer) -> None:
    hec = {
        "type": "splunk_hec",
        "url": "https://127.0.0.1:8088",
        "token_from": {
            "aws_ssm_parameter": {"name": "/audit/absent", "region": REGION, "endpoint_url": stores.endpoint_url}
        },
    }
    text = problems(config(tmp_path, {}, {"hec": hec}))
    assert "sinks.hec: token_from: SSM parameter '/audit/absent'" in text and "ParameterNotFound" in text


def test_json_key_problems_name_the_secret_never_the_value(tmp_path: Path, stores: MotoServer) -> None:
    text = problems(config(tmp_path, {"codacy": codacy(sm_ref(stores, "not-json", json_key="token"))}))
    assert "secret 'not-json' is not a JSON object" in text
    assert "plain-value-not-json-5521" not in text
    text = problems(config(tmp_path, {"codacy": codacy(sm_ref(stores, "codacy/json", json_key="password"))}))
    assert "has no key 'password' (its keys: token, user)" in text
    assert IN_JSON not in text and "svc" not in text


def test_a_malformed_reference_says_what_is_expected(tmp_path: Path, stores: MotoServer) -> None:
    both = {**sm_ref(stores, "codacy/plain"), "aws_ssm_parameter": {"name": "/x"}}
    assert "exactly one of aws_secrets_manager or aws_ssm_parameter" in problems(
        config(tmp_path, {"codacy": codacy(both)})
    )
    typo = {"aws_secrets_manager": {"secret": "codacy/plain"}}
    text = problems(config(tmp_path, {"codacy": codacy(typo)}))
    assert "api_token_from: aws_secrets_manager.secret_id: Field required" in text
    assert "aws_secrets_manager.secret: unknown key" in text


def test_read_only_commands_read_no_store_and_others_name_the_unreachable_endpoint(tmp_path: Path) -> None:
    """Port 1 on loopback: nothing listens, so a read would fail; ``state show`` must not try."""
    ref = {"aws_secrets_manager": {"secret_id": "codacy/plain", "region": REGION, "endpoint_url": "http://127.0.0.1:1"}}
    path = config(tmp_path, {"codacy": codacy(ref)})
    assert load_settings(path, read_only=True).sources["codacy"].organizations == ["gh/acme"]  # type: ignore[attr-defined]
    text = problems(path)
    assert "AWS Secrets Manager secret 'codacy/plain': EndpointConnectionError" in text


def test_access_denied_names_the_secret_and_the_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforcing IAM: the first three calls (user, key, secret) are allowed unauthenticated;
    the forwarder then reads as a user with no policy."""
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as moto:
        kwargs: dict[str, Any] = {"endpoint_url": moto.endpoint_url, "region_name": REGION}
        iam = boto3.client("iam", **kwargs)
        iam.create_user(UserName="forwarder")
        key = iam.create_access_key(UserName="forwarder")["AccessKey"]
        boto3.client("secretsmanager", **kwargs).create_secret(Name="codacy/locked", SecretString="locked-token-7777")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        text = problems(config(tmp_path, {"codacy": codacy(sm_ref(moto, "codacy/locked"))}))
    assert "AWS Secrets Manager secret 'codacy/locked' in us-east-1: AWS answered AccessDenied" in text
    assert "secretsmanager:GetSecretValue" in text and "locked-token-7777" not in text, text


def test_each_stored_secret_is_read_once_per_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of organizations may share one credential: one AWS call per load, not per use."""
    calls: list[str] = []

    def fetch(store: Any) -> str:
        calls.append(store.describe())
        return json.dumps({"a": "first-token-1", "b": "second-token-2"})

    monkeypatch.setattr(secret_stores, "_fetch", fetch)
    ref = {"aws_secrets_manager": {"secret_id": "shared", "region": REGION}}
    with secret_stores.reading():
        assert secret_stores.resolve("a_from", {**ref}) == json.dumps({"a": "first-token-1", "b": "second-token-2"})
        assert (
            secret_stores.resolve("b_from", {"aws_secrets_manager": {**ref["aws_secrets_manager"], "json_key": "b"}})
            == "second-token-2"
        )
    assert calls == ["AWS Secrets Manager secret 'shared'"]


def test_a_secret_that_cannot_be_read_is_tried_once_per_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable endpoint costs its timeouts once, not once per organization using it."""
    calls: list[str] = []

    def fetch(store: Any) -> str:
        calls.append(store.describe())
        raise secret_stores.StoreError(f"{store.describe()}: EndpointConnectionError")

    monkeypatch.setattr(secret_stores, "_fetch", fetch)
    ref = {"aws_ssm_parameter": {"name": "/shared", "region": REGION}}
    with secret_stores.reading():
        for key in ("a_from", "b_from"):
            with pytest.raises(secret_stores.StoreError, match="SSM parameter '/shared': EndpointConnectionError"):
                secret_stores.resolve(key, ref)
    assert calls == ["SSM parameter '/shared'"]


def test_the_region_of_an_arn_is_used() -> None:
    arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:prod/codacy-AbCdEf"
    assert secret_stores._region(secret_stores.AwsSecretsManagerRef(secret_id=arn)) == "eu-west-3"
    assert secret_stores._region(secret_stores.AwsSecretsManagerRef(secret_id="prod/codacy")) is None


def test_a_configuration_without_stored_secrets_never_imports_boto3(tmp_path: Path) -> None:
    path = config(tmp_path, {"codacy": {"type": "codacy", "organizations": ["gh/acme"], "api_token": "inline-1234"}})
    code = (
        "import sys\nfrom forwarder.settings import load_settings\n"
        f"load_settings({str(path)!r})\nprint('boto3' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
