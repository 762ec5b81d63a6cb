"""Making the images of one step: plan the provider calls, verify, finish, hand each over.

Pure of clients: the provider and the ``keep`` callback (which uploads) are passed in. A
count above the model's per-request limit becomes several calls; each call goes through the
provider's call limit (:class:`~steps.imaging.providers.retrying.ProviderGate`) and our
own retry loop (:class:`~steps.imaging.providers.retrying.RetryPolicy`). Every image is
verified and kept as soon as it arrives, so images already paid for survive a later failed
call: that failure is a :class:`~steps.imaging.partial.PartialImages` carrying their
records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fetchflow.errors import ProviderError, StepError, StorageError
from fetchflow.interrupt import check_interrupt
from steps.imaging.models.catalog import ModelSpec, SizeChoice
from steps.imaging.models.pricing import size_choice
from steps.imaging.options import OutputOptions
from steps.imaging.partial import KeptImage, PartialImages
from steps.imaging.pixels.finishing import FinishedImage, finish_image, inspect_image
from steps.imaging.providers.base import (
    EditRequest,
    ImageEditor,
    ImageProvider,
    ImageRequest,
    ProviderImage,
    ProviderResult,
)
from steps.imaging.providers.retrying import ProviderGate, RetryPolicy, StepLogger

__all__ = [
    "SINGLE_ATTEMPT",
    "EditInputs",
    "ImageJob",
    "MadeImage",
    "describe_call",
    "plan_job",
    "produce",
    "requests_for",
    "share_usage",
]

#: No retries: what :func:`produce` does unless given a policy (the step passes the settings').
SINGLE_ATTEMPT = RetryPolicy(attempts=1)

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditInputs:
    """What one edit starts from: the references sent together, and the mask.

    Attributes:
        images: The reference images, in order (the first is the one a mask applies to).
        mask: The mask PNG, or None.
        input_fidelity: ``input_fidelity`` to send, or None.
    """

    images: tuple[ProviderImage, ...]
    mask: ProviderImage | None = None
    input_fidelity: str | None = None


@dataclass(frozen=True)
class ImageJob:
    """Everything one step asks of one model, resolved.

    Attributes:
        spec: The model.
        prompt: The final prompt (style applied).
        options: The step's output options (``count`` per edit, or in all for a generation).
        size: The size (or ratio) to ask ``spec`` for, resolved from the options.
        edits: Empty for a generation; for an edit, one :class:`EditInputs` per separate
            edit, each making ``options.count`` images.
    """

    spec: ModelSpec
    prompt: str
    options: OutputOptions
    size: SizeChoice
    edits: tuple[EditInputs, ...] = ()

    @property
    def count(self) -> int:
        """How many images one request (one edit) makes."""
        return self.options.count

    @property
    def seed(self) -> int | None:
        """The seed, when the model takes one."""
        return self.options.seed if self.spec.seed else None

    @property
    def total(self) -> int:
        """How many images the job makes in all."""
        return self.count * max(1, len(self.edits))


@dataclass(frozen=True)
class MadeImage:
    """One verified, finished image.

    Attributes:
        index: 0-based position among the step's images.
        image: The bytes to upload and what they are.
        seed: The seed of the call that made it (None without one).
        usage: Its share of the call's token usage (None when not reported).
        model: The model that answered.
    """

    index: int
    image: FinishedImage
    seed: int | None
    usage: dict[str, int] | None
    model: str


def plan_job(
    spec: ModelSpec,
    *,
    prompt: str,
    options: OutputOptions,
    edits: tuple[EditInputs, ...] = (),
) -> ImageJob:
    """Resolve sizes for ``spec``: ratios map to its closest size, sizes to its ratio."""
    size = size_choice(spec, options.size, options.aspect_ratio, options.resolution)
    return ImageJob(spec=spec, prompt=prompt, options=options, size=size, edits=edits)


def requests_for(job: ImageJob) -> list[tuple[int, ImageRequest]]:
    """The provider calls for ``job``, each with the index of its first image.

    A seeded job gives call ``k`` (starting at image ``i``) the seed ``seed + i``, so
    one-image-per-call models do not draw the same picture ``count`` times. An edit job
    makes ``count`` images from each of its :class:`EditInputs` in turn, as
    :class:`EditRequest` calls.
    """
    calls: list[tuple[int, ImageRequest]] = []
    groups: tuple[EditInputs | None, ...] = job.edits or (None,)
    for number, inputs in enumerate(groups):
        start = number * job.count
        for offset in range(0, job.count, job.spec.per_request):
            first = start + offset
            request = ImageRequest(
                model=job.spec.name,
                prompt=job.prompt,
                width=job.size.width,
                height=job.size.height,
                aspect_ratio=job.size.aspect_ratio,
                resolution=job.size.resolution,
                count=min(job.spec.per_request, job.count - offset),
                quality=job.options.quality,
                background=job.options.background,
                moderation=job.options.moderation,
                output_format=job.options.output_format,
                output_compression=job.options.output_compression,
                seed=None if job.seed is None else job.seed + first,
            )
            if inputs is not None:
                request = EditRequest(
                    **vars(request),
                    images=list(inputs.images),
                    mask=inputs.mask,
                    input_fidelity=inputs.input_fidelity,
                )
            calls.append((first, request))
    return calls


def share_usage(usage: dict[str, int] | None, images: int, position: int) -> dict[str, int] | None:
    """Image ``position``'s share of a call's usage: split evenly, the remainder to the first.

    The shares of one call add up to the call's usage exactly.
    """
    if usage is None or images <= 0:
        return None
    return {
        name: value // images + (value % images if position == 0 else 0)
        for name, value in usage.items()
    }


def _verify(
    job: ImageJob, request: ImageRequest, data: bytes, mime: str, model: str
) -> FinishedImage:
    source = f"model {model} ({job.spec.provider})"
    exact = (
        (request.width, request.height)
        if request.width is not None and request.height is not None
        else None
    )
    checked = inspect_image(
        data, mime, source=source, size=exact, aspect_ratio=request.aspect_ratio
    )
    options = job.options
    if options.background == "transparent" and not checked.has_alpha:
        raise StepError(
            message=f"{source} returned an image without transparency for background: transparent",
            hint="use a model with transparent backgrounds (gpt-image-1.5) or background: auto",
            retryable=False,
        )
    return finish_image(
        data,
        checked,
        output_format=options.output_format,
        output_compression=options.output_compression,
        compressed_by_provider=options.output_format in job.spec.native_formats,
    )


def describe_call(first: int, request: ImageRequest, total: int) -> str:
    """``image 3 of 3`` or ``images 1-2 of 3``: which of the step's images a call makes."""
    if request.count == 1:
        return f"image {first + 1} of {total}"
    return f"images {first + 1}-{first + request.count} of {total}"


def produce(
    job: ImageJob,
    provider: ImageProvider,
    keep: Callable[[MadeImage], KeptImage],
    *,
    retry: RetryPolicy = SINGLE_ATTEMPT,
    gate: ProviderGate | None = None,
    logger: StepLogger = _LOG,
    earlier: Sequence[KeptImage] = (),
) -> None:
    """Make every image of ``job``, calling ``keep`` on each as soon as it is verified.

    Each provider call holds a slot of ``gate`` while it runs (not while waiting to retry)
    and is retried by ``retry`` when it fails in a way a later try can pass.

    Args:
        job: What to make.
        provider: Who makes it.
        keep: Stores one image and returns where it went and its output record.
        retry: How failed calls are retried (default: not at all).
        gate: The provider's call limit (default: none).
        logger: The step's logger: retries and waits for a slot are logged there.
        earlier: Images of this job an interrupted run already made and kept (``--resume``;
            their records' ``index`` says which): a call whose images are all there is not
            made again, and a later failure hands them on with the new ones.

    Raises:
        ProviderError: The first call failed (nothing was kept): a refusal at once, a
            retryable failure once ``retry`` gave up.
        StepError: An answer of the first call failed verification.
        PartialImages: A later call failed, or its answer failed verification, after
            images were kept; ``kept`` holds their records, the message says how many
            and where, and the error that stopped the step is chained.
    """
    kept: list[KeptImage] = list(earlier)
    made_before = {image.record.get("index") for image in earlier}
    try:
        for first, request in requests_for(job):
            if made_before.issuperset(range(first, first + request.count)):
                continue  # paid for by the interrupted run this one resumes
            result = _call(
                provider,
                request,
                retry=retry,
                gate=gate,
                logger=logger,
                describe=describe_call(first, request, job.total),
            )
            images = result.images[: request.count]
            unstored: list[StorageError] = []
            for position, answer in enumerate(images):
                finished = _verify(job, request, answer.data, answer.mime_type, result.model)
                made = MadeImage(
                    index=first + position,
                    image=finished,
                    seed=request.seed,
                    usage=share_usage(result.usage, len(images), position),
                    model=result.model,
                )
                try:
                    kept.append(keep(made))
                except StorageError as error:  # spooled: go on, every paid image is kept
                    unstored.append(error)
            if unstored:
                raise _not_stored(unstored)
            if len(images) < request.count:
                raise StepError(
                    message=f"model {result.model} ({provider.name}) returned "
                    f"{len(images)} of the {request.count} images asked",
                    hint="the provider may have filtered some; try again or change the prompt",
                    retryable=True,
                )
    except (ProviderError, StepError, StorageError) as error:
        if not kept:
            raise
        raise PartialImages(
            message=f"{error.message}; {len(kept)} of {job.total} images were made and kept "
            f"before that: {', '.join(image.where for image in kept)}",
            hint=error.hint,
            retryable=error.retryable,
            kept=[image.record for image in kept],
            asked=job.total,
        ) from error


def _not_stored(errors: list[StorageError]) -> StorageError:
    """One error for the images of an answer the store refused (their bytes are spooled).

    Not retryable: the images were paid for and are in the spool; running the step again
    would pay for them again. ``fetchflow push`` stores them once the store is back.
    """
    first = errors[0]
    spooled = [path for error in errors for path in error.spooled]
    return StorageError(
        message=f"{len(errors)} paid image(s) could not be stored: {first.message}",
        hint=f"{first.hint}; the step is not retried, so they are not paid for twice",
        target=first.target,
        endpoint=first.endpoint,
        spooled=spooled,
        retryable=False,
    )


def _call(
    provider: ImageProvider,
    request: ImageRequest,
    *,
    retry: RetryPolicy,
    gate: ProviderGate | None,
    logger: StepLogger,
    describe: str,
) -> ProviderResult:
    """One provider call, through the gate and the retry loop."""

    def send() -> ProviderResult:
        check_interrupt(describe)  # a stop was requested (Ctrl-C): start no billable call
        if isinstance(request, EditRequest):
            if not isinstance(provider, ImageEditor):  # pragma: no cover - every provider edits
                raise TypeError(f"provider {provider.name} cannot edit images")
            return provider.edit(request)
        return provider.generate(request)

    def attempt() -> ProviderResult:
        if gate is None:
            return send()
        with gate.slot():
            return send()

    return retry.call(attempt, logger=logger, describe=describe)
