"""The offline preview provider: deterministic Pillow drawings, visibly marked PREVIEW.

It makes every example flow and every test run free and offline. The picture depends only
on the prompt, the size, the seed and the image's index: a gradient and a few shapes in
colours drawn from a hash of those, a large "PREVIEW" across the middle and the first words
of the prompt at the bottom. With ``background: transparent`` the backdrop is transparent
and only the shapes and text are opaque. Same inputs, same PNG bytes (for one Pillow
version).
"""

from __future__ import annotations

import hashlib
import io
import random
from typing import TYPE_CHECKING

from steps.imaging.catalog import PREVIEW
from steps.imaging.providers.base import ImageRequest, ProviderImage, ProviderResult

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["DEFAULT_SIZE", "PreviewProvider", "draw_preview"]

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


def _png(image: Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class PreviewProvider:
    """Draws images offline instead of calling an API (``model: preview``).

    Always answers PNG at the size asked (:data:`DEFAULT_SIZE` for "auto"); image ``i`` of
    a request is drawn with the request's seed (0 when none) and index ``i``.
    """

    name = "preview"

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Draw ``request.count`` images."""
        if request.width is not None and request.height is not None:
            width, height = request.width, request.height
        else:
            width, height = DEFAULT_SIZE
        transparent = request.background == "transparent"
        images = [
            ProviderImage(
                data=_png(
                    draw_preview(
                        request.prompt,
                        width,
                        height,
                        seed=request.seed or 0,
                        index=index,
                        transparent=transparent,
                    )
                ),
                mime_type="image/png",
            )
            for index in range(request.count)
        ]
        return ProviderResult(images=images, usage=None, model=PREVIEW)

    def close(self) -> None:
        """Nothing to release: the preview draws locally."""
