"""The pure naming rules: keys never escape the prefix, names stay friendly, metadata is safe."""

from __future__ import annotations

import pytest

from fetchflow.storage.keys import (
    content_key,
    extension_for,
    join_key,
    metadata_for,
    normalize_prefix,
    safe_file_name,
    sha256_hex,
    sha256_of_key,
    split_s3_uri,
)

SHA = sha256_hex(b"pixels")


@pytest.mark.parametrize(
    ("file_name", "file_type", "expected"),
    [
        pytest.param("hero-1.png", "image/png", "png", id="name-wins"),
        pytest.param("hero-1.JPG", "image/jpeg", "jpg", id="lowercased"),
        pytest.param("hero-1", "image/jpeg", "jpg", id="from-mime-jpeg-not-jpe"),
        pytest.param("hero-1", "image/webp", "webp", id="from-mime-webp"),
        pytest.param("x.../../etc", "application/x-unknown-thing", "bin", id="unknown-bin"),
        pytest.param("a.p/ng", "image/png", "png", id="slash-in-suffix-ignored"),
        pytest.param("evil.tar.gz/../x", "", "bin", id="no-suffix-no-mime"),
    ],
)
def test_extension_is_short_alnum(file_name: str, file_type: str, expected: str) -> None:
    assert extension_for(file_name, file_type) == expected


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        pytest.param("hero-1.png", "hero-1.png", id="kept"),
        pytest.param("../../etc/passwd.png", "passwd.png", id="dirs-dropped"),
        pytest.param("..\\..\\win.png", "win.png", id="backslash-dirs-dropped"),
        pytest.param("my hero (1).png", "my-hero-1-.png", id="spaces-and-parens"),
        pytest.param("..", f"{SHA[:16]}.png", id="dots-only"),
        pytest.param("", f"{SHA[:16]}.png", id="empty"),
    ],
)
def test_safe_file_name(file_name: str, expected: str) -> None:
    assert safe_file_name(file_name, sha256=SHA, extension="png") == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("/runs//2026/", "runs/2026", id="slashes"),
    ],
)
def test_normalize_prefix(prefix: str, expected: str) -> None:
    assert normalize_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["../up", "a/./b", "a/.."])
def test_normalize_prefix_refuses_dot_segments(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"'\.' or '\.\.' segment"):
        normalize_prefix(prefix)


def test_content_key_is_sharded_by_sha_and_round_trips() -> None:
    key = join_key("runs", content_key(SHA, "png"))
    assert key == f"runs/{SHA[:2]}/{SHA}.png"
    assert sha256_of_key(key) == SHA
    assert sha256_of_key("runs/ab/hero.png") is None


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://bucket/a/b.png") == ("bucket", "a/b.png")
    with pytest.raises(ValueError, match="names no bucket"):
        split_s3_uri("s3:///key")
    with pytest.raises(ValueError, match="not an s3:// URI"):
        split_s3_uri("gs://bucket/key")


def test_object_metadata_is_only_what_every_writer_of_the_bytes_shares() -> None:
    # Identical bytes are one object whoever stores them: step, run, name, model and
    # provenance belong to each record, never to the object.
    assert metadata_for(sha256=SHA) == {"sha256": SHA}
