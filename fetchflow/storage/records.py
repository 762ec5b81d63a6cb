"""The asset record: what every file-producing step outputs, one per file.

Templates reach its fields (``{{ hero.output.0.file_url }}``); the engine checks those
references against :meth:`AssetRecord.model_json_schema`, so every field is declared with a
description. Steps with more to say (an image step's seed, say) subclass it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["AssetRecord", "asset_id"]

#: How many hex digits of the sha256 make an asset id.
ASSET_ID_HEX_DIGITS = 16


def asset_id(sha256: str) -> str:
    """The asset id for content with this sha256: its first 16 hex digits.

    Equal bytes give equal ids, whichever step or run produced them.
    """
    return sha256[:ASSET_ID_HEX_DIGITS]


class AssetRecord(BaseModel):
    """One stored file, as a step outputs it.

    The first five fields are the ones users know from image APIs; the rest say where the
    bytes live and where they came from.
    """

    # Built on first use: `fetchflow validate` loads step modules that declare records.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str = Field(
        description="Content id: the first 16 hex digits of sha256 (equal bytes, equal id)."
    )
    file_url: str = Field(
        description="A URL to fetch the file: presigned (expires), public base URL + key, "
        "or file:// for the local store."
    )
    file_name: str = Field(description="Human-friendly file name, e.g. hero-1.png.")
    file_size: int = Field(ge=0, description="Size in bytes.")
    file_type: str = Field(description="MIME type, e.g. image/png.")
    width: int | None = Field(default=None, ge=1, description="Width in pixels, for images.")
    height: int | None = Field(default=None, ge=1, description="Height in pixels, for images.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the bytes, lowercase hex."
    )
    storage_uri: str = Field(
        description="Where the bytes live: s3://bucket/key or file:///path. Downstream "
        "steps read through the store with it (never expires)."
    )
    step_id: str = Field(description="The step that produced the file.")
    run_id: str = Field(description="The run that produced the file.")
    created_at: datetime = Field(description="When this record was made (UTC).")
    model: str | None = Field(default=None, description="The model that made the file, if any.")
    provenance: dict[str, str] = Field(
        default_factory=dict,
        description="Step-specific provenance (prompt hash, seed, ...), string to string.",
    )
    matrix: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="The matrix combination that made the file, axis name to value "
        '(`matrix: {product: [mug, tote]}` gives {"product": "mug"}); empty when '
        "the step has no matrix.",
    )
