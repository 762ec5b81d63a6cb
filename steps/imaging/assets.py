"""What an image step outputs: one :class:`ImageAsset` per image, stored through the run's
asset store, and the hosted-usage line billing reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError

from fetchflow.errors import StepError
from fetchflow.step import StepContext
from fetchflow.storage import AssetRecord
from steps.imaging.models.catalog import CATALOG, local_spec, price_for
from steps.imaging.moderation import Block, ModerationNote

if TYPE_CHECKING:
    from steps.imaging.options import OutputOptions
    from steps.imaging.production import MadeImage
    from steps.imaging.provenance import Provenance

__all__ = ["ChargeType", "ImageAsset", "record_hosted_usage", "store_asset", "store_image"]

ChargeType = Literal["personal", "hosted"]


class ImageAsset(AssetRecord):
    """One generated image: its asset record plus how it was made and what it cost."""

    prompt_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the final prompt (style applied)."
    )
    seed: int | None = Field(description="The seed of the call that made it, if any.")
    index: int = Field(
        ge=0,
        description="0-based position among the step's images (in a matrix step: among its "
        "combination's images).",
    )
    usage: dict[str, int] | None = Field(
        description="This image's share of the provider's token usage (None if unreported)."
    )
    cost_usd: float | None = Field(
        description="Price of the image where the provider publishes one, else None."
    )
    charge_type: ChargeType = Field(description="Whose key paid: personal or hosted.")
    provider: str = Field(
        description="Who made it: openai, google, fal, local, preview, or fetchflow (a "
        "contact sheet)."
    )
    moderation: ModerationNote = Field(
        default_factory=ModerationNote,
        description="How the safety system treated it: made (first try), retried or "
        "fallback (on_moderation), with each blocked attempt.",
    )


def store_image(
    ctx: StepContext,
    made: MadeImage,
    *,
    provider: str,
    prompt_sha256: str,
    options: OutputOptions,
    origin: Provenance,
    extra_provenance: Mapping[str, str] | None = None,
) -> ImageAsset:
    """Store one verified image through the run's store; return its :class:`ImageAsset`.

    ``options`` are the step's output options (quality, background, format, who paid);
    ``origin`` is what the file's metadata says of how it was made; ``extra_provenance``
    adds step-specific entries to the record (an edit's reference hashes).
    """
    image = made.image
    quality, output_format = options.quality, options.output_format
    spec = CATALOG.get(made.model) or local_spec(made.model)
    cost = price_for(spec, quality, image.width, image.height) if spec else None
    provenance = {
        "prompt_sha256": prompt_sha256,
        "index": str(made.index),
        "provider": provider,
        "charge_type": options.charge_type,
        "quality": quality,
        "background": options.background,
        "output_format": output_format,
    }
    if made.seed is not None:
        provenance["seed"] = str(made.seed)
    provenance.update(extra_provenance or {})
    asset = store_asset(
        ctx,
        image.data,
        file_type=image.file_type,
        output_format=output_format,
        width=image.width,
        height=image.height,
        model=made.model,
        provenance=provenance,
        origin=origin,
        prompt_sha256=prompt_sha256,
        seed=made.seed,
        index=made.index,
        usage=made.usage,
        cost_usd=cost,
        charge_type=options.charge_type,
        provider=provider,
    )
    if made.moderation is None:
        return asset
    return asset.model_copy(update={"moderation": made.moderation})


def store_asset(
    ctx: StepContext,
    data: bytes,
    *,
    file_type: str,
    output_format: str,
    width: int,
    height: int,
    model: str,
    provenance: Mapping[str, str],
    origin: Provenance,
    prompt_sha256: str,
    seed: int | None,
    index: int,
    usage: dict[str, int] | None,
    cost_usd: float | None,
    charge_type: ChargeType,
    provider: str,
) -> ImageAsset:
    """Store one finished image as ``<step>-<index + 1>.<ext>``; return its ImageAsset.

    The file's metadata is replaced by ``origin`` (:func:`~steps.imaging.provenance.stamp`:
    an XMP packet, and a C2PA manifest when a signing certificate is configured); the
    record's ``provenance`` is ``provenance``.
    """
    from steps.imaging.provenance import stamp
    from steps.imaging.signing import current_signing

    extension = output_format.replace("jpeg", "jpg")
    record = ctx.store.put(
        stamp(data, file_type, origin, current_signing()),
        file_name=f"{ctx.step_id}-{index + 1}.{extension}",
        file_type=file_type,
        step_id=ctx.step_id,
        run_id=ctx.run_id,
        width=width,
        height=height,
        model=model,
        provenance=provenance,
    )
    try:
        return ImageAsset(
            **record.model_dump(),
            prompt_sha256=prompt_sha256,
            seed=seed,
            index=index,
            usage=usage,
            cost_usd=cost_usd,
            charge_type=charge_type,
            provider=provider,
        )
    except ValidationError as error:  # pragma: no cover - a bug, not a user error
        raise StepError(message=f"cannot describe the stored image: {error}") from error


def record_hosted_usage(
    ctx: StepContext, assets: list[ImageAsset], blocked: Sequence[Block] = ()
) -> None:
    """Log hosted usage against the workflow (a billing ledger can read these lines).

    ``blocked``: the calls the safety system blocked (``on_moderation``); each was a request,
    and one blocked at the output stage may have been billed (the image was made, then
    withheld), so the line counts them when there were any.
    """
    tokens: dict[str, int] = {}
    for asset in assets:
        for name, value in (asset.usage or {}).items():
            tokens[name] = tokens.get(name, 0) + value
    costs = [asset.cost_usd for asset in assets]
    cost = sum(c for c in costs if c is not None) if None not in costs else None
    ctx.logger.info(
        "hosted image usage: workflow=%s run=%s step=%s images=%d tokens=%s cost_usd=%s%s",
        ctx.workflow,
        ctx.run_id,
        ctx.step_id,
        len(assets),
        tokens or None,
        cost,
        f" moderation_blocked_calls={len(blocked)} output_stage_possibly_billed="
        f"{sum(block.billed for block in blocked)}"
        if blocked
        else "",
    )
