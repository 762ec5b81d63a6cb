"""Image providers: the contract (:mod:`.base`) and a factory choosing one by name."""

from __future__ import annotations

from steps.imaging.providers.base import ImageProvider, ImageRequest, ProviderImage, ProviderResult

__all__ = ["ImageProvider", "ImageRequest", "ProviderImage", "ProviderResult"]
