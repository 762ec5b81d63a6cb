"""Choose the asset store from one setting, ``FETCHFLOW_STORE``.

``s3://bucket/prefix`` gives an :class:`S3Store`; a folder path (or ``file:///path``) gives a
:class:`LocalStore`, the embedded default at ``<home>/assets``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from fetchflow.errors import StorageError
from fetchflow.settings import Settings
from fetchflow.storage.base import AssetStore
from fetchflow.storage.keys import normalize_prefix, split_s3_uri
from fetchflow.storage.local import LocalStore
from fetchflow.storage.s3 import S3Store

__all__ = ["open_store"]

_STORE_HINT = "set FETCHFLOW_STORE to s3://bucket/prefix or to a folder path"


def open_store(settings: Settings) -> AssetStore:
    """The store ``settings.store`` names. Nothing is contacted yet (see ``preflight``).

    Raises:
        StorageError: ``store`` is not a usable ``s3://`` URI or folder path.
    """
    spec = settings.store.strip()
    scheme = urlsplit(spec).scheme if "://" in spec else ""
    if scheme == "s3":
        try:
            bucket, prefix = split_s3_uri(spec)
            prefix = normalize_prefix(prefix)
        except ValueError as error:
            raise StorageError(
                message=f"FETCHFLOW_STORE={spec!r} is not a usable S3 location: {error}",
                hint="use s3://bucket or s3://bucket/some/prefix",
                target=spec,
                retryable=False,
            ) from error
        return S3Store(
            bucket,
            prefix,
            spool_dir=settings.spool_dir,
            public_base_url=settings.public_base_url,
            presign_expiry_seconds=settings.presign_expiry_seconds,
            concurrency=settings.upload_concurrency,
            attempts=settings.upload_attempts,
            multipart_threshold_bytes=settings.multipart_threshold_bytes,
        )
    if scheme == "file":
        root = Path(unquote(urlsplit(spec).path))
    elif scheme or not spec:
        raise StorageError(
            message=f"FETCHFLOW_STORE={spec!r}: "
            + (f"{scheme}:// stores are not supported" if scheme else "empty"),
            hint=_STORE_HINT,
            target=spec,
            retryable=False,
        )
    else:
        root = Path(spec)
    return LocalStore(root, spool_dir=settings.spool_dir, concurrency=settings.upload_concurrency)
