"""Image providers: the only code that talks to an image API, and what they share.

The contract (:mod:`.base`), one module per provider with its request building and answer
reading (``openai_*``, ``google_*``, :mod:`.preview` offline), the error types
(:mod:`.errors`), the one table that classifies a failed call for every provider
(:mod:`.failures`), keeping secrets out of errors (:mod:`.redaction`), and the retry loop
with its per-provider call limit (:mod:`.retrying`). :func:`make_provider` chooses one by
name.

Provider modules import their SDK lazily, and :func:`make_provider` imports the provider
module only when it is asked for one: importing this package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import cast

from steps.imaging.providers.base import ImageProvider, ImageRequest, ProviderImage, ProviderResult

__all__ = [
    "PROVIDER_CLASSES",
    "ImageProvider",
    "ImageRequest",
    "ProviderImage",
    "ProviderResult",
    "make_provider",
]

#: ``provider name -> "module:Class"``; the catalog's ``provider`` values.
PROVIDER_CLASSES = {
    "openai": "steps.imaging.providers.openai_images:OpenAIProvider",
    "google": "steps.imaging.providers.google_images:GeminiProvider",
    "fal": "steps.imaging.providers.fal_images:FalProvider",
    "preview": "steps.imaging.providers.preview:PreviewProvider",
    "local": "steps.imaging.providers.local_diffusers:LocalDiffusersProvider",
}


def make_provider(
    name: str,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 120.0,
    key_source: str | None = None,
) -> ImageProvider:
    """A provider by the catalog's name (``openai``, ``google`` or ``preview``).

    Args:
        name: The provider's name.
        api_key: Its key (unused by ``preview``).
        base_url: Another endpoint than the provider's default, or None.
        timeout: Seconds one call may take.
        key_source: Where the key came from, for error hints (``OPENAI_API_KEY``, ...).

    Raises:
        KeyError: ``name`` is not a provider.
        ValueError: A provider that needs a key got none.
    """
    module_name, _, class_name = PROVIDER_CLASSES[name].partition(":")
    provider_class = getattr(importlib.import_module(module_name), class_name)
    if name == "preview":
        return cast(ImageProvider, provider_class())
    if name == "local":  # no key: its model folder and device are the image settings'
        return cast(ImageProvider, provider_class.from_settings())
    if not api_key:
        raise ValueError(f"the {name} provider needs an API key")
    return cast(
        ImageProvider,
        provider_class(api_key=api_key, base_url=base_url, timeout=timeout, key_source=key_source),
    )
