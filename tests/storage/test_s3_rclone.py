"""End to end against a real S3 server over HTTP: ``rclone serve s3``, signatures checked.

The store is opened exactly as a user would: ``FETCHFLOW_STORE=s3://...`` and boto3's own
``AWS_ENDPOINT_URL`` pointing at the server (set by the ``rclone_settings`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fetchflow.errors import StorageError
from fetchflow.settings import Settings
from fetchflow.storage import AssetRecord, S3Store, open_store, push_spooled
from fetchflow.storage.keys import sha256_hex

from .conftest import BUCKET, RcloneS3

pytestmark = pytest.mark.s3server

PNG = b"\x89PNG\r\n\x1a\n" + b"rclone pixels" * 100


def put_png(store: S3Store, data: bytes = PNG, **overrides: Any) -> AssetRecord:
    kwargs = {"file_name": "hero-1.png", "step_id": "hero", "run_id": "run-1", **overrides}
    return store.put(data, file_type="image/png", width=4, height=2, **kwargs)


def key_of(record: AssetRecord) -> str:
    return record.storage_uri.removeprefix(f"s3://{BUCKET}/")


def test_what_lands_on_the_server(rclone_store: S3Store, rclone_s3: RcloneS3) -> None:
    rclone_store.preflight()
    record = put_png(rclone_store, model="gpt-image-1", provenance={"prompt_sha256": "abc"})
    client = rclone_store.client
    got = client.get_object(Bucket=BUCKET, Key=key_of(record), ChecksumMode="ENABLED")
    assert got["Body"].read() == PNG
    assert got["ContentType"] == "image/png"
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(PNG).digest()).decode()
    # rclone Title-Cases metadata keys; S3 itself keeps them lower-case.
    assert {k.lower(): v for k, v in got["Metadata"].items()} == {"sha256": record.sha256}
    # rclone keeps objects as files: the bytes are on disk under the bucket and prefix.
    on_disk = rclone_s3.data_dir / BUCKET / key_of(record)
    assert on_disk.read_bytes() == PNG
    assert key_of(record) == f"runs/{record.sha256[:2]}/{record.sha256}.png"


def test_presigned_url_works_with_a_plain_http_client(rclone_store: S3Store) -> None:
    record = put_png(rclone_store)
    assert record.file_url.startswith(rclone_store.endpoint)
    with urllib.request.urlopen(record.file_url, timeout=5) as response:
        assert response.read() == PNG
        assert response.headers["Content-Type"] == "image/png"
    tampered = record.file_url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(tampered, timeout=5)


def test_second_upload_of_the_same_bytes_writes_nothing(
    rclone_store: S3Store, rclone_s3: RcloneS3
) -> None:
    puts: list[str] = []
    rclone_store.client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: puts.append(params["Key"])
    )
    first = put_png(rclone_store)
    on_disk = rclone_s3.data_dir / BUCKET / key_of(first)
    mtime = on_disk.stat().st_mtime_ns
    modified = rclone_store.client.head_object(Bucket=BUCKET, Key=key_of(first))["LastModified"]

    second = put_png(rclone_store, file_name="hero-again.png", run_id="run-2")

    assert puts == [key_of(first)]
    assert on_disk.stat().st_mtime_ns == mtime
    head = rclone_store.client.head_object(Bucket=BUCKET, Key=key_of(first))
    assert head["LastModified"] == modified
    assert second.storage_uri == first.storage_uri
    assert [p.name for p in (rclone_s3.data_dir / BUCKET).rglob("*.png")] == [on_disk.name]


def test_multipart_upload(rclone_settings: Settings) -> None:
    store = open_store(rclone_settings.model_copy(update={"multipart_threshold_bytes": 5 << 20}))
    assert isinstance(store, S3Store)
    data = hashlib.sha256(b"seed").digest() * (200 * 1024)  # 6.25 MiB, two parts
    parts: list[int] = []
    store.client.meta.events.register(
        "provide-client-params.s3.UploadPart",
        lambda params, **_: parts.append(params["PartNumber"]),
    )
    record = put_png(store, data)
    assert sorted(parts) == [1, 2]
    assert store.read(record.storage_uri) == data


def test_read_back_through_the_store(rclone_store: S3Store) -> None:
    record = put_png(rclone_store)
    assert rclone_store.read(record.storage_uri) == PNG


def test_missing_bucket_fails_preflight_naming_bucket_and_endpoint(
    rclone_settings: Settings, rclone_s3: RcloneS3
) -> None:
    store = open_store(rclone_settings.model_copy(update={"store": "s3://not-created/runs"}))
    with pytest.raises(
        StorageError,
        match=rf"s3://not-created \(endpoint {rclone_s3.endpoint}\): bucket 'not-created' "
        "does not exist",
    ) as caught:
        store.preflight()
    assert "create bucket 'not-created'" in caught.value.hint
    assert caught.value.endpoint == rclone_s3.endpoint


def test_wrong_credentials_fail_preflight_without_leaking_them(
    rclone_settings: Settings, rclone_s3: RcloneS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
    store = open_store(rclone_settings)
    with pytest.raises(
        StorageError,
        match=rf"s3://{BUCKET} \(endpoint {rclone_s3.endpoint}\): access denied \(HTTP 403",
    ) as caught:
        store.preflight()
    assert "AWS_ACCESS_KEY_ID" in caught.value.hint
    assert "not-the-secret-at-all" not in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)


def test_wrong_credentials_on_upload_spool_the_bytes(
    rclone_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
    store = open_store(rclone_settings)
    assert isinstance(store, S3Store)
    with pytest.raises(StorageError, match="access denied") as caught:
        put_png(store)
    assert [p.read_bytes() for p in caught.value.spooled] == [PNG]


def test_server_down_mid_run_spools_then_push_spooled_uploads(
    rclone_store: S3Store, rclone_s3: RcloneS3, rclone_settings: Settings
) -> None:
    rclone_store.preflight()
    first = put_png(rclone_store)
    rclone_s3.stop()
    tries: list[int] = []
    rclone_store.client.meta.events.register(
        "before-send.s3.HeadObject", lambda **_: tries.append(1)
    )

    later = b"\x89PNG\r\n\x1a\n" + b"paid for, then the server died"
    with pytest.raises(
        StorageError,
        match=rf"uploading s3://{BUCKET}/runs/.* \(endpoint {rclone_s3.endpoint}\): "
        r"cannot reach the endpoint.*the bytes are kept in ",
    ) as caught:
        put_png(rclone_store, later, file_name="hero-2.png")
    assert len(tries) == rclone_settings.upload_attempts == 2  # retried, then gave up
    (spooled,) = caught.value.spooled
    assert spooled.read_bytes() == later
    assert str(spooled) in str(caught.value)
    assert spooled.parent == rclone_settings.spool_dir.resolve()
    assert "AWS_ENDPOINT_URL" in caught.value.hint

    rclone_s3.start()
    (pushed,) = push_spooled(rclone_store, rclone_settings.spool_dir)
    assert (pushed.file_name, pushed.sha256) == ("hero-2.png", sha256_hex(later))
    assert rclone_store.read(pushed.storage_uri) == later
    assert rclone_store.read(first.storage_uri) == PNG
    assert list(rclone_settings.spool_dir.iterdir()) == []


def test_push_spooled_while_still_down_keeps_everything(
    rclone_store: S3Store, rclone_s3: RcloneS3, rclone_settings: Settings
) -> None:
    rclone_s3.stop()
    with pytest.raises(StorageError):
        put_png(rclone_store)
    before = sorted(p.name for p in rclone_settings.spool_dir.iterdir())
    with pytest.raises(StorageError, match=r"1 spooled file\(s\) in .* could not be pushed"):
        push_spooled(rclone_store, rclone_settings.spool_dir)
    assert sorted(p.name for p in rclone_settings.spool_dir.iterdir()) == before


def test_nothing_lands_outside_the_prefix(rclone_store: S3Store, rclone_s3: RcloneS3) -> None:
    rclone_store.preflight()
    put_png(rclone_store, file_name="../../../../escape.png")
    files = [p for p in rclone_s3.data_dir.rglob("*") if p.is_file()]
    assert files
    assert all(p.is_relative_to(rclone_s3.data_dir / BUCKET / "runs") for p in files)


def test_describe(rclone_store: S3Store, rclone_s3: RcloneS3, tmp_path: Path) -> None:
    assert rclone_store.describe() == f"s3://{BUCKET}/runs (endpoint {rclone_s3.endpoint})"


def test_no_credentials_at_all_is_a_clear_preflight_error(
    rclone_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no usable AWS credentials found") as caught:
        open_store(rclone_settings).preflight()
    assert "AWS_PROFILE" in caught.value.hint
