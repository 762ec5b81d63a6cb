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
environment and no secret; :meth:`ImageGenerationStep.preflight` checks keys right before
the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import (
    CostEstimate,
    OutputLength,
    Step,
    StepConfig,
    StepContext,
    deferred,
)
from steps.imaging import rules
from steps.imaging.assets import ImageAsset
from steps.imaging.options import ImageOutputConfig, prompt_as_text
from steps.imaging.running import PREVIEW_NOTICE, PROVIDER_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from fetchflow.settings import Settings

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

    @field_validator("prompt", mode="before")
    @classmethod
    def _values_read_as_text(cls, value: object, info: ValidationInfo) -> object:
        return prompt_as_text(value, info)

    @model_validator(mode="after")
    def _prompt_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "prompt", "style", "model"):
            length = len(final_prompt(self.prompt, self.style))
            rules.check_prompt_length(rules.rules_spec(self.model), length)
        return self


class ImageGenerationStep(Step[ImageGenerationConfig, list[ImageAsset]]):
    """Generate images from a prompt (OpenAI, Gemini, or the offline preview)."""

    config_model = ImageGenerationConfig
    output_type = list[ImageAsset]
    billable = True
    produces_files = True
    approval_fields = ("prompt", "model", "count", "size", "aspect_ratio", "resolution", "style")

    @classmethod
    def estimate(cls, config: BaseModel, settings: Settings) -> CostEstimate | None:
        """``count`` images of the model that would run, priced from the catalog."""
        from steps.imaging.estimate import estimate_request

        assert isinstance(config, ImageGenerationConfig)
        return estimate_request(config, settings)

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """``count`` images (at most the field's limit while it is a template)."""
        return OutputLength.counted(ImageGenerationConfig, fields, templated)

    @classmethod
    def preflight(
        cls, raw_config: Mapping[str, object] | ImageGenerationConfig, settings: Settings
    ) -> None:
        """Check that the key the step's ``charge_type`` needs is there, before the run.

        Fields still holding templates are not known yet; their checks wait for ``run``.

        Raises:
            StepError: The named model's key is missing for this charge type.
        """
        from steps.imaging.running import preflight_key

        preflight_key(raw_config, settings)

    def run(self, config: ImageGenerationConfig, ctx: StepContext) -> list[ImageAsset]:
        """Pick the model and key, make ``count`` images, upload each as it is verified."""
        from steps.imaging.production import plan_job
        from steps.imaging.running import make_images, open_provider, pick_model

        spec = pick_model(config, ctx)
        provider = open_provider(spec, config, ctx)
        prompt = final_prompt(config.prompt, config.style)
        job = plan_job(
            spec,
            prompt=prompt,
            count=config.count,
            size=config.size,
            aspect_ratio=config.aspect_ratio,
            resolution=config.resolution,
            quality=config.quality,
            background=config.background,
            moderation=config.moderation,
            output_format=config.output_format,
            output_compression=config.output_compression,
            seed=config.seed,
        )
        prompt_sha256 = hashlib.sha256(prompt.encode()).hexdigest()
        return make_images(job, provider, config, ctx, prompt_sha256=prompt_sha256)
