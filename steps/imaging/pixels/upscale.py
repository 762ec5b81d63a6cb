"""The Pillow core of ``image_upscale``: enlarge an image 2x or 4x with Lanczos resampling.

:func:`upscale_image` is pure (bytes in, bytes out). The output's size is checked from the
file's header before any pixel is decoded: an output over :data:`MAX_OUTPUT_SIDE` a side or
:data:`MAX_OUTPUT_PIXELS` in all is refused before it is made, the message naming the size
it would reach and the limit. The pixels are then decoded once, through the guarded decoder
(:func:`~steps.imaging.pixels.decoding.open_image`: the input limits apply), the EXIF
orientation applied, and the result encoded without metadata.

Pillow is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetchflow.errors import StepError
from steps.imaging.pixels.transform import MAX_OUTPUT_PIXELS, MAX_OUTPUT_SIDE

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "FACTORS",
    "UpscaleSource",
    "UpscaledImage",
    "finish_upscale",
    "header_size",
    "over_limit",
    "too_large",
    "upscale_image",
    "upscale_source",
    "upscaled_size",
]

#: The factors an upscale takes.
FACTORS = (2, 4)


def upscaled_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """``size`` times ``factor``."""
    return size[0] * factor, size[1] * factor


def over_limit(size: tuple[int, int]) -> bool:
    """Whether an output of ``size`` passes :data:`MAX_OUTPUT_SIDE` or :data:`MAX_OUTPUT_PIXELS`."""
    return max(size) > MAX_OUTPUT_SIDE or size[0] * size[1] > MAX_OUTPUT_PIXELS


def too_large(what: str, source: tuple[int, int], factor: int) -> tuple[str, str]:
    """The message and hint for an upscale whose output would pass the limits (a smaller
    factor offered when it fits)."""
    width, height = upscaled_size(source, factor)
    message = (
        f"{what}: a {factor}x upscale of {source[0]}x{source[1]} would be {width}x{height}, "
        f"over the limit of {MAX_OUTPUT_SIDE} pixels a side and {MAX_OUTPUT_PIXELS:,} "
        "pixels in all"
    )
    smaller = [f for f in FACTORS if f < factor and not over_limit(upscaled_size(source, f))]
    way_out = f"use factor: {smaller[-1]}, or " if smaller else ""
    return message, f"{way_out}shrink the image first (an image_transform step)"


@dataclass(frozen=True)
class UpscaledImage:
    """The encoded result.

    Attributes:
        data: The file's bytes (no metadata).
        format: ``png``, ``jpeg`` or ``webp``.
        file_type: Its MIME type.
        width: Pixel width (the source's times the factor).
        height: Pixel height.
        source_size: The source's ``(width, height)``, upright.
        source_format: What the input was (``png``, ``jpeg``, ``webp``, ``gif``, ...).
    """

    data: bytes
    format: str
    file_type: str
    width: int
    height: int
    source_size: tuple[int, int]
    source_format: str


def header_size(data: bytes) -> tuple[int, int] | None:
    """The size the header states, without decoding the pixels; None when unreadable
    (the guarded decoder then says why)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ):
        return None


def upscale_image(
    data: bytes,
    factor: int,
    *,
    source: str,
    output_format: str | None = None,
    output_compression: int | None = None,
) -> UpscaledImage:
    """``data`` enlarged ``factor`` times with Lanczos resampling.

    The output size is checked from the header before any pixel is decoded, and again
    after the EXIF orientation: an output over :data:`MAX_OUTPUT_SIDE` a side or
    :data:`MAX_OUTPUT_PIXELS` in all is refused before it is made. The pixels are decoded
    once, through the guarded decoder (the input limits apply).

    Args:
        data: The source image's bytes.
        factor: 2 or 4.
        source: What the bytes are, for messages (``images[0] (file:a.png)``).
        output_format: ``png``, ``jpeg``, ``webp``, or None for the source's format.
        output_compression: 0-100 for jpeg and webp, or None.

    Raises:
        StepError: Not retryable: not a readable image, over the input pixel limit, or an
            output over the limits.
    """
    from PIL import Image

    image, source_format = _open_upright(data, factor, source)
    large = image.resize(upscaled_size(image.size, factor), Image.Resampling.LANCZOS)
    return _finished(large, image.size, source_format, output_format, output_compression)


@dataclass(frozen=True)
class UpscaleSource:
    """A source image made ready for a provider's upscaler.

    Attributes:
        data: PNG bytes, upright (EXIF orientation applied), without metadata.
        size: Its ``(width, height)``.
        format: What the input was (``png``, ``jpeg``, ...).
    """

    data: bytes
    size: tuple[int, int]
    format: str


def upscale_source(data: bytes, factor: int, *, source: str) -> UpscaleSource:
    """``data`` checked and made ready to send to a provider's upscaler: the output's size
    checked against the limits (before anything is paid), decoded once through the guarded
    decoder, turned upright, sent as PNG.

    Raises:
        StepError: Not retryable: as :func:`upscale_image`.
    """
    from steps.imaging.pixels.finishing import encode

    image, source_format = _open_upright(data, factor, source)
    return UpscaleSource(data=encode(image, "png", None), size=image.size, format=source_format)


def finish_upscale(
    data: bytes,
    upscaled: UpscaleSource,
    *,
    source: str,
    output_format: str | None = None,
    output_compression: int | None = None,
) -> UpscaledImage:
    """A provider's upscaled image, decoded through the guarded decoder and encoded in the
    step's format without metadata (its size is what the provider made).

    Raises:
        StepError: Not retryable: the provider's bytes are not a readable image.
    """
    from steps.imaging.pixels.decoding import open_image

    image = open_image(
        data,
        what=source,
        hint="the upscaler sent an unreadable image; try again",
        too_large_hint="use a smaller factor",
    )
    return _finished(
        _plain_mode(image), upscaled.size, upscaled.format, output_format, output_compression
    )


def _plain_mode(image: Image.Image) -> Image.Image:
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def _open_upright(data: bytes, factor: int, source: str) -> tuple[Image.Image, str]:
    """The source decoded once (guarded), upright, RGB(A), after the output's size was
    checked from its header; and what format it was."""
    from PIL import ImageOps

    from steps.imaging.pixels.decoding import open_image
    from steps.imaging.pixels.formats import PIL_NAMES

    header = header_size(data)
    if header is not None and over_limit(upscaled_size(header, factor)):
        message, hint = too_large(source, header, factor)
        raise StepError(message=message, hint=hint, retryable=False)
    opened = open_image(
        data,
        what=source,
        hint="reference a PNG, JPEG, WebP or GIF image",
        too_large_hint="use a smaller image",
    )
    source_format = PIL_NAMES.get(opened.format or "", (opened.format or "unknown").lower())
    image = _plain_mode(ImageOps.exif_transpose(opened))
    if over_limit(upscaled_size(image.size, factor)):  # pragma: no cover - header caught it
        message, hint = too_large(source, image.size, factor)
        raise StepError(message=message, hint=hint, retryable=False)
    return image, source_format


def _finished(
    large: Image.Image,
    source_size: tuple[int, int],
    source_format: str,
    output_format: str | None,
    output_compression: int | None,
) -> UpscaledImage:
    from steps.imaging.pixels.finishing import encode
    from steps.imaging.pixels.formats import MIME_TYPES, OUTPUT_FORMATS

    chosen = output_format
    if chosen is None:
        chosen = source_format if source_format in OUTPUT_FORMATS else "png"
    return UpscaledImage(
        data=encode(large, chosen, output_compression),
        format=chosen,
        file_type=MIME_TYPES[chosen],
        width=large.width,
        height=large.height,
        source_size=source_size,
        source_format=source_format,
    )
