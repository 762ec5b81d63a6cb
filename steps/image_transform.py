"""Image transform step: resize, crop or pad, and re-encode images with Pillow (free).

```yaml
- id: thumbs
  type: image_transform
  images: "<< hero.output >>"    # records, http(s) URLs or files under the project
  width: 512                     # and/or height (aspect kept when one is given), or scale
  aspect_ratio: "1:1"            # optional: reach the ratio by...
  fit: pad                       # ...crop (centred, default) or pad (on pad_color)
  pad_color: transparent         # white (default), a colour name, #rrggbb; png/webp only
  output_format: webp            # default: the source's format (png if not png/jpeg/webp)
  output_compression: 80         # jpeg or webp only
```

Output: one :class:`~steps.imaging.assets.ImageAsset` per input image, in order
(``<< thumbs.output.0.file_url >>``), with ``model: pillow``, ``provider: pillow``,
``cost_usd: 0``; ``prompt_sha256`` is the SHA-256 of the transform's settings, and the
provenance holds the source's sha256 and where it came from. Asset records are read back
through the run's store (no HTTP, no expiry); URLs are fetched with the address and size
limits of :func:`~steps.imaging.net.fetching.fetch_reference`. EXIF orientation is applied, then
every piece of metadata is dropped. Outputs are capped at 8192 pixels a side and 40 MP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import OutputLength, RuleViolation, Step, StepContext, deferred
from steps.imaging.assets import ImageAsset, store_asset
from steps.imaging.options import check_source_format_compression, refuse_booleans
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.pixels.transform import MAX_OUTPUT_SIDE
from steps.imaging.provenance import derived
from steps.imaging.sources.references import (
    ImagesValue,
    ReferencedImages,
    one_image_per_reference,
    settings_digest,
)

__all__ = ["ImageTransformConfig", "ImageTransformStep"]

AspectRatio = Literal["1:1", "16:9", "4:3", "3:2", "21:9", "9:16", "3:4", "2:3"]


class ImageTransformConfig(ReferencedImages):
    """Fields of an ``image_transform`` step."""

    images: ImagesValue = Field(
        description="One image or a list: asset records (<< hero.output >>), http(s) URLs, "
        "or files relative to the project folder."
    )
    width: int | None = Field(None, ge=1, le=MAX_OUTPUT_SIDE, description="Width in pixels.")
    height: int | None = Field(None, ge=1, le=MAX_OUTPUT_SIDE, description="Height in pixels.")
    scale: float | None = Field(
        None, gt=0, le=16, description="Resize factor (0.5 halves, 2 doubles); not with width."
    )
    aspect_ratio: AspectRatio | None = Field(None, description="Crop or pad to this ratio.")
    fit: Literal["crop", "pad"] = Field(
        "crop", description="How a ratio is reached: crop (centred) or pad (on pad_color)."
    )
    pad_color: str = Field(
        "white", description="With fit: pad: white, a colour name, #rrggbb, or transparent."
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="File format; default: the source's (png if another format)."
    )
    output_compression: int | None = Field(
        None, ge=0, le=100, description="0-100 (100 = least loss); jpeg or webp only."
    )

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, data: object) -> object:
        return refuse_booleans(cls, data)

    @field_validator("pad_color")
    @classmethod
    def _pad_color_is_a_color(cls, value: str, info: ValidationInfo) -> str:
        from steps.imaging.pixels.transform import parse_color

        if deferred(info, "pad_color"):
            return value
        try:
            parse_color(value)
        except ValueError:
            raise RuleViolation(
                f'pad_color: "{value}" is not a colour',
                fields=("pad_color",),
                hint="use a colour name (white, black), #rrggbb, or transparent",
            ) from None
        return value

    @model_validator(mode="after")
    def _scale_or_size(self, info: ValidationInfo) -> Self:
        if deferred(info, "scale", "width", "height"):
            return self
        if self.scale is not None and (self.width is not None or self.height is not None):
            other = "width" if self.width is not None else "height"
            raise RuleViolation(
                f"scale and {other} are exclusive, got scale: {self.scale} and "
                f"{other}: {getattr(self, other)}",
                fields=("scale", other),
                hint="give scale (a factor), or width and/or height in pixels, not both",
            )
        return self

    @model_validator(mode="after")
    def _aspect_ratio_or_both_sides(self, info: ValidationInfo) -> Self:
        if deferred(info, "aspect_ratio", "width", "height"):
            return self
        if self.aspect_ratio is not None and self.width is not None and self.height is not None:
            raise RuleViolation(
                f"aspect_ratio: {self.aspect_ratio} conflicts with width and height "
                f"({self.width}x{self.height} already sets the ratio)",
                fields=("aspect_ratio", "width", "height"),
                hint="give aspect_ratio with one of width or height, or width and height alone",
            )
        return self

    @model_validator(mode="after")
    def _pad_color_needs_pad(self, info: ValidationInfo) -> Self:
        if deferred(info, "pad_color", "fit"):
            return self
        if "pad_color" in self.model_fields_set and self.fit != "pad":
            raise RuleViolation(
                f"pad_color: {self.pad_color} only applies with fit: pad, got fit: {self.fit}",
                fields=("pad_color", "fit"),
                hint="add fit: pad, or remove pad_color",
            )
        return self

    @model_validator(mode="after")
    def _transparent_pad_needs_alpha_format(self, info: ValidationInfo) -> Self:
        if deferred(info, "pad_color", "output_format"):
            return self
        if self.pad_color.strip().lower() == "transparent" and self.output_format == "jpeg":
            raise RuleViolation(
                "pad_color: transparent needs output_format png or webp, got jpeg "
                "(JPEG has no transparency)",
                fields=("pad_color", "output_format"),
                hint="use output_format png or webp, or a solid pad_color",
            )
        return self

    @model_validator(mode="after")
    def _compression_needs_lossy_format(self, info: ValidationInfo) -> Self:
        if not deferred(info, "output_compression", "output_format"):
            check_source_format_compression(self.output_compression, self.output_format)
        return self


def settings_sha256(config: ImageTransformConfig) -> str:
    """SHA-256 of the transform's settings (every field but ``images``), canonical JSON."""
    return settings_digest(config)


class ImageTransformStep(Step[ImageTransformConfig, list[ImageAsset]]):
    """Resize, crop or pad, and re-encode images with Pillow (free, offline)."""

    billable = False
    produces_files = True

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """One image per reference, when ``images`` is written out (not a template)."""
        return one_image_per_reference(fields, templated)

    def run(self, config: ImageTransformConfig, ctx: StepContext) -> list[ImageAsset]:
        """Read every reference, transform it, store one record per image."""
        from steps.imaging.pixels.transform import TransformSpec, transform_image
        from steps.imaging.sources.references import project_root_of, resolve_references

        references = resolve_references(config.images, ctx=ctx, project_root=project_root_of(ctx))
        spec = TransformSpec(
            width=config.width,
            height=config.height,
            scale=config.scale,
            aspect_ratio=config.aspect_ratio,
            fit=config.fit,
            pad_color=config.pad_color,
            output_format=config.output_format,
            output_compression=config.output_compression,
        )
        digest = settings_sha256(config)
        if ctx.progress is not None:
            ctx.progress.start(len(references))
        assets: list[ImageAsset] = []
        # Every image is transformed before any is stored: a file that cannot be decoded
        # fails the step with nothing written.
        images = [
            transform_image(reference.data, spec, source=f"images[{index}] ({reference.source})")
            for index, reference in enumerate(references)
        ]
        for index, (reference, image) in enumerate(zip(references, images, strict=True)):
            asset = store_asset(
                ctx,
                image.data,
                file_type=image.file_type,
                output_format=image.format,
                width=image.width,
                height=image.height,
                model="pillow",
                origin=derived(
                    "resized",
                    reference.data,
                    sniff_mime_type(reference.data) or image.file_type,
                    software="pillow",
                    title=f"images[{index}]",
                ),
                provenance={
                    "source_sha256": reference.sha256,
                    "source": reference.source,
                    "source_format": image.source_format,
                    "settings_sha256": digest,
                    "index": str(index),
                    "output_format": image.format,
                },
                prompt_sha256=digest,
                seed=None,
                index=index,
                usage=None,
                cost_usd=0.0,
                charge_type="personal",
                provider="pillow",
            )
            assets.append(asset)
            if ctx.progress is not None:
                ctx.progress.advance()
        return assets
