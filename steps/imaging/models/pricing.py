"""What an image request is expected to cost, from the catalog's published prices, and the
size a model is asked for (which the price depends on)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fetchflow.errors import StepError
from fetchflow.step import CostEstimate
from steps.imaging.models.catalog import (
    ModelSpec,
    SizeChoice,
    closest_size,
    parse_size,
    price_for,
    size_to_ratio,
)
from steps.imaging.models.choice import ImageOptions, choose_for

if TYPE_CHECKING:
    from steps.imaging.models.rules import EditNeeds
    from steps.imaging.settings import ImageSettings

__all__ = ["estimate_images", "estimate_request", "size_choice"]

#: The size prices are looked up at when a request leaves it to the provider ("auto").
AUTO_PRICE_SIZE = (1024, 1024)


def size_choice(
    spec: ModelSpec, size: str | None, aspect_ratio: str | None, resolution: str | None
) -> SizeChoice:
    """What to ask ``spec`` for: ratios map to its closest size, sizes to its ratio."""
    dimensions = parse_size(size or "auto")
    if aspect_ratio is not None or (resolution is not None and dimensions is None):
        return closest_size(spec, aspect_ratio or "1:1", resolution)
    if dimensions is not None and spec.takes_ratio:
        return size_to_ratio(*dimensions, spec)
    if dimensions is not None:
        return SizeChoice(*dimensions)
    return SizeChoice(None, None)


def estimate_images(
    spec: ModelSpec,
    *,
    count: int,
    size: str | None,
    aspect_ratio: str | None,
    resolution: str | None,
    quality: str,
) -> CostEstimate:
    """``count`` images of ``spec`` at the requested size and quality.

    The cost is None when the provider publishes no price for that model, size and quality.
    """
    if spec.provider in ("preview", "local"):
        return CostEstimate(cost_usd=0.0, images=count, detail=f"{count} x {spec.name} (free)")
    choice = size_choice(spec, size, aspect_ratio, resolution)
    if choice.width is not None and choice.height is not None:
        width, height = choice.width, choice.height
        shape = f"{width}x{height}"
    else:
        width, height = AUTO_PRICE_SIZE
        shape = choice.aspect_ratio or "auto size"
    price = price_for(spec, quality, width, height)
    detail = f"{count} x {spec.name} {quality} {shape}"
    if price is None:
        return CostEstimate(cost_usd=None, images=count, detail=f"{detail}, no published price")
    return CostEstimate(cost_usd=price * count, images=count, detail=f"{detail} at ${price}")


def estimate_request(
    options: ImageOptions, settings: ImageSettings, *, edit: EditNeeds | None = None
) -> CostEstimate:
    """The images of one step: ``auto`` resolved with the keys configured now.

    ``edit`` is what an edit needs of its model (a mask, an outpaint ratio): ``auto`` is
    priced at the model the run would pick for it. When the model cannot be chosen (no
    key, or no candidate can serve the step: the run says so before any call), the cost
    is unknown.
    """
    try:
        spec = choose_for(options, settings, edit=edit)
    except StepError as error:
        return CostEstimate(
            cost_usd=None,
            images=options.count,
            detail=f"{options.count} x {options.model} ({error.message})",
        )
    return estimate_images(
        spec,
        count=options.count,
        size=options.size,
        aspect_ratio=options.aspect_ratio,
        resolution=options.resolution,
        quality=options.quality,
    )
