"""The parameters of OpenAI's ``images.generate`` and ``images.edit`` (multipart).

:class:`~steps.imaging.providers.openai_images.OpenAIProvider` makes the calls; this module
only turns an :class:`~steps.imaging.providers.base.ImageRequest` or
:class:`~steps.imaging.providers.base.EditRequest` into the SDK's keyword arguments. An edit
sends:

- ``image``: every reference as an ``(filename, bytes, mime type)`` tuple, in order (the
  SDK sends them as repeated ``image[]`` parts); ``mask`` likewise when there is one;
- what a generation sends (:func:`generation_params`: ``model``,
  ``prompt``, ``n``, ``size``, ``quality``, ``background``, ``output_format``, and
  ``output_compression`` only with jpeg or webp);
- never ``moderation`` (edits take none), ``response_format`` or ``style``;
- ``stream=True`` and ``partial_images`` when the request asks for partial images (the
  answer is then an event stream: :mod:`~steps.imaging.providers.openai_answers`);
- ``input_fidelity`` only where the catalog says the model takes that value
  (PROVIDERS.md §1 and rule 15: ``high``/``low`` on ``gpt-image-1.5`` and
  ``chatgpt-image-latest``, ``low`` only on ``gpt-image-1-mini``, nothing on
  ``gpt-image-2`` and later). The step's rules refuse a value the model cannot take before
  any call; here a value the model would refuse is simply not sent.
"""

from __future__ import annotations

from steps.imaging.models.catalog import CATALOG
from steps.imaging.providers.base import EditRequest, ImageRequest, ProviderImage

__all__ = ["edit_params", "generation_params", "input_fidelity_for"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

#: What the SDK takes as one file: ``(filename, content, content type)``.
FileTuple = tuple[str, bytes, str]

_COMPRESSIBLE = frozenset({"jpeg", "webp"})


def generation_params(request: ImageRequest) -> dict[str, object]:
    """The keyword arguments of ``images.generate`` for one request.

    Args:
        request: The call to make.

    Returns:
        ``model``, ``prompt``, ``n``, ``size`` (``"WxH"`` or ``"auto"``), ``quality``,
        ``background``, ``moderation``, ``output_format``, and ``output_compression`` only
        when the format is jpeg or webp and a value is set; ``stream`` and
        ``partial_images`` when partial images are asked for. Nothing else: GPT image
        models refuse ``response_format`` and ``style``, and take no seed.
    """
    if request.width is None or request.height is None:
        size = "auto"
    else:
        size = f"{request.width}x{request.height}"
    params: dict[str, object] = {
        "model": request.model,
        "prompt": request.prompt,
        "n": request.count,
        "size": size,
        "quality": request.quality,
        "background": request.background,
        "moderation": request.moderation,
        "output_format": request.output_format,
    }
    if request.output_format in _COMPRESSIBLE and request.output_compression is not None:
        params["output_compression"] = request.output_compression
    if request.partial_images > 0:
        params["stream"] = True
        params["partial_images"] = request.partial_images
    return params


def input_fidelity_for(model: str, value: str | None) -> str | None:
    """``value`` when the catalog says ``model`` takes it as ``input_fidelity``, else None."""
    spec = CATALOG.get(model)
    if value is None or spec is None or value not in spec.input_fidelity:
        return None
    return value


def _file(image: ProviderImage, stem: str) -> FileTuple:
    extension = _EXTENSIONS.get(image.mime_type, "png")
    return (f"{stem}.{extension}", image.data, image.mime_type)


def edit_params(request: EditRequest) -> dict[str, object]:
    """The keyword arguments of ``images.edit`` for one request.

    Args:
        request: The edit to make; ``request.images`` must hold at least one image.

    Returns:
        ``model``, ``image`` (a list of file tuples), ``mask`` when set, ``prompt``, ``n``,
        ``size`` (``"WxH"`` or ``"auto"``), ``quality``, ``background``, ``output_format``,
        ``output_compression`` (jpeg/webp only) and ``input_fidelity`` (models that take
        it only).

    Raises:
        ValueError: ``request.images`` is empty (the step never sends such a request).
    """
    if not request.images:
        raise ValueError("an edit needs at least one reference image")
    params = generation_params(request)
    del params["moderation"]  # edits take none
    params["image"] = [
        _file(image, f"image-{number}") for number, image in enumerate(request.images, 1)
    ]
    if request.mask is not None:
        params["mask"] = _file(request.mask, "mask")
    fidelity = input_fidelity_for(request.model, request.input_fidelity)
    if fidelity is not None:
        params["input_fidelity"] = fidelity
    return params
