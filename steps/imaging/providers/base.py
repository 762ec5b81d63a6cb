"""The image provider contract: what every provider takes and what it answers.

A provider is one object with a ``name`` and ``generate(request)``; it is the only place
that talks to an image API. Everything above it (catalog, rules, verification, upload) is
pure, so tests swap in the offline preview provider or a local fake object.

Providers raise :class:`fetchflow.errors.ProviderError` (``message``, ``hint``,
``provider=``, ``endpoint=``, ``status=``, ``body=``, ``retryable=``); a moderation block is
``retryable=False``. They never put a key, auth header or signed URL in an error.

A provider that streams (OpenAI with ``partial_images``) hands each partial image to the
request's ``on_partial`` as it arrives: a draft for display, never an output. A stream that
breaks is a :class:`StreamBroken` saying how many partial images had come and what that
may have cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fetchflow.errors import ProviderError
from steps.imaging.models.rules import Tuning

__all__ = [
    "EditRequest",
    "ImageEditor",
    "ImageProvider",
    "ImageRequest",
    "PartialCallback",
    "PartialImage",
    "ProviderImage",
    "ProviderResult",
    "StreamBroken",
]


@dataclass(frozen=True)
class PartialImage:
    """One partial image of a streamed call: a draft of the image being made.

    Attributes:
        number: 1 for the first partial image of the call, 2 for the next, ...
        data: The image bytes (already base64-decoded).
        mime_type: ``image/png``, ``image/jpeg`` or ``image/webp``.
    """

    number: int
    data: bytes
    mime_type: str


#: Called with each partial image as it arrives (on the thread that reads the stream).
PartialCallback = Callable[[PartialImage], None]


@dataclass(frozen=True)
class ImageRequest:
    """One provider call.

    Attributes:
        model: The provider's model id.
        prompt: The final prompt (style already applied).
        width: Pixel width; ``None`` with ``height`` ``None`` means the provider's "auto".
        height: Pixel height.
        aspect_ratio: For providers that take ratios (Gemini), e.g. ``"16:9"``.
        resolution: ``"1K" | "2K" | "4K"`` for providers that take it.
        count: Images wanted from this one call (at most the model's per-request limit).
        quality: ``"auto" | "low" | "medium" | "high"`` or a model's extra levels.
        background: ``"auto" | "opaque" | "transparent"``.
        moderation: ``"auto" | "low"``.
        output_format: ``"png" | "jpeg" | "webp"``.
        output_compression: 0-100, only with jpeg or webp; ``None`` otherwise.
        seed: A seed for models that take one, else ``None``.
        partial_images: Partial images to stream before the final one (0-3; 0: no
            streaming). Providers that do not stream ignore it; a call that streams asks for
            one image (the events do not say which image a partial belongs to).
        on_partial: Receives each partial image as it arrives, or ``None``.
        label: What the call makes, for messages (``image 2 of 3``); may be empty.
        tuning: The open-weight options (steps, guidance, negative prompt, strength, safety
            checker); providers whose models take none ignore it.
    """

    model: str
    prompt: str
    width: int | None
    height: int | None
    aspect_ratio: str | None
    resolution: str | None
    count: int
    quality: str
    background: str
    moderation: str
    output_format: str
    output_compression: int | None
    seed: int | None
    partial_images: int = 0
    on_partial: PartialCallback | None = field(default=None, compare=False, repr=False)
    label: str = field(default="", compare=False)
    tuning: Tuning = field(default_factory=Tuning)


@dataclass(frozen=True)
class ProviderImage:
    """One image as the provider returned it.

    Attributes:
        data: The image bytes (already base64-decoded).
        mime_type: What the provider says it is (``"image/png"``, ...).
        seed: The seed the provider says it used for this image (fal), else None.
        nsfw: The provider's safety checker verdict on this image (fal), else None.
    """

    data: bytes
    mime_type: str
    seed: int | None = None
    nsfw: bool | None = None


@dataclass(frozen=True)
class ProviderResult:
    """The answer to one :class:`ImageRequest`.

    Attributes:
        images: The images returned (the step verifies each one).
        usage: Token counts as the provider reports them, or ``None``.
        model: The model that answered.
    """

    images: list[ProviderImage]
    usage: dict[str, int] | None
    model: str


@runtime_checkable
class ImageProvider(Protocol):
    """An image API behind one method.

    Attributes:
        name: ``"openai" | "google" | "preview"``.
    """

    name: str

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Make the images of one request.

        Raises:
            ProviderError: The provider refused or could not be reached.
        """
        ...

    def close(self) -> None:
        """Release the provider's connections (the step calls it when it is done)."""
        ...


@dataclass(frozen=True)
class EditRequest(ImageRequest):
    """One edit call: an :class:`ImageRequest` plus the images to start from.

    ``moderation`` is kept for a uniform shape but no edit API takes it (OpenAI's
    ``images.edit`` has no such parameter), so providers do not send it.

    Attributes:
        images: The reference images, in order; the first is the one a mask applies to.
        mask: A PNG whose fully transparent pixels (alpha 0) mark where to edit, the same
            width and height as ``images[0]``; ``None`` edits the whole picture.
        input_fidelity: ``"high" | "low"`` for models that take it (OpenAI
            ``gpt-image-1.5``; ``gpt-image-1-mini`` only ``low``), else ``None``.
    """

    images: list[ProviderImage] = field(default_factory=list)
    mask: ProviderImage | None = None
    input_fidelity: str | None = None


@runtime_checkable
class ImageEditor(Protocol):
    """A provider that can also edit images (``openai``, ``google``, ``preview``).

    Attributes:
        name: The provider's name.
        supports_mask: Whether :meth:`edit` takes ``EditRequest.mask``; a step refuses a
            mask statically when it is ``False`` (Gemini).
    """

    name: str
    supports_mask: bool

    def edit(self, request: EditRequest) -> ProviderResult:
        """Make ``request.count`` images from the prompt and the reference images.

        Raises:
            ProviderError: The provider refused or could not be reached.
        """
        ...


@dataclass
class StreamBroken(ProviderError):
    """A streamed call that ended without its final image, after ``partials`` partial images.

    Retryable like any connection failure, but not free: the provider may bill the work
    done, partial images included, and reported no usage for it. ``billed`` says so in a
    few words, for the retry log and the step's error.

    Attributes:
        partials: Partial images received before the break.
        billed: What the broken call may have cost (``OpenAI may bill the 2 partial
            images; no usage was reported before the break``).
    """

    partials: int = 0
    billed: str = ""
