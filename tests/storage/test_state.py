"""Run state documents in every store: the local folder, moto's S3 and a real rclone S3.

Checkpoints, run records and cache entries are small JSON documents under the store's
prefix, so every machine sharing the store reads what any of them wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchflow.errors import StorageError
from fetchflow.storage import AssetStore, LocalStore


@pytest.fixture(params=["local", "moto", "rclone"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> AssetStore:
    if request.param == "local":
        return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")
    store: AssetStore = request.getfixturevalue(f"{request.param}_store")
    return store


def test_a_document_written_is_read_back_whole(store: AssetStore) -> None:
    document = {"status": "running", "inputs": {"product": "vase ✓"}, "n": 3}

    store.put_state("runs/r1/run.json", document)

    assert store.get_state("runs/r1/run.json") == document
    store.put_state("runs/r1/run.json", {"status": "completed"})  # replaced, not merged
    assert store.get_state("runs/r1/run.json") == {"status": "completed"}


def test_a_missing_document_is_none(store: AssetStore) -> None:
    assert store.get_state("runs/nope/run.json") is None


def test_documents_are_listed_under_a_prefix_only(store: AssetStore) -> None:
    for key in ("runs/r1/run.json", "runs/r1/steps/a.json", "runs/r10/run.json", "cache/k.json"):
        store.put_state(key, {"key": key})

    assert store.list_state("runs/r1/") == ["runs/r1/run.json", "runs/r1/steps/a.json"]
    assert store.list_state("runs/") == [
        "runs/r1/run.json",
        "runs/r1/steps/a.json",
        "runs/r10/run.json",
    ]
    assert store.list_state("runs/none/") == []


def test_state_lives_beside_the_assets_and_never_among_them(store: AssetStore) -> None:
    record = store.put(
        b"\x89PNG\r\n\x1a\nbytes",
        file_name="a.png",
        file_type="image/png",
        step_id="s",
        run_id="r1",
    )
    store.put_state("runs/r1/run.json", {"status": "running"})

    assert store.read(record.storage_uri).startswith(b"\x89PNG")
    assert store.list_state("runs/") == ["runs/r1/run.json"]


@pytest.mark.parametrize(
    "key", ["../escape.json", "runs/../../x.json", "/abs.json", ".hidden", "runs/a b.json", ""]
)
def test_a_key_that_could_leave_the_store_is_refused(store: AssetStore, key: str) -> None:
    with pytest.raises(StorageError, match=r"not a state key: ") as raised:
        store.put_state(key, {"x": 1})

    assert raised.value.retryable is False


def test_a_document_that_is_not_json_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")
    path = tmp_path / "assets" / "runs" / "r1" / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text("{half", encoding="utf-8")

    with pytest.raises(StorageError) as raised:
        store.get_state("runs/r1/run.json")

    assert raised.value.format() == (
        f"{path} is not a fetchflow state document (not a JSON object)\n"
        "  hint: delete it; fetchflow writes it again when the run or step next runs"
    )
