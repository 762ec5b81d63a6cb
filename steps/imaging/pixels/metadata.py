"""What a PNG, JPEG or WebP file carries besides its pixels, rewritten at the container level.

:func:`replace_metadata` drops every piece of metadata a file holds (text chunks, EXIF, XMP,
IPTC, comments, timestamps, an earlier C2PA manifest) and writes one XMP packet in its
place, the way each format's specification puts it: a PNG ``iTXt`` chunk keyed
``XML:com.adobe.xmp`` before the image data, a JPEG ``APP1`` segment after ``SOI`` (and the
JFIF header), a WebP ``XMP `` chunk in an extended (``VP8X``) file. The compressed image
data is copied byte for byte, never decoded or re-encoded, so a provider's JPEG loses no
quality. What says how the pixels look is kept: colour profiles (``iCCP``, ``sRGB``,
``gAMA``, ``cHRM``, ``cICP``; JPEG ``APP2 ICC_PROFILE`` and Adobe's ``APP14``; WebP
``ICCP``) and a PNG's transparency and palette.

:func:`read_xmp` returns the packet a file carries (for a transform to keep its source's
digital source type). Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct
import zlib

from fetchflow.errors import StepError
from steps.imaging.pixels.formats import PNG_SIGNATURE, sniff_format

__all__ = ["read_xmp", "replace_metadata"]

_XMP_KEYWORD = b"XML:com.adobe.xmp"
_JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
#: PNG chunks that are pixels or say how they look; everything else is dropped.
_PNG_KEPT = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"cHRM",
        b"gAMA",
        b"iCCP",
        b"sBIT",
        b"sRGB",
        b"cICP",
        b"mDCV",
        b"cLLI",
        b"bKGD",
        b"pHYs",
        b"acTL",
        b"fcTL",
        b"fdAT",
    }
)
#: WebP chunks kept (``VP8X`` is rewritten; ``EXIF``, ``XMP `` and unknown ones are dropped).
_WEBP_KEPT = frozenset({b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"})
_VP8X_ICC, _VP8X_ALPHA, _VP8X_EXIF, _VP8X_XMP, _VP8X_ANIMATION = 0x20, 0x10, 0x08, 0x04, 0x02


def replace_metadata(data: bytes, packet: bytes) -> bytes:
    """``data`` with every piece of metadata dropped and ``packet`` (an XMP packet) written.

    Raises:
        StepError: ``data`` is not a well-formed PNG, JPEG or WebP file (not retryable; the
            image checks run before, so this is a bug or a file that fooled them).
    """
    found = sniff_format(data)
    try:
        if found == "png":
            return _png(data, packet)
        if found == "jpeg":
            return _jpeg(data, packet)
        if found == "webp":
            return _webp(data, packet)
    except (ValueError, struct.error, IndexError) as error:
        raise StepError(
            message=f"cannot write the provenance into a malformed {found} file ({error})",
            hint="the image may be truncated; try again",
            retryable=False,
        ) from error
    raise StepError(
        message=f"cannot write the provenance into a {found or 'unknown'} file",
        hint="image steps write png, jpeg or webp",
        retryable=False,
    )


def read_xmp(data: bytes) -> bytes | None:
    """The XMP packet ``data`` carries (PNG, JPEG or WebP), or None."""
    found = sniff_format(data)
    try:
        if found == "png":
            for kind, body in _png_chunks(data):
                if kind == b"iTXt" and body.startswith(_XMP_KEYWORD + b"\x00"):
                    return _itxt_text(body)
        elif found == "jpeg":
            for marker, body in _jpeg_headers(data)[0]:
                if marker == 0xE1 and body.startswith(_JPEG_XMP_HEADER):
                    return body[len(_JPEG_XMP_HEADER) :]
        elif found == "webp":
            for kind, body in _webp_chunks(data):
                if kind == b"XMP ":
                    return body
    except (ValueError, struct.error, IndexError, zlib.error):
        return None
    return None


# -- PNG -------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("no PNG signature")
    chunks: list[tuple[bytes, bytes]] = []
    at = len(PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        if len(body) != length or len(kind) != 4:
            raise ValueError(f"chunk {kind!r} is truncated")
        chunks.append((kind, body))
        at += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("no IHDR or IEND chunk")
    return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _itxt_text(body: bytes) -> bytes:
    # keyword\0 compression-flag compression-method language\0 translated-keyword\0 text
    rest = body[len(_XMP_KEYWORD) + 1 :]
    compressed = rest[0] == 1
    _language, _translated, text = rest[2:].split(b"\x00", 2)
    return zlib.decompress(text) if compressed else text


def _png(data: bytes, packet: bytes) -> bytes:
    chunks = _png_chunks(data)
    # Uncompressed, as Adobe's XMP specification asks, so any reader finds it.
    xmp = _png_chunk(b"iTXt", _XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + packet)
    out = [PNG_SIGNATURE, _png_chunk(*chunks[0]), xmp]
    out += [_png_chunk(kind, body) for kind, body in chunks[1:] if kind in _PNG_KEPT]
    return b"".join(out)


# -- JPEG ------------------------------------------------------------------------------------


def _jpeg_headers(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The marker segments before the scan data, and where the first ``SOS`` starts."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no JPEG SOI marker")
    segments: list[tuple[int, bytes]] = []
    at = 2
    while True:
        if data[at] != 0xFF:
            raise ValueError(f"no marker at byte {at}")
        while data[at] == 0xFF:  # fill bytes
            at += 1
        marker = data[at]
        if marker == 0xDA:  # SOS: what follows is entropy-coded data, copied as is
            return segments, at - 1
        (length,) = struct.unpack(">H", data[at + 1 : at + 3])
        body = data[at + 3 : at + 1 + length]
        if length < 2 or len(body) != length - 2:
            raise ValueError(f"segment 0x{marker:02X} is truncated")
        segments.append((marker, body))
        at += 1 + length


def _jpeg_kept(marker: int, body: bytes) -> bool:
    if marker == 0xE0:
        return body.startswith(b"JFIF\x00")
    if marker == 0xE2:
        return body.startswith(b"ICC_PROFILE\x00")
    if marker == 0xEE:
        return body.startswith(b"Adobe")  # says how the colour channels are coded
    # COM, every other APPn (EXIF, XMP, IPTC, JUMBF/C2PA): dropped
    return marker != 0xFE and not 0xE0 <= marker <= 0xEF


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    if len(body) + 2 > 0xFFFF:
        raise ValueError("an XMP packet over 64 KiB does not fit one APP1 segment")
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _jpeg(data: bytes, packet: bytes) -> bytes:
    segments, scan = _jpeg_headers(data)
    kept = [(marker, body) for marker, body in segments if _jpeg_kept(marker, body)]
    jfif = [segment for segment in kept if segment[0] == 0xE0]
    rest = [segment for segment in kept if segment[0] != 0xE0]
    out = [b"\xff\xd8"]
    out += [_jpeg_segment(*segment) for segment in jfif]
    out.append(_jpeg_segment(0xE1, _JPEG_XMP_HEADER + packet))
    out += [_jpeg_segment(*segment) for segment in rest]
    out.append(data[scan:])
    return b"".join(out)


# -- WebP ------------------------------------------------------------------------------------


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("no RIFF WEBP header")
    chunks: list[tuple[bytes, bytes]] = []
    at, end = 12, min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while at + 8 <= end:
        kind = data[at : at + 4]
        (length,) = struct.unpack("<I", data[at + 4 : at + 8])
        body = data[at + 8 : at + 8 + length]
        if len(body) != length:
            raise ValueError(f"chunk {kind!r} is truncated")
        chunks.append((kind, body))
        at += 8 + length + (length & 1)
    if not chunks:
        raise ValueError("no chunks")
    return chunks


def _webp_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp_canvas(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha of a simple (``VP8 `` or ``VP8L``) WebP's one image."""
    if kind == b"VP8L":
        if body[0] != 0x2F:
            raise ValueError("no VP8L signature")
        (bits,) = struct.unpack("<I", body[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    if body[3:6] != b"\x9d\x01\x2a":
        raise ValueError("no VP8 start code")
    width, height = struct.unpack("<HH", body[6:10])
    return width & 0x3FFF, height & 0x3FFF, False


def _webp(data: bytes, packet: bytes) -> bytes:
    chunks = _webp_chunks(data)
    first_kind, first = chunks[0]
    if first_kind == b"VP8X":
        flags = first[0] & ~(_VP8X_EXIF | _VP8X_XMP)
        canvas = first[4:10]
    elif first_kind in (b"VP8 ", b"VP8L"):
        width, height, alpha = _webp_canvas(first_kind, first)
        flags = _VP8X_ALPHA if alpha else 0
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    else:
        raise ValueError(f"first chunk {first_kind!r}")
    kept = [(kind, body) for kind, body in chunks if kind in _WEBP_KEPT]
    if not any(kind == b"ICCP" for kind, _ in kept):
        flags &= ~_VP8X_ICC
    header = bytes([flags | _VP8X_XMP, 0, 0, 0]) + canvas
    body = b"".join(
        [
            _webp_chunk(b"VP8X", header),
            *(_webp_chunk(kind, chunk) for kind, chunk in kept),
            _webp_chunk(b"XMP ", packet),
        ]
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
