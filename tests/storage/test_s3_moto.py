"""The S3 store against moto (in process): fast checks of what lands and of the error paths."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fetchflow.errors import StorageError
from fetchflow.settings import Settings
from fetchflow.storage import AssetStore, LocalStore, S3Store, open_store
from fetchflow.storage.base import PutRequest
from fetchflow.storage.keys import sha256_hex

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PNG = b"\x89PNG\r\n\x1a\n" + b"moto pixels"
BUCKET = "fetchflow-assets"


def put_png(store: S3Store, data: bytes = PNG, **overrides: Any) -> Any:
    kwargs = {"file_name": "hero-1.png", "step_id": "hero", "run_id": "run-1", **overrides}
    return store.put(data, file_type="image/png", width=4, height=2, **kwargs)


def count_calls(client: S3Client, operation: str) -> list[str]:
    """Record every ``operation`` request the client sends (by key)."""
    seen: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        seen.append(str(params.get("Key", "")))

    client.meta.events.register(f"provide-client-params.s3.{operation}", hook)
    return seen


def test_put_lands_bytes_type_metadata_and_checksum(moto_store: S3Store, moto_s3: S3Client) -> None:
    record = put_png(moto_store, model="gpt-image-1", provenance={"prompt_sha256": "abc"})
    sha = sha256_hex(PNG)
    key = f"runs/{sha[:2]}/{sha}.png"
    assert record.storage_uri == f"s3://{BUCKET}/{key}"
    got = moto_s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == PNG
    assert got["ContentType"] == "image/png"
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(PNG).digest()).decode()
    assert got["Metadata"] == {"sha256": sha}


def test_shared_bytes_carry_no_writer_in_their_metadata(
    moto_store: S3Store, moto_s3: S3Client
) -> None:
    # Two steps store the same bytes: one object. Its metadata is nobody's in particular;
    # each record keeps its own step, run, name and full provenance (no 256-char cut).
    references = ",".join(f"{index:064x}" for index in range(17))  # 1,104 characters
    first = put_png(moto_store, model="gpt-image-2", provenance={"references_sha256": "a" * 64})
    second = put_png(
        moto_store,
        file_name="warmer-1.png",
        step_id="warmer",
        run_id="run-2",
        model="gpt-image-1.5",
        provenance={"references_sha256": references, "edit": "compose"},
    )

    assert first.storage_uri == second.storage_uri
    got = moto_s3.head_object(Bucket=BUCKET, Key=moto_store.key_of(second.storage_uri))
    assert got["Metadata"] == {"sha256": second.sha256}
    assert second.provenance == {"references_sha256": references, "edit": "compose"}
    assert (second.step_id, second.run_id, second.model) == ("warmer", "run-2", "gpt-image-1.5")
    assert first.provenance == {"references_sha256": "a" * 64}


def test_second_put_of_the_same_bytes_uploads_nothing(moto_store: S3Store) -> None:
    puts = count_calls(moto_store.client, "PutObject")
    first = put_png(moto_store)
    second = put_png(moto_store, file_name="hero-2.png", run_id="run-2")
    assert len(puts) == 1
    assert second.storage_uri == first.storage_uri
    assert second.file_name == "hero-2.png"


def test_presigned_url_points_at_the_key_and_expires_as_configured(moto_store: S3Store) -> None:
    record = put_png(moto_store)
    url = urlsplit(record.file_url)
    assert url.path.endswith(record.storage_uri.rsplit("/", 1)[-1])
    assert parse_qs(url.query)["X-Amz-Expires"] == ["86400"]


def test_public_base_url_replaces_presigning(moto_s3: S3Client, tmp_path: Path) -> None:
    store = S3Store(BUCKET, "runs", spool_dir=tmp_path, public_base_url="https://cdn.example.com/")
    record = put_png(store)
    sha = record.sha256
    assert record.file_url == f"https://cdn.example.com/runs/{sha[:2]}/{sha}.png"


def test_multipart_above_the_threshold(moto_store: S3Store, moto_s3: S3Client) -> None:
    data = bytes(range(256)) * (24 * 1024 + 1)  # a little over 6 MiB, threshold is 5 MiB
    creates = count_calls(moto_store.client, "CreateMultipartUpload")
    parts = count_calls(moto_store.client, "UploadPart")
    trailers: list[bytes] = []
    moto_store.client.meta.events.register(
        "before-send.s3.UploadPart",
        lambda request, **_: trailers.append(request.headers.get("x-amz-trailer", b"")),
    )
    record = put_png(moto_store, data)
    assert (len(creates), len(parts)) == (1, 2)
    assert trailers == [b"x-amz-checksum-sha256"] * 2  # each part carries its SHA-256
    key = record.storage_uri.removeprefix(f"s3://{BUCKET}/")
    got = moto_s3.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"]["sha256"] == sha256_hex(data)


def test_keys_stay_under_the_prefix(moto_store: S3Store, moto_s3: S3Client) -> None:
    record = put_png(moto_store, file_name="../../../outside.png")
    listed = moto_s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [obj["Key"] for obj in listed] == [f"runs/{record.sha256[:2]}/{record.sha256}.png"]
    assert record.file_name == "outside.png"


def test_read_back_by_storage_uri(moto_store: S3Store) -> None:
    record = put_png(moto_store)
    assert moto_store.read(record.storage_uri) == PNG


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param(f"s3://other-bucket/runs/ab/{'a' * 64}.png", id="other-bucket"),
        pytest.param(f"s3://{BUCKET}/elsewhere/{'a' * 64}.png", id="outside-prefix"),
        pytest.param(f"s3://{BUCKET}/runs/../secret.png", id="dot-dot"),
        pytest.param("file:///etc/passwd", id="file-uri"),
    ],
)
def test_read_refuses_uris_outside_the_store(moto_store: S3Store, uri: str) -> None:
    with pytest.raises(StorageError, match=f"S3 store s3://{BUCKET}/runs") as caught:
        moto_store.read(uri)
    assert "FETCHFLOW_STORE" in caught.value.hint


def test_read_of_a_missing_object_names_it(moto_store: S3Store) -> None:
    uri = f"s3://{BUCKET}/runs/aa/{'a' * 64}.png"
    with pytest.raises(StorageError, match=rf"reading {uri} \(endpoint .*\): no such object"):
        moto_store.read(uri)


def test_read_detects_corruption(moto_store: S3Store, moto_s3: S3Client) -> None:
    record = put_png(moto_store)
    key = record.storage_uri.removeprefix(f"s3://{BUCKET}/")
    moto_s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the same bytes")
    with pytest.raises(StorageError, match="corrupted"):
        moto_store.read(record.storage_uri)


def test_preflight_passes_and_leaves_no_probe(moto_store: S3Store, moto_s3: S3Client) -> None:
    moto_store.preflight()
    assert moto_s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_preflight_missing_bucket_names_bucket_endpoint_and_fix(
    moto_s3: S3Client, tmp_path: Path
) -> None:
    store = S3Store("no-such-bucket", "runs", spool_dir=tmp_path, attempts=1)
    with pytest.raises(
        StorageError,
        match=r"checking bucket s3://no-such-bucket \(endpoint https://s3\.amazonaws\.com\): "
        r"bucket 'no-such-bucket' does not exist",
    ) as caught:
        store.preflight()
    assert "create bucket 'no-such-bucket'" in caught.value.hint
    assert caught.value.endpoint == "https://s3.amazonaws.com"
    assert caught.value.retryable is False


def test_upload_to_missing_bucket_spools_the_bytes(moto_s3: S3Client, tmp_path: Path) -> None:
    store = S3Store("no-such-bucket", spool_dir=tmp_path / "spool", attempts=1)
    with pytest.raises(StorageError, match=r"does not exist.*the bytes are kept in") as caught:
        put_png(store)
    (spooled,) = caught.value.spooled
    assert spooled.read_bytes() == PNG
    assert spooled.parent == tmp_path / "spool"


def test_put_many_reports_every_failure_and_spools_each(moto_s3: S3Client, tmp_path: Path) -> None:
    store = S3Store("no-such-bucket", spool_dir=tmp_path / "spool", attempts=1, concurrency=3)
    items = [
        PutRequest(data=bytes([n]) * 8, file_name=f"v-{n}.png", file_type="image/png",
                   step_id="hero", run_id="run-1")
        for n in range(3)
    ]  # fmt: skip
    with pytest.raises(StorageError, match="3 of 3 files could not be stored") as caught:
        store.put_many(items)
    assert sorted(p.read_bytes() for p in caught.value.spooled) == [i.data for i in items]


def test_put_many_uploads_concurrently_in_order(moto_store: S3Store) -> None:
    items = [
        PutRequest(data=bytes([n]) * 8, file_name=f"v-{n}.png", file_type="image/png",
                   step_id="hero", run_id="run-1")
        for n in range(6)
    ]  # fmt: skip
    records = moto_store.put_many(items)
    assert [moto_store.read(r.storage_uri) for r in records] == [i.data for i in items]


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        pytest.param("s3://bucket", ("bucket", ""), id="bucket-only"),
        pytest.param("s3://bucket//a/b/", ("bucket", "a/b"), id="prefix-normalized"),
    ],
)
def test_open_store_s3(store: str, expected: tuple[str, str], tmp_path: Path) -> None:
    opened = open_store(Settings(_env_file=None, home=tmp_path, store=store))
    assert isinstance(opened, S3Store)
    assert (opened.bucket, opened.prefix) == expected
    assert opened.spool_dir == tmp_path / "spool"


def test_open_store_local_default_is_under_home(tmp_path: Path) -> None:
    opened = open_store(Settings(_env_file=None, home=tmp_path / "home"))
    assert isinstance(opened, LocalStore)
    assert isinstance(opened, AssetStore)
    assert opened.describe() == str(tmp_path / "home" / "assets")
    file_uri = open_store(Settings(_env_file=None, store=(tmp_path / "x").as_uri()))
    assert isinstance(file_uri, LocalStore)
    assert file_uri.root == tmp_path / "x"


@pytest.mark.parametrize(
    ("store", "message"),
    [
        pytest.param("s3://", "names no bucket", id="no-bucket"),
        pytest.param("s3://bucket/../up", "'\\.' or '\\.\\.' segment", id="dot-dot"),
        pytest.param("gs://bucket", "gs:// stores are not supported", id="gcs"),
    ],
)
def test_open_store_rejects_bad_locations(store: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        open_store(Settings(_env_file=None, store=store))
    assert "s3://bucket" in caught.value.hint


def test_importing_storage_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = "import sys, fetchflow.storage; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_describe_names_bucket_prefix_and_endpoint(moto_store: S3Store) -> None:
    assert moto_store.describe() == f"s3://{BUCKET}/runs (endpoint https://s3.amazonaws.com)"


def test_records_use_the_clock(moto_store: S3Store, clock: Callable[[], datetime]) -> None:
    assert put_png(moto_store).created_at == clock()
