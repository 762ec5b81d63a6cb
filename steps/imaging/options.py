"""The output options every image-making step shares, with their rules.

:class:`ImageOutputConfig` holds what ``image_generation`` and ``image_edit`` both take:
the model, the size (``size``, or ``aspect_ratio`` with ``resolution``), ``count``,
``quality``, ``background``, ``output_format``, ``output_compression``, ``seed``, the
open-weight options (``steps``, ``guidance``, ``negative_prompt``, ``strength``,
``safety_checker``: only on models that take them, within their ranges) and who pays
(``charge_type``, ``api_key_secret``). Each rule is its own validator, deferred while
one of its fields is a template (then checked after rendering, still before any call).

Once validated, the options travel as one :class:`OutputOptions` (``config.output``): from
the step to the job, the provider requests, the checks of each answer and the asset record.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import RuleViolation, StepConfig, deferred
from fetchflow.templating import to_text
from steps.imaging.assets import ChargeType
from steps.imaging.models import rules
from steps.imaging.models.catalog import AUTO, CATALOG, parse_size
from steps.imaging.models.rules import Tuning
from steps.imaging.moderation import (
    FallbackOnModeration,
    OnModeration,
    check_fallback,
    check_on_moderation,
)

__all__ = [
    "AspectRatio",
    "ImageOutputConfig",
    "OutputOptions",
    "Quality",
    "check_source_format_compression",
    "numeric_fields",
    "prompt_as_text",
    "refuse_booleans",
]

AspectRatio = Literal["1:1", "16:9", "4:3", "3:2", "5:4", "21:9", "9:16", "3:4", "2:3", "4:5"]
Quality = Literal["auto", "low", "medium", "high", "xhigh", "max"]


def _leaf_types(annotation: object) -> set[object]:
    if get_origin(annotation) in (Union, types.UnionType):
        return {leaf for arg in get_args(annotation) for leaf in _leaf_types(arg)}
    return {annotation}


def numeric_fields(model: type[BaseModel]) -> dict[str, type]:
    """The fields of ``model`` that hold a number and not a boolean: name → int or float."""
    found: dict[str, type] = {}
    for name, info in model.model_fields.items():
        leaves = _leaf_types(info.annotation)
        if bool in leaves:
            continue
        if float in leaves:
            found[name] = float
        elif int in leaves:
            found[name] = int
    return found


def check_source_format_compression(
    output_compression: int | None, output_format: str | None
) -> None:
    """The rule of the steps that keep the source's format when ``output_format`` is left out
    (transform, upscale): compression needs jpeg or webp written out.

    Raises:
        RuleViolation: ``output_compression`` with another format, or with none.
    """
    if output_compression is not None and output_format not in ("jpeg", "webp"):
        found = output_format or "none (the source's format is kept)"
        raise RuleViolation(
            f"output_compression only applies to jpeg and webp, got output_format {found}",
            fields=("output_compression", "output_format"),
            hint="remove output_compression or use output_format webp (or jpeg)",
        )


def refuse_booleans(model: type[BaseModel], data: object) -> object:
    """Refuse a boolean where ``model`` wants a number (pydantic would read true as 1).

    YAML reads ``yes``, ``no``, ``on``, ``off``, ``true`` and ``false`` as booleans, so
    ``count: yes`` would otherwise run as one image.

    Raises:
        RuleViolation: A numeric field holds a boolean.
    """
    if not isinstance(data, Mapping):
        return data
    for name, kind in numeric_fields(model).items():
        value = data.get(name)
        if isinstance(value, bool):
            raise RuleViolation(
                f"{name} must be a number, got the boolean {str(value).lower()} (YAML reads "
                "yes, no, on, off, true and false as booleans)",
                fields=(name,),
                hint="write a whole number, e.g. 3" if kind is int else "write a number, e.g. 1.5",
            )
    return data


def prompt_as_text(value: object, info: ValidationInfo) -> object:
    """A ``prompt`` value as text; a mapping written in the file is a YAML slip.

    A template that is exactly one expression renders a native value (a list, a mapping):
    the prompt reads it as JSON text. A mapping written as the prompt in the file is a
    YAML slip (a colon in a plain multi-line prompt) and is an error.
    """
    if value is None or isinstance(value, str):
        return value
    if info.context is not None:  # the static check: the value is as written
        raise RuleViolation(
            f"prompt must be text, got {type(value).__name__} {to_text(value)[:60]}",
            fields=("prompt",),
            hint="a colon makes YAML read the prompt as a mapping: quote the prompt, "
            "or write it as a block (prompt: |)",
        )
    return to_text(value)


@dataclass(frozen=True)
class OutputOptions:
    """What every image of a step is made as: the output options, travelling together.

    Attributes:
        count: Images per request (per edit, for an edit step).
        size: ``WxH``, ``auto`` or None.
        aspect_ratio: ``W:H`` mapped to the model's closest size, or None.
        resolution: ``1K``, ``2K``, ``4K`` or None.
        quality: As configured (``auto``, ``low``, ...).
        background: ``auto``, ``opaque`` or ``transparent``.
        moderation: ``auto`` or ``low`` (generations only; edits take none).
        output_format: ``png``, ``jpeg`` or ``webp``.
        output_compression: 0-100 or None.
        partial_images: Partial images to stream per image (0-3; OpenAI GPT image models):
            shown in the step's progress as they arrive, never stored as outputs.
        seed: The seed, or None.
        charge_type: Whose key pays: ``personal`` or ``hosted``.
        on_moderation: What a moderation block does (:mod:`steps.imaging.moderation`).
        tuning: The open-weight options (steps, guidance, negative prompt, strength,
            safety checker), each None when not set.
        provenance_prompt: Whether each image's provenance carries the prompt.
    """

    count: int = 1
    size: str | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    quality: str = "auto"
    background: str = "auto"
    moderation: str = "auto"
    output_format: str = "png"
    output_compression: int | None = None
    partial_images: int = 0
    seed: int | None = None
    charge_type: ChargeType = "personal"
    on_moderation: OnModeration = "fail"
    tuning: Tuning = field(default_factory=Tuning)
    provenance_prompt: bool = False


class ImageOutputConfig(StepConfig):
    """Fields every image-making step takes: the model, the output, who pays."""

    model: str = Field(
        AUTO, description="A catalog model, preview, or auto.", examples=[AUTO, *CATALOG]
    )
    size: str | None = Field(None, description="WxH (e.g. 1536x1024) or auto.")
    aspect_ratio: AspectRatio | None = Field(
        None, description="Instead of size: mapped to the model's closest size."
    )
    resolution: Literal["1K", "2K", "4K"] | None = Field(
        None, description="With aspect_ratio: long edge about 1024, 2048 or 4096 pixels."
    )
    count: int = Field(1, ge=1, le=10, description="How many images (several calls if needed).")
    quality: Quality = Field("auto", description="auto, low, medium, high (xhigh, max: 2.5).")
    background: Literal["auto", "opaque", "transparent"] = Field("auto", description="Backdrop.")
    output_format: Literal["png", "jpeg", "webp"] = Field("png", description="File format.")
    output_compression: int | None = Field(
        None, ge=0, le=100, description="0-100 (100 = least loss); jpeg or webp only."
    )
    partial_images: int = Field(
        0, ge=0, le=3, description="0-3 previews streamed while each image is made (OpenAI)."
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="For models that take one (Gemini, preview)."
    )
    steps: int | None = Field(
        None, ge=1, le=500, description="Denoising steps (open-weight models: FLUX, SDXL)."
    )
    guidance: float | None = Field(
        None,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description="Guidance scale: how closely to follow the prompt.",
    )
    negative_prompt: str | None = Field(
        None, max_length=10_000, description="What the image should not show (SDXL)."
    )
    strength: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="image_edit: how far to move from the image (0-1).",
    )
    safety_checker: bool | None = Field(
        None, description="Switch the provider's safety checker on or off (fal)."
    )
    charge_type: ChargeType = Field(
        "personal", description="personal: your key; hosted: the operator's keys."
    )
    api_key_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding your key (personal only)."
    )
    on_moderation: OnModeration = Field(
        "fail",
        description="When the provider's safety system blocks an image: fail (the step "
        "fails), skip (go on; the image is listed as blocked), {retry: N} (1-5 more tries) "
        "or {fallback_model: NAME} (another catalog model).",
        examples=["fail", "skip", {"retry": 2}, {"fallback_model": "gemini-2.5-flash-image"}],
    )
    provenance_prompt: bool = Field(
        False,
        description="Also write the prompt into each image's provenance (XMP "
        "Iptc4xmpExt:AIPromptInformation, and the C2PA manifest when signing). Off by "
        "default: a prompt may be private.",
    )
    contact_sheet: bool = Field(
        False,
        description="Also store a labelled grid of the step's images (PNG, no provider "
        "call) as one more record, last in the output.",
    )

    @property
    def output(self) -> OutputOptions:
        """The output options as one object (``moderation``: ``auto``, see subclasses)."""
        return OutputOptions(
            count=self.count,
            size=self.size,
            aspect_ratio=self.aspect_ratio,
            resolution=self.resolution,
            quality=self.quality,
            background=self.background,
            output_format=self.output_format,
            output_compression=self.output_compression,
            partial_images=self.partial_images,
            seed=self.seed,
            charge_type=self.charge_type,
            on_moderation=self.on_moderation,
            tuning=self.tuning,
            provenance_prompt=self.provenance_prompt,
        )

    @property
    def tuning(self) -> Tuning:
        """The open-weight options as one object."""
        return Tuning(
            steps=self.steps,
            guidance=self.guidance,
            negative_prompt=self.negative_prompt,
            strength=self.strength,
            safety_checker=self.safety_checker,
        )

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, data: object) -> object:
        return refuse_booleans(cls, data)

    @field_validator("on_moderation", mode="before")
    @classmethod
    def _on_moderation_shape(cls, value: object, info: ValidationInfo) -> object:
        return value if deferred(info, "on_moderation") else check_on_moderation(value)

    @model_validator(mode="after")
    def _fallback_fits_step(self, info: ValidationInfo) -> Self:
        policy = self.on_moderation
        fields = ("on_moderation", "model", "size", "resolution", "count", "quality")
        if not isinstance(policy, FallbackOnModeration) or deferred(info, *fields, "background"):
            return self
        check_fallback(
            policy.fallback_model,
            model=self.model,
            size=self.size,
            resolution=self.resolution,
            count=self.count,
            quality=self.quality,
            background=self.background,
        )
        return self

    @field_validator("model")
    @classmethod
    def _model_is_in_catalog(cls, value: str, info: ValidationInfo) -> str:
        if not deferred(info, "model"):
            rules.lookup_model(value)
        return value

    @field_validator("size", mode="before")
    @classmethod
    def _size_is_text(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise RuleViolation(
                f"size must be WxH text, got the number {value} (YAML reads 0x16 and the "
                "like as hexadecimal numbers)",
                fields=("size",),
                hint='quote it, e.g. size: "1024x1024", or write size: auto',
            )
        return value

    @field_validator("size")
    @classmethod
    def _size_is_wxh(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == AUTO or deferred(info, "size"):
            return value
        dimensions = parse_size(value)
        if dimensions is not None and min(dimensions) == 0:
            raise RuleViolation(
                f"size: {value} has a side of 0 pixels",
                fields=("size",),
                hint="give both sides in pixels, e.g. size: 1024x1024, or size: auto",
            )
        if dimensions is not None:
            return value
        raise RuleViolation(
            f'size: "{value}" is not WxH or auto',
            fields=("size",),
            hint="write size: 1536x1024 (width x height in pixels) or size: auto",
        )

    @model_validator(mode="after")
    def _transparent_needs_alpha_format(self, info: ValidationInfo) -> Self:
        if deferred(info, "background", "output_format"):
            return self
        if self.background == "transparent" and self.output_format == "jpeg":
            raise RuleViolation(
                "background: transparent needs output_format png or webp, got jpeg "
                "(JPEG has no transparency)",
                fields=("background", "output_format"),
                hint="use output_format png or webp, or background opaque",
            )
        return self

    @model_validator(mode="after")
    def _compression_needs_lossy_format(self, info: ValidationInfo) -> Self:
        if deferred(info, "output_compression", "output_format"):
            return self
        if self.output_compression is not None and self.output_format == "png":
            raise RuleViolation(
                "output_compression only applies to jpeg and webp, got output_format png",
                fields=("output_compression", "output_format"),
                hint="remove output_compression or use output_format webp (or jpeg)",
            )
        return self

    @model_validator(mode="after")
    def _size_or_aspect_ratio(self, info: ValidationInfo) -> Self:
        if deferred(info, "size", "aspect_ratio", "resolution"):
            return self
        if self.size is not None and (self.aspect_ratio or self.resolution):
            other = "aspect_ratio" if self.aspect_ratio else "resolution"
            raise RuleViolation(
                f"size and {other} are exclusive, got size: {self.size} and "
                f"{other}: {self.aspect_ratio or self.resolution}",
                fields=(other, "size"),
                hint="give size (WxH), or aspect_ratio with resolution, not both",
            )
        return self

    @model_validator(mode="after")
    def _secret_is_personal(self, info: ValidationInfo) -> Self:
        if deferred(info, "api_key_secret", "charge_type", "model"):
            return self
        if self.api_key_secret is not None and self.charge_type == "hosted":
            raise RuleViolation(
                "api_key_secret names your own key, but charge_type is hosted (the "
                "operator's keys)",
                fields=("api_key_secret", "charge_type"),
                hint="remove api_key_secret, or use charge_type: personal",
            )
        if self.api_key_secret is not None and self.model == AUTO:
            raise RuleViolation(
                "api_key_secret needs a named model: with model auto the provider the key "
                "is for is not known",
                fields=("api_key_secret", "model"),
                hint="name the model, e.g. model: gpt-image-2",
            )
        return self

    @model_validator(mode="after")
    def _size_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "size", "model") and self.size is not None:
            rules.check_size(rules.rules_spec(self.model), self.size)
        return self

    @model_validator(mode="after")
    def _count_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "count", "model"):
            rules.check_count(rules.rules_spec(self.model), self.count)
        return self

    @model_validator(mode="after")
    def _quality_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "quality", "model"):
            rules.check_quality(rules.rules_spec(self.model), self.quality)
        return self

    @model_validator(mode="after")
    def _background_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "background", "model"):
            rules.check_background(rules.rules_spec(self.model), self.background)
        return self

    @model_validator(mode="after")
    def _partial_images_fit_model(self, info: ValidationInfo) -> Self:
        # auto may pick a model that streams; one that does not ignores partial_images
        if not deferred(info, "partial_images", "model") and self.model != AUTO:
            rules.check_partial_images(rules.rules_spec(self.model), self.partial_images)
        return self

    @model_validator(mode="after")
    def _seed_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "seed", "model"):
            rules.check_seed(rules.rules_spec(self.model), self.seed)
        return self

    @model_validator(mode="after")
    def _tuning_fits_model(self, info: ValidationInfo) -> Self:
        for name in rules.TUNING_FIELDS:
            if not deferred(info, name, "model"):
                rules.check_tuning_field(rules.rules_spec(self.model), name, getattr(self, name))
        return self
