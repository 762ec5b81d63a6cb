"""The local folder store: the embedded default."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from fetchflow.errors import StorageError
from fetchflow.storage import AssetRecord, LocalStore, push_spooled
from fetchflow.storage.base import PutRequest
from fetchflow.storage.keys import sha256_hex

PNG = b"\x89PNG\r\n\x1a\n" + b"local pixels"


@pytest.fixture
def store(tmp_path: Path, clock: Callable[[], datetime]) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool", clock=clock)


def put_png(store: LocalStore, data: bytes = PNG, **overrides: str) -> AssetRecord:
    kwargs = {"file_name": "hero-1.png", "step_id": "hero", "run_id": "run-1", **overrides}
    return store.put(data, file_type="image/png", width=4, height=2, **kwargs)


def test_put_writes_a_content_addressed_file_and_returns_its_record(
    store: LocalStore, tmp_path: Path
) -> None:
    store.preflight()
    record = put_png(store, model="gpt-image-1", provenance={"prompt_sha256": "abc"})
    sha = sha256_hex(PNG)
    path = tmp_path / "assets" / sha[:2] / f"{sha}.png"
    assert path.read_bytes() == PNG
    assert record.storage_uri == path.as_uri() == record.file_url
    assert record.file_url.startswith("file:///")
    assert (record.id, record.sha256, record.file_size) == (sha[:16], sha, len(PNG))
    assert (record.file_name, record.file_type, record.width, record.height) == (
        "hero-1.png",
        "image/png",
        4,
        2,
    )
    assert (record.model, record.provenance) == ("gpt-image-1", {"prompt_sha256": "abc"})


def test_second_put_of_the_same_bytes_writes_nothing(store: LocalStore) -> None:
    first = put_png(store)
    path = Path(first.storage_uri.removeprefix("file://"))
    before = path.stat()
    second = put_png(store, file_name="hero-2.png", run_id="run-2")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.storage_uri == first.storage_uri
    assert second.file_name == "hero-2.png"
    assert len(list(store.root.rglob("*.png"))) == 1


def test_file_names_cannot_escape_the_folder(store: LocalStore, tmp_path: Path) -> None:
    record = put_png(store, file_name="../../../etc/evil.png")
    assert record.file_name == "evil.png"
    assert Path(record.storage_uri.removeprefix("file://")).is_relative_to(tmp_path / "assets")
    assert not (tmp_path / "etc").exists()


def test_read_back_by_storage_uri(store: LocalStore) -> None:
    record = put_png(store)
    assert store.read(record.storage_uri) == PNG


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        pytest.param("file:///etc/passwd", "is outside the local asset store", id="outside"),
        pytest.param("s3://bucket/key.png", "not a file:// URI", id="s3-uri"),
    ],
)
def test_read_refuses_uris_outside_the_store(store: LocalStore, uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        store.read(uri)
    assert "FETCHFLOW_STORE" in caught.value.hint


def test_read_detects_corrupted_files(store: LocalStore) -> None:
    record = put_png(store)
    Path(record.storage_uri.removeprefix("file://")).write_bytes(b"bit rot!" + PNG[8:])
    with pytest.raises(StorageError, match="corrupted: its bytes do not match the sha256"):
        store.read(record.storage_uri)


def test_preflight_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    store = LocalStore(blocker / "assets", spool_dir=tmp_path / "spool")
    with pytest.raises(StorageError, match=rf"local asset store {blocker}/assets is not writable"):
        store.preflight()
    with pytest.raises(StorageError) as caught:
        store.preflight()
    assert "FETCHFLOW_STORE" in caught.value.hint
    assert caught.value.target == str(blocker / "assets")


def test_failed_write_spools_the_bytes_then_push_spooled_stores_them(
    tmp_path: Path, clock: Callable[[], datetime]
) -> None:
    broken = LocalStore(tmp_path / "blocked" / "assets", spool_dir=tmp_path / "spool")
    (tmp_path / "blocked").write_text("a file, so nothing can be written below it")
    with pytest.raises(StorageError, match=r"the bytes are kept in .*spool") as caught:
        put_png(broken)
    (spooled,) = caught.value.spooled
    assert spooled.read_bytes() == PNG
    assert "push" in caught.value.hint

    healthy = LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool", clock=clock)
    (record,) = push_spooled(healthy, tmp_path / "spool")
    assert healthy.read(record.storage_uri) == PNG
    assert (record.step_id, record.run_id, record.file_name) == ("hero", "run-1", "hero-1.png")
    assert list((tmp_path / "spool").iterdir()) == []


def test_put_many_keeps_input_order(store: LocalStore) -> None:
    items = [
        PutRequest(data=bytes([n]) * 10, file_name=f"hero-{n}.png", file_type="image/png",
                   step_id="hero", run_id="run-1")
        for n in range(8)
    ]  # fmt: skip
    records = store.put_many(items)
    assert [r.file_name for r in records] == [f"hero-{n}.png" for n in range(8)]
    assert [store.read(r.storage_uri) for r in records] == [item.data for item in items]
