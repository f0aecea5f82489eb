"""Configuration errors as an operator reads them: one line per problem, naming the key as the
YAML file writes it (not pydantic's location, which holds type tags no file contains), its line,
the value (never a secret's), what is expected, and the closest valid name for a misspelt one."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from forwarder.sources import SOURCES
from sinks.registry import SINKS


class FromEnvironment(Protocol):
    """What ``forwarder.settings.FromEnvironment`` tells of the values ``${VAR}`` brought in."""

    def hides(self, value: Any) -> bool: ...

    def shown(self, value: Any) -> str: ...

    def strip(self, text: str) -> str: ...


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


@dataclass(frozen=True)
class _Paths:
    """Pydantic's error locations read against the settings model they came from."""

    root: type[BaseModel]

    def walk(self, loc: tuple[int | str, ...]) -> tuple[list[int | str], type[BaseModel] | None]:
        """``loc`` as the file spells it, and the settings model it ends in (None where it meets
        free keys), walked down from the root model. Pydantic puts tags in ``loc`` that are no key of
        the file: a source's or sink's type (which names its model) and a union member's type
        (``organizations.Organizations.discover``, ``list[str]``)."""
        parts = list(loc)
        out: list[int | str] = []
        model: type[BaseModel] | None = self.root
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

    def where(self, loc: tuple[int | str, ...]) -> str:
        out = ""
        for part in self.walk(loc)[0]:
            out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
        return out or "(top level)"

    def known_keys(self, loc: tuple[int | str, ...]) -> list[str]:
        """The keys the settings at the parent of ``loc`` take; none where that is a mapping of free keys."""
        model = self.walk(loc[:-1])[1]
        if model is None:
            return []
        return [key for name, info in model.model_fields.items() for key in (name, info.alias) if key]


def _did_you_mean(given: Any, known: list[str]) -> str:
    """``did you mean 'organizations'?`` for a misspelt key or type, else nothing."""
    if not isinstance(given, str) or not known:
        return ""
    close = difflib.get_close_matches(given.lower(), known, n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""


def _one_per_key(errors: list[Any], paths: _Paths) -> list[Any]:
    """A value one member of a union (``list[str] | Organizations``) refuses is reported for
    the others too, once each: "should be a valid list" beside what is wrong inside the mapping
    that was meant. A type mismatch is left out where a deeper error says what is wrong, and
    the mismatches at one key make one line."""
    wheres = [paths.where(err["loc"]) for err in errors]
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


def format_errors(exc: ValidationError, root: type[BaseModel], env: FromEnvironment, lines: KeyLines) -> list[str]:
    """One line per problem of ``exc``, raised validating ``root``; ``lines``: ``key_lines`` of the file."""
    paths = _Paths(root)
    return [env.strip(_line(path, lines) + problem) for path, problem in _each_problem(exc, env, paths)]


def _each_problem(
    exc: ValidationError, env: FromEnvironment, paths: _Paths
) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """Each problem and the path of its key as the file writes it."""
    for err in _one_per_key(exc.errors(include_url=False), paths):
        where, path = paths.where(err["loc"]), tuple(paths.walk(err["loc"])[0])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            registry = SOURCES if err["loc"][0] == "sources" else SINKS
            given = err["input"].get("type")
            hint = _did_you_mean(given, list(registry))
            message = f"unknown type {given!r}{f' ({hint})' if hint else ''}; expected one of "
            yield (*path, "type"), f"{where}.type: {message}{', '.join(sorted(registry))}"
            continue
        if err["type"] == "union_tag_not_found":
            yield path, f"{where}: 'type' is missing"
            continue
        if err["type"] == "missing":
            yield path, f"{where}: required but missing"
            continue
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(err["loc"][-1], paths.known_keys(err["loc"]))
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
