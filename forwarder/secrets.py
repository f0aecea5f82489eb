"""Secrets: ``<field>_file`` and ``<field>_from`` indirection and the set of values that must never be printed.

A secret may be given inline, through ``${VAR}``, as ``<field>_file: /path`` (systemd
``LoadCredential=`` puts them under ``$CREDENTIALS_DIRECTORY``; Docker secrets under
``/run/secrets``), or as ``<field>_from: {aws_secrets_manager: ...}`` / ``{aws_ssm_parameter: ...}``
(``forwarder.secret_stores``, read again when it rotates). Only fields typed ``SecretStr``
accept these forms, so an ordinary option such as a sink's ``ca_file`` is never mistaken for one.
"""

from __future__ import annotations

import base64
import os
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr, model_validator


def _is_secret(annotation: Any) -> bool:
    """``SecretStr`` or an optional one: not a mapping of them (``headers``), which has no file form."""
    if annotation is SecretStr:
        return True
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return union and SecretStr in typing.get_args(annotation)


def resolve_secret_files(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        key = f"{name}_from"
        if key not in out or not _is_secret(field.annotation):
            continue
        ref = out.pop(key)
        if f"{name}_file" in out:
            raise ValueError(f"give one of {name}_file and {key}")
        if name in out:  # an AUDIT_FORWARDER_* override replaced the file's forms before (load_settings)
            raise ValueError(f"give one of {name} and {key}")
        from forwarder.secret_stores import resolve  # AWS only for a configuration that asks for it

        try:
            out[name] = resolve(key, ref)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    for name, field in model.model_fields.items():
        key = f"{name}_file"
        if key not in out or not _is_secret(field.annotation):
            continue
        if name in out:  # both: which one is used must not be a guess
            raise ValueError(f"give one of {name} and {key}")
        raw_path = str(out.pop(key))
        path = Path(os.path.expandvars(raw_path))
        if not path.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
            path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
        try:
            out[name] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            hint = ""
            if not path.is_absolute() and not os.environ.get("CREDENTIALS_DIRECTORY"):
                hint = (
                    " (a relative path is read from $CREDENTIALS_DIRECTORY, set only inside the systemd service; "
                    "from a shell, set CREDENTIALS_DIRECTORY to where the credentials are kept)"
                )
            raise ValueError(f"cannot read {key} {str(path)!r}: {exc.strerror}{hint}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{key} {str(path)!r} is not UTF-8 text") from None
    for name, field in model.model_fields.items():
        value = out.get(name)
        if _is_secret(field.annotation) and isinstance(value, str) and not value.isprintable():
            # A second line in a secret file, say: it would break the HTTP header it goes in,
            # and the client's error would quote the header, secret and all.
            raise ValueError(f"{name} holds a line break or another control character; give it on one line")
    return out


class SecretFilesModel(BaseModel):
    """Base of every config model with secrets: ``<field>_file`` and ``<field>_from`` for each SecretStr field."""

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return resolve_secret_files(cls, data)


def basic_credential(username: str, password: str) -> str:
    """What an ``Authorization: Basic`` header carries: neither the user name nor the password
    appears in it as such, so a receiver echoing the header leaks both unless this is masked too."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def _url_secrets(value: str) -> set[str]:
    """The password of a URL that carries one (``https://user:pass@host``): an ordinary string
    setting, yet the HTTP client logs the URL and sends the pair as a Basic credential."""
    if "@" not in value or "://" not in value:
        return set()
    try:
        parts = urlsplit(value)
        username, password = parts.username, parts.password
    except ValueError:
        return set()
    if not password:
        return set()
    user, plain = unquote(username or ""), unquote(password)
    return {password, plain, basic_credential(user, plain)}


AWS_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")  # botocore's, from the environment
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def collect_secrets(value: Any) -> set[str]:
    """Every SecretStr value inside a settings tree, for the log redaction processor (and every
    plain setting marked ``json_schema_extra={"redacted": True}``), with the forms they take on
    the wire: the Basic credential of a ``username`` and its ``password``, the password inside a
    URL. Also the password of a proxy the environment names (httpx and botocore use it; a
    proxy's refusal may quote its ``Proxy-Authorization`` back) and the AWS secret key and
    session token it holds."""
    found = _collect(value)
    for name in PROXY_VARIABLES:
        found |= _url_secrets(os.environ.get(name, ""))
    found |= {os.environ[name] for name in AWS_VARIABLES if os.environ.get(name)}
    return found


def _collect(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if secret:
            found.add(secret)
    elif isinstance(value, str):
        found |= _url_secrets(value)
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            item = getattr(value, name)
            found |= _collect(item)
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("redacted") and item:
                found.add(str(item))  # a plain setting that is part of a credential (a generated user name)
        username, password = getattr(value, "username", None), getattr(value, "password", None)
        if isinstance(username, str) and isinstance(password, SecretStr) and password.get_secret_value():
            found.add(basic_credential(username, password.get_secret_value()))
    elif isinstance(value, dict):
        for item in value.values():
            found |= _collect(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= _collect(item)
    return found
