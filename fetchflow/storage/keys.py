"""Pure naming rules of the asset store: content keys, file names, metadata, URIs.

No I/O here. Keys come only from the sha256 and a sanitized extension, so whatever a step
calls its file, the object lands under the store's prefix and nowhere else.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from pathlib import PurePosixPath

__all__ = [
    "content_key",
    "extension_for",
    "join_key",
    "metadata_for",
    "normalize_prefix",
    "safe_file_name",
    "sha256_hex",
    "sha256_of_key",
    "split_s3_uri",
]

_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SHA_FILE = re.compile(r"^([0-9a-f]{64})(?:\.[a-z0-9]{1,10})?$")
# Well-known types first: mimetypes' tables differ between platforms (image/jpeg -> .jpe).
_PREFERRED_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/svg+xml": "svg",
    "text/plain": "txt",
    "application/json": "json",
}


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def extension_for(file_name: str, file_type: str) -> str:
    """The extension an object gets: the file name's, else the MIME type's, else ``bin``.

    Only ``[a-z0-9]{1,10}`` survives, so an extension can never carry a path.
    """
    suffix = PurePosixPath(file_name.replace("\\", "/")).suffix.lstrip(".").lower()
    if _EXTENSION.match(suffix):
        return suffix
    mime = file_type.split(";")[0].strip().lower()
    guessed = _PREFERRED_EXTENSIONS.get(mime) or (mimetypes.guess_extension(mime) or "")
    guessed = guessed.lstrip(".")
    return guessed if _EXTENSION.match(guessed) else "bin"


def safe_file_name(file_name: str, *, sha256: str, extension: str) -> str:
    """A human-friendly file name with no path in it (``hero-1.png``).

    Directory parts are dropped, unusual characters become ``-``, and a name left empty
    becomes ``<id>.<ext>``.
    """
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME_CHARS.sub("-", base).strip(".-")
    return base[:200] if base else f"{sha256[:16]}.{extension}"


def normalize_prefix(prefix: str) -> str:
    """``a//b/`` -> ``a/b``; refuses ``.`` and ``..`` segments.

    Raises:
        ValueError: The prefix has a ``.`` or ``..`` segment.
    """
    parts = [part for part in prefix.split("/") if part]
    if any(part in {".", ".."} for part in parts):
        raise ValueError(f"prefix {prefix!r} has a '.' or '..' segment")
    return "/".join(parts)


def join_key(prefix: str, relative: str) -> str:
    """``prefix/relative``, or ``relative`` alone when the prefix is empty."""
    return f"{prefix}/{relative}" if prefix else relative


def content_key(sha256: str, extension: str) -> str:
    """The key of content below the prefix: ``<sha[:2]>/<sha>.<ext>``."""
    return f"{sha256[:2]}/{sha256}.{extension}"


def sha256_of_key(key: str) -> str | None:
    """The sha256 a content key was named after, or ``None`` if it is not a content key."""
    match = _SHA_FILE.match(key.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``.

    Raises:
        ValueError: Not an ``s3://`` URI, or no bucket.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, key


def metadata_for(*, sha256: str) -> dict[str, str]:
    """The ``x-amz-meta-*`` of a content object (without the prefix): its ``sha256``.

    Identical bytes share one object, written once by whichever step stores them first,
    so an object holds only what is the same for every writer of those bytes. Who wrote
    them, under which name, with which provenance is in each :class:`AssetRecord` (the
    truth), never in the object: it would be the first writer's, and S3 caps metadata.
    """
    return {"sha256": sha256}
