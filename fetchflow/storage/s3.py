"""The S3 store (boto3): AWS S3 or any S3-compatible server.

Where and as whom is boto3's business: ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_REGION``
and the keys work untouched, so MinIO, R2, rclone or moto need no option of ours. boto3 is
imported on first use, not at import time, so commands that never store start fast.

Each object is written once: keys are ``<prefix>/<sha[:2]>/<sha>.<ext>``, and an existing
key is not uploaded again. Uploads carry Content-Type, ``x-amz-meta-sha256`` and a SHA-256
the server verifies (per part for multipart uploads). Object metadata holds only what is
the same for every writer of those bytes (the sha256): identical bytes from two steps are
one object, so who wrote them and how (step, run, file name, model, provenance) lives in
each step's asset record, not on the object.
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fetchflow.errors import StorageError
from fetchflow.settings import PRESIGN_MAX_SECONDS
from fetchflow.storage.base import (
    BaseStore,
    StoredObject,
    check_state_key,
    decode_state,
    encode_state,
)
from fetchflow.storage.keys import join_key, sha256_hex, sha256_of_key, split_s3_uri
from fetchflow.storage.s3_errors import translate_s3_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Store"]

_MIB = 1024 * 1024
_PREFLIGHT_DIR = ".fetchflow-preflight"


class S3Store(BaseStore):
    """Assets as objects in an S3 bucket.

    Args:
        bucket: The bucket (must exist; :meth:`preflight` checks).
        prefix: Key prefix, already normalized (no ``..``, no surrounding ``/``).
        spool_dir: Where bytes go if an upload fails for good.
        public_base_url: If set, ``file_url`` is this + ``/`` + key instead of presigned.
        presign_expiry_seconds: Lifetime of presigned URLs, capped at 7 days.
        concurrency: Most files :meth:`put_many` uploads at once, and most parts of one
            multipart upload in flight.
        attempts: Tries per S3 request (botocore standard retry mode, backoff included).
        multipart_threshold_bytes: Files at least this large go up in parts.
        client: A ready boto3 S3 client (tests); by default one is made on first use.
        clock: Gives ``created_at``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        spool_dir: Path,
        public_base_url: str | None = None,
        presign_expiry_seconds: int = 24 * 3600,
        concurrency: int = 4,
        attempts: int = 5,
        multipart_threshold_bytes: int = 64 * _MIB,
        client: S3Client | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(spool_dir=spool_dir, concurrency=concurrency, clock=clock)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_expiry_seconds = max(1, min(presign_expiry_seconds, PRESIGN_MAX_SECONDS))
        self.attempts = max(1, attempts)
        self.multipart_threshold_bytes = max(5 * _MIB, multipart_threshold_bytes)
        self._client = client
        # An injected client serves preflight too; otherwise preflight gets its own.
        self._preflight_client = client
        self._client_lock = threading.Lock()

    # -- the client ----------------------------------------------------------------------

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client, made on first use from boto3's own configuration.

        Raises:
            StorageError: boto3 cannot make a client (unknown profile, bad config file).
        """
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client(attempts=self.attempts, connect_timeout=10)
            return self._client

    def _quick_client(self) -> S3Client:
        """A client that gives up fast (two tries, short timeouts), for :meth:`preflight`."""
        with self._client_lock:
            if self._preflight_client is None:
                self._preflight_client = self._make_client(
                    attempts=min(2, self.attempts), connect_timeout=5
                )
            return self._preflight_client

    def _make_client(self, *, attempts: int, connect_timeout: int) -> S3Client:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        config = Config(
            # rclone (and others) return whole-object checksums on range GETs, which
            # boto3's default response validation rejects.
            response_checksum_validation="when_required",
            # SigV4 everywhere: presigned URLs then honour the 7-day maximum expiry.
            signature_version="s3v4",
            retries={"mode": "standard", "total_max_attempts": attempts},
            max_pool_connections=max(10, 2 * self.concurrency),
            connect_timeout=connect_timeout,
            read_timeout=60,
        )
        try:
            return boto3.session.Session().client("s3", config=config)
        except BotoCoreError as error:
            raise StorageError(
                message=f"cannot set up an S3 client for s3://{self.bucket}: {error}",
                hint="fix the AWS configuration boto3 reads (AWS_PROFILE, AWS_REGION, "
                "AWS_ENDPOINT_URL, ~/.aws/config)",
                target=f"s3://{self.bucket}",
                retryable=False,
            ) from error

    @property
    def endpoint(self) -> str:
        """The endpoint URL the client talks to (``""`` if no client can be made)."""
        try:
            return str(self.client.meta.endpoint_url)
        except StorageError:
            return ""

    def _uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def _error(self, error: Exception, *, doing: str, key: str = "") -> StorageError:
        return translate_s3_error(
            error, doing=doing, bucket=self.bucket, target=self._uri(key), endpoint=self.endpoint
        )

    # -- the protocol --------------------------------------------------------------------

    def describe(self) -> str:
        """``s3://bucket/prefix (endpoint https://...)``."""
        where = self._uri(self.prefix)
        endpoint = self.endpoint
        return f"{where} (endpoint {endpoint})" if endpoint else where

    def preflight(self) -> None:
        """Check the bucket exists, then write and delete a tiny probe object under the prefix.

        Raises:
            StorageError: Missing bucket, wrong credentials, unreachable endpoint or no
                write permission; the message names the bucket and endpoint.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._quick_client()
        try:
            client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, doing="checking bucket") from error
        probe = join_key(self.prefix, f"{_PREFLIGHT_DIR}/{uuid.uuid4().hex}")
        try:
            client.put_object(Bucket=self.bucket, Key=probe, Body=b"fetchflow preflight")
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, doing="writing a probe object to", key=probe) from error
        # Write-only credentials are enough to run; a leftover probe is a few bytes.
        with contextlib.suppress(ClientError, BotoCoreError):
            client.delete_object(Bucket=self.bucket, Key=probe)

    def _store(
        self, relative_key: str, data: bytes, *, sha256: str, file_type: str, meta: dict[str, str]
    ) -> StoredObject:
        from botocore.exceptions import BotoCoreError, ClientError

        key = join_key(self.prefix, relative_key)
        try:
            written = not self._exists(key, len(data))
            if written:
                self._upload(key, data, sha256=sha256, file_type=file_type, meta=meta)
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, doing="uploading", key=key) from error
        return StoredObject(storage_uri=self._uri(key), file_url=self.url_for(key), written=written)

    def _exists(self, key: str, size: int) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            # S3 answers 403, not 404, for a missing key when the credentials may not
            # list the bucket; write-only credentials should still upload (and a real
            # credentials problem then fails the PUT with its own error).
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in {403, 404}:
                return False
            raise
        # Same content name and size: the same bytes (S3 writes are all-or-nothing).
        return head.get("ContentLength") == size

    def _upload(
        self, key: str, data: bytes, *, sha256: str, file_type: str, meta: dict[str, str]
    ) -> None:
        if len(data) < self.multipart_threshold_bytes:
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=file_type,
                Metadata=meta,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            return
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold_bytes,
            multipart_chunksize=max(5 * _MIB, min(16 * _MIB, self.multipart_threshold_bytes // 4)),
            max_concurrency=self.concurrency,
        )
        self.client.upload_fileobj(
            io.BytesIO(data),
            self.bucket,
            key,
            ExtraArgs={"ContentType": file_type, "Metadata": meta, "ChecksumAlgorithm": "SHA256"},
            Config=transfer,
        )

    def url_for(self, key: str) -> str:
        """The ``file_url`` of a key: public base URL + key, or a presigned GET URL."""
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key)}"
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.presign_expiry_seconds,
        )

    def file_url(self, storage_uri: str) -> str:
        """A fresh ``file_url`` (a new presigned link, or the public URL) for a stored file."""
        return self.url_for(self.key_of(storage_uri))

    def key_of(self, storage_uri: str) -> str:
        """The key behind one of this store's ``s3://`` URIs.

        Raises:
            StorageError: Not an ``s3://`` URI of this bucket and prefix.
        """
        try:
            bucket, key = split_s3_uri(storage_uri)
        except ValueError as error:
            raise StorageError(
                message=f"S3 store {self.describe()} cannot read {storage_uri!r}: {error}",
                hint="read it with the store that wrote it (FETCHFLOW_STORE of that run)",
                target=storage_uri,
                retryable=False,
            ) from error
        inside = key.startswith(f"{self.prefix}/") if self.prefix else bool(key)
        if bucket != self.bucket or not inside or ".." in key.split("/"):
            raise StorageError(
                message=f"{storage_uri} is outside the S3 store {self.describe()}",
                hint="read it with the store that wrote it (FETCHFLOW_STORE of that run)",
                target=storage_uri,
                retryable=False,
            )
        return key

    def read(self, storage_uri: str) -> bytes:
        """The bytes of an object of this store, checked against the sha256 in its key.

        Raises:
            StorageError: Outside the store, missing, unreachable or corrupted.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key_of(storage_uri)
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, doing="reading", key=key) from error
        expected = sha256_of_key(key)
        if expected is not None and sha256_hex(data) != expected:
            raise StorageError(
                message=f"{storage_uri} is corrupted: its bytes do not match the sha256 in its key",
                hint="delete the object and run the producing step again",
                target=storage_uri,
                endpoint=self.endpoint,
                retryable=False,
            )
        return data

    # -- run state ---------------------------------------------------------------------------

    def _state_key(self, key: str) -> str:
        try:
            return join_key(self.prefix, check_state_key(key))
        except ValueError as error:
            raise StorageError(
                message=f"S3 store {self.describe()}: {error}",
                hint="state keys are made by fetchflow; this is a bug, please report it",
                target=self._uri(self.prefix),
                retryable=False,
            ) from None

    def put_state(self, key: str, document: Mapping[str, object]) -> None:
        """PUT the document (S3 writes are whole: a reader sees the old or the new one).

        Raises:
            StorageError: The upload failed (after the client's retries).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._state_key(key)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=encode_state(document),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, doing="writing run state to", key=full) from error

    def get_state(self, key: str) -> dict[str, object] | None:
        """The document, or None when there is no such object.

        Raises:
            StorageError: Unreachable, refused, or not a JSON object.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._state_key(key)
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise self._error(error, doing="reading run state from", key=full) from error
        except BotoCoreError as error:
            raise self._error(error, doing="reading run state from", key=full) from error
        return decode_state(data, self._uri(full))

    def list_state(self, prefix: str) -> list[str]:
        """Every document's key under ``prefix`` (relative to the store's prefix), sorted.

        Raises:
            StorageError: The bucket cannot be listed.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._state_key(prefix.rstrip("/")) + "/"
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                keys.extend(item["Key"].removeprefix(base) for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, doing="listing run state in", key=full) from error
        return sorted(keys)
