"""The billable half of ``image_upscale``: a provider's upscaler (fal's clarity-upscaler,
aura-sr), called with the same key, timeout, retry and concurrency rules as the image steps.

:class:`HostedUpscaler` opens the provider with the key ``charge_type`` names
(:func:`~steps.imaging.keys.resolve`: ``FAL_KEY`` for personal, the operator's
``FETCHFLOW_HOSTED_FAL_API_KEY`` for hosted), a timeout bounded by the step's, and sends each
image through :class:`~steps.imaging.providers.retrying.RetryPolicy` and
:class:`~steps.imaging.providers.retrying.ProviderGate`, asking
:func:`~fetchflow.interrupt.check_interrupt` before each call. The queue protocol itself is
the provider's (:meth:`~steps.imaging.providers.fal_images.FalProvider.upscale`).

Prices: :func:`area_price` bills each started megapixel of the *output* (1024x1024 is one),
as the catalog does for fal's per-megapixel models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from steps.imaging.providers.base import ProviderImage

if TYPE_CHECKING:
    from fetchflow.step import StepContext
    from steps.image_upscale import ImageUpscaleConfig
    from steps.imaging.assets import ImageAsset
    from steps.imaging.pixels.upscale import UpscaledImage
    from steps.imaging.providers.retrying import ProviderGate, RetryPolicy

__all__ = [
    "HostedUpscaler",
    "UpscalingProvider",
    "area_price",
    "check_key",
    "upscale_on_provider",
]


def area_price(usd_per_megapixel: float, width: int, height: int) -> float:
    """USD for one output image of ``width`` x ``height``: each started megapixel."""
    megapixels = max(1, math.ceil(width * height / (1024 * 1024)))
    return round(usd_per_megapixel * megapixels, 6)


@runtime_checkable
class UpscalingProvider(Protocol):
    """A provider client with an upscale call (fal's)."""

    name: str

    def upscale(self, model: str, image: ProviderImage, factor: int) -> ProviderImage:
        """``image`` upscaled ``factor`` times on the upscaler ``model``."""
        ...

    def close(self) -> None:
        """Release what the client holds."""
        ...


def check_key(provider: str, model: str, charge_type: str, secret_name: str | None) -> None:
    """Before the run: the key ``charge_type`` needs for ``provider`` is there (nothing is
    read from a Secret block here), and the provider's SDK is imported.

    Raises:
        StepError: The key is missing (the message names the variable to set).
    """
    from steps.imaging.keys import key_sources, missing_key
    from steps.imaging.providers.clients import import_sdk
    from steps.imaging.settings import image_settings

    if key_sources(provider, charge_type, image_settings(), os.environ, secret_name) is None:
        raise missing_key(provider, model, charge_type)
    import_sdk(provider)


@dataclass
class HostedUpscaler:
    """One step's calls to one provider upscaler."""

    model: str
    client: UpscalingProvider
    retry: RetryPolicy
    gate: ProviderGate
    ctx: StepContext

    @classmethod
    def open(
        cls,
        provider: str,
        model: str,
        *,
        charge_type: str,
        secret_name: str | None,
        ctx: StepContext,
    ) -> HostedUpscaler:
        """The provider's client with the key ``charge_type`` names.

        Raises:
            StepError: The key is missing.
        """
        from steps.imaging.keys import resolve
        from steps.imaging.providers import make_provider
        from steps.imaging.providers.retrying import ProviderGate, RetryPolicy
        from steps.imaging.running import PROVIDER_TIMEOUT_SECONDS
        from steps.imaging.settings import image_settings

        settings = image_settings()
        credential = resolve(
            provider,
            model,
            charge_type,
            settings,
            os.environ,
            secret_name=secret_name,
            read_secret=ctx.secret,
        )
        client = make_provider(
            provider,
            credential.api_key,
            credential.base_url,
            # a blocked socket read cannot be interrupted: never past the step's timeout
            timeout=min(PROVIDER_TIMEOUT_SECONDS, ctx.timeout_seconds or math.inf),
            key_source=credential.source,
        )
        if not isinstance(client, UpscalingProvider):  # pragma: no cover - the table says
            raise TypeError(f"provider {provider} has no upscaler")
        retry = RetryPolicy(
            attempts=settings.provider_attempts,
            base_delay=min(1.0, settings.provider_max_delay_seconds),
            max_delay=settings.provider_max_delay_seconds,
        )
        gate = ProviderGate(provider, settings.provider_concurrency, ctx.logger)
        return cls(model, client, retry, gate, ctx)

    def upscale(self, data: bytes, mime_type: str, factor: int, describe: str) -> ProviderImage:
        """One image upscaled: through the gate and the retry loop, a stop checked first.

        Raises:
            ProviderError: The call failed (after the retries it is worth).
            Interrupted: A stop was requested before the call.
        """
        from fetchflow.interrupt import check_interrupt

        image = ProviderImage(data=data, mime_type=mime_type)

        def attempt() -> ProviderImage:
            with self.gate.slot():
                check_interrupt(describe)
                return self.client.upscale(self.model, image, factor)

        return self.retry.call(attempt, logger=self.ctx.logger, describe=describe)

    def close(self) -> None:
        """Close the client."""
        self.client.close()


def upscale_on_provider(
    provider: str,
    model: str,
    usd_per_megapixel: float | None,
    sources: list[bytes],
    labels: list[str],
    config: ImageUpscaleConfig,
    ctx: StepContext,
    store: Callable[[int, UpscaledImage, float | None, int | None], ImageAsset],
) -> list[ImageAsset]:
    """Each source one provider call, stored (``store``) and kept for a resume as soon as
    it is made; every source is checked against the limits before the first call.

    Raises:
        StepError: A source is refused, or a call failed before any image was made.
        PartialImages: A call failed after earlier images were made and stored.
    """
    from fetchflow.errors import StepError
    from steps.imaging.assets import record_hosted_usage
    from steps.imaging.partial import PartialImages
    from steps.imaging.pixels.upscale import finish_upscale, upscale_source

    ready = [
        upscale_source(data, config.factor, source=label)
        for data, label in zip(sources, labels, strict=True)
    ]
    calls = HostedUpscaler.open(
        provider, model, charge_type=config.charge_type, secret_name=None, ctx=ctx
    )
    assets: list[ImageAsset] = []
    try:
        for index, (source, label) in enumerate(zip(ready, labels, strict=True)):
            made = calls.upscale(
                source.data, "image/png", config.factor, f'step "{ctx.step_id}" {label}'
            )
            image = finish_upscale(
                made.data,
                source,
                source=f"{model}'s answer for {label}",
                output_format=config.output_format,
                output_compression=config.output_compression,
            )
            price = usd_per_megapixel
            cost = None if price is None else area_price(price, image.width, image.height)
            asset = store(index, image, cost, made.seed)
            assets.append(asset)
            ctx.keep(asset.model_dump(mode="json"))  # paid for: a resume does not pay again
    except StepError as error:
        if not assets:
            raise
        raise PartialImages(
            message=f"{error.message} ({len(assets)} of {len(sources)} images were "
            "upscaled and stored first)",
            hint=error.hint,
            retryable=False,
            kept=[asset.model_dump(mode="json") for asset in assets],
            asked=len(sources),
        ) from error
    finally:
        calls.close()
        if config.charge_type == "hosted":
            record_hosted_usage(ctx, assets)
    return assets
