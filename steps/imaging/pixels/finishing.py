"""Provider answers checked and finished with Pillow before they are uploaded.

:func:`inspect_image` proves the bytes are an image of the kind the provider said and the
size that was asked (garbage, an empty or truncated answer or a decompression bomb is a
clear error) from the header and Pillow's ``verify()``, without decoding the pixels;
:func:`finish_image` returns the bytes unchanged when they already are what the step wants,
and converts only when needed: another format, a compression level, or a JPEG that must be
flattened onto a background colour, decoding the pixels once. Converted files carry no
metadata.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetchflow.errors import StepError
from steps.imaging.pixels.decoding import MAX_PIXELS, Undecodable, decode, probe
from steps.imaging.pixels.formats import MIME_TYPES, OUTPUT_FORMATS, PIL_NAMES

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "MAX_PIXELS",
    "CheckedImage",
    "FinishedImage",
    "encode",
    "finish_image",
    "inspect_image",
    "mime_type",
]

#: How far a ratio-only model's image may stray from the ratio asked (Gemini's pixel
#: tables round, e.g. 16:9 is 1344x768).
RATIO_TOLERANCE = 0.08

_FLATTEN_ON = (255, 255, 255)


def mime_type(output_format: str) -> str:
    """``"webp"`` → ``"image/webp"``."""
    return MIME_TYPES[output_format]


def _format_of_mime(mime: str) -> str | None:
    subtype = mime.split(";")[0].strip().lower().removeprefix("image/")
    return {"jpg": "jpeg", "pjpeg": "jpeg", "x-png": "png"}.get(subtype, subtype)


def _rejected(message: str, hint: str) -> StepError:
    return StepError(message=message, hint=hint, retryable=False)


@dataclass(frozen=True)
class CheckedImage:
    """What the bytes really are.

    Attributes:
        format: ``png``, ``jpeg`` or ``webp``.
        width: Pixel width.
        height: Pixel height.
        has_alpha: Whether the image has an alpha channel.
    """

    format: str
    width: int
    height: int
    has_alpha: bool


@dataclass(frozen=True)
class FinishedImage:
    """The bytes to upload and what they are.

    Attributes:
        data: The file's bytes.
        file_type: Its MIME type.
        width: Pixel width.
        height: Pixel height.
        converted: False when the provider's bytes are uploaded unchanged.
    """

    data: bytes
    file_type: str
    width: int
    height: int
    converted: bool


def _answer_refused(failure: Undecodable, source: str, size: int) -> StepError:
    """What :func:`inspect_image` says of a provider answer that does not decode."""
    if failure.kind == "empty":
        return _rejected(
            f"{source} returned an empty image", "try again; if it persists, check the provider"
        )
    if failure.kind == "too_large" and failure.size is not None:
        width, height = failure.size
        return _rejected(
            f"{source} returned a {width}x{height} image, over the {MAX_PIXELS:,}-pixel "
            "safety limit",
            "ask for a smaller size",
        )
    if failure.kind == "bomb":
        return _rejected(
            f"{source} returned an image over Pillow's decompression-bomb limit",
            "ask for a smaller size",
        )
    return _rejected(
        f"{source} returned {size} bytes that are not a readable image "
        f"({type(failure.cause).__name__})",
        "the endpoint may not be an image API; check the model and base URL",
    )


def inspect_image(
    data: bytes,
    claimed_mime: str,
    *,
    source: str,
    size: tuple[int, int] | None = None,
    aspect_ratio: str | None = None,
) -> CheckedImage:
    """Check ``data`` is what ``source`` promised, without decoding its pixels.

    Args:
        data: The bytes returned.
        claimed_mime: The MIME type the provider gave.
        source: ``model X (provider)``, for messages.
        size: The exact size asked, if any.
        aspect_ratio: The ratio asked of a ratio-only model, if any.

    Raises:
        StepError: Empty, not an image, another format than claimed, too large, or not
            the size (or ratio) asked.
    """
    try:
        image = probe(data)
    except Undecodable as failure:
        raise _answer_refused(failure, source, len(data)) from failure.cause
    width, height = image.size
    named = PIL_NAMES.get(image.format or "")
    found = named if named in OUTPUT_FORMATS else None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    claimed = _format_of_mime(claimed_mime)
    if found is None or found != claimed:
        raise _rejected(
            f"{source} said {claimed_mime} but returned {found or 'an unsupported format'}",
            "the endpoint may not be an image API; check the model and base URL",
        )
    if size is not None and (width, height) != size:
        raise _rejected(
            f"{source} returned {width}x{height}, not the {size[0]}x{size[1]} asked",
            "use size: auto, or a size the model supports",
        )
    if aspect_ratio is not None:
        w, h = (int(part) for part in aspect_ratio.split(":"))
        if abs((width / height) / (w / h) - 1) > RATIO_TOLERANCE:
            raise _rejected(
                f"{source} returned {width}x{height}, not the {aspect_ratio} ratio asked",
                "try another aspect_ratio or model",
            )
    return CheckedImage(format=found, width=width, height=height, has_alpha=has_alpha)


def finish_image(
    data: bytes,
    checked: CheckedImage,
    *,
    output_format: str,
    output_compression: int | None,
    compressed_by_provider: bool,
) -> FinishedImage:
    """The bytes to upload: ``data`` as is when it already fits, else converted.

    Args:
        data: Bytes that passed :func:`inspect_image`.
        checked: What :func:`inspect_image` found.
        output_format: The format the step must output.
        output_compression: 0-100 (100 = least loss, as OpenAI reads it), or None.
        compressed_by_provider: The provider applied ``output_compression`` itself.
    """
    wants_compression = output_compression is not None and not compressed_by_provider
    if checked.format == output_format and not wants_compression:
        return FinishedImage(data, mime_type(output_format), checked.width, checked.height, False)
    converted = convert(data, output_format=output_format, output_compression=output_compression)
    return FinishedImage(converted, mime_type(output_format), checked.width, checked.height, True)


def convert(data: bytes, *, output_format: str, output_compression: int | None) -> bytes:
    """Re-encode ``data`` as ``output_format`` without metadata.

    JPEG has no alpha: a transparent image is flattened onto white. WebP keeps alpha.
    """
    try:
        source = decode(data)  # the only decode of the pixels
    except Undecodable as failure:
        raise _answer_refused(failure, "the image to convert", len(data)) from failure.cause
    with source:
        image = source.convert("RGBA") if _has_alpha(source) else source.convert("RGB")
    return encode(image, output_format, output_compression)


def encode(image: PILImage, output_format: str, output_compression: int | None) -> bytes:
    """Encode an RGB or RGBA image as ``output_format``, from its pixels alone.

    No EXIF, ICC profile or text chunk survives. JPEG has no alpha: a transparent image is
    flattened onto white. ``output_compression`` (0-100, 100 = least loss) is JPEG's or
    WebP's quality; WebP without it is lossless, JPEG without it is quality 95.
    """
    from PIL import Image

    if output_format == "jpeg" and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, _FLATTEN_ON)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    out = io.BytesIO()
    if output_format == "jpeg":
        quality = 95 if output_compression is None else max(1, output_compression)
        clean.save(out, "JPEG", quality=quality, optimize=True)
    elif output_format == "webp":
        if output_compression is None:
            clean.save(out, "WEBP", lossless=True)
        else:
            clean.save(out, "WEBP", quality=output_compression)
    else:
        clean.save(out, "PNG")
    return out.getvalue()


def _has_alpha(image: object) -> bool:
    mode = getattr(image, "mode", "")
    info = getattr(image, "info", {})
    return mode in ("RGBA", "LA", "PA") or "transparency" in info
