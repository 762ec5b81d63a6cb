"""Turn boto3 exceptions into :class:`StorageError` with a cause and a fix.

Only the error code, the HTTP status and a trimmed server message are kept: never a
header, a signed URL or a credential (S3 error bodies can echo the string to sign, so the
body itself is not copied).
"""

from __future__ import annotations

from fetchflow.errors import StorageError

__all__ = ["translate_s3_error"]

_MESSAGE_MAX = 200
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "Forbidden",
    "403",
}
_MISSING_BUCKET_CODES = {"NoSuchBucket"}
_MISSING_KEY_CODES = {"NoSuchKey", "NotFound", "404"}
_CREDENTIALS_HINT = (
    "check the credentials boto3 finds (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE, ~/.aws) and that they may read and write this bucket"
)


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 3] + "..."


def translate_s3_error(
    error: Exception, *, doing: str, bucket: str, target: str, endpoint: str
) -> StorageError:
    """A :class:`StorageError` for a failed S3 call; the caller chains ``error`` with ``from``.

    Args:
        error: What boto3 raised (``ClientError`` or ``BotoCoreError``).
        doing: What we were doing, for the message (``uploading``, ``checking bucket``).
        bucket: The bucket.
        target: ``s3://bucket/key`` (or ``s3://bucket``) the call was about.
        endpoint: The endpoint URL the client talks to.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = f"{target} (endpoint {endpoint})"
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", "") or "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        said = _trim(str(info.get("Message", "") or ""))
        detail = f"HTTP {status} {code}".strip() + (f": {said}" if said else "")
        if code in _MISSING_BUCKET_CODES or (doing == "checking bucket" and status == 404):
            return StorageError(
                message=f"{doing} {where}: bucket {bucket!r} does not exist ({detail})",
                hint=f"create bucket {bucket!r} on that endpoint, or fix the bucket name in "
                "FETCHFLOW_STORE (and AWS_ENDPOINT_URL / AWS_REGION if it lives elsewhere)",
                target=target,
                endpoint=endpoint,
                retryable=False,
            )
        if code in _CREDENTIAL_CODES or status == 403:
            return StorageError(
                message=f"{doing} {where}: access denied ({detail})",
                hint=_CREDENTIALS_HINT,
                target=target,
                endpoint=endpoint,
                retryable=False,
            )
        if code in _MISSING_KEY_CODES or status == 404:
            return StorageError(
                message=f"{doing} {where}: no such object ({detail})",
                hint="the asset is gone from the store; run the step that made it again",
                target=target,
                endpoint=endpoint,
                retryable=False,
            )
        return StorageError(
            message=f"{doing} {where} failed: {detail}",
            hint="try again later; if it persists, check the S3 server's status and logs",
            target=target,
            endpoint=endpoint,
            retryable=status is None or status >= 500 or status in {408, 429},
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            message=f"{doing} {where}: no usable AWS credentials found ({error})",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
            "or use a local folder in FETCHFLOW_STORE",
            target=target,
            endpoint=endpoint,
            retryable=False,
        )
    if isinstance(error, ConnectionError):
        return StorageError(
            message=f"{doing} {where}: cannot reach the endpoint ({type(error).__name__})",
            hint="check that the S3 server is up and AWS_ENDPOINT_URL (or AWS_REGION) points at it",
            target=target,
            endpoint=endpoint,
        )
    return StorageError(
        message=f"{doing} {where} failed: {type(error).__name__}: {_trim(str(error))}",
        hint="check the S3 settings (FETCHFLOW_STORE, AWS_ENDPOINT_URL, AWS_REGION)",
        target=target,
        endpoint=endpoint,
    )
