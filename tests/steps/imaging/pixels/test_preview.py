"""The preview provider: deterministic PNGs at the asked size, transparency, PREVIEW marking."""

from __future__ import annotations

import io

from PIL import Image

from steps.imaging.pixels.preview import DEFAULT_SIZE, draw_preview
from steps.imaging.providers.base import ImageProvider, ImageRequest
from steps.imaging.providers.preview import PreviewProvider


def request(**changes: object) -> ImageRequest:
    fields: dict[str, object] = {
        "model": "preview",
        "prompt": "a blue vase on a marble table",
        "width": 320,
        "height": 180,
        "aspect_ratio": None,
        "resolution": None,
        "count": 2,
        "quality": "auto",
        "background": "auto",
        "moderation": "auto",
        "output_format": "png",
        "output_compression": None,
        "seed": 7,
    }
    fields.update(changes)
    return ImageRequest(**fields)  # type: ignore[arg-type]


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_it_is_an_image_provider() -> None:
    assert isinstance(PreviewProvider(), ImageProvider)
    assert PreviewProvider().name == "preview"


def test_same_inputs_give_the_same_bytes() -> None:
    first = PreviewProvider().generate(request())
    second = PreviewProvider().generate(request())
    assert [i.data for i in first.images] == [i.data for i in second.images]
    assert first.model == "preview" and first.usage is None


def test_index_seed_and_prompt_change_the_picture() -> None:
    images = PreviewProvider().generate(request()).images
    assert images[0].data != images[1].data
    other_seed = PreviewProvider().generate(request(seed=8, count=1)).images[0]
    other_prompt = PreviewProvider().generate(request(prompt="a red vase", count=1)).images[0]
    assert len({images[0].data, other_seed.data, other_prompt.data}) == 3


def test_png_at_the_asked_size_or_the_default_for_auto() -> None:
    answer = PreviewProvider().generate(request(count=1)).images[0]
    assert answer.mime_type == "image/png"
    image = decode(answer.data)
    assert (image.format, image.size, image.mode) == ("PNG", (320, 180), "RGB")
    auto = PreviewProvider().generate(request(width=None, height=None, count=1)).images[0]
    assert decode(auto.data).size == DEFAULT_SIZE


def test_transparent_background_is_transparent_outside_the_drawing() -> None:
    answer = PreviewProvider().generate(request(background="transparent", count=1)).images[0]
    image = decode(answer.data)
    assert image.mode == "RGBA"
    alphas = image.getchannel("A").getextrema()
    assert alphas == (0, 255)  # a transparent backdrop and opaque shapes and text
    assert image.getpixel((0, 0))[3] == 0 or image.getpixel((319, 179))[3] == 0


def _count(image: Image.Image, box: tuple[int, int, int, int], test: object) -> int:
    region = image.crop(box)
    pixels = region.get_flattened_data()
    return sum(1 for pixel in pixels if test(pixel))  # type: ignore[operator]


def test_the_preview_mark_is_drawn_big_in_the_middle() -> None:
    # The drawing uses colours between 40 and 216 only; white (the letters) and black (their
    # outline) come from the PREVIEW mark and the caption alone.
    image = draw_preview("a blue vase", 400, 300, seed=1)

    def white(p: tuple[int, ...]) -> bool:
        return min(p) > 240

    def black(p: tuple[int, ...]) -> bool:
        return max(p) < 20

    band = (20, 110, 380, 190)
    area = 360 * 80
    assert _count(image, band, white) > 0.10 * area
    assert _count(image, band, black) > 0.02 * area
    corner = (0, 0, 60, 60)
    assert _count(image, corner, white) == 0 and _count(image, corner, black) == 0
