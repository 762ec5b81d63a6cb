"""A ``cache: true`` hit never hands back a record of a file the store no longer has."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fetchflow.run.preflight import StoreOpener
from fetchflow.run.reuse import GenerationCache
from fetchflow.settings import Settings


def cached_image(tmp_path: Path) -> tuple[GenerationCache, Path, dict[str, object]]:
    """A real local store holding one image, and a cache entry whose output is its record."""
    opener = StoreOpener(Settings(home=tmp_path / "home"))
    record = opener().put(
        b"\x89PNG not really",
        file_name="hero.png",
        file_type="image/png",
        step_id="hero",
        run_id="run-1",
    )
    document = record.model_dump(mode="json")
    cache = GenerationCache(opener)
    cache.put("k" * 64, [document], "run-1")
    return cache, opener().path_of(record.storage_uri), document


def test_a_cached_output_whose_file_is_there_is_a_hit(tmp_path: Path) -> None:
    cache, _, document = cached_image(tmp_path)

    hit = cache.get("k" * 64)

    assert hit is not None
    assert (hit.output, hit.note) == ([document], "cache hit (made by run run-1)")


def test_a_cached_output_whose_file_was_deleted_is_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, path, _ = cached_image(tmp_path)
    path.unlink()  # someone cleaned the bucket

    with caplog.at_level(logging.WARNING, logger="fetchflow.run.reuse"):
        hit = cache.get("k" * 64)

    assert hit is None  # the step runs again instead of handing back a dead link
    assert "names a file the store no longer has (a miss; the step runs again)" in caplog.text
