"""Verification and conversion of provider answers (Pillow)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fetchflow.errors import StepError
from steps.imaging.pixels.finishing import MAX_PIXELS, CheckedImage, finish_image, inspect_image

SOURCE = "model m (test)"


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def rgba(size: tuple[int, int] = (64, 48)) -> Image.Image:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (16, 16, 48, 32))
    return image


def test_inspect_reports_what_the_bytes_are() -> None:
    checked = inspect_image(encode(rgba(), "PNG"), "image/png", source=SOURCE, size=(64, 48))
    assert checked == CheckedImage(format="png", width=64, height=48, has_alpha=True)
    jpeg = inspect_image(encode(rgba().convert("RGB"), "JPEG"), "image/jpeg", source=SOURCE)
    assert (jpeg.format, jpeg.has_alpha) == ("jpeg", False)


@pytest.mark.parametrize(
    ("data", "mime", "message"),
    [
        pytest.param(b"", "image/png", r"^model m \(test\) returned an empty image\n", id="empty"),
        pytest.param(
            b"<html>502 Bad Gateway</html>",
            "image/png",
            r"returned 28 bytes that are not a readable image \(UnidentifiedImageError\)",
            id="garbage",
        ),
        pytest.param(
            encode(rgba(), "PNG")[:60],
            "image/png",
            r"returned 60 bytes that are not a readable image",
            id="truncated",
        ),
        pytest.param(
            encode(rgba().convert("RGB"), "JPEG"),
            "image/png",
            r"said image/png but returned jpeg",
            id="wrong-format",
        ),
    ],
)
def test_bad_answers_are_clear_step_errors(data: bytes, mime: str, message: str) -> None:
    with pytest.raises(StepError, match=message) as caught:
        inspect_image(data, mime, source=SOURCE)
    assert caught.value.retryable is False
    assert caught.value.hint


def test_wrong_size_and_wrong_ratio_are_refused() -> None:
    data = encode(rgba((64, 48)), "PNG")
    with pytest.raises(StepError, match=r"returned 64x48, not the 64x64 asked"):
        inspect_image(data, "image/png", source=SOURCE, size=(64, 64))
    with pytest.raises(StepError, match=r"returned 64x48, not the 16:9 ratio asked"):
        inspect_image(data, "image/png", source=SOURCE, aspect_ratio="16:9")
    # Gemini-style rounding (1344x768 for 16:9) is within tolerance.
    close = encode(Image.new("RGB", (1344, 768)), "PNG")
    assert inspect_image(close, "image/png", source=SOURCE, aspect_ratio="16:9").width == 1344


def test_decompression_bombs_are_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 16
    bomb = encode(Image.new("1", (side, side)), "PNG")
    with pytest.raises(StepError, match=rf"returned a {side}x{side} image, over the 40,000,000"):
        inspect_image(bomb, "image/png", source=SOURCE)


def test_matching_bytes_are_uploaded_unchanged() -> None:
    data = encode(rgba(), "PNG")
    checked = inspect_image(data, "image/png", source=SOURCE)
    finished = finish_image(
        data, checked, output_format="png", output_compression=None, compressed_by_provider=False
    )
    assert finished.data is data and not finished.converted
    assert finished.file_type == "image/png"
    webp = encode(rgba(), "WEBP", quality=50)
    checked = inspect_image(webp, "image/webp", source=SOURCE)
    kept = finish_image(
        webp, checked, output_format="webp", output_compression=50, compressed_by_provider=True
    )
    assert kept.data is webp


def test_jpeg_conversion_flattens_transparency_onto_white() -> None:
    data = encode(rgba(), "PNG")
    checked = inspect_image(data, "image/png", source=SOURCE)
    finished = finish_image(
        data, checked, output_format="jpeg", output_compression=None, compressed_by_provider=False
    )
    assert finished.converted and finished.file_type == "image/jpeg"
    image = Image.open(io.BytesIO(finished.data))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 48))
    corner = image.getpixel((2, 2))
    assert isinstance(corner, tuple) and min(corner) > 245  # was transparent, now white
    middle = image.getpixel((32, 24))
    assert isinstance(middle, tuple) and middle[0] > 150 and middle[1] < 80


def test_webp_keeps_alpha_and_compression_changes_the_size() -> None:
    noisy = Image.effect_noise((128, 128), 64).convert("RGBA")
    noisy.putalpha(Image.linear_gradient("L").resize((128, 128)))
    data = encode(noisy, "PNG")
    checked = inspect_image(data, "image/png", source=SOURCE)
    small, large = (
        finish_image(
            data, checked, output_format="webp", output_compression=q, compressed_by_provider=False
        )
        for q in (10, 95)
    )
    assert len(small.data) < len(large.data)
    assert Image.open(io.BytesIO(small.data)).mode == "RGBA"
    alpha = encode(rgba(), "PNG")
    lossless = finish_image(
        alpha,
        inspect_image(alpha, "image/png", source=SOURCE),
        output_format="webp",
        output_compression=None,
        compressed_by_provider=False,
    )
    decoded = Image.open(io.BytesIO(lossless.data))
    assert decoded.getpixel((0, 0)) == (0, 0, 0, 0)


def test_compression_the_provider_did_not_apply_is_applied() -> None:
    noisy = encode(Image.effect_noise((128, 128), 64).convert("RGB"), "JPEG", quality=95)
    checked = inspect_image(noisy, "image/jpeg", source=SOURCE)
    finished = finish_image(
        noisy, checked, output_format="jpeg", output_compression=20, compressed_by_provider=False
    )
    assert finished.converted and len(finished.data) < len(noisy)


def test_converted_files_carry_no_metadata() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "secret recipe")
    data = encode(rgba(), "PNG", pnginfo=info)
    finished = finish_image(
        data,
        inspect_image(data, "image/png", source=SOURCE),
        output_format="webp",
        output_compression=80,
        compressed_by_provider=False,
    )
    assert b"secret recipe" not in finished.data
