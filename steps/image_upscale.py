"""Image upscale step: enlarge images 2x or 4x (Pillow's Lanczos: free and offline).

```yaml
- id: large
  type: image_upscale
  images: "<< hero.output >>"    # records, http(s) URLs or files under the project
  factor: 2                      # 2 or 4
  model: auto                    # auto (= pillow today) or pillow
  output_format: webp            # default: the source's format (png if not png/jpeg/webp)
  output_compression: 90         # jpeg or webp only
```

Output: one :class:`~steps.imaging.assets.ImageAsset` per input image, in order
(``<< large.output.0.file_url >>``), exactly ``factor`` times the source's width and height
(after its EXIF orientation), with ``model: pillow``, ``provider: pillow``, ``cost_usd: 0``.
The provenance says what it was upscaled from: ``upscaled_from`` (the source's sha256),
``source`` (its ``storage_uri``, redacted URL or ``file:<path>``), ``factor`` and
``method: lanczos``. An output over 8192 pixels a side or 40 MP is refused before it is
made: statically for project files (their header is read by ``fetchflow validate``), at
run time for everything else.

The upscalers are a table (:data:`UPSCALERS`): a provider's upscaler is one more row with
its provider, factors and method; ``auto`` picks :data:`DEFAULT_UPSCALER`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fetchflow.errors import closest
from fetchflow.step import (
    OutputLength,
    RuleViolation,
    Step,
    StepContext,
    deferred,
    static_project_root,
)
from steps.imaging.assets import ImageAsset, store_asset
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.pixels.upscale import (
    FACTORS,
    header_size,
    over_limit,
    too_large,
    upscale_image,
    upscaled_size,
)
from steps.imaging.provenance import derived
from steps.imaging.sources.references import (
    ImagesValue,
    ReferencedImages,
    flatten_references,
    one_image_per_reference,
    project_file,
    settings_digest,
)

__all__ = [
    "DEFAULT_UPSCALER",
    "FACTORS",
    "UPSCALERS",
    "ImageUpscaleConfig",
    "ImageUpscaleStep",
    "Upscaler",
    "lookup_upscaler",
    "settings_sha256",
]

AUTO = "auto"


@dataclass(frozen=True)
class Upscaler:
    """One upscaling model.

    Attributes:
        name: What ``model:`` names it.
        provider: Who runs it (``pillow``: here, offline).
        method: How, for the provenance (``lanczos``).
        factors: The factors it takes.
    """

    name: str
    provider: str
    method: str
    factors: tuple[int, ...] = FACTORS


#: Every upscaler ``model:`` may name (``auto`` aside).
UPSCALERS: Mapping[str, Upscaler] = {
    "pillow": Upscaler("pillow", provider="pillow", method="lanczos"),
}
#: What ``model: auto`` runs.
DEFAULT_UPSCALER = "pillow"


def lookup_upscaler(name: str) -> Upscaler:
    """The upscaler ``model: name`` runs (``auto``: :data:`DEFAULT_UPSCALER`).

    Raises:
        RuleViolation: Not a known upscaler (the closest name and the list in the message).
    """
    if name == AUTO:
        return UPSCALERS[DEFAULT_UPSCALER]
    upscaler = UPSCALERS.get(name)
    if upscaler is not None:
        return upscaler
    known = ", ".join([AUTO, *UPSCALERS])
    suggestion = closest(name, [AUTO, *UPSCALERS])
    if suggestion:
        raise RuleViolation(
            f'unknown upscale model "{name}"; did you mean "{suggestion}"? (known: {known})',
            fields=("model",),
            hint=f"use model: {suggestion}",
        )
    raise RuleViolation(
        f'unknown upscale model "{name}" (known: {known})',
        fields=("model",),
        hint=f"use model: auto (Pillow's Lanczos, free), or one of: {', '.join(UPSCALERS)}",
    )


class ImageUpscaleConfig(ReferencedImages):
    """Fields of an ``image_upscale`` step."""

    images: ImagesValue = Field(
        description="One image or a list: asset records (<< hero.output >>), http(s) URLs, "
        "or files relative to the project folder."
    )
    factor: Literal[2, 4] = Field(2, description="How many times larger: 2 or 4.")
    model: str = Field(
        AUTO,
        description="The upscaler: auto (Pillow's Lanczos today) or pillow.",
        examples=[AUTO, *UPSCALERS],
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="File format; default: the source's (png if another format)."
    )
    output_compression: int | None = Field(
        None, ge=0, le=100, description="0-100 (100 = least loss); jpeg or webp only."
    )

    @field_validator("factor", mode="before")
    @classmethod
    def _factor_is_two_or_four(cls, value: object) -> object:
        # Before the Literal is tried: one message with the allowed values, not pydantic's.
        if isinstance(value, int) and not isinstance(value, bool) and value in FACTORS:
            return value
        if isinstance(value, bool):
            found = f"the boolean {str(value).lower()}"
        elif isinstance(value, int | float):
            found = str(value)
        else:
            found = f"{type(value).__name__} {str(value)[:60]!r}"
        raise RuleViolation(
            f"factor must be 2 or 4, got {found}",
            fields=("factor",),
            hint="use factor: 2 or factor: 4 (upscale twice for more; "
            "image_transform's scale resizes by any factor)",
        )

    @field_validator("model")
    @classmethod
    def _model_is_an_upscaler(cls, value: str, info: ValidationInfo) -> str:
        if not deferred(info, "model"):
            lookup_upscaler(value)
        return value

    @model_validator(mode="after")
    def _factor_fits_model(self, info: ValidationInfo) -> Self:
        if deferred(info, "factor", "model"):
            return self
        upscaler = lookup_upscaler(self.model)
        if self.factor not in upscaler.factors:
            taken = " or ".join(map(str, upscaler.factors))
            raise RuleViolation(
                f"factor: {self.factor} is not taken by model {upscaler.name} (it takes {taken})",
                fields=("factor", "model"),
                hint=f"use factor: {upscaler.factors[0]}, or model: auto",
            )
        return self

    @model_validator(mode="after")
    def _compression_needs_lossy_format(self, info: ValidationInfo) -> Self:
        if deferred(info, "output_compression", "output_format"):
            return self
        if self.output_compression is not None and self.output_format not in ("jpeg", "webp"):
            found = self.output_format or "none (the source's format is kept)"
            raise RuleViolation(
                f"output_compression only applies to jpeg and webp, got output_format {found}",
                fields=("output_compression", "output_format"),
                hint="remove output_compression or use output_format webp (or jpeg)",
            )
        return self

    @model_validator(mode="after")
    def _project_files_fit_the_limits(self, info: ValidationInfo) -> Self:
        # The only sizes known before the run: files under the project (their header).
        root = static_project_root(info)
        if root is None or deferred(info, "images", "factor"):
            return self
        for index, item in enumerate(flatten_references(self.images)):
            size = _project_file_size(item, root)
            if size is not None and over_limit(upscaled_size(size, self.factor)):
                message, hint = too_large(f'images[{index}] "{item}"', size, self.factor)
                raise RuleViolation(message, fields=("images", "factor"), hint=hint)
        return self


def _project_file_size(item: object, root: Path) -> tuple[int, int] | None:
    """The pixel size a project file's header states; None: not a file, or not readable
    (the run reports an unreadable image with its own message)."""
    from urllib.parse import urlsplit

    from fetchflow.templating import is_template

    if not isinstance(item, str) or is_template(item) or "://" in item:
        return None
    if urlsplit(item.strip()).scheme.lower() in ("http", "https", "data"):
        return None
    try:
        path = project_file(str(item).strip(), project_root=root)
    except RuleViolation:
        return None  # reported by the images field's own check
    return header_size(path.read_bytes()) if path.stat().st_size else None


def settings_sha256(config: ImageUpscaleConfig) -> str:
    """SHA-256 of the upscale's settings (every field but ``images``; ``auto`` resolved)."""
    return settings_digest(config, model=lookup_upscaler(config.model).name)


class ImageUpscaleStep(Step[ImageUpscaleConfig, list[ImageAsset]]):
    """Enlarge images 2x or 4x with Pillow's Lanczos resampling (free, offline)."""

    billable = False
    produces_files = True

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """One image per reference, when ``images`` is written out (not a template)."""
        return one_image_per_reference(fields, templated)

    def run(self, config: ImageUpscaleConfig, ctx: StepContext) -> list[ImageAsset]:
        """Read every reference, upscale it, store one record per image."""
        from steps.imaging.sources.references import project_root_of, resolve_references

        upscaler = lookup_upscaler(config.model)
        references = resolve_references(config.images, ctx=ctx, project_root=project_root_of(ctx))
        digest = settings_sha256(config)
        if ctx.progress is not None:
            ctx.progress.start(len(references))
        # Every image is upscaled before any is stored: one that is refused (unreadable,
        # too large) fails the step with nothing written.
        images = [
            upscale_image(
                reference.data,
                config.factor,
                source=f"images[{index}] ({reference.source})",
                output_format=config.output_format,
                output_compression=config.output_compression,
            )
            for index, reference in enumerate(references)
        ]
        assets: list[ImageAsset] = []
        for index, (reference, image) in enumerate(zip(references, images, strict=True)):
            assets.append(
                store_asset(
                    ctx,
                    image.data,
                    file_type=image.file_type,
                    output_format=image.format,
                    width=image.width,
                    height=image.height,
                    model=upscaler.name,
                    origin=derived(
                        "upscaled",
                        reference.data,
                        sniff_mime_type(reference.data) or image.file_type,
                        software=upscaler.name,
                        title=f"images[{index}]",
                    ),
                    provenance={
                        "upscaled_from": reference.sha256,
                        "source_sha256": reference.sha256,
                        "source": reference.source,
                        "source_format": image.source_format,
                        "source_size": f"{image.source_size[0]}x{image.source_size[1]}",
                        "factor": str(config.factor),
                        "method": upscaler.method,
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
                    provider=upscaler.provider,
                )
            )
            if ctx.progress is not None:
                ctx.progress.advance()
        return assets
