"""Configuration: one YAML file, validated, with environment overrides and secret files.

Precedence, highest first: ``AUDIT_FORWARDER_*`` environment variables (nested keys joined by
``__``, e.g. ``AUDIT_FORWARDER_SOURCES__CODACY__API_TOKEN``), then the YAML file. Inside the
YAML, ``${VAR}`` and ``${VAR:-default}`` are replaced from the environment before validation,
and any secret ``<field>`` may be given as ``<field>_file`` (``forwarder.secrets``) or read from
AWS Secrets Manager or SSM Parameter Store as ``<field>_from`` (``forwarder.secret_stores``).

Errors never show a traceback: ``ConfigError`` carries one line per problem, naming the YAML
path, the bad value and what is expected; the CLI prints them and exits with code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from forwarder.config_errors import format_errors, key_lines
from forwarder.evidence.settings import EvidenceLedgerSettings
from forwarder.journal.settings import StateSettings
from forwarder.retry import RetrySettings
from forwarder.secret_stores import reading
from forwarder.secrets import collect_secrets
from forwarder.sources import SOURCES
from forwarder.sources.base import SourceConfig
from sinks.base import SinkConfig
from sinks.registry import SINKS

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

if TYPE_CHECKING:
    SourceConfigs = SourceConfig
    SinkConfigs = SinkConfig
else:  # a discriminated union of every registered type, so errors name the right fields
    SourceConfigs = Annotated[Union[tuple(cfg for cfg, _ in SOURCES.values())], Field(discriminator="type")]  # noqa: UP007
    SinkConfigs = Annotated[Union[tuple(cfg for cfg, _ in SINKS.values())], Field(discriminator="type")]  # noqa: UP007


class ConfigError(Exception):
    def __init__(self, path: Path | str, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


class JournalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_events: int = Field(1_000_000, gt=0, description="Polling pauses when the journal holds this many events.")
    max_bytes: int = Field(1 << 30, gt=0, description="Polling pauses when the journal's events take this many bytes.")


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severity written; the command line's --log-level overrides it."
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="json: one JSON object per line; console: readable lines; auto: json unless stderr is a terminal.",
    )


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Serve /metrics, /healthz and /readyz (daemon `run` only).")
    listen: str = Field(
        "127.0.0.1:9464",
        description="host:port of the HTTP endpoint; [::1]:9464 for IPv6; port 0 lets the system choose "
        "(the start-up line `serving /metrics, /healthz and /readyz` names it). Unauthenticated.",
    )
    source_failing_threshold_s: float = Field(
        900.0, gt=0, description="/readyz fails once an organization has been failing this long."
    )
    sink_failing_threshold_s: float = Field(
        900.0,
        gt=0,
        description="/readyz fails once a sink has been failing (retrying, nothing confirmed) this long.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65_536:
            raise ValueError("listen must be host:port, e.g. 127.0.0.1:9464")
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class SecretStoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_s: float = Field(
        300.0,
        gt=0,
        description="How often `run` reads every `<field>_from` secret again (AWS Secrets Manager, SSM); the "
        "sources and sinks whose value changed are rebuilt, as by SIGHUP. A vendor's 401 also triggers a "
        "re-read (at most once a minute).",
    )


@dataclass(frozen=True)
class Loaded:
    """What a Settings was validated from, so the daemon can validate it again for fresh stored
    secrets without rereading the file (an edit not yet SIGHUPed must not apply by itself)."""

    path: Path
    data: dict[str, Any]  # the YAML, ``${VAR}`` replaced
    env: FromEnvironment
    stores: frozenset[str]  # the stored secrets it read (``forwarder.secret_stores``), by description


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUDIT_FORWARDER_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )
    state_dir: Path = Field(Path("/var/lib/audit-forwarder"), description="Journal, cursors and lock file.")
    state: StateSettings = Field(default_factory=StateSettings)
    shutdown_timeout_s: float = Field(30.0, gt=0, description="How long sinks may finish in-flight batches.")
    journal: JournalSettings = JournalSettings()
    log: LogSettings = LogSettings()
    retry: RetrySettings = RetrySettings()
    metrics: MetricsSettings = MetricsSettings()
    sources: dict[str, SourceConfigs] = Field(default_factory=dict)
    sinks: dict[str, SinkConfigs] = Field(default_factory=dict)
    secrets: SecretStoreSettings = SecretStoreSettings()
    evidence: EvidenceLedgerSettings = EvidenceLedgerSettings()
    _loaded: Loaded | None = PrivateAttr(None)

    @property
    def stored_secrets(self) -> frozenset[str]:
        """The AWS-stored secrets this configuration reads (empty: nothing to re-read)."""
        return self._loaded.stores if self._loaded is not None else frozenset()

    @field_validator("sources", "sinks")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"name {name!r} must be lower-case letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _one_sink_per_destination(self) -> Settings:
        seen: dict[str, str] = {}
        for name, sink in self.sinks.items():
            where = sink.destination()
            if where is not None and where in seen:
                raise ValueError(
                    f"sinks {seen[where]} and {name} both write {where}; give one another path, bucket or key_template"
                )
            if where is not None:
                seen[where] = name
        return self

    @model_validator(mode="after")
    def _evidence_ledgers(self) -> Settings:
        """An S3 sink's digest ledger lives in the state directory unless placed elsewhere."""
        for sink in self.sinks.values():
            evidence = getattr(sink, "evidence", None)
            if evidence is not None and evidence.ledger_directory is None:
                evidence.ledger_directory = self.state_dir / "evidence"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


@dataclass
class FromEnvironment:
    """What the environment put into the settings, so a config error never prints it: the
    key's name (``auth: "Bearer ${TOKEN}"``, ``headers: {X-Key: ${KEY}}``) says nothing of
    whether the value is a credential, so every such value is hidden, whatever its key."""

    written: dict[str, str] = field(default_factory=dict)  # an interpolated text -> as the YAML wrote it
    values: dict[str, str] = field(default_factory=dict)  # a value from the environment -> its variable

    @classmethod
    def overrides(cls) -> FromEnvironment:
        """``AUDIT_FORWARDER_*`` variables override the file; their values are as private."""
        return cls(values={v: f"${k}" for k, v in os.environ.items() if k.upper().startswith("AUDIT_FORWARDER_") and v})

    def hides(self, value: Any) -> bool:
        if isinstance(value, list | tuple):
            return any(self.hides(item) for item in value)
        if not isinstance(value, str):
            value = str(value)
        return value in self.written or any(
            value == piece or (len(piece) >= 4 and piece in value) for piece in self.values
        )

    def shown(self, value: Any) -> str:
        if isinstance(value, str) and value in self.written:
            return f"<the value of {self.written[value]!r}>"
        return "<a value from the environment>"

    def strip(self, text: str) -> str:
        """A validator's own message may quote the value too (``sd_id 'x' must ...``)."""
        for piece, var in sorted(self.values.items(), key=lambda item: len(item[0]), reverse=True):
            if len(piece) >= 4 and piece in text:
                text = text.replace(piece, f"<{var}>")
        return text


def interpolate(
    value: Any,
    where: str,
    missing: list[str],
    seen: FromEnvironment | None = None,
    unset: dict[str, str] | None = None,
) -> Any:
    """``${VAR}`` replaced from the environment, noted in ``seen``. An unset one is a problem in
    ``missing``; with ``unset`` given, it becomes a placeholder (mapped there to that problem) for
    the caller to accept where a secret was expected (see ``load_settings``)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                if seen is not None and os.environ[name]:
                    seen.values[os.environ[name]] = f"${{{name}}}"
                return os.environ[name]
            if default is not None:
                return default
            problem = f"{where}: environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            if unset is not None:
                placeholder = f"unset-{name}"
                unset[placeholder] = problem
                return placeholder
            missing.append(problem)
            return ""

        result = VAR_RE.sub(replace, value)
        if seen is not None and result != value:
            seen.written[result] = value
        return result
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}" if where else str(k), missing, seen, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}[{i}]", missing, seen, unset) for i, v in enumerate(value)]
    return value


def load_settings(
    path: Path | str, *, read_only: bool = False, extra_sources: Mapping[str, dict[str, Any]] | None = None
) -> Settings:
    """``read_only`` is for commands that read the state and never talk to a vendor or a
    receiver (``state show``, ``dlq list``): a ``${VAR}`` left unset in a secret field loads as
    a placeholder, so they work from a shell without the service's credentials. An unset
    variable anywhere else is still refused, as it always is for ``run``, ``once`` and ``check``.
    Nor do they read a ``<field>_from`` secret from AWS: a placeholder stands in for it.

    ``extra_sources`` are source entries built by code (``demo --presets``: URLs and credentials
    that exist only while it runs), added after ``${VAR}`` interpolation and validated with the
    file's, so they are kept for ``reread_secrets`` like the rest."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        hint = ""
        if isinstance(exc, FileNotFoundError):
            hint = " (name yours with -c FILE or AUDIT_FORWARDER_CONFIG; config/example.yaml shows every setting)"
        raise ConfigError(path, [f"cannot read config file {path}: {exc.strerror}{hint}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded)"]) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, [f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ConfigError(path, [f"{path} must be a mapping of settings, named by text, at the top level"])
    missing: list[str] = []
    env = FromEnvironment.overrides()
    unset: dict[str, str] | None = {} if read_only else None
    data = interpolate(data, "", missing, env, unset)
    if missing:
        raise ConfigError(path, missing)
    if extra_sources:
        data = {**data, "sources": {**(data.get("sources") or {}), **extra_sources}}
    try:
        overrides = EnvSettingsSource(Settings)()
    except SettingsError as exc:  # AUDIT_FORWARDER_JOURNAL='{max_events: 5' (the value is not shown)
        raise ConfigError(
            path,
            [
                f"{env.strip(str(exc))}: an AUDIT_FORWARDER_ variable giving a whole mapping or list must hold "
                "JSON; or set one key, joined by __ (AUDIT_FORWARDER_JOURNAL__MAX_EVENTS)"
            ],
        ) from None
    data = _overridden_secret_forms_dropped(data, overrides)
    settings = _validate(path, data, env, unset, offline=read_only, text=text)
    if unset:
        secrets = collect_secrets(settings)
        not_secret = [
            problem for placeholder, problem in unset.items() if not any(placeholder in secret for secret in secrets)
        ]
        if not_secret:
            raise ConfigError(path, not_secret)
        needed = _state_credentials(settings)  # the one credential a read-only command does use
        unset_needed = [problem for placeholder, problem in unset.items() if any(placeholder in c for c in needed)]
        if unset_needed:
            raise ConfigError(path, [f"{p}; reading the PostgreSQL state needs it" for p in unset_needed])
    return settings


SECRET_FORMS = ("", "_file", "_from")


def _overridden_secret_forms_dropped(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An ``AUDIT_FORWARDER_..._API_TOKEN_FILE`` override must win over the file's
    ``api_token: ...`` as any override wins over the file; merged, the two would be two forms of
    one secret, and the inline one would win. So the file's other forms of a secret the
    environment gives (inline, ``_file`` or ``_from``) are dropped before the merge."""
    out = dict(data)
    for key, value in overrides.items():
        form = next((form for form in SECRET_FORMS[1:] if key.endswith(form)), None)
        if form is None and isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _overridden_secret_forms_dropped(out[key], value)
            continue
        base = key[: -len(form)] if form else key
        for other in SECRET_FORMS:
            if form is not None or base + other != key:  # a ``_from`` mapping replaces the file's, not merged into it
                out.pop(base + other, None)
    return out


def _state_credentials(settings: Settings) -> list[str]:
    """A PostgreSQL state's DSN and password: with a placeholder in them, a read-only command
    would fail at the database with a misleading ``password authentication failed``."""
    state = settings.state
    if state.backend != "postgresql":
        return []
    return [secret.get_secret_value() for secret in (state.dsn, state.password) if secret is not None]


def _validate(
    path: Path,
    data: dict[str, Any],
    env: FromEnvironment,
    unset: dict[str, str] | None,
    *,
    offline: bool,
    text: str = "",
) -> Settings:
    """``offline`` (the read-only commands) reads no stored secret: a placeholder stands in.
    ``text``: the file as read, for the line each error names (composed again only then)."""
    try:
        with reading(offline=offline) as read:
            settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(
            path, [*(unset or {}).values(), *format_errors(exc, Settings, env, key_lines(text))]
        ) from None
    except ValueError as exc:
        raise ConfigError(path, [*(unset or {}).values(), env.strip(str(exc))]) from None
    settings._loaded = Loaded(path, data, env, frozenset(read.used))
    return settings


def reread_secrets(settings: Settings) -> Settings:
    """The same configuration validated again, each stored secret read afresh (blocking: AWS).
    Raises ConfigError naming the secret that could not be read; never a value."""
    loaded = settings._loaded
    if loaded is None:
        return settings
    return _validate(loaded.path, loaded.data, loaded.env, None, offline=False)
