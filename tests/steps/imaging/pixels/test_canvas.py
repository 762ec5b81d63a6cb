"""The pure edit helpers: the outpainting canvas and the mask checks."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fetchflow.errors import StepError
from steps.imaging.pixels.canvas import MASK_MAX_BYTES, check_mask, outpaint_canvas, parse_ratio


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def alpha_at(image: Image.Image, xy: tuple[int, int]) -> int:
    value = image.getchannel("A").getpixel(xy)
    assert isinstance(value, int)
    return value


RED = encode(Image.new("RGB", (160, 160), (220, 20, 20)))


def test_outpaint_square_to_16_9_widens_centred() -> None:
    canvas_bytes, mask_bytes = outpaint_canvas(RED, "16:9")
    canvas, mask = decode(canvas_bytes), decode(mask_bytes)
    assert canvas.format == mask.format == "PNG"
    assert canvas.size == mask.size == (284, 160)  # round(160 * 16 / 9)
    assert canvas.mode == mask.mode == "RGBA"
    left = (284 - 160) // 2
    # The picture is kept, centred; the new strips are transparent on both images.
    assert canvas.getpixel((left + 80, 80)) == (220, 20, 20, 255)
    assert alpha_at(canvas, (0, 80)) == 0 and alpha_at(canvas, (283, 80)) == 0
    assert alpha_at(mask, (left, 0)) == 255 and alpha_at(mask, (left + 159, 159)) == 255
    assert alpha_at(mask, (left - 1, 80)) == 0 and alpha_at(mask, (left + 160, 80)) == 0
    assert alpha_at(mask, (0, 0)) == 0 and alpha_at(mask, (283, 159)) == 0


def test_outpaint_16_9_to_9_16_heightens_with_a_fill() -> None:
    wide = encode(Image.new("RGB", (160, 90), (20, 20, 220)))
    canvas_bytes, mask_bytes = outpaint_canvas(wide, "9:16", fill=(255, 255, 255, 255))
    canvas, mask = decode(canvas_bytes), decode(mask_bytes)
    assert canvas.size == mask.size == (160, 284)  # round(160 * 16 / 9)
    top = (284 - 90) // 2
    assert canvas.getpixel((80, 0)) == (255, 255, 255, 255)
    assert canvas.getpixel((80, top + 45)) == (20, 20, 220, 255)
    assert alpha_at(mask, (80, top - 1)) == 0 and alpha_at(mask, (80, top)) == 255
    assert alpha_at(mask, (80, top + 89)) == 255 and alpha_at(mask, (80, top + 90)) == 0
    # A mask made here passes the checks against the canvas it belongs to.
    check_mask(mask_bytes, canvas_bytes)


def test_outpaint_to_the_same_ratio_leaves_nothing_to_edit() -> None:
    canvas_bytes, mask_bytes = outpaint_canvas(RED, 1.0)
    assert decode(canvas_bytes).size == (160, 160)
    assert decode(mask_bytes).getchannel("A").getextrema() == (255, 255)


@pytest.mark.parametrize("ratio", ["wide", "16:0", "0:9", -2.0])
def test_bad_ratios_are_refused(ratio: str | float) -> None:
    with pytest.raises(StepError) as caught:
        parse_ratio(ratio)
    assert not caught.value.retryable and caught.value.hint


def test_outpaint_refuses_bytes_that_are_no_image() -> None:
    with pytest.raises(StepError, match="not a readable image"):
        outpaint_canvas(b"<html>oops</html>", "1:1")


def mask_png(size: tuple[int, int], *, hole: bool = True) -> bytes:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    if hole:
        mask.putpixel((0, 0), (0, 0, 0, 0))
    return encode(mask)


def test_a_good_mask_passes() -> None:
    check_mask(mask_png((160, 160)), RED)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (encode(Image.new("RGBA", (160, 160)), "WEBP"), "mask: not a PNG file"),
        (encode(Image.new("RGB", (160, 160))), "mask: the PNG has no alpha channel (mode RGB)"),
        (mask_png((160, 160), hole=False), "mask: no fully transparent pixel (lowest alpha 255)"),
        (mask_png((80, 160)), "mask: 80x160 but the first image is 160x160"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (MASK_MAX_BYTES - 8), "must be under 4,194,304"),
    ],
    ids=["not-png", "no-alpha", "no-transparent-pixel", "wrong-size", "too-big"],
)
def test_bad_masks_are_refused_with_the_reason(mask: bytes, message: str) -> None:
    with pytest.raises(StepError) as caught:
        check_mask(mask, RED)
    assert message in caught.value.message
    assert not caught.value.retryable and caught.value.hint


def test_a_palette_png_with_a_transparent_index_counts_as_alpha() -> None:
    palette = Image.new("RGBA", (160, 160), (0, 0, 0, 255))
    palette.putpixel((3, 3), (0, 0, 0, 0))
    check_mask(encode(palette.convert("P")), RED)
