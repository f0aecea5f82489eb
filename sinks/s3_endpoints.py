"""botocore's data loader for the S3 sinks' session, keeping of ``endpoints.json`` only what an S3
client and its credential chain read, and holding every data file as plain dicts, the service
models without their documentation text (``load_json``: 2.8 MB less held for the client's life).

``endpoints.json`` lists every AWS service in every region: parsed, 7 MB of Python objects that
the session's endpoint resolver holds for the client's whole life, although an S3 client only
ever looks up its own service (and the credential chain ``sts``, ``sso`` and ``sso-oidc``). It
was the largest single part of botocore's ~22 MB in a draining daemon, and the part that kept
the S3 sink over issue 24's 100 MB (docs/performance.md, round 11).

Done through botocore's own extension point: a ``Loader`` built with its documented
``file_loader`` argument, registered as the session's ``data_loader`` component, reading the same
search paths (``AWS_DATA_PATH`` included) as the loader it replaces. Each partition keeps its
regions, defaults and variants; a service left out resolves from its partition's defaults, as
botocore does for any service its ``endpoints.json`` does not list. The files are read as
botocore reads them (its search order, ``.json`` before ``.json.gz``); a format this module does
not know is left to botocore's own reader.
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

# Endpoint prefixes (the keys of endpoints.json): S3 itself, and the credential providers' clients
# (AssumeRole and web identity: sts; IAM Identity Center: sso is "portal.sso", sso-oidc is "oidc").
KEPT_SERVICES = frozenset({"s3", "sts", "portal.sso", "oidc"})
_ENDPOINTS = "endpoints"  # the file's name in a search path, without ".json"
_SERVICE_MODEL = "service-2"
# botocore's own order (``botocore.loaders.JSONFileLoader``): a plain file before a gzipped one
_OPENERS: tuple[tuple[str, Any], ...] = ((".json", open), (".json.gz", gzip.open))


def _without_documentation(obj: dict[str, Any]) -> dict[str, Any]:
    """A service model's object with its ``documentation`` text emptied (the key stays: botocore
    reads ``clientContextParams[...]["documentation"]`` by key). The text only feeds docstrings
    and ``help()``, which a daemon never shows: half of the S3 model's memory."""
    if type(obj.get("documentation")) is str:
        obj["documentation"] = ""
    return obj


def load_json(file_path: str) -> Any:
    """The data file at ``file_path`` (without its extension) as botocore reads it, with plain
    dicts instead of botocore's ``OrderedDict`` (a dict keeps its order; nothing in botocore
    uses what only an OrderedDict has): S3's service model 3.5 → 2.5 MB of Python objects, its
    endpoint ruleset 1.3 → 0.8, ``endpoints.json`` while it is parsed 7.0 → 4.1; a service
    model also without its documentation (→ 1.2). None when no such file exists."""
    for extension, opener in _OPENERS:
        path = file_path + extension
        if os.path.isfile(path):
            with opener(path, "rb") as file:
                payload = file.read().decode("utf-8")
            hook = _without_documentation if os.path.basename(file_path) == _SERVICE_MODEL else None
            return json.loads(payload, object_hook=hook)
    return None


def lean_endpoints(data: Any) -> Any:
    """``endpoints.json`` as parsed, each partition's services cut to ``KEPT_SERVICES``; anything
    that does not look like that file is returned as it is."""
    partitions = data.get("partitions") if isinstance(data, dict) else None
    if not isinstance(partitions, list):
        return data
    for partition in partitions:
        services = partition.get("services") if isinstance(partition, dict) else None
        if isinstance(services, dict):
            partition["services"] = {name: service for name, service in services.items() if name in KEPT_SERVICES}
    return data


def use_lean_loader(session: Any) -> None:
    """Gives ``session`` (a ``botocore.session.Session`` no client was built from yet) the data
    loader that trims ``endpoints.json`` as it is read."""
    from botocore.loaders import JSONFileLoader, Loader

    class LeanFileLoader(JSONFileLoader):  # type: ignore[misc]  # botocore is untyped
        def load_file(self, file_path: str) -> Any:
            data = load_json(file_path)
            if data is None:  # a format only a newer botocore reads
                data = super().load_file(file_path)
            if os.path.basename(file_path) == _ENDPOINTS:
                data = lean_endpoints(data)
            return data

    search_path = session.get_config_variable("data_path")  # AWS_DATA_PATH, as botocore.loaders.create_loader
    extra = None
    if search_path:
        extra = [os.path.expanduser(os.path.expandvars(path)) for path in search_path.split(os.pathsep)]
    session.register_component("data_loader", Loader(extra_search_paths=extra, file_loader=LeanFileLoader()))
