"""Image formats told by their leading bytes (their signature), without decoding anything."""

from __future__ import annotations

__all__ = [
    "MIME_TYPES",
    "OUTPUT_FORMATS",
    "PIL_NAMES",
    "PNG_SIGNATURE",
    "sniff_format",
    "sniff_mime_type",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Every format told apart here, and its MIME type.
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
#: The formats image steps write.
OUTPUT_FORMATS = ("png", "jpeg", "webp")
#: Pillow's format names, as ours.
PIL_NAMES = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (PNG_SIGNATURE, "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


def sniff_format(data: bytes) -> str | None:
    """``png``, ``jpeg``, ``webp`` or ``gif`` from a file's first bytes, else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def sniff_mime_type(data: bytes) -> str | None:
    """The MIME type the leading bytes announce (PNG, JPEG, WEBP, GIF), else None."""
    found = sniff_format(data)
    return MIME_TYPES[found] if found else None
