"""The local directory store: the embedded default, no cloud account needed.

Objects are files under the root folder, named like S3 keys (``<sha[:2]>/<sha>.<ext>``), so
a folder can later be synced to a bucket as is. ``file_url`` and ``storage_uri`` are both
``file://`` URIs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fetchflow.errors import StorageError
from fetchflow.storage.base import (
    BaseStore,
    StoredObject,
    check_state_key,
    decode_state,
    encode_state,
)
from fetchflow.storage.keys import sha256_hex, sha256_of_key
from fetchflow.storage.spool import write_atomically

__all__ = ["LocalStore"]

_FIX_STORE = "set FETCHFLOW_STORE to a writable folder (or s3://bucket/prefix)"


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


class LocalStore(BaseStore):
    """Assets as files in a folder.

    Args:
        root: The folder; made absolute now (relative to the current directory).
        spool_dir: Where bytes go if writing fails for good.
        concurrency: Most files :meth:`put_many` writes at once.
        clock: Gives ``created_at``.
    """

    def __init__(
        self,
        root: Path,
        *,
        spool_dir: Path,
        concurrency: int = 4,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(spool_dir=spool_dir, concurrency=concurrency, clock=clock)
        self.root = root.expanduser().resolve()

    def describe(self) -> str:
        """The absolute folder."""
        return str(self.root)

    def preflight(self) -> None:
        """Create the folder if needed and write and delete a probe file in it.

        Raises:
            StorageError: The folder cannot be created or written.
        """
        probe = self.root / f".fetchflow-preflight-{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"fetchflow preflight")
            probe.unlink()
        except OSError as error:
            raise StorageError(
                message=f"local asset store {self.root} is not writable: {_reason(error)}",
                hint=f"make {self.root} a writable folder, or {_FIX_STORE}",
                target=str(self.root),
                retryable=False,
            ) from error

    def _store(
        self, relative_key: str, data: bytes, *, sha256: str, file_type: str, meta: dict[str, str]
    ) -> StoredObject:
        path = self.root / relative_key
        written = False
        try:
            # A file of the right size under a content name is the same content: keep it.
            if not (path.is_file() and path.stat().st_size == len(data)):
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, data)
                written = True
        except OSError as error:
            raise StorageError(
                message=f"writing {path} failed: {_reason(error)}",
                hint=f"free space or fix permissions in {self.root}, or {_FIX_STORE}",
                target=str(path),
            ) from error
        uri = path.as_uri()
        return StoredObject(storage_uri=uri, file_url=uri, written=written)

    def path_of(self, storage_uri: str) -> Path:
        """The file behind one of this store's ``file://`` URIs.

        Raises:
            StorageError: Not a ``file://`` URI, or outside this store's folder.
        """
        parts = urlsplit(storage_uri)
        if parts.scheme != "file" or parts.netloc not in {"", "localhost"}:
            raise StorageError(
                message=f"local asset store {self.root} cannot read {storage_uri!r}: "
                "not a file:// URI",
                hint="read it with the store that wrote it (FETCHFLOW_STORE of that run)",
                target=storage_uri,
                retryable=False,
            )
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(
                message=f"{path} is outside the local asset store {self.root}",
                hint="read it with the store that wrote it (FETCHFLOW_STORE of that run)",
                target=str(path),
                retryable=False,
            )
        return path

    def file_url(self, storage_uri: str) -> str:
        """The ``file://`` URL of a file in this store (it never expires)."""
        return self.path_of(storage_uri).as_uri()

    def read(self, storage_uri: str) -> bytes:
        """The bytes of a file in this store, checked against the sha256 in its name.

        Raises:
            StorageError: Outside the store, missing, unreadable or corrupted.
        """
        path = self.path_of(storage_uri)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise StorageError(
                message=f"reading {path} failed: {_reason(error)}",
                hint="the asset is gone from the local store; run the producing step again",
                target=str(path),
                retryable=False,
            ) from error
        expected = sha256_of_key(path.name)
        if expected is not None and sha256_hex(data) != expected:
            raise StorageError(
                message=f"{path} is corrupted: its bytes do not match the sha256 in its name",
                hint="delete the file and run the producing step again",
                target=str(path),
                retryable=False,
            )
        return data

    # -- run state ---------------------------------------------------------------------------

    def _state_path(self, key: str) -> Path:
        try:
            return self.root / check_state_key(key)
        except ValueError as error:
            raise StorageError(
                message=f"local asset store {self.root}: {error}",
                hint="state keys are made by fetchflow; this is a bug, please report it",
                target=str(self.root),
                retryable=False,
            ) from None

    def put_state(self, key: str, document: Mapping[str, object]) -> None:
        """Write the document atomically (a crash never leaves half of it).

        Raises:
            StorageError: It could not be written.
        """
        path = self._state_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, encode_state(document))
        except OSError as error:
            raise StorageError(
                message=f"writing {path} failed: {_reason(error)}",
                hint=f"free space or fix permissions in {self.root}, or {_FIX_STORE}",
                target=str(path),
            ) from error

    def get_state(self, key: str) -> dict[str, object] | None:
        """The document, or None when there is no such file.

        Raises:
            StorageError: It cannot be read or is not a JSON object.
        """
        path = self._state_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageError(
                message=f"reading {path} failed: {_reason(error)}",
                hint=f"fix permissions in {self.root}",
                target=str(path),
                retryable=False,
            ) from error
        return decode_state(data, str(path))

    def list_state(self, prefix: str) -> list[str]:
        """Every document's key under ``prefix``, sorted (none when the folder is missing)."""
        folder = self._state_path(prefix.rstrip("/"))
        try:
            found = [path for path in folder.rglob("*") if path.is_file()]
        except OSError:
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in found
            if not path.name.startswith(".")  # a write in progress (write_atomically)
        )
