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

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


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


SECRET_HINTS = ("token", "password", "secret", "key", "credential")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (``Auth``, ``Auth | None``, ``list[Auth]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _model_names(annotation: Any) -> set[str]:
    """The class names of the models in an annotation: pydantic's tags for union members."""
    names = {annotation.__name__} if isinstance(annotation, type) and issubclass(annotation, BaseModel) else set()
    for arg in get_args(annotation):
        names |= _model_names(arg)
    return names


def _walk(loc: tuple[int | str, ...]) -> tuple[list[int | str], type[BaseModel] | None]:
    """``loc`` as the file spells it, and the settings model it ends in (None where it meets
    free keys), walked down from ``Settings``. Pydantic puts tags in ``loc`` that are no key of
    the file: a source's or sink's type (which names its model) and a union member's type
    (``organizations.Organizations.discover``, ``list[str]``)."""
    parts = list(loc)
    out: list[int | str] = []
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    keyed = False  # the next part is a key of a mapping, not a field
    if len(parts) > 2 and parts[0] in ("sources", "sinks"):
        entry = (SOURCES if parts[0] == "sources" else SINKS).get(str(parts[2]))
        out, model, parts = parts[:2], (entry[0] if entry else None), parts[3:]
    for part in parts:
        if isinstance(part, int):
            out.append(part)
            continue
        if "[" in part or "function-" in part or (annotation is not None and part in _model_names(annotation)):
            continue
        out.append(part)
        fields = model.model_fields if model is not None and not keyed else {}
        if keyed:
            keyed = False
        elif part in fields:
            annotation = fields[part].annotation
            model = _model_in(annotation)
            keyed = get_origin(annotation) is dict or any(get_origin(a) is dict for a in get_args(annotation))
        else:
            annotation, model = None, None
    return out, model


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in _walk(loc)[0]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def _did_you_mean(given: Any, known: list[str]) -> str:
    """``did you mean 'organizations'?`` for a misspelt key or type, else nothing."""
    if not isinstance(given, str) or not known:
        return ""
    close = difflib.get_close_matches(given.lower(), known, n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the settings at the parent of ``loc`` take; none where that is a mapping of free keys."""
    model = _walk(loc[:-1])[1]
    if model is None:
        return []
    return [key for name, info in model.model_fields.items() for key in (name, info.alias) if key]


def _one_per_key(errors: list[Any]) -> list[Any]:
    """A value one member of a union (``list[str] | Organizations``) refuses is reported for
    the others too, once each: "should be a valid list" beside what is wrong inside the mapping
    that was meant. A type mismatch is left out where a deeper error says what is wrong, and
    the mismatches at one key make one line."""
    wheres = [_loc(err["loc"]) for err in errors]
    out: list[Any] = []
    merged: dict[str, Any] = {}
    for err, where in zip(errors, wheres, strict=True):
        if err["type"].endswith("_type"):
            if any(other.startswith((f"{where}.", f"{where}[")) for other in wheres):
                continue
            if where in merged:
                merged[where]["msg"] += " or " + err["msg"].removeprefix("Input should be ")
                continue
            err = merged[where] = dict(err)
        out.append(err)
    return out


KeyLines = dict[tuple[int | str, ...], int]


def key_lines(text: str) -> KeyLines:
    """The line of every key and list item of a YAML text, by its path (``("sources", "okta",
    "auth")``), so that an error names the line to edit. Empty for a text that does not compose."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: KeyLines = {}

    def walk(node: yaml.Node, path: tuple[int | str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines[(*path, key.value)] = key.start_mark.line + 1
                    walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def _line(parts: tuple[int | str, ...], lines: KeyLines) -> str:
    """``line 5: `` for the key at ``parts`` (as the file writes it), or the nearest enclosing
    one the file holds (a missing key's mapping); nothing for a setting it does not (env)."""
    for end in range(len(parts), 0, -1):
        if parts[:end] in lines:
            return f"line {lines[parts[:end]]}: "
    return ""


def format_errors(exc: ValidationError, env: FromEnvironment | None = None, lines: KeyLines | None = None) -> list[str]:
    env = env or FromEnvironment()
    problems = [env.strip(problem) for problem in _problems(exc, env, lines or {})]
    return problems


def _problems(exc: ValidationError, env: FromEnvironment, lines: KeyLines) -> list[str]:
    problems = [_line(path, lines) + problem for path, problem in _each_problem(exc, env)]
    return problems


def _each_problem(exc: ValidationError, env: FromEnvironment) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """Each problem and the path of its key as the file writes it."""
    for err in _one_per_key(exc.errors(include_url=False)):
        where, path = _loc(err["loc"]), tuple(_walk(err["loc"])[0])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            registry = SOURCES if err["loc"][0] == "sources" else SINKS
            given = err["input"].get("type")
            hint = _did_you_mean(given, list(registry))
            message = f"unknown type {given!r}{f' ({hint})' if hint else ''}; expected one of "
            yield (*_walk(err["loc"])[0], "type"), f"{where}.type: {message}{', '.join(sorted(registry))}"
            continue
        if err["type"] == "union_tag_not_found":
            yield path, f"{where}: 'type' is missing"
            continue
        if err["type"] == "missing":
            yield path, f"{where}: required but missing"
            continue
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(err["loc"][-1], _known_keys(err["loc"]))
            hint += "; " if hint else ""
            yield path, f"{where}: unknown key ({hint}check the spelling against docs/configuration.md)"
            continue
        shown = err.get("input")
        if isinstance(shown, dict) or (isinstance(shown, list) and any(isinstance(v, dict | list) for v in shown)):
            # a whole block, secrets and all: where it is says enough
            yield path, f"{where}: {message}"
            continue
        secret = any(h in where.rsplit(".", 1)[-1].lower() for h in SECRET_HINTS) and not where.endswith("_file")
        if secret or ".headers." in f".{where}.":  # an http_json header's value may be a credential
            yield path, f"{where}: got ***; {message}"
        elif env.hides(shown):
            yield path, f"{where}: got {env.shown(shown)}; {message}"
        else:
            yield path, f"{where}: got {shown!r}; {message}"


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
    settings = _validate(path, data, env, unset, offline=read_only, lines=key_lines(text))
    if unset:
        secrets = collect_secrets(settings)
        not_secret = [
            problem for placeholder, problem in unset.items() if not any(placeholder in secret for secret in secrets)
        ]
        if not_secret:
            raise ConfigError(path, not_secret)
    return settings


def _validate(
    path: Path,
    data: dict[str, Any],
    env: FromEnvironment,
    unset: dict[str, str] | None,
    *,
    offline: bool,
    lines: KeyLines | None = None,
) -> Settings:
    """``offline`` (the read-only commands) reads no stored secret: a placeholder stands in.
    ``lines``: where each key is in the file (``key_lines``), for the errors."""
    try:
        with reading(offline=offline) as read:
            settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(path, [*(unset or {}).values(), *format_errors(exc, env, lines)]) from None
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
