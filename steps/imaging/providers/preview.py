"""The offline preview provider: answers every call with a drawing marked PREVIEW.

The drawings are :mod:`steps.imaging.pixels.preview`'s; this module is the provider around
them (``model: preview``, and ``auto`` when no key is configured). It never touches the
network, so it needs no call slot and no retries.
"""

from __future__ import annotations

from steps.imaging.models.catalog import PREVIEW
from steps.imaging.pixels.preview import DEFAULT_SIZE, draw_edit_preview, draw_preview, png_bytes
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    ProviderImage,
    ProviderResult,
)

__all__ = ["PreviewProvider"]


class PreviewProvider:
    """Draws images offline instead of calling an API (``model: preview``).

    Always answers PNG at the size asked (:data:`DEFAULT_SIZE` for "auto"); image ``i`` of
    a request is drawn with the request's seed (0 when none) and index ``i``.
    """

    name = "preview"
    #: :meth:`edit` draws a mask's transparent area as a striped pattern.
    supports_mask = True

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Draw ``request.count`` images."""
        if request.width is not None and request.height is not None:
            width, height = request.width, request.height
        else:
            width, height = DEFAULT_SIZE
        transparent = request.background == "transparent"
        images = [
            ProviderImage(
                data=png_bytes(
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

    def edit(self, request: EditRequest) -> ProviderResult:
        """Draw ``request.count`` edit previews from the references (:func:`draw_edit_preview`).

        The size is the request's, else the first reference's; ``background: transparent``
        keeps the first reference's transparency. Same inputs, same PNG bytes.

        Raises:
            ValueError: ``request.images`` is empty.
        """
        if not request.images:
            raise ValueError("an edit needs at least one reference image")
        size = None
        if request.width is not None and request.height is not None:
            size = (request.width, request.height)
        references = [image.data for image in request.images]
        images = [
            ProviderImage(
                data=png_bytes(
                    draw_edit_preview(
                        request.prompt,
                        references,
                        size=size,
                        mask=request.mask.data if request.mask is not None else None,
                        seed=request.seed or 0,
                        index=index,
                        transparent=request.background == "transparent",
                    )
                ),
                mime_type="image/png",
            )
            for index in range(request.count)
        ]
        return ProviderResult(images=images, usage=None, model=PREVIEW)

    def close(self) -> None:
        """Nothing to release: the preview draws locally."""
