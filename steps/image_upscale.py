"""Image upscale step: enlarge images 2x or 4x (Pillow's Lanczos: free and offline; or a
provider's upscaler, billed).

```yaml
- id: large
  type: image_upscale
  images: "<< hero.output >>"    # records, http(s) URLs or files under the project
  factor: 2                      # 2 or 4
  model: auto                    # auto (= pillow, free), pillow, fal-ai/clarity-upscaler
  output_format: webp            # default: the source's format (png if not png/jpeg/webp)
  output_compression: 90         # jpeg or webp only
  charge_type: personal          # whose key pays a provider upscaler (FAL_KEY / hosted)
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
its provider, factors, method and price; ``auto`` picks :data:`DEFAULT_UPSCALER` (Pillow,
free: ``auto`` never spends money). A provider upscaler (``fal-ai/clarity-upscaler``,
``fal-ai/aura-sr``) is billable: ``--dry-run`` and approval show its estimate (per started
megapixel of the *output*; unknown while a source's size is, e.g. an upstream record in a
dry run), its key is checked before the run (``FAL_KEY``, or the operator's for
``charge_type: hosted``), and each image is one queued call with the image steps' retry,
timeout and concurrency rules (:mod:`steps.imaging.hosted_upscale`), stored as soon as it
is made. Its records say ``provider: fal``, the model, ``cost_usd``, and in the provenance
``method`` and the ``seed`` fal returned, besides the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import (
    CostEstimate,
    OutputLength,
    RuleViolation,
    Step,
    StepContext,
    deferred,
    static_project_root,
)
from steps.imaging.assets import ChargeType, ImageAsset, store_asset
from steps.imaging.options import check_source_format_compression
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.pixels.upscale import (
    FACTORS,
    UpscaledImage,
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
from steps.imaging.upscalers import (
    AUTO,
    DEFAULT_UPSCALER,
    UPSCALERS,
    Upscaler,
    lookup_upscaler,
)

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from steps.imaging.sources.references import Reference

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


class ImageUpscaleConfig(ReferencedImages):
    """Fields of an ``image_upscale`` step."""

    images: ImagesValue = Field(
        description="One image or a list: asset records (<< hero.output >>), http(s) URLs, "
        "or files relative to the project folder."
    )
    factor: Literal[2, 4] = Field(2, description="How many times larger: 2 or 4.")
    model: str = Field(
        AUTO,
        description="The upscaler: auto (Pillow's Lanczos, free), pillow, or a provider's "
        "upscaler (billed): fal-ai/clarity-upscaler, fal-ai/aura-sr.",
        examples=[AUTO, *UPSCALERS],
    )
    charge_type: ChargeType = Field(
        "personal",
        description="Whose key pays a provider upscaler: personal (FAL_KEY) or hosted "
        "(the operator's key). Pillow costs nothing either way.",
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
        if not deferred(info, "output_compression", "output_format"):
            check_source_format_compression(self.output_compression, self.output_format)
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
    """Enlarge images 2x or 4x: Pillow's Lanczos (free, offline) or a provider's upscaler."""

    # Billable as a type (approval, budgets, a timeout is final); Pillow's estimate is $0,
    # so a Pillow upscale never asks for approval.
    billable = True
    produces_files = True
    approval_fields = ("model", "factor")

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """One image per reference, when ``images`` is written out (not a template)."""
        return one_image_per_reference(fields, templated)

    @classmethod
    def preflight(cls, raw_config: Mapping[str, object], settings: Settings) -> None:
        """A provider upscaler's key (``FAL_KEY``, or the operator's for hosted) is there.

        Raises:
            StepError: The key is missing (before anything runs, naming the variable).
        """
        from fetchflow.templating import is_template
        from steps.imaging.hosted_upscale import check_key

        model, charge_type = raw_config.get("model", AUTO), raw_config.get("charge_type")
        charge = "personal" if charge_type is None else charge_type
        if not isinstance(model, str) or not isinstance(charge, str):
            return
        if is_template(model) or is_template(charge) or model not in UPSCALERS:
            return  # known when it runs; an unknown name is the static check's
        upscaler = UPSCALERS[model]
        if upscaler.billable:
            check_key(upscaler.provider, upscaler.name, charge, None)

    @classmethod
    def estimate(cls, config: BaseModel, settings: Settings) -> CostEstimate | None:
        """Pillow: $0. A provider upscaler: its price per started megapixel of each output,
        when every source's size is known (records, project files), else unknown."""
        assert isinstance(config, ImageUpscaleConfig)
        try:
            upscaler = lookup_upscaler(config.model)
        except RuleViolation:
            return CostEstimate(None, detail=f"model {config.model} is known when it runs")
        sizes = [_known_size(item) for item in flatten_references(config.images)]
        count = (
            None
            if any(_templated(item) for item in flatten_references(config.images))
            else len(sizes)
        )
        if not upscaler.billable:
            return CostEstimate(0.0, count, f"{upscaler.name} ({upscaler.method}): free")
        what = f"{upscaler.name} {config.factor}x"
        if upscaler.usd_per_megapixel is None:
            return CostEstimate(None, count, f"{what}: no published price")
        rate = f"${upscaler.usd_per_megapixel} per output megapixel"
        if count is None or None in sizes:
            return CostEstimate(None, count, f"{what}, {rate}: a source size is known when it runs")
        from steps.imaging.hosted_upscale import area_price

        outputs = [upscaled_size(size, config.factor) for size in sizes if size is not None]
        cost = sum(area_price(upscaler.usd_per_megapixel, *size) for size in outputs)
        shown = ", ".join(f"{w}x{h}" for w, h in outputs)
        return CostEstimate(round(cost, 6), count, f"{what} to {shown}, {rate}")

    def run(self, config: ImageUpscaleConfig, ctx: StepContext) -> list[ImageAsset]:
        """Read every reference, upscale it, store one record per image."""
        from steps.imaging.sources.references import project_root_of, resolve_references

        upscaler = lookup_upscaler(config.model)
        references = resolve_references(config.images, ctx=ctx, project_root=project_root_of(ctx))
        if ctx.progress is not None:
            ctx.progress.start(len(references))
        if upscaler.billable:
            from steps.imaging.hosted_upscale import upscale_on_provider

            def store(
                index: int, image: UpscaledImage, cost_usd: float | None, seed: int | None
            ) -> ImageAsset:
                reference = references[index]
                return _store(ctx, config, upscaler, index, reference, image, cost_usd, seed)

            return upscale_on_provider(
                upscaler.provider,
                upscaler.name,
                upscaler.usd_per_megapixel,
                [reference.data for reference in references],
                [f"images[{i}] ({ref.source})" for i, ref in enumerate(references)],
                config,
                ctx,
                store,
            )
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
        return [
            _store(ctx, config, upscaler, index, reference, image, cost_usd=0.0, seed=None)
            for index, (reference, image) in enumerate(zip(references, images, strict=True))
        ]


def _templated(item: object) -> bool:
    from fetchflow.templating import is_template

    return isinstance(item, str) and is_template(item)


def _known_size(item: object) -> tuple[int, int] | None:
    """A source's size before the run: a record's ``width``/``height``, or a project file's
    header (under the current folder); None when only the run can tell."""
    from fetchflow.step import project_root

    if isinstance(item, Mapping):
        width, height = item.get("width"), item.get("height")
        if isinstance(width, int) and isinstance(height, int):
            return width, height
        return None
    return _project_file_size(item, project_root([]))


def _store(
    ctx: StepContext,
    config: ImageUpscaleConfig,
    upscaler: Upscaler,
    index: int,
    reference: Reference,
    image: UpscaledImage,
    cost_usd: float | None,
    seed: int | None,
) -> ImageAsset:
    """One upscaled image stored, its source in the provenance."""
    digest = settings_sha256(config)
    asset = store_asset(
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
        seed=seed,
        index=index,
        usage=None,
        cost_usd=cost_usd,
        charge_type=config.charge_type if upscaler.billable else "personal",
        provider=upscaler.provider,
    )
    if ctx.progress is not None:
        ctx.progress.advance()
    return asset
