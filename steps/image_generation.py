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
import math
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import (
    CostEstimate,
    RuleViolation,
    Step,
    StepConfig,
    StepContext,
    deferred,
)
from fetchflow.templating import is_template, to_text
from steps.imaging import rules
from steps.imaging.assets import ChargeType, ImageAsset, record_hosted_usage, store_image
from steps.imaging.catalog import AUTO, PREVIEW, parse_size

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from steps.imaging.production import MadeImage

__all__ = ["ImageAsset", "ImageGenerationConfig", "ImageGenerationStep", "final_prompt"]

AspectRatio = Literal["1:1", "16:9", "4:3", "3:2", "21:9", "9:16", "3:4", "2:3"]
Quality = Literal["auto", "low", "medium", "high", "xhigh", "max"]

#: Seconds before the first retry of a failed provider call (doubled for each further one).
_FIRST_RETRY_SECONDS = 1.0

#: How long one provider call may take (less when the step's timeout_seconds is shorter).
PROVIDER_TIMEOUT_SECONDS = 120.0

PREVIEW_NOTICE = (
    "no image provider configured: using the offline preview provider (images are marked PREVIEW)"
)


def final_prompt(prompt: str, style: str | None) -> str:
    """The prompt sent to the provider: ``prompt``, then ``style`` as its own line."""
    return f"{prompt.rstrip()}\n\nStyle: {style.strip()}" if style and style.strip() else prompt


class ImageGenerationConfig(StepConfig):
    """Fields of an ``image_generation`` step."""

    prompt: str = Field(min_length=1, description="What to draw (Jinja-templated).")
    model: str = Field(AUTO, description="A catalog model, preview, or auto.")
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
    moderation: Literal["auto", "low"] = Field("auto", description="OpenAI moderation level.")
    output_format: Literal["png", "jpeg", "webp"] = Field("png", description="File format.")
    output_compression: int | None = Field(
        None, ge=0, le=100, description="0-100 (100 = least loss); jpeg or webp only."
    )
    style: str | None = Field(None, description="A style phrase added to the prompt.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="For models that take one (Gemini, preview)."
    )
    charge_type: ChargeType = Field(
        "personal", description="personal: your key; hosted: the operator's keys."
    )
    api_key_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding your key (personal only)."
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _values_read_as_text(cls, value: object, info: ValidationInfo) -> object:
        # A template that is exactly one expression renders a native value (a list, a
        # mapping): the prompt reads it as JSON text. A mapping written as the prompt in the
        # file is a YAML slip (a colon in a plain multi-line prompt) and is an error.
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

    @field_validator("model")
    @classmethod
    def _model_is_in_catalog(cls, value: str, info: ValidationInfo) -> str:
        if not deferred(info, "model"):
            rules.lookup_model(value)
        return value

    @field_validator("size")
    @classmethod
    def _size_is_wxh(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == AUTO or deferred(info, "size") or parse_size(value):
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
    def _prompt_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "prompt", "style", "model"):
            length = len(final_prompt(self.prompt, self.style))
            rules.check_prompt_length(rules.rules_spec(self.model), length)
        return self

    @model_validator(mode="after")
    def _background_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "background", "model"):
            rules.check_background(rules.rules_spec(self.model), self.background)
        return self

    @model_validator(mode="after")
    def _seed_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "seed", "model"):
            rules.check_seed(rules.rules_spec(self.model), self.seed)
        return self


_announced: set[str] = set()
_announced_lock = threading.Lock()


def _announce_preview_once(ctx: StepContext) -> None:
    with _announced_lock:
        if ctx.run_id in _announced:
            return
        _announced.add(ctx.run_id)
    ctx.logger.warning(PREVIEW_NOTICE)


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
    def preflight(
        cls, raw_config: Mapping[str, object] | ImageGenerationConfig, settings: Settings
    ) -> None:
        """Check that the key the step's ``charge_type`` needs is there, before the run.

        Fields still holding templates are not known yet; their checks wait for ``run``.

        Raises:
            StepError: The named model's key is missing for this charge type.
        """
        from steps.imaging.credentials import choose_model

        raw = raw_config.model_dump() if isinstance(raw_config, StepConfig) else raw_config
        fields = ("model", "charge_type", "api_key_secret")
        if any(isinstance(raw.get(name), str) and is_template(str(raw[name])) for name in fields):
            return
        model, charge_type = str(raw.get("model", AUTO)), str(raw.get("charge_type", "personal"))
        if model == AUTO:
            return  # auto never fails for want of a key: it falls back to preview
        secret = raw.get("api_key_secret")
        choose_model(
            model,
            charge_type=charge_type,
            size="auto",
            quality="auto",
            background="auto",
            settings=settings,
            environ=os.environ,
            secret_name=secret if isinstance(secret, str) else None,
        )

    def run(self, config: ImageGenerationConfig, ctx: StepContext) -> list[ImageAsset]:
        """Pick the model and key, make ``count`` images, upload each as it is verified."""
        from steps.imaging.credentials import choose_model, resolve_credential
        from steps.imaging.partial import KeptImage, PartialImages
        from steps.imaging.production import plan_job, produce
        from steps.imaging.providers import make_provider
        from steps.imaging.retrying import ProviderGate, RetryPolicy

        self.preflight(config, ctx.settings)
        spec = choose_model(
            config.model,
            charge_type=config.charge_type,
            size=config.size or AUTO,
            quality=config.quality,
            background=config.background,
            settings=ctx.settings,
            environ=os.environ,
            secret_name=config.api_key_secret,
        )
        if spec.name == PREVIEW and config.model == AUTO:
            _announce_preview_once(ctx)
        if config.seed is not None and not spec.seed:
            ctx.logger.info("model %s takes no seed: seed %s is not used", spec.name, config.seed)
        if spec.provider == "preview":
            provider = make_provider("preview")
        else:
            credential = resolve_credential(
                spec,
                config.charge_type,
                ctx.settings,
                os.environ,
                secret_name=config.api_key_secret,
                read_secret=ctx.secret,
            )
            provider = make_provider(
                spec.provider,
                credential.api_key,
                credential.base_url,
                # A blocked socket read cannot be interrupted: never wait past the step's
                # own timeout.
                timeout=min(PROVIDER_TIMEOUT_SECONDS, ctx.timeout_seconds or math.inf),
                key_source=credential.source,
            )
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
        assets: list[ImageAsset] = []

        def keep(made: MadeImage) -> KeptImage:
            asset = store_image(
                ctx,
                made,
                provider=spec.provider,
                prompt_sha256=prompt_sha256,
                charge_type=config.charge_type,
                quality=config.quality,
                background=config.background,
                output_format=config.output_format,
            )
            assets.append(asset)
            if ctx.progress is not None:
                ctx.progress.advance()
            # The JSON record is what the step outputs for this image; a later failure
            # hands these on (PartialImages.kept) so images paid for are not lost.
            return KeptImage(asset.storage_uri, asset.model_dump(mode="json"))

        settings = ctx.settings
        retry = RetryPolicy(
            attempts=settings.provider_attempts,
            base_delay=min(_FIRST_RETRY_SECONDS, settings.provider_max_delay_seconds),
            max_delay=settings.provider_max_delay_seconds,
        )
        gate = ProviderGate(spec.provider, settings.provider_concurrency, ctx.logger)
        if ctx.progress is not None:
            ctx.progress.start(config.count)
        try:
            produce(job, provider, keep, retry=retry, gate=gate, logger=ctx.logger)
        except PartialImages:
            if config.charge_type == "hosted":
                record_hosted_usage(ctx, assets)  # the kept images were paid for
            raise
        finally:
            provider.close()
        if config.charge_type == "hosted":
            record_hosted_usage(ctx, assets)
        return assets
