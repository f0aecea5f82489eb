"""Microsoft Entra ID's token endpoint and the Azure Monitor Logs Ingestion API, on loopback.

Written from Microsoft's documentation so that the Sentinel sink is tested against what Azure
does, not against the sink's own assumptions (the sink's module docstring names the pages):

* ``POST /{tenant}/oauth2/v2.0/token``: the client-credentials grant, form-encoded, with a
  ``client_secret`` or a ``client_assertion`` (a JWT whose PS256 or RS256 signature is checked
  against the registered certificate, with ``aud`` the token URL, ``iss`` = ``sub`` = the client
  id and ``nbf``/``exp`` around now). Answers ``{"token_type": "Bearer", "expires_in",
  "access_token"}``, or 400/401 ``{"error", "error_description": "AADSTS...: ...",
  "error_codes"}`` with the AADSTS codes Entra ID uses.
* ``POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=``: bearer token required (401
  without a valid one, 403 ``OperationFailed`` with Microsoft's documented text when the client has
  no Monitoring Metrics Publisher role on the DCR), ``Content-Encoding: gzip`` or none, a JSON
  array of objects (or one object), at most ``max_body_bytes`` compressed and uncompressed (413
  above: "1 MB for both compressed and uncompressed data"), 204 on success. Errors are Azure.Core
  ``{"error": {"code", "message"}}`` with ``x-ms-error-code``, as the REST specification declares.

*Inferred* (Microsoft does not document them): the error codes of 401, 404 and 413 and the 415
for another encoding; an empty array answered 204; a 404 for an unknown DCR or stream.

Faults: the shared fault queue (429 storms with ``retry_after``, 5xx), whose answers get Azure's
error body; ``revoke_tokens`` (POST ``/_control/revoke``: every token issued so far turns invalid,
the way an expiry mid-run looks to the sender); ``token_lifetime_s`` (short lifetimes make the
sender refresh); ``max_body_bytes`` (413 above it); ``publishers`` (the clients holding the role);
``throttle_after_accepted`` (after that many more accepted uploads, one 429: a batch throttled
midway).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import secrets
import time
import zlib
from typing import Any
from urllib.parse import parse_qs

from forwarder.emulators.base import Emulator, Fault, Request, Response

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0b5e1c2d-3f4a-4b6c-8d7e-9f0a1b2c3d4e"
CLIENT_SECRET = "sentinel-test-secret"
DCR = "dcr-00000000000000000000000000000001"
STREAM = "Custom-AuditForwarder_CL"
API_VERSIONS = ("2021-11-01-preview", "2023-01-01")
AUDIENCES = ("https://monitor.azure.com", "https://monitor.azure.us", "https://monitor.azure.cn")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
INGEST = r"/dataCollectionRules/(?P<dcr>[^/]+)/streams/(?P<stream>[^/]+)"


def azure_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(
        {"error": {"code": code, "message": message}}, status, {"x-ms-error-code": code, **(headers or {})}
    )


def entra_error(status: int, error: str, code: int, text: str) -> Response:
    trace = secrets.token_hex(8)
    description = f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {time.ctime()}"
    return Response.json(
        {"error": error, "error_description": description, "error_codes": [code], "trace_id": trace}, status
    )


class SentinelEmulator(Emulator):
    name = "sentinel"
    sink_type = "sentinel"

    def sink_config(self, url: str) -> dict[str, Any]:
        return sentinel_entry(self, url)

    def __init__(self) -> None:
        super().__init__()
        self.tenants: list[str] = [TENANT]
        self.clients: dict[str, str] = {CLIENT_ID: CLIENT_SECRET}  # client id -> secret
        self.certificates: dict[str, str] = {}  # client id -> PEM certificate
        self.publishers: list[str] = [CLIENT_ID]  # hold Monitoring Metrics Publisher on the DCR
        self.dcrs: dict[str, list[str]] = {DCR: [STREAM]}
        self.token_lifetime_s = 3599
        self.max_body_bytes = 1_000_000  # "1 MB for both compressed and uncompressed data"
        self.throttle_after_accepted = -1  # >= 0: after that many more accepted uploads, one 429
        self.rows: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.issued: dict[str, tuple[str, float]] = {}  # access token -> (client id, expiry)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token)
        self.route("POST", INGEST, self.ingest)

    # --- control plane -------------------------------------------------------------------
    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        self.rows.extend(entries)

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        created = [{"TimeGenerated": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "EventId": f"n{i}"} for i in range(count)]
        self.add_entries(created)
        return created

    def all_entries(self) -> list[dict[str, Any]]:
        return list(self.rows)

    def _control(self, req: Request) -> Response:
        with self.lock:
            if req.path == "/_control/batches" and req.method == "GET":
                return Response.json(self.batches)
            if req.path == "/_control/tokens" and req.method == "GET":
                return Response.json(self.token_requests)
            if req.path == "/_control/revoke" and req.method == "POST":
                revoked = len(self.issued)
                self.issued.clear()
                return Response.json({"revoked": revoked})
        return super()._control(req)

    def _take_fault(self, path: str) -> Fault | None:
        """Injected faults answer with the body the endpoint they hit would send."""
        fault = super()._take_fault(path)
        if fault is None or fault.body is not None or not fault.status:
            return fault
        if "/oauth2/" in path:
            body = entra_error(fault.status, "temporarily_unavailable", 50196, "injected fault").body.decode()
        else:
            code = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(fault.status, "InjectedFault")
            body = json.dumps({"error": {"code": code, "message": f"injected fault {fault.status}"}})
            fault = dataclasses.replace(fault, headers={"x-ms-error-code": code, **fault.headers})
        return dataclasses.replace(fault, body=body)

    # --- Entra ID ------------------------------------------------------------------------------
    def token(self, req: Request, tenant: str) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode(errors="replace")).items()}
        client_id = form.get("client_id", "")
        with self.lock:
            self.token_requests.append(
                {
                    "tenant": tenant,
                    "client_id": client_id,
                    "scope": form.get("scope"),
                    "assertion": "client_assertion" in form,
                }
            )
        if tenant not in self.tenants:
            return entra_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or scope.removesuffix("/.default").rstrip("/") not in AUDIENCES:
            return entra_error(400, "invalid_scope", 70011, f"The provided value for scope {scope} is not valid.")
        if client_id not in self.clients and client_id not in self.certificates:
            return entra_error(
                400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found."
            )
        if "client_assertion" in form:
            refused = self._assertion(form, client_id, f"{req.base_url}/{tenant}/oauth2/v2.0/token")
            if refused:
                return refused
        elif "client_secret" in form:
            if self.clients.get(client_id) != form["client_secret"]:
                return entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        else:
            return entra_error(
                400, "invalid_client", 7000218, "The request body must contain client_assertion or client_secret."
            )
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.issued[token] = (client_id, time.monotonic() + self.token_lifetime_s)
        return Response.json(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime_s,
                "ext_expires_in": self.token_lifetime_s,
                "access_token": token,
            }
        )

    def _assertion(self, form: dict[str, str], client_id: str, audience: str) -> Response | None:
        bad = entra_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        if form.get("client_assertion_type") != ASSERTION_TYPE or client_id not in self.certificates:
            return entra_error(400, "invalid_client", 700027, "Client assertion is not accepted for this client.")
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = x509.load_pem_x509_certificate(self.certificates[client_id].encode())
        try:
            head, body, signature = form["client_assertion"].split(".")
            header = json.loads(_unb64(head))
            claims = json.loads(_unb64(body))
            sig = _unb64(signature)
        except (ValueError, binascii.Error):
            return bad
        thumbprint = base64.urlsafe_b64encode(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())
        if header.get("x5t#S256") != thumbprint.rstrip(b"=").decode():
            return entra_error(401, "invalid_client", 700027, "The certificate with the thumbprint is not registered.")
        schemes = {
            "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            "RS256": padding.PKCS1v15(),
        }
        if header.get("alg") not in schemes:
            return bad
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            return bad
        try:
            public_key.verify(sig, f"{head}.{body}".encode(), schemes[header["alg"]], hashes.SHA256())
        except InvalidSignature:
            return bad
        now = time.time()
        if claims.get("aud") != audience or claims.get("iss") != client_id or claims.get("sub") != client_id:
            return entra_error(400, "invalid_client", 700021, "Client assertion audience or issuer is invalid.")
        if not (claims.get("nbf", 0) - 300 <= now < claims.get("exp", 0)) or not claims.get("jti"):
            return entra_error(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        return None

    # --- Logs Ingestion API ---------------------------------------------------------------------
    def ingest(self, req: Request, dcr: str, stream: str) -> Response:
        with self.lock:
            if self.throttle_after_accepted == 0:
                self.throttle_after_accepted = -1
                return azure_error(429, "TooManyRequests", "Throttled.", {"Retry-After": "1"})
        version = req.arg("api-version")
        if version not in API_VERSIONS:
            return azure_error(400, "InvalidApiVersion", f"The api-version '{version}' is not supported.")
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        with self.lock:
            holder = self.issued.get(token) if scheme == "Bearer" else None
        if holder is None or time.monotonic() >= holder[1]:
            challenge = {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com"'}
            return azure_error(401, "InvalidToken", "The provided token is not valid or has expired.", challenge)
        if dcr not in self.dcrs:
            return azure_error(404, "NotFound", f"Data collection rule with immutable Id '{dcr}' not found.")
        if holder[0] not in self.publishers:
            return azure_error(
                403,
                "OperationFailed",
                "The authentication token provided does not have access to "
                f"ingest data for the data collection rule with immutable Id '{dcr}'.",
            )
        if stream not in self.dcrs[dcr]:
            return azure_error(404, "InvalidStream", f"Stream '{stream}' is not declared in the data collection rule.")
        too_large = azure_error(413, "ContentLengthLimitExceeded", f"Maximum request size {self.max_body_bytes}.")
        if len(req.body) > self.max_body_bytes:
            return too_large
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        data = req.body
        if encoding == "gzip":
            inflater = zlib.decompressobj(wbits=31)
            try:
                data = inflater.decompress(req.body, self.max_body_bytes + 1)
            except zlib.error:
                return azure_error(400, "InvalidContentEncoding", "The body is not valid gzip.")
            if len(data) > self.max_body_bytes:
                return too_large
            if not inflater.eof:
                return azure_error(400, "InvalidContentEncoding", "The gzip body is truncated.")
        elif encoding != "identity":
            return azure_error(415, "UnsupportedMediaType", f"Content-Encoding '{encoding}' is not supported.")
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return azure_error(400, "InvalidPayload", "The request body is not valid UTF-8 JSON.")
        rows = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(row, dict) for row in rows):
            return azure_error(400, "InvalidPayload", "The request body must be an array of JSON objects.")
        with self.lock:
            self.batches.append(
                {
                    "dcr": dcr,
                    "stream": stream,
                    "rows": len(rows),
                    "bytes": len(req.body),
                    "uncompressed": len(data),
                    "content_encoding": req.header("content-encoding"),
                    "request_id": req.header("x-ms-client-request-id"),
                }
            )
            self.rows.extend(rows)
            if self.throttle_after_accepted > 0:
                self.throttle_after_accepted -= 1
        return Response(204)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sentinel_entry(emulator: SentinelEmulator, url: str) -> dict[str, Any]:
    """A ``sentinel`` sink's settings that reach this receiver (token endpoint and DCR alike)."""
    client_id, secret = next(iter(emulator.clients.items()))
    dcr, streams = next(iter(emulator.dcrs.items()))
    return {
        "type": "sentinel",
        "tenant_id": emulator.tenants[0],
        "client_id": client_id,
        "client_secret": secret,
        "authority_host": url,
        "endpoint": url,
        "dcr_immutable_id": dcr,
        "stream_name": streams[0],
    }
