"""Making the images of one step: plan the provider calls, verify, finish, hand each over.

Pure of clients: the provider and the ``keep`` callback (which uploads) are passed in. A
count above the model's per-request limit becomes several calls; each call goes through the
provider's call limit (:class:`~steps.imaging.providers.retrying.ProviderGate`) and our
own retry loop (:class:`~steps.imaging.providers.retrying.RetryPolicy`); the calls of one
job run concurrently, as many at a time as the gate allows. Every image is
verified and kept as soon as it arrives, so images already paid for survive a later failed
call: that failure is a :class:`~steps.imaging.partial.PartialImages` carrying their
records.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from fetchflow.errors import ProviderError, StepError, StorageError
from fetchflow.interrupt import check_interrupt
from steps.imaging.blocked_calls import BlockedCalls
from steps.imaging.models.catalog import ModelSpec, SizeChoice
from steps.imaging.models.pricing import size_choice
from steps.imaging.moderation import ModerationNote
from steps.imaging.options import OutputOptions
from steps.imaging.partial import KeptImage, PartialImages
from steps.imaging.pixels.finishing import FinishedImage, finish_image, inspect_image
from steps.imaging.providers.base import (
    EditRequest,
    ImageEditor,
    ImageProvider,
    ImageRequest,
    PartialImage,
    ProviderImage,
    ProviderResult,
)
from steps.imaging.providers.errors import ModerationBlocked
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
        nsfw: The provider's safety checker verdict (fal), or None when it gave none.
        moderation: How the safety system treated it (None: made at the first try).
    """

    index: int
    image: FinishedImage
    seed: int | None
    usage: dict[str, int] | None
    model: str
    nsfw: bool | None = None
    moderation: ModerationNote | None = None


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
    one-image-per-call models do not draw the same picture ``count`` times. With
    ``partial_images`` on a model that streams them, each call makes one image (a stream's
    events do not say which image a partial one belongs to); elsewhere it is not sent. An edit job
    makes ``count`` images from each of its :class:`EditInputs` in turn, as
    :class:`EditRequest` calls.
    """
    calls: list[tuple[int, ImageRequest]] = []
    groups: tuple[EditInputs | None, ...] = job.edits or (None,)
    partial_images = job.options.partial_images if job.spec.partial_images else 0
    per_request = 1 if partial_images else job.spec.per_request
    for number, inputs in enumerate(groups):
        start = number * job.count
        for offset in range(0, job.count, per_request):
            first = start + offset
            request = ImageRequest(
                model=job.spec.name,
                prompt=job.prompt,
                width=job.size.width,
                height=job.size.height,
                aspect_ratio=job.size.aspect_ratio,
                resolution=job.size.resolution,
                count=min(per_request, job.count - offset),
                quality=job.options.quality,
                background=job.options.background,
                moderation=job.options.moderation,
                output_format=job.options.output_format,
                output_compression=job.options.output_compression,
                seed=None if job.seed is None else job.seed + first,
                partial_images=partial_images,
                tuning=job.options.tuning,
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
    on_partial: Callable[[int, PartialImage], None] | None = None,
    moderation: BlockedCalls | None = None,
) -> None:
    """Make every image of ``job``, calling ``keep`` on each as soon as it is verified.

    Each provider call holds a slot of ``gate`` while it runs (not while waiting to retry)
    and is retried by ``retry`` when it fails in a way a later try can pass. A job of
    several calls (a ``count`` above the model's per-request limit: Gemini makes one image
    per call) makes them concurrently, as many at a time as ``gate`` allows
    (``FETCHFLOW_PROVIDER_CONCURRENCY``; one at a time without a gate or a limit). Each
    call still asks :func:`~fetchflow.interrupt.check_interrupt` before it is sent and is
    retried on its own; ``keep`` is called for one image at a time, in the order the
    images are verified (each record carries its ``index``). Once a call has failed for
    good no further call starts; those in flight finish and what they make is kept.

    Args:
        job: What to make.
        provider: Who makes it (its client must take calls from several threads).
        keep: Stores one image and returns where it went and its output record.
        retry: How failed calls are retried (default: not at all).
        gate: The provider's call limit (default: none, one call at a time).
        logger: The step's logger: retries and waits for a slot are logged there.
        earlier: Images of this job an interrupted run already made and kept (``--resume``;
            their records' ``index`` says which): a call whose images are all there is not
            made again, and a later failure hands them on with the new ones.
        on_partial: Receives ``(index, partial image)`` as each partial image of a streamed
            call arrives (``partial_images``): a draft of image ``index``, for display only.
        moderation: What a moderation block does (default: ``job.options.on_moderation``
            without a fallback model): a skipped call makes no image and no failure.

    Raises:
        ProviderError: The call that failed first, when no image was kept: a refusal at
            once, a retryable failure once ``retry`` gave up.
        StepError: An answer failed verification, and no image was kept.
        PartialImages: A call failed, or its answer failed verification, after images were
            kept; ``kept`` holds their records in index order, the message says how many
            and where, and the error that stopped the step is chained.
    """
    made_before = {image.record.get("index") for image in earlier}
    calls = [
        (first, request)
        for first, request in requests_for(job)
        # paid for by the interrupted run this one resumes
        if not made_before.issuperset(range(first, first + request.count))
    ]
    making = _Making(
        job, provider, keep, retry=retry, gate=gate, logger=logger, on_partial=on_partial
    )
    making.moderation = moderation or BlockedCalls(
        job.options.on_moderation, job, fallback=None, logger=logger
    )
    for image in earlier:
        index = image.record.get("index")
        making.kept.append((index if isinstance(index, int) else -1, image))
    workers = min(len(calls), gate.limit if gate is not None and gate.limit else 1)
    if workers <= 1:
        for first, request in calls:
            if not making.make(first, request):
                break
    else:
        making.make_concurrently(calls, workers)
    making.finish()


class _Making:
    """The images of one :func:`produce`: its calls, what was kept, the first failure."""

    def __init__(
        self,
        job: ImageJob,
        provider: ImageProvider,
        keep: Callable[[MadeImage], KeptImage],
        *,
        retry: RetryPolicy,
        gate: ProviderGate | None,
        logger: StepLogger,
        on_partial: Callable[[int, PartialImage], None] | None = None,
    ) -> None:
        self.job = job
        self._on_partial = on_partial
        self.provider = provider
        self._keep = keep
        self._retry = retry
        self._gate = gate
        self._logger = logger
        #: ``(index, image)`` of every image kept, ``earlier`` ones included.
        self.kept: list[tuple[int, KeptImage]] = []
        #: The errors that stopped calls, in the order they happened.
        self.failures: list[ProviderError | StepError | StorageError] = []
        self._stop = threading.Event()
        self._keeping = threading.Lock()  # one image stored and checkpointed at a time
        self.moderation: BlockedCalls | None = None  # on_moderation, set by produce

    def make(self, first: int, request: ImageRequest) -> bool:
        """One call and its images, each kept as soon as it is verified; False once failed."""
        if self._stop.is_set():
            return False  # a call failed for good: start no other
        try:
            self._make(first, request)
        except (ProviderError, StepError, StorageError) as error:
            with self._keeping:
                self.failures.append(error)
            self._stop.set()
            return False
        except BaseException:
            self._stop.set()
            raise
        return True

    def make_concurrently(self, calls: list[tuple[int, ImageRequest]], workers: int) -> None:
        """:meth:`make` every call, ``workers`` at a time, each in the caller's context."""
        name = f"fetchflow-{self.provider.name}"
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
            futures = [
                # each call runs in a copy of the step's context (its Prefect task run)
                pool.submit(contextvars.copy_context().run, self.make, first, request)
                for first, request in calls
            ]
            try:
                for future in futures:
                    future.result()  # an unexpected error (a bug) surfaces here
            except BaseException:
                self._stop.set()
                raise

    def _make(self, first: int, request: ImageRequest) -> None:
        job = self.job
        describe = describe_call(first, request, job.total)
        if request.partial_images:
            request = replace(request, label=describe, on_partial=self._partial_of(first))
        note: ModerationNote | None = None
        try:
            result = self._send(describe, self.provider, request, False)
        except ModerationBlocked as block:
            if self.moderation is None:
                raise
            unblocked = self.moderation.handle(
                block,
                request,
                first=first,
                describe=describe,
                call=functools.partial(self._send, describe),
                provider=self.provider,
            )
            if unblocked is None:
                return  # skipped (on_moderation: skip): no image, the step goes on
            result, request, job, note = (
                unblocked.result,
                unblocked.request,
                unblocked.job,
                unblocked.note,
            )
        images = result.images[: request.count]
        unstored: list[StorageError] = []
        for position, answer in enumerate(images):
            finished = _verify(job, request, answer.data, answer.mime_type, result.model)
            made = MadeImage(
                index=first + position,
                image=finished,
                # the seed the provider says it used (fal answers one even when none was set)
                seed=answer.seed if answer.seed is not None else request.seed,
                usage=share_usage(result.usage, len(images), position),
                model=result.model,
                nsfw=answer.nsfw,
                moderation=note,
            )
            with self._keeping:
                try:
                    self.kept.append((made.index, self._keep(made)))
                except StorageError as error:  # spooled: go on, every paid image is kept
                    unstored.append(error)
        if unstored:
            raise _not_stored(unstored)
        if len(images) < request.count:
            raise StepError(
                message=f"model {result.model} ({self.provider.name}) returned "
                f"{len(images)} of the {request.count} images asked",
                hint="the provider may have filtered some; try again or change the prompt",
                retryable=True,
            )

    def _send(
        self, describe: str, provider: ImageProvider, request: ImageRequest, fallback: bool
    ) -> ProviderResult:
        """One call through the retry loop (and the gate, except on a fallback model's)."""
        gate = None if fallback else self._gate
        return _call(
            provider, request, retry=self._retry, gate=gate, logger=self._logger, describe=describe
        )

    def _partial_of(self, index: int) -> Callable[[PartialImage], None] | None:
        """What receives the partial images of the call making image ``index``."""
        on_partial = self._on_partial
        if on_partial is None:
            return None
        return lambda partial: on_partial(index, partial)

    def finish(self) -> None:
        """Raise what stopped the job: the first failure, or PartialImages when some were kept.

        Raises:
            ProviderError, StepError, StorageError: Nothing was kept.
            PartialImages: Images were kept before (or while) a call failed.
        """
        if not self.failures:
            return
        error = self.failures[0]
        if not self.kept:
            raise error
        kept = [image for _, image in sorted(self.kept, key=lambda item: item[0])]
        raise PartialImages(
            message=f"{error.message}; {len(kept)} of {self.job.total} images were made and "
            f"kept before that: {', '.join(image.where for image in kept)}",
            hint=error.hint,
            retryable=error.retryable,
            kept=[image.record for image in kept],
            asked=self.job.total,
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
