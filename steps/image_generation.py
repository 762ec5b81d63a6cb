"""Image generation step: a prompt to images (OpenAI, Gemini, or the offline preview).

```yaml
- id: hero
  type: image_generation
  prompt: "<< brief.output >>"
  model: auto                  # gpt-image-2 / gemini-2.5-flash-image / preview
  aspect_ratio: "16:9"         # or size: 1536x1024 (not both)
  resolution: 1K
  count: 2
  quality: high
  background: transparent      # needs output_format png or webp
  output_format: webp
  output_compression: 80       # jpeg or webp only
  style: soft studio light, pastel palette
  charge_type: personal        # your key (env or api_key_secret) | hosted (operator's)
```

Output: one :class:`ImageAsset` per image (``<<hero.output.0.file_url>>``): the asset
record plus the model, the final prompt's sha256, seed, index, token usage, cost and who
paid. Every field is checked before anything billable runs; a rule on a templated field is
checked once the template is rendered, still before the provider is called.

Provider calls are retried by fetchflow itself (429, 5xx, timeouts; never a refusal), at most
``FETCHFLOW_PROVIDER_CONCURRENCY`` at a time per provider. When a later call of a
several-call step fails, the images already made stay stored and the step raises
:class:`~steps.imaging.partial.PartialImages` whose ``kept`` holds their records.

``model: auto`` is checked statically against the preview provider's limits (the most
permissive); at run time it picks the first of gpt-image-2, gpt-image-1.5 and
gemini-2.5-flash-image that has a key for the charge type and supports the request, or the
offline preview when no key is configured (said once per run). Static validation reads no
environment and no secret; :meth:`ImageGenerationStep.preflight` checks the image settings
and keys right before the run. The run itself is :class:`~steps.imaging.step.ImageStep`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import OutputLength, RuleViolation, StepConfig, StepContext, deferred
from steps.imaging.assets import ImageAsset
from steps.imaging.models import rules
from steps.imaging.options import ImageOutputConfig, OutputOptions, prompt_as_text
from steps.imaging.running import PREVIEW_NOTICE, PROVIDER_TIMEOUT_SECONDS
from steps.imaging.step import ImagePlan, ImageStep

if TYPE_CHECKING:
    from steps.imaging.models.catalog import ModelSpec

__all__ = [
    "PREVIEW_NOTICE",
    "PROVIDER_TIMEOUT_SECONDS",
    "ImageAsset",
    "ImageGenerationConfig",
    "ImageGenerationStep",
    "final_prompt",
]


def final_prompt(prompt: str, style: str | None) -> str:
    """The prompt sent to the provider: ``prompt``, then ``style`` as its own line."""
    return f"{prompt.rstrip()}\n\nStyle: {style.strip()}" if style and style.strip() else prompt


class _Prompt(StepConfig):
    """The field listed first (``fetchflow steps``, forms)."""

    prompt: str = Field(min_length=1, description="What to draw (Jinja-templated).")


class ImageGenerationConfig(ImageOutputConfig, _Prompt):
    """Fields of an ``image_generation`` step."""

    moderation: Literal["auto", "low"] = Field("auto", description="OpenAI moderation level.")
    style: str | None = Field(None, description="A style phrase added to the prompt.")

    @property
    def output(self) -> OutputOptions:
        """The output options, ``moderation`` included."""
        return replace(super().output, moderation=self.moderation)

    @field_validator("prompt", mode="before")
    @classmethod
    def _values_read_as_text(cls, value: object, info: ValidationInfo) -> object:
        return prompt_as_text(value, info)

    @field_validator("strength")
    @classmethod
    def _strength_needs_an_image(cls, value: float | None) -> float | None:
        if value is not None:
            raise RuleViolation(
                f"strength: {value:g} applies to image-to-image, and image_generation starts "
                "from no image",
                fields=("strength",),
                hint="remove strength, or use an image_edit step with images: and strength",
            )
        return value

    @model_validator(mode="after")
    def _prompt_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "prompt", "style", "model"):
            length = len(final_prompt(self.prompt, self.style))
            rules.check_prompt_length(rules.rules_spec(self.model), length)
        return self


class ImageGenerationStep(ImageStep[ImageGenerationConfig]):
    """Generate images from a prompt (OpenAI, Gemini, or the offline preview)."""

    approval_fields = ("prompt", "model", "count", "size", "aspect_ratio", "resolution", "style")

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """``count`` images (at most the field's limit while it is a template; at most
        ``count`` with ``on_moderation: skip``), then the contact sheet with
        ``contact_sheet: true``."""
        from steps.imaging.moderation import with_skips
        from steps.imaging.sheets import with_contact_sheet

        length = OutputLength.counted(ImageGenerationConfig, fields, templated)
        return with_skips(with_contact_sheet(length, fields, templated), fields, templated)

    def plan(self, config: ImageGenerationConfig, spec: ModelSpec, ctx: StepContext) -> ImagePlan:
        """The prompt with its style, ``count`` images."""
        return ImagePlan(prompt=final_prompt(config.prompt, config.style), options=config.output)
