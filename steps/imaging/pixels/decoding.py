"""Opening image bytes with Pillow, every failure turned into one clear, located error.

Every image a step decodes (references, masks, outpainting sources, transform inputs,
provider answers) goes through :func:`open_image`, which names what the bytes are (the
field and the file, URL or record: ``images[1] (file:refs/logo.png)``) when they are not a
readable image, are truncated, or claim more pixels than :data:`MAX_PIXELS` (a
decompression bomb). Pillow's ``DecompressionBombWarning`` is an error here, not a warning
printed on the side: the limit is ours, the same in every run.

Pillow is imported inside the function: importing this module stays cheap.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from fetchflow.errors import StepError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["MAX_PIXELS", "open_image"]

#: The most pixels an image may have to be decoded (a decompression-bomb guard).
MAX_PIXELS = 40_000_000


def _refused(message: str, hint: str) -> StepError:
    return StepError(message=message, hint=hint, retryable=False)


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
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise _refused(f"{what} is empty (0 bytes)", hint)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise _refused(
                    f"{what} is {width}x{height}, over the {MAX_PIXELS:,}-pixel safety limit",
                    too_large_hint,
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _refused(
            f"{what} claims more pixels than the {MAX_PIXELS:,}-pixel safety limit "
            "(a decompression bomb?)",
            too_large_hint,
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, UnidentifiedImageError):
            reason = "not a format Pillow knows"
        elif "truncated" in str(error):
            reason = "truncated"
        else:
            reason = type(error).__name__
        raise _refused(
            f"{what}: {len(data):,} bytes that are not a readable image ({reason})", hint
        ) from error
    return image
