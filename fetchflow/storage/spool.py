"""The upload spool: bytes that could not be stored, kept until they can be pushed.

Layout of the spool folder::

    <sha256>.<ext>                 the bytes, once per content
    <sha256>.<ext>.<tag>.json      one per (step, run, file name) still waiting for them

A failed upload writes both (atomically, so a crash never leaves half a file that looks
whole); :func:`push_spooled` stores every waiting entry through a store and removes what it
pushed. Names are content-addressed, so spooling the same bytes twice keeps one copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from fetchflow.errors import StorageError

if TYPE_CHECKING:
    from fetchflow.storage.base import AssetStore
    from fetchflow.storage.records import AssetRecord

__all__ = ["SpoolEntry", "push_spooled", "spool_bytes", "write_atomically"]


class SpoolEntry(BaseModel):
    """Everything ``put`` needs to store spooled bytes again, as written next to them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    extension: str
    file_name: str
    file_type: str
    step_id: str
    run_id: str
    width: int | None = None
    height: int | None = None
    model: str | None = None
    provenance: Mapping[str, str] = {}

    @property
    def data_name(self) -> str:
        """File name of the bytes in the spool folder."""
        return f"{self.sha256}.{self.extension}"

    @property
    def entry_name(self) -> str:
        """File name of this entry's JSON in the spool folder."""
        who = f"{self.step_id}\0{self.run_id}\0{self.file_name}".encode()
        return f"{self.data_name}.{hashlib.sha256(who).hexdigest()[:12]}.json"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so it is whole or absent."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def spool_bytes(spool_dir: Path, data: bytes, entry: SpoolEntry) -> Path:
    """Keep ``data`` in the spool with what it takes to store it later.

    Returns:
        The absolute path of the spooled bytes.

    Raises:
        OSError: The spool folder cannot be written.
    """
    spool_dir = spool_dir.expanduser().resolve()
    spool_dir.mkdir(parents=True, exist_ok=True)
    data_path = spool_dir / entry.data_name
    if not (data_path.is_file() and data_path.stat().st_size == len(data)):
        write_atomically(data_path, data)
    write_atomically(spool_dir / entry.entry_name, entry.model_dump_json(indent=2).encode())
    return data_path


def push_spooled(store: AssetStore, spool_dir: Path) -> list[AssetRecord]:
    """Store everything waiting in ``spool_dir`` through ``store``; remove what was pushed.

    Entries whose bytes are missing or corrupted are left in place and reported.

    Returns:
        The records of the pushed files, in spool order (sorted by name).

    Raises:
        StorageError: Some entries could not be pushed (they stay spooled, listed in
            ``spooled``); everything else was pushed and removed.
    """
    spool_dir = spool_dir.expanduser().resolve()
    if not spool_dir.is_dir():
        return []
    records: list[AssetRecord] = []
    stuck: list[Path] = []
    reasons: list[str] = []
    for entry_path in sorted(spool_dir.glob("*.json")):
        try:
            entry = SpoolEntry.model_validate_json(entry_path.read_bytes())
        except (OSError, ValidationError) as error:
            stuck.append(entry_path)
            reasons.append(f"{entry_path.name}: unreadable entry ({type(error).__name__})")
            continue
        data_path = spool_dir / entry.data_name
        try:
            data = data_path.read_bytes()
        except OSError as error:
            stuck.append(entry_path)
            reasons.append(f"{data_path.name}: {error.strerror or error}")
            continue
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            stuck.append(data_path)
            reasons.append(f"{data_path.name}: bytes do not match their sha256")
            continue
        try:
            record = store.put(
                data,
                file_name=entry.file_name,
                file_type=entry.file_type,
                step_id=entry.step_id,
                run_id=entry.run_id,
                width=entry.width,
                height=entry.height,
                model=entry.model,
                provenance=entry.provenance,
            )
        except StorageError as error:
            stuck.append(data_path)
            reasons.append(f"{data_path.name}: {error.message}")
            continue
        records.append(record)
        entry_path.unlink()
        if not any(spool_dir.glob(f"{entry.data_name}.*.json")):
            data_path.unlink(missing_ok=True)
    if stuck:
        raise StorageError(
            message=f"{len(stuck)} spooled file(s) in {spool_dir} could not be pushed to "
            f"{store.describe()}: " + "; ".join(reasons[:5]),
            hint="fix the store (see the first reason), then push the spool again; "
            "pushed files were removed from the spool",
            target=str(spool_dir),
            spooled=list(dict.fromkeys(stuck)),
        )
    return records
