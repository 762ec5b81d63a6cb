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

from fetchflow.errors import StepError
from steps.imaging.pixels.transform import MAX_OUTPUT_PIXELS, MAX_OUTPUT_SIDE

__all__ = [
    "FACTORS",
    "UpscaledImage",
    "header_size",
    "over_limit",
    "too_large",
    "upscale_image",
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
    from PIL import Image, ImageOps

    from steps.imaging.pixels.decoding import open_image
    from steps.imaging.pixels.finishing import encode
    from steps.imaging.pixels.formats import MIME_TYPES, OUTPUT_FORMATS, PIL_NAMES

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
    image = ImageOps.exif_transpose(opened)
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if alpha else "RGB")
    size = upscaled_size(image.size, factor)
    if over_limit(size):  # pragma: no cover - the header check caught it (same size)
        message, hint = too_large(source, image.size, factor)
        raise StepError(message=message, hint=hint, retryable=False)
    large = image.resize(size, Image.Resampling.LANCZOS)
    chosen = output_format
    if chosen is None:
        chosen = source_format if source_format in OUTPUT_FORMATS else "png"
    return UpscaledImage(
        data=encode(large, chosen, output_compression),
        format=chosen,
        file_type=MIME_TYPES[chosen],
        width=size[0],
        height=size[1],
        source_size=image.size,
        source_format=source_format,
    )
