"""AssetRecord: typed, frozen, strict, and described well enough for template checking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from fetchflow.storage import AssetRecord
from fetchflow.storage.keys import sha256_hex
from fetchflow.storage.records import asset_id

SHA = sha256_hex(b"pixels")


def make_record(**overrides: object) -> AssetRecord:
    values: dict[str, object] = {
        "id": asset_id(SHA),
        "file_url": "file:///tmp/x.png",
        "file_name": "hero-1.png",
        "file_size": 6,
        "file_type": "image/png",
        "width": 2,
        "height": 3,
        "sha256": SHA,
        "storage_uri": "file:///tmp/x.png",
        "step_id": "hero",
        "run_id": "run-1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(overrides)
    return AssetRecord.model_validate(values)


def test_every_field_is_in_the_schema_with_a_description() -> None:
    schema = AssetRecord.model_json_schema()
    expected = {
        "id", "file_url", "file_name", "file_size", "file_type", "width", "height",
        "sha256", "storage_uri", "step_id", "run_id", "created_at", "model", "provenance",
        "matrix",
    }  # fmt: skip
    assert set(schema["properties"]) == expected
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert schema["additionalProperties"] is False


def test_id_is_the_first_16_hex_digits_of_sha256() -> None:
    assert asset_id(SHA) == SHA[:16]
    assert make_record().provenance == {}
    assert make_record().model is None
    assert make_record().matrix == {}
    assert make_record(matrix={"product": "mug", "size": 2}).matrix == {
        "product": "mug",
        "size": 2,
    }


def test_frozen_and_strict() -> None:
    record = make_record()
    with pytest.raises(ValidationError, match="frozen"):
        record.file_name = "other.png"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make_record(seed=3)
    with pytest.raises(ValidationError, match="sha256"):
        make_record(sha256="not-hex")


def test_steps_can_subclass_with_typed_fields() -> None:
    class ImageAsset(AssetRecord):
        seed: int | None = None

    base = make_record()
    image = ImageAsset.model_validate({**base.model_dump(), "seed": 7})
    assert image.seed == 7
    assert "seed" in ImageAsset.model_json_schema()["properties"]


def test_json_round_trip() -> None:
    record = make_record(model="gpt-image-1", provenance={"prompt_sha256": "abc"})
    assert AssetRecord.model_validate_json(record.model_dump_json()) == record
