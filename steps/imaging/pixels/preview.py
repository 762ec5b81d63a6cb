"""The offline preview's drawings: deterministic Pillow pictures, visibly marked PREVIEW.

:class:`~steps.imaging.providers.preview.PreviewProvider` answers with them, which makes
every example flow and every test run free and offline. The picture depends only
on the prompt, the size, the seed and the image's index: a gradient and a few shapes in
colours drawn from a hash of those, a large "PREVIEW" across the middle and the first words
of the prompt at the bottom. With ``background: transparent`` the backdrop is transparent
and only the shapes and text are opaque. Same inputs, same PNG bytes (for one Pillow
version).

``edit`` draws from the reference images instead (:func:`draw_edit_preview`): the first
one tinted, the others as insets, a mask's transparent area striped, and an "EDIT" label
besides the PREVIEW marking.
"""

from __future__ import annotations

import hashlib
import io
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["DEFAULT_SIZE", "draw_edit_preview", "draw_preview", "png_bytes"]

#: What ``size: auto`` draws.
DEFAULT_SIZE = (1024, 1024)
_CAPTION_WORDS = 6


def _rng(prompt: str, width: int, height: int, seed: int, index: int) -> random.Random:
    key = f"{prompt}\x00{width}x{height}\x00{seed}\x00{index}".encode()
    return random.Random(hashlib.sha256(key).digest())


def _colour(rng: random.Random, alpha: int = 255) -> tuple[int, int, int, int]:
    return (rng.randrange(40, 216), rng.randrange(40, 216), rng.randrange(40, 216), alpha)


def draw_preview(
    prompt: str,
    width: int,
    height: int,
    *,
    seed: int = 0,
    index: int = 0,
    transparent: bool = False,
) -> Image:
    """Draw one preview image (RGBA when ``transparent``, else RGB)."""
    from PIL import Image, ImageDraw

    rng = _rng(prompt, width, height, seed, index)
    corners = [_colour(rng) for _ in range(4)]
    if transparent:
        canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    else:
        # A 2x2 image scaled up is a smooth four-corner gradient, fast at any size.
        seed_image = Image.new("RGBA", (2, 2))
        seed_image.putdata(corners)
        canvas = seed_image.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    short = min(width, height)
    for _ in range(3 + rng.randrange(4)):
        radius = max(2, int(short * rng.uniform(0.08, 0.25)))
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x - radius, y - radius, x + radius, y + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=_colour(rng))
        else:
            draw.rectangle(box, fill=_colour(rng))
    _mark(draw, width, height, prompt)
    return canvas if transparent else canvas.convert("RGB")


def _mark(draw: object, width: int, height: int, prompt: str) -> None:
    from PIL import ImageDraw, ImageFont

    assert isinstance(draw, ImageDraw.ImageDraw)
    big = ImageFont.load_default(size=max(8, min(width // 5, height // 3)))
    draw.text(
        (width / 2, height / 2),
        "PREVIEW",
        font=big,
        anchor="mm",
        fill=(255, 255, 255, 255),
        stroke_width=max(1, min(width, height) // 100),
        stroke_fill=(0, 0, 0, 255),
    )
    caption = " ".join(prompt.split()[:_CAPTION_WORDS])
    if caption and height >= 64:
        small = ImageFont.load_default(size=max(8, height // 24))
        draw.text(
            (width / 2, height - height // 12),
            caption,
            font=small,
            anchor="mm",
            fill=(255, 255, 255, 255),
            stroke_width=1,
            stroke_fill=(0, 0, 0, 255),
        )


def _open_rgba(data: bytes) -> Image:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA")


def draw_edit_preview(
    prompt: str,
    references: list[bytes],
    *,
    size: tuple[int, int] | None = None,
    mask: bytes | None = None,
    seed: int = 0,
    index: int = 0,
    transparent: bool = False,
) -> Image:
    """Draw one edit preview from the references (RGBA when ``transparent``, else RGB).

    The first reference, resized to ``size`` (or kept at its own), is tinted with a colour
    drawn from the prompt, seed and index; the other references are pasted as small insets
    along the bottom; where the mask is fully transparent (alpha 0, resized to the picture)
    a striped pattern fills the area; then "PREVIEW", the prompt's first words and an "EDIT"
    label are drawn. ``transparent`` keeps the first reference's alpha (an opaque one
    gets a centred oval cut-out, as a background removal would); otherwise the picture is
    flattened onto the tint colour.

    Args:
        prompt: The edit prompt.
        references: Image bytes, at least one.
        size: ``(width, height)`` of the result, or ``None`` for the first reference's.
        mask: A mask PNG (alpha 0 = edited area), or ``None``.
        seed: Varies the colours.
        index: The image's index in its request.
        transparent: Keep transparency instead of flattening.
    """
    from PIL import Image, ImageDraw, ImageFont

    base = _open_rgba(references[0])
    width, height = size or base.size
    rng = _rng(prompt, width, height, seed, index)
    tint = _colour(rng)
    picture = base.resize((width, height), Image.Resampling.BILINEAR)
    alpha = picture.getchannel("A")
    if transparent and alpha.getextrema()[0] == 255:
        # An opaque picture asked for a transparent result (background removal): keep a
        # centred oval as "the subject", so the cut-out is visible.
        alpha = Image.new("L", (width, height), 0)
        inset_x, inset_y = width // 10, height // 10
        ImageDraw.Draw(alpha).ellipse(
            (inset_x, inset_y, width - inset_x, height - inset_y), fill=255
        )
    picture = Image.blend(picture, Image.new("RGBA", (width, height), tint), 0.3)
    picture.putalpha(alpha)
    inset = max(8, min(width, height) // 5)
    margin = max(2, inset // 8)
    for number, data in enumerate(references[1:]):
        thumb = _open_rgba(data)
        thumb.thumbnail((inset, inset))
        x = margin + number * (inset + margin)
        if x + thumb.width > width:
            break
        picture.alpha_composite(thumb, (x, height - inset - margin))
    if mask is not None:
        area = _open_rgba(mask).getchannel("A").resize((width, height), Image.Resampling.NEAREST)
        edited = area.point(lambda value: 255 if value == 0 else 0)
        pattern = Image.new("RGBA", (width, height), tint)
        stripes = ImageDraw.Draw(pattern)
        step = max(4, min(width, height) // 16)
        for offset in range(-height, width, step * 2):
            stripes.line(
                [(offset, 0), (offset + height, height)], fill=(255, 255, 255, 255), width=step
            )
        picture.paste(pattern, (0, 0), edited)
    if not transparent:
        backdrop = Image.new("RGBA", (width, height), tint)
        picture = Image.alpha_composite(backdrop, picture)
    draw = ImageDraw.Draw(picture)
    _mark(draw, width, height, prompt)
    label = ImageFont.load_default(size=max(8, height // 12))
    draw.text(
        (margin, margin),
        "EDIT",
        font=label,
        fill=(255, 255, 0, 255),
        stroke_width=1,
        stroke_fill=(0, 0, 0, 255),
    )
    return picture if transparent else picture.convert("RGB")


def png_bytes(image: Image) -> bytes:
    """The image as PNG bytes."""
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
