"""Secrets kept in AWS Secrets Manager or SSM Parameter Store: the ``<field>_from`` form.

Every secret field (a ``SecretStr``, the same ones that take ``<field>_file``) may name where
its value is kept instead of holding it::

    api_token_from:
      aws_secrets_manager: {secret_id: prod/codacy, json_key: token, region: eu-west-1}
    token_from:
      aws_ssm_parameter: {name: /audit/hec-token, region: eu-west-1}

The value is read while the settings are validated (``forwarder.secrets.resolve_secret_files``
calls ``resolve``), so it is read again by every load: start-up, SIGHUP, and the daemon's
periodic re-read (``secrets.refresh_s``) or the one a vendor's 401 triggers
(``credentials_refused``), after which only the sources and sinks whose value changed are
rebuilt (``forwarder.reload.plan``). One mechanism for every source and sink, none of them
knows where its token came from.

No secret is in the YAML: boto3's standard credential chain (environment, profile, instance or
task role) authenticates. Errors name the secret id or parameter name and AWS's error code,
never a value. boto3 is imported only here, inside the functions that call AWS: a
configuration without ``_from`` never loads it (it costs every CLI command ~0.15 s).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forwarder.redaction import clip, strip_controls

SECRETS_MANAGER_PERMISSIONS = "secretsmanager:GetSecretValue (and kms:Decrypt if a customer-managed key encrypts it)"
SSM_PERMISSIONS = "ssm:GetParameter (and kms:Decrypt for a SecureString under a customer-managed key)"


class AwsSecretsManagerRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    secret_id: str = Field(min_length=1, description="The secret's name or ARN.")
    json_key: str | None = Field(
        None, min_length=1, description="The key to take from a secret stored as a JSON object; whole value if unset."
    )
    region: str | None = Field(None, description="AWS region; default: the ARN's, else boto3's (AWS_REGION...).")
    endpoint_url: str | None = Field(None, description="Another endpoint (a VPC endpoint, a test server).")

    def describe(self) -> str:
        return f"AWS Secrets Manager secret {self.secret_id!r}"


class AwsSsmParameterRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, description="The parameter's name (or ARN); a SecureString is decrypted.")
    region: str | None = Field(None, description="AWS region; default: the ARN's, else boto3's (AWS_REGION...).")
    endpoint_url: str | None = Field(None, description="Another endpoint (a VPC endpoint, a test server).")

    def describe(self) -> str:
        return f"SSM parameter {self.name!r}"


class SecretRef(BaseModel):
    """Where one secret is kept: exactly one of the stores."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    aws_secrets_manager: AwsSecretsManagerRef | None = None
    aws_ssm_parameter: AwsSsmParameterRef | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.aws_secrets_manager is None) == (self.aws_ssm_parameter is None):
            raise ValueError("give exactly one of aws_secrets_manager or aws_ssm_parameter")
        return self

    @property
    def store(self) -> AwsSecretsManagerRef | AwsSsmParameterRef:
        store = self.aws_secrets_manager or self.aws_ssm_parameter
        assert store is not None
        return store


class StoreError(ValueError):
    """A stored secret could not be read; a ValueError, so validation reports it where it belongs."""


@dataclass
class Reading:
    """One load of the settings. Each stored value is fetched once however many fields use it
    (hundreds of organizations may share one credential); ``offline`` loads (``state show``,
    ``dlq list``: they never talk to a vendor) read nothing and fill in a placeholder."""

    offline: bool = False
    fetched: dict[tuple[str, str, str | None, str | None], str | StoreError] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)  # what was read, by description


_READING: contextvars.ContextVar[Reading | None] = contextvars.ContextVar("secret_reading", default=None)


@contextlib.contextmanager
def reading(offline: bool = False) -> Iterator[Reading]:
    current = Reading(offline=offline)
    token = _READING.set(current)
    try:
        yield current
    finally:
        _READING.reset(token)


def parse_ref(value: Any) -> SecretRef:
    try:
        return SecretRef.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(part) for part in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"{where}: {message}" if where else message)
        raise StoreError("; ".join(problems)) from None


def resolve(key: str, value: Any) -> str:
    """The secret ``<field>_from`` (``key``) points to; blocking (boto3): never on the event loop.
    Errors leave out ``key``: the caller puts it in front."""
    ref = parse_ref(value)
    current = _READING.get() or Reading()
    store = ref.store
    current.used.add(store.describe())
    if current.offline:
        return f"unread-{key}"
    if isinstance(store, AwsSecretsManagerRef):
        cache_key = ("secretsmanager", store.secret_id, store.region, store.endpoint_url)
    else:
        cache_key = ("ssm", store.name, store.region, store.endpoint_url)
    if cache_key not in current.fetched:
        try:
            current.fetched[cache_key] = _fetch(store)
        except StoreError as exc:  # a failure too: an unreachable endpoint must not cost its timeout per use
            current.fetched[cache_key] = exc
    fetched = current.fetched[cache_key]
    if isinstance(fetched, StoreError):
        raise StoreError(str(fetched))
    text = fetched
    if isinstance(store, AwsSecretsManagerRef) and store.json_key is not None:
        text = _json_key(store, text)
    text = text.strip()
    if not text:
        raise StoreError(f"{store.describe()} is empty")
    return text


def _json_key(store: AwsSecretsManagerRef, text: str) -> str:
    """Never quotes the value: a secret that is not the JSON expected is still a secret."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise StoreError(f"{store.describe()} is not a JSON object; drop json_key to use its whole value")
    if store.json_key not in parsed:
        keys = ", ".join(sorted(str(k) for k in parsed)[:20]) or "none"
        raise StoreError(f"{store.describe()} has no key {store.json_key!r} (its keys: {keys})")
    value = parsed[store.json_key]
    if not isinstance(value, str):
        raise StoreError(f"{store.describe()}: the value of {store.json_key!r} is not text")
    return value


def _region(store: AwsSecretsManagerRef | AwsSsmParameterRef) -> str | None:
    """An ARN names its region; the client must be in that region to read it."""
    if store.region:
        return store.region
    name = store.secret_id if isinstance(store, AwsSecretsManagerRef) else store.name
    parts = name.split(":")
    return parts[3] if name.startswith("arn:") and len(parts) > 4 and parts[3] else None


_CLIENTS: dict[tuple[str, str | None, str | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    """One client per service, region and endpoint for the process's life: making one loads
    botocore's service model (tens of ms), and a role's credentials refresh inside it."""
    with _CLIENTS_LOCK:
        key = (service, region, endpoint_url)
        if key not in _CLIENTS:
            import boto3  # here: see the module's docstring
            from botocore.config import Config

            config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
            session = boto3.session.Session()  # the default session is not thread-safe
            _CLIENTS[key] = session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
        return _CLIENTS[key]


def _fetch(store: AwsSecretsManagerRef | AwsSsmParameterRef) -> str:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    what = store.describe()
    region = _region(store)
    try:
        service = "secretsmanager" if isinstance(store, AwsSecretsManagerRef) else "ssm"
        client = _client(service, region, store.endpoint_url)
        region = client.meta.region_name  # the one boto3's chain chose, for the error message
        if isinstance(store, AwsSecretsManagerRef):
            answer = client.get_secret_value(SecretId=store.secret_id)
            if "SecretString" in answer:
                return str(answer["SecretString"])
            try:
                return bytes(answer.get("SecretBinary") or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise StoreError(f"{what} holds binary data, not text; store the secret as a string") from None
        answer = client.get_parameter(Name=store.name, WithDecryption=True)
        return str(answer["Parameter"]["Value"])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = _error(str(error.get("Code") or "an error"), str(error.get("Message") or ""))
        raise StoreError(
            f"{what}{f' in {region}' if region else ''}: AWS answered {code}"
            + (f" ({message})" if message else "")
            + _hint(store, code)
        ) from None
    except NoRegionError:
        raise StoreError(f"{what}: no AWS region; give region: or set AWS_REGION") from None
    except NoCredentialsError:
        raise StoreError(
            f"{what}: no AWS credentials found (environment, shared config or profile, instance or task role)"
        ) from None
    except BotoCoreError as exc:
        raise StoreError(f"{what}: {type(exc).__name__}: {clip(_plain(str(exc)), 300)}") from None


def _error(code: str, message: str) -> tuple[str, str]:
    """AWS's error code and message. An answer botocore could not parse (a proxy's page, an XML
    error where JSON was expected) comes with the HTTP status as its code and the raw body as
    its message: the code and message inside an XML body are taken out, else the status stays."""
    if code.isdigit():
        inner_code = re.search(r"<Code>([^<]{1,100})</Code>", message)
        inner_message = re.search(r"<Message>([^<]{0,500})</Message>", message)
        if inner_code is None:
            return f"HTTP {code}", ""
        code, message = inner_code.group(1), inner_message.group(1) if inner_message else ""
    return clip(_plain(code), 100), clip(_plain(message), 300)


def _hint(store: AwsSecretsManagerRef | AwsSsmParameterRef, code: str) -> str:
    permissions = SECRETS_MANAGER_PERMISSIONS if isinstance(store, AwsSecretsManagerRef) else SSM_PERMISSIONS
    if code in ("ResourceNotFoundException", "ParameterNotFound"):
        return "; check the name and the region"
    denied = ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "HTTP 403")
    if code in denied or code.startswith("KMS"):
        return f"; the daemon's AWS identity needs {permissions}"
    if code in ("DecryptionFailure", "InvalidKeyId"):
        return "; the daemon's AWS identity needs kms:Decrypt on the key that encrypts it"
    return ""


def _plain(text: str) -> str:
    return strip_controls(text).replace("\n", " ")


# --- a refused credential: read the stores again now -------------------------------------------
_REFUSED: list[Callable[[], None]] = []


def on_credentials_refused(callback: Callable[[], None]) -> Callable[[], None]:
    """The daemon's wake-up for its re-read; returns what unregisters it. Runs on the loop."""
    _REFUSED.append(callback)
    return lambda: _REFUSED.remove(callback)


def credentials_refused() -> None:
    """A vendor or receiver answered 401: the secret may have rotated since it was read. Cheap
    and synchronous, callable from any HTTP layer on the event loop; does nothing without a daemon."""
    for callback in list(_REFUSED):
        callback()
