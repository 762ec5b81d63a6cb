"""Every piece of metadata is dropped and one XMP packet written, the pixels copied as they
were: read back with exiftool (a reader we did not write) and Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from fakes.provenance import GENERATED, exiftool_tags, metadata_of
from PIL import Image, PngImagePlugin

from fetchflow.errors import StepError
from steps.imaging.pixels.metadata import read_xmp, replace_metadata
from steps.imaging.provenance import CREATOR_TOOL, Provenance, xmp_packet

PACKET = xmp_packet(Provenance("created", GENERATED, "gpt-image-1.5"))
OLD_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    b'xmp:CreatorTool="SecretCam Studio"/></rdf:RDF></x:xmpmeta>'
)


def exif() -> Image.Exif:
    found = Image.Exif()
    found[0x010F] = "SecretCam"  # Make
    gps = found.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)  # GPSLatitudeRef, GPSLatitude
    return found


def save(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def png_with_everything() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "SecretCam comment")
    info.add_itxt("XML:com.adobe.xmp", OLD_XMP.decode())
    info.add_text("parameters", "SecretCam prompt", zip=True)
    return save(Image.new("RGBA", (40, 30), (200, 10, 10, 128)), "PNG", pnginfo=info, exif=exif())


def jpeg_with_everything() -> bytes:
    image = Image.new("RGB", (40, 30), (10, 200, 10))
    return save(image, "JPEG", quality=80, exif=exif(), xmp=OLD_XMP, comment=b"SecretCam")


def webp(mode: str, **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        image = Image.new(mode, (40, 30), (10, 10, 200, 99)[: len(mode)])
        return save(image, "WEBP", exif=exif(), xmp=OLD_XMP, **options)

    return make


def webp_simple(**options: object) -> Callable[[], bytes]:
    """A simple-format WebP (one VP8 or VP8L chunk, no VP8X), as most encoders write."""
    return lambda: save(Image.new("RGB", (41, 29), (1, 2, 3)), "WEBP", **options)


CASES: dict[str, Callable[[], bytes]] = {
    "png": png_with_everything,
    "jpeg": jpeg_with_everything,
    "webp-lossy-rgba": webp("RGBA", quality=70),
    "webp-lossless-rgb": webp("RGB", lossless=True),
    "webp-simple-lossy": webp_simple(quality=70),
    "webp-simple-lossless": webp_simple(lossless=True),
}


@pytest.fixture(scope="module")
def rewritten() -> dict[str, tuple[bytes, bytes, dict[str, object]]]:
    """Each case's input, output and exiftool's reading of the output (one exiftool run)."""
    inputs = {name: make() for name, make in CASES.items()}
    outputs = {name: replace_metadata(data, PACKET) for name, data in inputs.items()}
    tags = exiftool_tags(*outputs.values())
    return {
        name: (inputs[name], outputs[name], found) for name, found in zip(CASES, tags, strict=True)
    }


@pytest.mark.parametrize("case", list(CASES))
def test_only_our_packet_is_left_and_the_pixels_are_untouched(
    case: str, rewritten: dict[str, tuple[bytes, bytes, dict[str, object]]]
) -> None:
    before, after, tags = rewritten[case]
    assert tags["XMP-xmp:CreatorTool"] == CREATOR_TOOL
    assert tags["XMP-iptcExt:DigitalSourceType"] == GENERATED
    assert tags["XMP-iptcExt:AISystemUsed"] == "gpt-image-1.5"
    assert tags["ExifTool:Validate"] == "OK"
    assert "ExifTool:Warning" not in tags
    assert metadata_of(tags) == {
        "XMP-xmp:CreatorTool": CREATOR_TOOL,
        "XMP-iptcExt:DigitalSourceType": GENERATED,
        "XMP-iptcExt:AISystemUsed": "gpt-image-1.5",
    }
    assert b"SecretCam" not in after and b"GPS" not in after
    with Image.open(io.BytesIO(before)) as old, Image.open(io.BytesIO(after)) as new:
        assert (new.format, new.size, new.mode) == (old.format, old.size, old.mode)
        assert new.tobytes() == old.tobytes()  # copied, not re-encoded
    assert read_xmp(after) == PACKET


def test_the_same_image_and_provenance_give_the_same_bytes() -> None:
    data = jpeg_with_everything()
    assert replace_metadata(data, PACKET) == replace_metadata(data, PACKET)
    assert replace_metadata(replace_metadata(data, PACKET), PACKET) == replace_metadata(
        data, PACKET
    )


@pytest.mark.parametrize(
    ("data", "found"),
    [
        pytest.param(png_with_everything()[:60], "png", id="truncated-png"),
        pytest.param(b"\xff\xd8\xff\xe1\x00", "jpeg", id="truncated-jpeg"),
        pytest.param(b"RIFF\x04\x00\x00\x00WEBP", "webp", id="empty-webp"),
    ],
)
def test_a_malformed_file_is_a_step_error(data: bytes, found: str) -> None:
    with pytest.raises(StepError, match=f"cannot write the provenance into a malformed {found}"):
        replace_metadata(data, PACKET)


def test_a_gif_is_refused() -> None:
    gif = save(Image.new("P", (4, 4)), "GIF")
    with pytest.raises(StepError, match="cannot write the provenance into a gif file"):
        replace_metadata(gif, PACKET)
