"""Pure image helpers for editing: an outpainting canvas and the checks a mask must pass.

Masks follow OpenAI's convention (PROVIDERS.md §1, rule 14): a PNG with an alpha channel
whose **fully transparent pixels (alpha 0) mark where to edit**, the same width and height
as the first image, under 4 MB. :func:`outpaint_canvas` builds an image and such a mask to
widen or heighten a picture to a new aspect ratio; :func:`check_mask` refuses a mask the
API would refuse, before anything is paid for.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from fetchflow.errors import StepError
from steps.imaging.pixels.formats import PNG_SIGNATURE

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["MASK_MAX_BYTES", "TRANSPARENT", "check_mask", "outpaint_canvas", "parse_ratio"]

#: OpenAI's limit on a mask file (it must be *under* this).
MASK_MAX_BYTES = 4 * 1024 * 1024
#: The default fill of the new area of an outpainting canvas.
TRANSPARENT = (0, 0, 0, 0)
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*$")


def _error(message: str, hint: str) -> StepError:
    return StepError(message=message, hint=hint, retryable=False)


def parse_ratio(ratio: str | float) -> float:
    """``"16:9"`` (also ``"16x9"``, ``"16/9"``) or a number, as width / height.

    Raises:
        StepError: Not a ratio of two positive numbers.
    """
    if isinstance(ratio, int | float):
        value = float(ratio)
    else:
        match = _RATIO.match(ratio)
        if match is None or float(match[2]) == 0:
            raise _error(
                f"aspect ratio {ratio!r} is not W:H", 'write it as two numbers, e.g. "16:9"'
            )
        value = float(match[1]) / float(match[2])
    if not value > 0:
        raise _error(f"aspect ratio {ratio!r} is not positive", 'e.g. "16:9" or "1:1"')
    return value


def _open(data: bytes, what: str) -> Image:
    from steps.imaging.pixels.decoding import open_image

    return open_image(data, what=what, hint="give a PNG, JPEG or WEBP file")


def _png(image: Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def outpaint_canvas(
    image_bytes: bytes,
    target_ratio: str | float,
    *,
    fill: tuple[int, int, int, int] = TRANSPARENT,
    what: str = "the image to outpaint",
) -> tuple[bytes, bytes]:
    """Extend an image to a new aspect ratio, centred, with a mask of the new area.

    The picture keeps its pixels and size; the canvas grows in width (a wider ratio) or in
    height (a taller one) until it has ``target_ratio``, each side rounded to whole pixels.
    A ratio already met gives the image back unchanged as PNG with an all-opaque mask
    (nothing to edit).

    Args:
        image_bytes: The picture (any format Pillow reads).
        target_ratio: The wanted width / height: ``"16:9"`` or a number.
        fill: RGBA of the new pixels on the canvas (transparent by default).
        what: The field and source of ``image_bytes``, for messages.

    Returns:
        ``(canvas_png, mask_png)``, both RGBA PNGs of the canvas size. The mask is opaque
        black over the original picture and fully transparent (alpha 0, "edit here") where
        the new pixels are.

    Raises:
        StepError: The bytes are no image or the ratio cannot be read.
    """
    from PIL import Image

    ratio = parse_ratio(target_ratio)
    original = _open(image_bytes, what).convert("RGBA")
    width, height = original.size
    if width / height < ratio:
        new_width, new_height = max(width, round(height * ratio)), height
    else:
        new_width, new_height = width, max(height, round(width / ratio))
    left, top = (new_width - width) // 2, (new_height - height) // 2
    canvas = Image.new("RGBA", (new_width, new_height), fill)
    canvas.paste(original, (left, top))
    mask = Image.new("RGBA", (new_width, new_height), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (left, top, left + width, top + height))
    return _png(canvas), _png(mask)


def check_mask(
    mask_bytes: bytes,
    first_image_bytes: bytes,
    *,
    mask_source: str = "",
    first_image: str = "the first image",
) -> None:
    """Refuse a mask OpenAI's edits would refuse (rule 14), with the way out.

    Args:
        mask_bytes: The mask file.
        first_image_bytes: The first reference image (the one the mask applies to).
        mask_source: Where the mask came from (file, URL or record), for messages.
        first_image: The first image's field and source, for messages.

    Raises:
        StepError: Not retryable: the mask is 4 MB or more, not a PNG, has no alpha
            channel, has no fully transparent pixel (nothing would be edited), or its
            width × height differs from the first image's.
    """
    size = len(mask_bytes)
    if size >= MASK_MAX_BYTES:
        raise _error(
            f"mask: {size:,} bytes; it must be under {MASK_MAX_BYTES:,} (4 MB)",
            "save the mask as a smaller PNG (a mask compresses well: keep it to two colours)",
        )
    if not mask_bytes.startswith(PNG_SIGNATURE):
        raise _error(
            "mask: not a PNG file (masks must be PNG with an alpha channel)",
            "export the mask as PNG with transparency: transparent where to edit",
        )
    mask = _open(mask_bytes, f"mask ({mask_source})" if mask_source else "mask")
    has_alpha = mask.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in mask.info
    if not has_alpha:
        raise _error(
            f"mask: the PNG has no alpha channel (mode {mask.mode}); OpenAI reads where to "
            "edit from fully transparent pixels",
            "save the mask as RGBA PNG, with alpha 0 where the image should change",
        )
    low, _high = mask.convert("RGBA").getchannel("A").getextrema()
    if low != 0:
        raise _error(
            f"mask: no fully transparent pixel (lowest alpha {low}); nothing would be edited",
            "make the area to change fully transparent (alpha 0)",
        )
    image = _open(first_image_bytes, first_image)
    if mask.size != image.size:
        raise _error(
            f"mask: {mask.width}x{mask.height} but the first image is "
            f"{image.width}x{image.height}; they must be the same size",
            f"resize the mask to {image.width}x{image.height}",
        )
