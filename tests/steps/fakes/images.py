"""Small real images for the edit tests, and reading back what the fakes received."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image


def png(width: int, height: int, colour: tuple[int, int, int, int]) -> bytes:
    """A solid RGBA PNG."""
    out = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """A solid JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG")
    return out.getvalue()


def hole_mask(width: int, height: int) -> bytes:
    """A mask PNG: opaque everywhere but a fully transparent top-left quarter (the edit)."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    """The image in ``data``, loaded."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def inline(part: dict[str, Any]) -> tuple[str, bytes]:
    """``(mime type, bytes)`` of an ``inlineData`` part as google-genai 3.4 sends it.

    The SDK writes the blob's ``mime_type`` in snake case and its ``data`` as URL-safe
    base64 (the API's JSON mapping accepts both spellings and both alphabets).
    """
    blob = part["inlineData"]
    mime_type = blob.get("mimeType", blob.get("mime_type"))
    return str(mime_type), base64.urlsafe_b64decode(blob["data"])
