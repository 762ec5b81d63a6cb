"""What a Gemini edit sends: the prompt, then each reference image as an inline part.

Gemini image models edit through the same ``generateContent`` call as they generate
(PROVIDERS.md §4): the request's ``contents`` become one user turn whose parts are the
prompt's text and one ``inlineData{mimeType, data}`` per reference, in order. There is no
``n`` (one image per call, so ``count`` calls) and **no mask**: the provider says so with
``supports_mask = False`` so the step can refuse a mask before any call, and
:func:`edit_contents` refuses one too (not retryable) in case a caller skipped that check.
``google.genai`` is imported when contents are built, not when this module is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import EditRequest

if TYPE_CHECKING:
    from google.genai import types

__all__ = ["edit_contents"]

PROVIDER = "google"


def edit_contents(request: EditRequest, endpoint: str) -> list[types.PartUnionDict]:
    """The ``contents`` of one Gemini edit call.

    Args:
        request: The edit; its ``images`` are sent in order, after the prompt.
        endpoint: The URL called, for errors.

    Returns:
        ``[prompt, Part(inline_data=Blob(data, mime_type)), ...]``.

    Raises:
        ProviderError: ``request.mask`` is set, or ``request.images`` is empty; neither
            is retryable.
    """
    from google.genai import types

    def refuse(what: str, hint: str) -> ProviderError:
        return ProviderError(
            message=f"{PROVIDER} {endpoint}: {what}",
            hint=hint,
            retryable=False,
            provider=PROVIDER,
            endpoint=endpoint,
        )

    if request.mask is not None:
        raise refuse(
            "Gemini image models take no mask",
            "leave mask out and say in the prompt what to change, or use an OpenAI model",
        )
    if not request.images:
        raise refuse("an edit needs at least one reference image", "give the step an image")
    parts: list[types.PartUnionDict] = [request.prompt]
    parts.extend(
        types.Part.from_bytes(data=image.data, mime_type=image.mime_type)
        for image in request.images
    )
    return parts
