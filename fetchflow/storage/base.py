"""The asset store protocol and what every store shares.

An :class:`AssetStore` is the one object through which file bytes leave and re-enter a run
(like an httpx transport: swap it, and everything above is unchanged). Both built-in stores
derive from :class:`BaseStore`, which holds the common rules: hash, name, build the record,
and on a final failure keep the bytes in the spool so nothing paid for is lost.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from fetchflow.errors import StorageError
from fetchflow.storage.keys import (
    content_key,
    extension_for,
    metadata_for,
    safe_file_name,
    sha256_hex,
)
from fetchflow.storage.records import AssetRecord, asset_id
from fetchflow.storage.spool import SpoolEntry, spool_bytes

__all__ = [
    "AssetStore",
    "BaseStore",
    "PutRequest",
    "StoredObject",
    "check_state_key",
    "decode_state",
    "encode_state",
]


@dataclass(frozen=True)
class PutRequest:
    """One file to store, as :meth:`AssetStore.put_many` takes it (same fields as ``put``)."""

    data: bytes
    file_name: str
    file_type: str
    step_id: str
    run_id: str
    width: int | None = None
    height: int | None = None
    model: str | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    """What a store's backend reports after storing (or finding) an object.

    Attributes:
        storage_uri: ``s3://bucket/key`` or ``file:///path``.
        file_url: The URL users get for it.
        written: False when the object was already there and nothing was written.
    """

    storage_uri: str
    file_url: str
    written: bool


@runtime_checkable
class AssetStore(Protocol):
    """Where every file a step produces goes, and where downstream steps read it back."""

    def describe(self) -> str:
        """Where the store is, for messages (``s3://b/p (endpoint ...)`` or a folder)."""
        ...

    def preflight(self) -> None:
        """Check the store is usable before anything billable runs.

        Raises:
            StorageError: The store is missing, unreachable or not writable.
        """
        ...

    def file_url(self, storage_uri: str) -> str:
        """A fresh ``file_url`` for a stored file (presigned links expire; reused records
        get new ones).

        Raises:
            StorageError: Not this store's URI.
        """
        ...

    def put(
        self,
        data: bytes,
        *,
        file_name: str,
        file_type: str,
        step_id: str,
        run_id: str,
        width: int | None = None,
        height: int | None = None,
        model: str | None = None,
        provenance: Mapping[str, str] | None = None,
    ) -> AssetRecord:
        """Store ``data`` under its content key (once) and return its record.

        Raises:
            StorageError: The bytes could not be stored; ``spooled`` says where they are.
        """
        ...

    def put_many(self, items: Sequence[PutRequest]) -> list[AssetRecord]:
        """Store several files with bounded concurrency; records in input order.

        Raises:
            StorageError: Some failed (all of them spooled); the others were stored.
        """
        ...

    def read(self, storage_uri: str) -> bytes:
        """The bytes of an asset this store holds, by its ``storage_uri``.

        Raises:
            StorageError: Not this store's URI, missing, unreadable or corrupted.
        """
        ...

    # Run state: small JSON documents (run records, checkpoints, cache entries) under the
    # store's prefix, so every machine sharing the store sees them.

    def put_state(self, key: str, document: Mapping[str, object]) -> None:
        """Write a JSON document at ``key`` (``runs/<id>/run.json``), replacing it whole.

        Raises:
            StorageError: It could not be written.
        """
        ...

    def get_state(self, key: str) -> dict[str, object] | None:
        """The JSON document at ``key``; None when there is none.

        Raises:
            StorageError: It is there but cannot be read (unreachable, not JSON).
        """
        ...

    def list_state(self, prefix: str) -> list[str]:
        """The keys of every document under ``prefix`` (``runs/<id>/steps/``), sorted.

        Raises:
            StorageError: The store cannot be listed.
        """
        ...


#: A state key: slash-separated names of letters, digits, ``._-`` (no ``..``, no leading dot).
_STATE_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*/?")


def check_state_key(key: str) -> str:
    """``key`` if it is a safe state key (never a path out of the store).

    Raises:
        ValueError: It is not.
    """
    if not _STATE_KEY.fullmatch(key) or len(key) > 512:
        raise ValueError(f"not a state key: {key!r}")
    return key


def encode_state(document: Mapping[str, object]) -> bytes:
    """A state document as stored: UTF-8 JSON (values JSON cannot hold become text)."""
    return json.dumps(document, ensure_ascii=False, default=str, sort_keys=True).encode()


def decode_state(data: bytes, where: str) -> dict[str, object]:
    """A stored state document.

    Raises:
        StorageError: It is not a JSON object.
    """
    try:
        document = json.loads(data)
    except ValueError as error:
        document = error
    if not isinstance(document, dict):
        raise StorageError(
            message=f"{where} is not a fetchflow state document (not a JSON object)",
            hint="delete it; fetchflow writes it again when the run or step next runs",
            target=where,
            retryable=False,
        )
    return document


class BaseStore(ABC):
    """Shared behaviour of the built-in stores; subclasses do only the I/O.

    Args:
        spool_dir: Where bytes go when storing fails for good.
        concurrency: Most files :meth:`put_many` stores at once.
        clock: Gives ``created_at``; tests pass a fixed one.
    """

    def __init__(
        self,
        *,
        spool_dir: Path,
        concurrency: int = 4,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.concurrency = max(1, concurrency)
        self._clock = clock or (lambda: datetime.now(UTC))

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, for messages; never a secret."""

    @abstractmethod
    def preflight(self) -> None:
        """Check the store is usable; raise :class:`StorageError` if not."""

    @abstractmethod
    def file_url(self, storage_uri: str) -> str:
        """A fresh ``file_url`` for one of this store's ``storage_uri``."""

    @abstractmethod
    def read(self, storage_uri: str) -> bytes:
        """The bytes behind one of this store's ``storage_uri``."""

    @abstractmethod
    def put_state(self, key: str, document: Mapping[str, object]) -> None:
        """Write a JSON state document at ``key`` under the prefix, replacing it whole."""

    @abstractmethod
    def get_state(self, key: str) -> dict[str, object] | None:
        """The JSON state document at ``key``; None when there is none."""

    @abstractmethod
    def list_state(self, prefix: str) -> list[str]:
        """The keys of every state document under ``prefix``, sorted."""

    @abstractmethod
    def _store(
        self, relative_key: str, data: bytes, *, sha256: str, file_type: str, meta: dict[str, str]
    ) -> StoredObject:
        """Store ``data`` at ``relative_key`` (under the prefix) unless it is there already.

        Raises:
            StorageError: For good (after the backend's own retries).
        """

    def put(
        self,
        data: bytes,
        *,
        file_name: str,
        file_type: str,
        step_id: str,
        run_id: str,
        width: int | None = None,
        height: int | None = None,
        model: str | None = None,
        provenance: Mapping[str, str] | None = None,
    ) -> AssetRecord:
        """Store ``data`` under its content key (once) and return its record.

        Raises:
            StorageError: The bytes could not be stored; they were kept in the spool and
                the error's ``spooled`` and message say where.
        """
        sha256 = sha256_hex(data)
        extension = extension_for(file_name, file_type)
        name = safe_file_name(file_name, sha256=sha256, extension=extension)
        provenance = dict(provenance or {})
        meta = metadata_for(sha256=sha256)
        try:
            stored = self._store(
                content_key(sha256, extension), data, sha256=sha256, file_type=file_type, meta=meta
            )
        except StorageError as error:
            entry = SpoolEntry(
                sha256=sha256,
                extension=extension,
                file_name=name,
                file_type=file_type,
                step_id=step_id,
                run_id=run_id,
                width=width,
                height=height,
                model=model,
                provenance=provenance,
            )
            raise self._spooled(error, data, entry) from error
        return AssetRecord(
            id=asset_id(sha256),
            file_url=stored.file_url,
            file_name=name,
            file_size=len(data),
            file_type=file_type,
            width=width,
            height=height,
            sha256=sha256,
            storage_uri=stored.storage_uri,
            step_id=step_id,
            run_id=run_id,
            created_at=self._clock(),
            model=model,
            provenance=provenance,
        )

    def put_many(self, items: Sequence[PutRequest]) -> list[AssetRecord]:
        """Store several files, at most ``concurrency`` at a time; records in input order.

        Raises:
            StorageError: One or more failed; every failed file is spooled and listed in
                ``spooled``. The files that succeeded are stored (a retry finds them).
        """

        def put_one(item: PutRequest) -> AssetRecord:
            return self.put(
                item.data,
                file_name=item.file_name,
                file_type=item.file_type,
                step_id=item.step_id,
                run_id=item.run_id,
                width=item.width,
                height=item.height,
                model=item.model,
                provenance=item.provenance,
            )

        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(items)))) as pool:
            futures = [pool.submit(put_one, item) for item in items]
        records: list[AssetRecord] = []
        failures: list[StorageError] = []
        for future in futures:
            error = future.exception()
            if error is None:
                records.append(future.result())
            elif isinstance(error, StorageError):
                failures.append(error)
            else:
                raise error
        if not failures:
            return records
        if len(failures) == 1:
            raise failures[0]
        first = failures[0]
        spooled = [path for failure in failures for path in failure.spooled]
        raise StorageError(
            message=f"{len(failures)} of {len(items)} files could not be stored; first: "
            f"{first.message}",
            hint=first.hint,
            target=first.target,
            endpoint=first.endpoint,
            spooled=spooled,
            retryable=first.retryable,
        )

    def _spooled(self, error: StorageError, data: bytes, entry: SpoolEntry) -> StorageError:
        """``error`` with the bytes kept in the spool, or a louder error if even that fails."""
        try:
            path = spool_bytes(self.spool_dir, data, entry)
        except OSError as spool_error:
            return StorageError(
                message=f"{error.message}; keeping the bytes in the spool folder "
                f"{self.spool_dir} failed too ({spool_error.strerror or spool_error}), "
                "the file is lost",
                hint=f"{error.hint}; make {self.spool_dir} writable (FETCHFLOW_SPOOL_DIR)",
                target=error.target,
                endpoint=error.endpoint,
                retryable=error.retryable,
            )
        return StorageError(
            message=f"{error.message}; the bytes are kept in {path}",
            hint=f"{error.hint}, then push the spool ({self.spool_dir}) with `fetchflow push`",
            target=error.target,
            endpoint=error.endpoint,
            spooled=[path],
            retryable=error.retryable,
        )
