"""What Entra ID's and the Logs Ingestion API's answers say, and what to fix when they refuse.

Both answer errors as JSON, in two shapes: Entra ID's OAuth ``{"error", "error_description"}``
(the description's first line carries the AADSTS code) and Azure.Core's ErrorResponse
``{"error": {"code", "message"}}``. Either is reduced to a code and a one-line message, scrubbed
of the credentials before it can reach a log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sinks.http_exchange import Exchange
from sinks.sentinel.config import SentinelSinkConfig
from sinks.sentinel.rows import mapping

ROLE = "Monitoring Metrics Publisher"
SMALLEST_REFUSAL_BELIEVED = 64 * 1024
"""A 413 for one row smaller than this is a body limit set too low (a proxy in front of the
endpoint, or ``max_request_bytes`` above it), not a large event: the S3 sink draws the same line."""
_API_VERSION_WORDS = ("apiversion", "api-version")


@dataclass(slots=True)
class Answer:
    status: int
    code: str
    message: str
    retry_after: float | None
    payload: dict[str, Any]

    def describe(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status}{code}: {self.message}" if self.message else f"HTTP {self.status}{code}"


def answer_of(found: Exchange, token_answer: bool, scrub: Callable[[str], str]) -> Answer:
    payload = found.payload
    if token_answer:  # {"error", "error_description"}; the description's first line has the AADSTS code
        code = str(payload.get("error") or "")
        lines = str(payload.get("error_description") or found.reason or "").splitlines()
        message = lines[0] if lines else ""
    else:  # Azure.Core ErrorResponse: {"error": {"code", "message"}}
        error = mapping(payload.get("error"))
        code = str(error.get("code") or found.headers.get("x-ms-error-code") or "")
        message = str(error.get("message") or found.reason or "")
    return Answer(found.status, scrub(code)[:100], scrub(message)[:300], found.retry_after, payload)


def names_a_setting(answer: Answer, stream_name: str) -> bool:
    """A 400 that names the api-version or the stream refuses the configuration, not the body:
    its code names either (``InvalidStream``), or its message the api-version or this stream.
    *Inferred*: Azure's codes for these are not documented; its answers name what they refuse.
    The word "stream" in a message alone does not count: "the request stream could not be
    read" is about the body."""
    code, message = answer.code.lower(), answer.message.lower()
    named = any(word in code for word in (*_API_VERSION_WORDS, "stream"))
    named = named or any(word in message for word in (*_API_VERSION_WORDS, stream_name.lower()))
    return answer.status == 400 and named


def refusal_hint(status: int, config: SentinelSinkConfig) -> str:
    """What the operator must fix when the Logs Ingestion API refuses for good."""
    if status == 403:
        return (
            f"the app registration {config.client_id} needs the '{ROLE}' role on the data collection rule "
            f"{config.dcr_immutable_id}: assign it under the DCR's Access control (IAM); a new assignment "
            "may take up to 30 minutes to apply, then restart or reload"
        )
    if status == 401:
        return (
            f"a fresh token was refused: check that scope {config.scope} matches the endpoint's cloud and that "
            f"tenant_id {config.tenant_id} is the DCR's tenant"
        )
    if status == 404:
        return (
            f"no DCR {config.dcr_immutable_id} with stream {config.stream_name} at {config.endpoint}: check "
            "dcr_immutable_id (immutableId in the DCR's JSON view), stream_name (its streamDeclarations) and "
            "that endpoint is this DCR's (or its DCE's) logs ingestion URL"
        )
    return (
        f"check api_version {config.api_version}, and that stream_name {config.stream_name} is declared in the "
        "DCR with this sink's columns"
    )
