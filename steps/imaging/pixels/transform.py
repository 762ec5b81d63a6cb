"""The Pillow core of ``image_transform``: resize, crop or pad to a ratio, re-encode.

:func:`transform_image` is pure (bytes and a :class:`TransformSpec` in, bytes out): it
decodes with a decompression-bomb guard, applies the EXIF orientation, reaches the target
ratio by a centred crop or by padding, resizes with Lanczos resampling, and encodes without
any metadata (EXIF, ICC profile, text chunks are all dropped). Animated sources give their
first frame.

Pillow is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetchflow.errors import StepError
from steps.imaging.pixels.finishing import encode
from steps.imaging.pixels.formats import MIME_TYPES, OUTPUT_FORMATS, PIL_NAMES

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "MAX_OUTPUT_PIXELS",
    "MAX_OUTPUT_SIDE",
    "TransformSpec",
    "TransformedImage",
    "output_size",
    "parse_color",
    "transform_image",
]

#: The largest side an output may have, in pixels.
MAX_OUTPUT_SIDE = 8192
#: The most pixels an output may have (inputs: :data:`steps.imaging.pixels.decoding.MAX_PIXELS`).
MAX_OUTPUT_PIXELS = 40_000_000


@dataclass(frozen=True)
class TransformSpec:
    """What to do to an image (fields as the step's config names them).

    Attributes:
        width: Target width in pixels, or None.
        height: Target height in pixels, or None.
        scale: A resize factor (exclusive with width and height), or None.
        aspect_ratio: ``W:H`` to crop or pad to, or None.
        fit: ``crop`` (centred) or ``pad`` (centred, on ``pad_color``) to reach the ratio.
        pad_color: ``transparent``, a colour name or ``#rrggbb``.
        output_format: ``png``, ``jpeg``, ``webp``, or None to keep the source's format
            (png when the source is another format, or a JPEG padded with transparency).
        output_compression: 0-100 (100 = least loss) for jpeg and webp, or None.
    """

    width: int | None = None
    height: int | None = None
    scale: float | None = None
    aspect_ratio: str | None = None
    fit: str = "crop"
    pad_color: str = "white"
    output_format: str | None = None
    output_compression: int | None = None


@dataclass(frozen=True)
class TransformedImage:
    """The encoded result.

    Attributes:
        data: The file's bytes (no metadata).
        format: ``png``, ``jpeg`` or ``webp``.
        file_type: Its MIME type.
        width: Pixel width.
        height: Pixel height.
        source_format: What the input was (``png``, ``jpeg``, ``webp``, ``gif``, ...).
    """

    data: bytes
    format: str
    file_type: str
    width: int
    height: int
    source_format: str


def _refused(message: str, hint: str) -> StepError:
    return StepError(message=message, hint=hint, retryable=False)


def parse_color(value: str) -> tuple[int, int, int, int]:
    """``white``, ``#ff8800`` or ``transparent`` as RGBA.

    Raises:
        ValueError: Not a colour Pillow knows.
    """
    from PIL import ImageColor

    if value.strip().lower() == "transparent":
        return (0, 0, 0, 0)
    rgb = ImageColor.getrgb(value.strip())
    return (rgb[0], rgb[1], rgb[2], rgb[3] if len(rgb) == 4 else 255)


def _ratio(aspect_ratio: str) -> float:
    w, h = (int(part) for part in aspect_ratio.split(":"))
    return w / h


def output_size(source: tuple[int, int], spec: TransformSpec) -> tuple[int, int]:
    """The size after the ratio step and the resize (before the pixel cap is checked)."""
    width, height = _ratio_size(source, spec)
    ratio = _target_ratio(spec) or width / height
    if spec.scale is not None:
        return max(1, round(width * spec.scale)), max(1, round(height * spec.scale))
    if spec.width is not None and spec.height is not None:
        return spec.width, spec.height
    if spec.width is not None:
        return spec.width, max(1, round(spec.width / ratio))
    if spec.height is not None:
        return max(1, round(spec.height * ratio)), spec.height
    return width, height


def _target_ratio(spec: TransformSpec) -> float | None:
    if spec.aspect_ratio is not None:
        return _ratio(spec.aspect_ratio)
    if spec.width is not None and spec.height is not None:
        return spec.width / spec.height
    return None


def _ratio_size(source: tuple[int, int], spec: TransformSpec) -> tuple[int, int]:
    width, height = source
    ratio = _target_ratio(spec)
    if ratio is None or abs(width / height - ratio) < 1e-9:
        return width, height
    wider = width / height > ratio
    if spec.fit == "crop":
        return (max(1, round(height * ratio)), height) if wider else (width, round(width / ratio))
    return (width, max(1, round(width / ratio))) if wider else (round(height * ratio), height)


def _decode(data: bytes, source: str) -> tuple[PILImage, str]:
    from PIL import ImageOps

    from steps.imaging.pixels.decoding import open_image

    opened = open_image(
        data,
        what=source,
        hint="reference a PNG, JPEG, WebP or GIF image",
        too_large_hint="use a smaller image",
    )
    found = PIL_NAMES.get(opened.format or "", (opened.format or "unknown").lower())
    image = ImageOps.exif_transpose(opened)
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB"), found


def _to_ratio(image: PILImage, size: tuple[int, int], spec: TransformSpec) -> PILImage:
    from PIL import Image

    if size == image.size:
        return image
    width, height = image.size
    if spec.fit == "crop":
        left, top = (width - size[0]) // 2, (height - size[1]) // 2
        return image.crop((left, top, left + size[0], top + size[1]))
    color = parse_color(spec.pad_color)
    mode = "RGBA" if image.mode == "RGBA" or color[3] < 255 else "RGB"
    canvas = Image.new(mode, size, color if mode == "RGBA" else color[:3])
    offset = ((size[0] - width) // 2, (size[1] - height) // 2)
    if image.mode == "RGBA":
        canvas.paste(image, offset, mask=image.getchannel("A"))
    else:
        canvas.paste(image, offset)
    return canvas


def transform_image(data: bytes, spec: TransformSpec, *, source: str) -> TransformedImage:
    """Apply ``spec`` to the image in ``data``.

    Args:
        data: The source image's bytes.
        spec: What to do.
        source: Where the bytes came from, for messages.

    Raises:
        StepError: Not a readable image, over the input pixel limit, or an output larger
            than :data:`MAX_OUTPUT_SIDE` per side or :data:`MAX_OUTPUT_PIXELS` in all.
    """
    from PIL import Image

    image, source_format = _decode(data, source)
    ratio_size = _ratio_size(image.size, spec)
    width, height = output_size(image.size, spec)
    if max(width, height) > MAX_OUTPUT_SIDE or width * height > MAX_OUTPUT_PIXELS:
        raise _refused(
            f"{source}: the output would be {width}x{height}, over the limit of "
            f"{MAX_OUTPUT_SIDE} pixels a side and {MAX_OUTPUT_PIXELS:,} pixels in all",
            "use a smaller width, height or scale",
        )
    image = _to_ratio(image, ratio_size, spec)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    output_format = spec.output_format
    if output_format is None:
        output_format = source_format if source_format in OUTPUT_FORMATS else "png"
        if output_format == "jpeg" and image.mode == "RGBA":
            output_format = "png"  # transparency asked of a JPEG source: keep it
    encoded = encode(image, output_format, spec.output_compression)
    return TransformedImage(
        data=encoded,
        format=output_format,
        file_type=MIME_TYPES[output_format],
        width=width,
        height=height,
        source_format=source_format,
    )
