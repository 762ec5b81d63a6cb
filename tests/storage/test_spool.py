"""The spool: what a failed upload leaves behind, and pushing it later."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from fetchflow.errors import StorageError
from fetchflow.storage import LocalStore, push_spooled
from fetchflow.storage.keys import sha256_hex
from fetchflow.storage.spool import SpoolEntry, spool_bytes

DATA = b"\x89PNG\r\n\x1a\n" + b"spooled pixels"
SHA = sha256_hex(DATA)


def entry(step_id: str = "hero", run_id: str = "run-1") -> SpoolEntry:
    return SpoolEntry(
        sha256=SHA,
        extension="png",
        file_name=f"{step_id}-1.png",
        file_type="image/png",
        step_id=step_id,
        run_id=run_id,
        width=4,
        height=2,
        model="gpt-image-1",
        provenance={"prompt_sha256": "abc"},
    )


@pytest.fixture
def store(tmp_path: Path, clock: Callable[[], datetime]) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "unused-spool", clock=clock)


def test_layout_is_content_addressed_bytes_plus_one_entry_per_producer(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = spool_bytes(spool, DATA, entry("hero"))
    again = spool_bytes(spool, DATA, entry("hero"))
    other = spool_bytes(spool, DATA, entry("thumb"))
    assert first == again == other == spool / f"{SHA}.png"
    names = sorted(p.name for p in spool.iterdir())
    assert names[0] == f"{SHA}.png"
    assert len(names) == 3  # the bytes once, an entry for hero and one for thumb
    saved = json.loads((spool / names[1]).read_text())
    assert saved["sha256"] == SHA
    assert "data" not in saved  # metadata only, no bytes, no secrets


def test_push_stores_every_entry_and_empties_the_spool(tmp_path: Path, store: LocalStore) -> None:
    spool = tmp_path / "spool"
    spool_bytes(spool, DATA, entry("hero"))
    spool_bytes(spool, DATA, entry("thumb"))
    records = push_spooled(store, spool)
    assert sorted(r.step_id for r in records) == ["hero", "thumb"]
    assert {r.storage_uri for r in records} == {(store.root / SHA[:2] / f"{SHA}.png").as_uri()}
    assert records[0].model == "gpt-image-1"
    assert records[0].provenance == {"prompt_sha256": "abc"}
    assert (records[0].width, records[0].height) == (4, 2)
    assert list(spool.iterdir()) == []


def test_push_leaves_corrupted_bytes_and_reports_them(tmp_path: Path, store: LocalStore) -> None:
    spool = tmp_path / "spool"
    path = spool_bytes(spool, DATA, entry())
    path.write_bytes(b"truncated")
    with pytest.raises(StorageError, match="bytes do not match their sha256") as caught:
        push_spooled(store, spool)
    assert caught.value.spooled == [path]
    assert path.exists()
    assert list(store.root.rglob("*.png")) == []


def test_push_of_a_missing_spool_is_a_no_op(tmp_path: Path, store: LocalStore) -> None:
    assert push_spooled(store, tmp_path / "never-made") == []
