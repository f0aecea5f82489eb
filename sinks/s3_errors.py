"""What S3 (or an S3-compatible store) meant by an error: retry, stop with a hint only the
operator can act on, or store the batch as smaller objects. Shared by the S3 and Security Lake
sinks through ``sinks.s3_objects``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # botocore is imported where a client is built or its errors caught
    from botocore.exceptions import ClientError

# Codes a later attempt can get past; anything else in 4xx means the request itself is wrong.
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "ConditionalRequestConflict",
        "ExpiredToken",
        "TokenRefreshRequired",
    }
)
FATAL_HINTS = {
    "AccessDenied": "check the IAM policy allows s3:PutObject (and kms:GenerateDataKey for SSE-KMS)",
    "403": "check the IAM policy allows s3:ListBucket on the bucket",
    "InvalidAccessKeyId": "the access key id from the AWS credential chain is not known to S3",
    "SignatureDoesNotMatch": "the secret key from the AWS credential chain does not match its key id",
    "NoSuchBucket": "create the bucket or fix `bucket` in the config",
    "404": "create the bucket or fix `bucket` in the config",
    "PermanentRedirect": "the bucket lives in another region: fix `region` in the config",
    "301": "the bucket lives in another region: fix `region` in the config",
    "NotImplemented": "the store does not implement a header the sink sent: If-None-Match (create-only "
    "writes, which store each batch once), or the checksum, encryption or storage class settings",
    "501": "the store does not implement a header the sink sent: If-None-Match (create-only writes, which "
    "store each batch once), or the checksum, encryption or storage class settings",
}
# Said with a retry that only the operator can end
RETRY_HINTS = {
    "RequestTimeTooSkewed": "this host's clock is too far from S3's (S3 allows 15 minutes): fix its time "
    "synchronisation (NTP); retrying meanwhile, the events stay journaled",
    "ExpiredToken": "the credentials' session token has expired and this process cannot renew temporary keys "
    "given as such (AWS_SESSION_TOKEN, a credentials file): use a profile with role_arn, or an instance or "
    "container role, which botocore renews before expiry; retrying meanwhile, the events stay journaled",
}
# Calls botocore makes to get credentials (a profile's role_arn, web identity, IAM Identity
# Center): their refusal is STS's, raised from the S3 call that needed the credentials.
CREDENTIAL_OPERATIONS = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetRoleCredentials"}
)


def fatal_hint(exc: ClientError, code: str, status: int) -> str | None:
    """What to fix after a refusal: getting the credentials (STS), or else the S3 request's."""
    operation = getattr(exc, "operation_name", "")
    if operation not in CREDENTIAL_OPERATIONS:
        return FATAL_HINTS.get(code) or FATAL_HINTS.get(str(status))
    return (
        f"getting credentials was refused ({operation}), before S3 saw the request: check that the role's trust "
        "policy lets the source identity assume it, that the profile's external_id is the external id the role "
        "asks for (a Security Lake custom source's providerIdentity), and that the source credentials are valid"
    )


def kms_hint(code: str, key_id: str | None) -> str | None:
    """S3 passes KMS's refusals on as ``KMS.<KMS error>`` codes (*inferred* from the codes S3
    answers, e.g. ``KMS.NotFoundException``, ``KMS.DisabledException``): the key, not S3, is
    what to fix."""
    if not code.startswith("KMS."):
        return None
    key = key_id or "the bucket's default KMS key"
    return (
        f"SSE-KMS key {key} refused ({code.removeprefix('KMS.')}): check that it exists in the bucket's region, "
        "is enabled, and that its key policy lets this writer use it (kms:GenerateDataKey)"
    )


# An object the store will never take whole: split (``S3Objects._store_batch``)
TOO_LARGE_CODES = frozenset({"EntityTooLarge", "413", "RequestEntityTooLarge"})
# An event under this refused as too large means a misconfigured limit, not a large event
SMALLEST_REFUSAL_BELIEVED = 64 * 1024


class ObjectTooLarge(Exception):
    """The store refused an object as too large: its events go again as smaller objects."""


def error_code(exc: ClientError) -> str:
    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
        return "PreconditionFailed"  # whatever the body: some S3-compatible stores send none (code "412")
    return str(exc.response.get("Error", {}).get("Code", ""))
