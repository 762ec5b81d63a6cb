"""Opening image bytes with Pillow, every failure turned into one clear, located error.

Every image a step decodes (references, masks, outpainting sources, transform inputs,
provider answers) goes through :func:`open_image`, which names what the bytes are (the
field and the file, URL or record: ``images[1] (file:refs/logo.png)``) when they are not a
readable image, are truncated, or claim more pixels than :data:`MAX_PIXELS` (a
decompression bomb). Pillow's ``DecompressionBombWarning`` is an error here, not a warning
printed on the side: the limit is ours, the same in every run.

:func:`decode` is the guarded decoding itself, for callers that word the failure their own
way (a provider's answer is not a user's file); :func:`probe` checks bytes without decoding
their pixels (the header, Pillow's ``verify()`` and the format's end marker), for bytes
that are stored as they are.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetchflow.errors import StepError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["MAX_PIXELS", "Undecodable", "decode", "open_image", "probe"]

#: The most pixels an image may have to be decoded (a decompression-bomb guard).
MAX_PIXELS = 40_000_000


@dataclass
class Undecodable(Exception):
    """Bytes :func:`decode` refused; the caller words the message for what they were.

    Attributes:
        kind: ``empty``, ``too_large`` (over :data:`MAX_PIXELS` by its header), ``bomb``
            (Pillow's own decompression-bomb limit) or ``unreadable``.
        size: ``(width, height)`` when the header was read, else None.
        cause: Pillow's exception, for ``bomb`` and ``unreadable``.
    """

    kind: str
    size: tuple[int, int] | None = None
    cause: BaseException | None = None


def decode(data: bytes) -> PILImage:
    """The image in ``data``, fully decoded, under the :data:`MAX_PIXELS` guard.

    Pillow's ``DecompressionBombWarning`` is an error here, not a warning on the side.

    Raises:
        Undecodable: Empty, over the pixel limit, or not a readable image.
    """
    return _guarded(data, lambda image: image.load())


def probe(data: bytes) -> PILImage:
    """The image in ``data``, checked but not decoded: its header read (size, mode,
    format), Pillow's ``verify()`` passed (PNG: every chunk's CRC through ``IEND``) and the
    file complete (JPEG: an end-of-image marker; WebP: as long as its RIFF header says).

    The image returned cannot be loaded (``verify()`` consumed it); read its attributes.

    Raises:
        Undecodable: Empty, over the pixel limit, not a readable image, or truncated.
    """
    image = _guarded(data, lambda opened: opened.verify())
    if not _complete(image.format or "", data):
        raise Undecodable("unreadable", cause=EOFError("image file is truncated"))
    return image


def _guarded(data: bytes, finish: Callable[[PILImage], object]) -> PILImage:
    """Open ``data`` under the :data:`MAX_PIXELS` guard (Pillow's bomb warning an error),
    then ``finish`` it (``load()`` to decode, ``verify()`` to check without decoding).

    Raises:
        Undecodable: Empty, over the pixel limit, or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise Undecodable("empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise Undecodable("too_large", image.size)
            finish(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise Undecodable("bomb", cause=error) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise Undecodable("unreadable", cause=error) from error
    return image


def _complete(pil_format: str, data: bytes) -> bool:
    """Whether ``data`` reaches its format's end (``verify()`` does not check JPEG's)."""
    if pil_format == "JPEG":
        return b"\xff\xd9" in data[-64:]  # EOI; some encoders pad after it
    if pil_format == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return True


def open_image(
    data: bytes,
    *,
    what: str,
    hint: str = "give a PNG, JPEG or WEBP image",
    too_large_hint: str = "use a smaller image (an image_transform step can shrink it)",
) -> PILImage:
    """The image in ``data``, fully decoded (the first frame of an animation).

    Args:
        data: The file's bytes.
        what: What the bytes are, for messages: the field and where they came from.
        hint: The way out when the bytes are not a readable image.
        too_large_hint: The way out when the image has too many pixels.

    Raises:
        StepError: Not retryable: empty, not an image, truncated or corrupt, or over
            :data:`MAX_PIXELS` (Pillow's decompression-bomb limit included).
    """
    from PIL import UnidentifiedImageError

    try:
        return decode(data)
    except Undecodable as failure:
        if failure.kind == "empty":
            message, way_out = f"{what} is empty (0 bytes)", hint
        elif failure.kind == "too_large" and failure.size is not None:
            width, height = failure.size
            message = f"{what} is {width}x{height}, over the {MAX_PIXELS:,}-pixel safety limit"
            way_out = too_large_hint
        elif failure.kind == "bomb":
            message = (
                f"{what} claims more pixels than the {MAX_PIXELS:,}-pixel safety limit "
                "(a decompression bomb?)"
            )
            way_out = too_large_hint
        else:
            cause = failure.cause
            if isinstance(cause, UnidentifiedImageError):
                reason = "not a format Pillow knows"
            elif "truncated" in str(cause):
                reason = "truncated"
            else:
                reason = type(cause).__name__
            message = f"{what}: {len(data):,} bytes that are not a readable image ({reason})"
            way_out = hint
        raise StepError(message=message, hint=way_out, retryable=False) from failure.cause
