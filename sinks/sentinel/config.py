"""Settings of the Sentinel sink, each checked at load for the shape Azure gives it (a GUID,
``dcr-...``, ``Custom-...``), so that a value copied from the wrong field of the portal is said
at start rather than as a 404 at the first batch."""

from __future__ import annotations

import re
import urllib.parse
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from forwarder.formats import JSON_FORMATS
from forwarder.http_shared import HttpUrl
from sinks.base import SinkConfig

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")  # a GUID or a domain (contoso.onmicrosoft.com)
_DCR = re.compile(r"^dcr-[0-9A-Za-z]+$")
_STREAM = re.compile(r"^(Custom|Microsoft)-[A-Za-z0-9_-]+$")
_SHAPES = {  # what each id looks like, and how to say where to find the right one
    "tenant_id": (_TENANT, "the directory (tenant) ID, a GUID, or a domain such as contoso.com"),
    "client_id": (_GUID, "the application (client) ID, a GUID"),
    "dcr_immutable_id": (_DCR, "the DCR's immutableId, dcr-<hex> (not its name or ARM id)"),
    "stream_name": (_STREAM, "a stream of the DCR, e.g. Custom-AuditForwarder_CL"),
}

# Each cloud's Entra ID hosts, logs ingestion host suffix and token audience (the Logs Ingestion
# API's and Entra ID's national-cloud pages; the ingestion suffixes of the US and China clouds
# are *inferred* from their monitor.azure.us/.cn audiences)
CLOUDS = {
    "the public Azure cloud": (("login.microsoftonline.com",), ".monitor.azure.com", "https://monitor.azure.com"),
    "Azure Government": (("login.microsoftonline.us",), ".monitor.azure.us", "https://monitor.azure.us"),
    "Azure China": (
        ("login.chinacloudapi.cn", "login.partner.microsoftonline.cn"),
        ".monitor.azure.cn",
        "https://monitor.azure.cn",
    ),
}


def _cloud(setting: str, url: str) -> str | None:
    """The cloud a setting's URL belongs to; None for another host (a proxy, a test receiver)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    for name, (logins, ingestion, audience) in CLOUDS.items():
        if setting == "authority_host" and host in logins:
            return name
        if setting == "endpoint" and host.endswith(ingestion):
            return name
        if setting == "scope" and url.lower().removesuffix("/.default").rstrip("/") == audience:
            return name
    return None


class SentinelSinkConfig(SinkConfig):
    type: Literal["sentinel"]
    tenant_id: str = Field(description="Directory (tenant) ID of the app registration, a GUID or a domain.")
    client_id: str = Field(description="Application (client) ID of the app registration.")
    client_secret: SecretStr | None = Field(None, description="Client secret (its Value); or use a certificate.")
    certificate_file: str | None = Field(
        None, description="PEM certificate uploaded to the app registration (instead of client_secret)."
    )
    private_key_file: str | None = Field(
        None, description="PEM private key (RSA) of certificate_file; omitted: read from certificate_file."
    )
    private_key_password: SecretStr | None = Field(None, description="Password of an encrypted private key.")
    endpoint: HttpUrl = Field(
        description="Logs ingestion URL of the DCR (kind Direct) or of its data collection endpoint, "
        "e.g. https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com"
    )
    dcr_immutable_id: str = Field(description="The DCR's immutableId, dcr-... (its JSON view).")
    stream_name: str = Field(description="Stream of the DCR, e.g. Custom-AuditForwarder_CL.")
    api_version: str = Field("2023-01-01", description="api-version of the Logs Ingestion API.")
    authority_host: HttpUrl = Field(
        "https://login.microsoftonline.com", description="Entra ID host; another for sovereign clouds."
    )
    scope: str = Field(
        "https://monitor.azure.com//.default",
        description="Token scope: the Logs Ingestion audience plus /.default (monitor.azure.us, .cn elsewhere).",
    )
    max_request_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=1_048_576,
        description="Largest uncompressed JSON array per request; Azure takes at most 1 MB per call.",
    )
    token_refresh_margin_s: float = Field(300.0, ge=0, description="Fetch a new token this long before expiry.")
    tls_verify: bool = True
    ca_file: str | None = None
    timeout_s: float = Field(30.0, gt=0)

    @field_validator("tenant_id", "client_id", "dcr_immutable_id", "stream_name")
    @classmethod
    def _shape(cls, value: str, info: ValidationInfo) -> str:
        pattern, expected = _SHAPES[str(info.field_name)]
        if not pattern.match(value):
            raise ValueError(f"{info.field_name} must be {expected}")
        return value

    @field_validator("endpoint", "authority_host")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if self.format not in JSON_FORMATS:
            raise ValueError(f"format {self.format!r} is text; the Logs Ingestion API takes JSON (json, ecs or ocsf)")
        has_secret = self.client_secret is not None and bool(self.client_secret.get_secret_value().strip())
        if has_secret == (self.certificate_file is not None):
            raise ValueError("give exactly one credential: client_secret, or certificate_file (and private_key_file)")
        if self.private_key_file and not self.certificate_file:
            raise ValueError("private_key_file needs certificate_file")
        for setting, example, added in (
            ("endpoint", "https://<name>.<region>-1.ingest.monitor.azure.com", "/dataCollectionRules/..."),
            ("authority_host", "https://login.microsoftonline.com", "/<tenant_id>/oauth2/v2.0/token"),
        ):
            url = urllib.parse.urlsplit(getattr(self, setting))
            # an endpoint's path of a gateway's own (a prefix before the API's) stays allowed
            pasted = "/datacollectionrules" in url.path.lower() if setting == "endpoint" else url.path.strip("/")
            if pasted or url.query:
                raise ValueError(
                    f"{setting} must be a scheme and host ({example}), no path"
                    f"{' of the API (a gateway prefix is fine)' if setting == 'endpoint' else ''}: the sink adds "
                    f"{added}, not {getattr(self, setting)!r}"
                )
        self._one_cloud()
        return self

    def _one_cloud(self) -> None:
        """Endpoint, authority and scope of one cloud: a token for another cloud's audience is
        refused by the ingestion endpoint (401), which the sink can only stop on."""
        clouds = {
            setting: cloud
            for setting in ("endpoint", "authority_host", "scope")
            if (cloud := _cloud(setting, getattr(self, setting))) is not None
        }
        if len(set(clouds.values())) > 1:
            said = ", ".join(f"{setting} {getattr(self, setting)} is {cloud}" for setting, cloud in clouds.items())
            # the cloud most of the settings given name (the endpoint's on a tie): a default is no choice
            named = [cloud for setting, cloud in clouds.items() if setting in self.model_fields_set]
            named = named or list(clouds.values())
            cloud = max(dict.fromkeys(named), key=named.count)
            logins, ingestion, audience = CLOUDS[cloud]
            raise ValueError(
                f"{said}: set all three for one cloud; for {cloud}: endpoint https://<name>.<region>-1.ingest"
                f"{ingestion}, authority_host https://{logins[0]}, scope {audience}//.default"
            )

    def transport_warnings(self) -> list[str]:
        found = super().transport_warnings()
        if not self.tls_verify:
            found.append(
                "tls_verify: false: Entra ID's and the endpoint's certificates are not checked, so the client "
                "credential goes to whoever answers; give ca_file for a private CA instead"
            )
        return found

    @property
    def token_url(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def ingestion_path(self) -> str:
        return f"/dataCollectionRules/{self.dcr_immutable_id}/streams/{self.stream_name}"
