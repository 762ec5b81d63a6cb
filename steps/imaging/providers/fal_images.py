"""fal's hosted open-weight models (FLUX, SDXL) through the official ``fal-client`` SDK.

One call is fal's queue protocol: ``POST https://queue.fal.run/{model}`` with the model's
input (``prompt``, ``image_size``, ``num_images``, ``seed``, ``num_inference_steps``,
``guidance_scale``, ``negative_prompt``, ``enable_safety_checker``, ``output_format``,
``sync_mode``) answers a ``request_id``; ``GET .../requests/{id}/status`` is polled until
``COMPLETED``, then ``GET .../requests/{id}`` gives ``{images: [{url, content_type}], seed,
has_nsfw_concepts}``. An edit runs on the model's image-to-image endpoint (``image_url``,
``strength``), or with a mask on its inpainting endpoint (``mask_url``: white where to
paint); references go as ``data:`` URIs, so nothing is uploaded to fal's storage.

``sync_mode`` asks for the images as ``data:`` URIs in the answer (they are then not kept
on fal's CDN, and nothing is downloaded). An endpoint may still answer with https URLs on
fal's CDN (the upscalers do: they are sent no ``sync_mode``): each is downloaded through
the project's safe fetcher (:func:`~steps.imaging.net.fetching.fetch_reference`: http(s)
only, no private or metadata addresses unless ``FETCHFLOW_ALLOW_PRIVATE_URLS``, at most
``FETCHFLOW_MAX_REFERENCE_BYTES``, the bytes' signature checked, redirects re-checked).
A download that fails fails the call without a retry: the call may have been billed.

**Upscaling** (:meth:`FalProvider.upscale`, the ``image_upscale`` step): one queued call to
an upscaler endpoint (:data:`UPSCALE_FACTOR_FIELDS`) with ``image_url`` (a ``data:`` URI)
and the factor under the endpoint's own name; the answer's ``image`` (or ``images[0]``).

What comes back besides the pixels: the **seed** fal used (recorded on each image, also
when the step set none) and **has_nsfw_concepts**: with the safety checker on, fal blacks
out a flagged image; the call is then a
:class:`~steps.imaging.providers.errors.ModerationBlocked` (stage ``output``, category
``nsfw``; the step's ``on_moderation`` decides), and images that passed keep ``nsfw:
false`` in their provenance.

Retries: the SDK retries on its own (up to 10 tries on 408, 409, 429 and proxy 502-504,
with no switch to turn it off), inside each of our attempts
(:mod:`~steps.imaging.providers.retrying`); one image call can thus send up to
``10 x FETCHFLOW_PROVIDER_ATTEMPTS`` submits. The key is the SDK client's (``Key ...``
header), never in messages; the hosts are the SDK's, read from ``FAL_RUN_HOST`` /
``FAL_QUEUE_RUN_HOST`` when ``fal_client`` is first imported (imported lazily here).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    ProviderImage,
    ProviderResult,
)
from steps.imaging.providers.errors import (
    ModerationBlocked,
    image_from_bytes,
    not_reached,
    timed_out,
)
from steps.imaging.providers.failures import HttpFailure, ProviderTerms, classify
from steps.imaging.providers.redaction import redact, sanitized, trim_body

if TYPE_CHECKING:
    import fal_client

__all__ = [
    "API_KEY_ENV",
    "EDIT_ENDPOINTS",
    "FAL_IMAGE_SIZES",
    "UPSCALE_FACTOR_FIELDS",
    "FalProvider",
    "fal_arguments",
    "image_size_of",
    "upscale_arguments",
]

PROVIDER = "fal"
#: Where users put their own fal key; named in hints, never read here.
API_KEY_ENV = "FAL_KEY"
TERMS = ProviderTerms(
    name=PROVIDER,
    company="fal",
    key_name="fal",
    out_of_quota="the fal account has no balance left",
    quota_hint="add credits at fal.ai (Billing) or use another key; retrying will not help",
    forbidden="the key may not call this model",
    forbidden_hint="the account is locked or out of balance",
    passing_statuses=frozenset({408, 409}),
)

#: fal's named sizes (``image_size: landscape_4_3``): sent by name when the size matches.
FAL_IMAGE_SIZES: Mapping[tuple[int, int], str] = {
    (1024, 1024): "square_hd",
    (512, 512): "square",
    (768, 1024): "portrait_4_3",
    (576, 1024): "portrait_16_9",
    (1024, 768): "landscape_4_3",
    (1024, 576): "landscape_16_9",
}

#: Image-to-image and inpainting endpoints of each catalog model that edits.
EDIT_ENDPOINTS: Mapping[str, tuple[str, str]] = {
    "fal-ai/flux/dev": ("fal-ai/flux/dev/image-to-image", "fal-ai/flux-lora/inpainting"),
    "fal-ai/fast-sdxl": ("fal-ai/fast-sdxl/image-to-image", "fal-ai/fast-sdxl/inpainting"),
}

#: fal's upscaler endpoints and the name each gives its factor (fal's model pages:
#: clarity-upscaler ``upscale_factor`` 1-4; aura-sr ``upscaling_factor``, 4 only).
UPSCALE_FACTOR_FIELDS: Mapping[str, str] = {
    "fal-ai/clarity-upscaler": "upscale_factor",
    "fal-ai/aura-sr": "upscaling_factor",
}

#: How long to wait between two status polls (seconds): fast at first, then patient.
_POLL_FIRST, _POLL_MAX = 0.05, 1.0


def image_size_of(width: int | None, height: int | None) -> str | dict[str, int] | None:
    """``image_size`` for a pixel size: fal's name for it, ``{width, height}``, or None."""
    if width is None or height is None:
        return None
    return FAL_IMAGE_SIZES.get((width, height)) or {"width": width, "height": height}


def _data_uri(image: ProviderImage) -> str:
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def _fal_mask(mask: ProviderImage) -> ProviderImage:
    """Our mask (alpha 0 where to edit) as fal's: white where to paint, black elsewhere."""
    from PIL import Image

    with Image.open(io.BytesIO(mask.data)) as opened:
        alpha = opened.convert("RGBA").getchannel("A")
    painted = alpha.point(lambda value: 255 if value == 0 else 0).convert("L")
    out = io.BytesIO()
    painted.save(out, format="PNG")
    return ProviderImage(data=out.getvalue(), mime_type="image/png")


def fal_arguments(request: ImageRequest) -> tuple[str, dict[str, Any]]:
    """The endpoint and the JSON input of one call (pure: same request, same body).

    Only what the step set is sent besides the prompt, the size and the count, so fal's
    defaults apply to the rest. ``output_format`` is fal's (png or jpeg; a webp step asks
    png and converts).
    """
    tuning = request.tuning
    arguments: dict[str, Any] = {"prompt": request.prompt, "num_images": request.count}
    size = image_size_of(request.width, request.height)
    if size is not None:
        arguments["image_size"] = size
    if request.seed is not None:
        arguments["seed"] = request.seed
    for field, name in (
        ("steps", "num_inference_steps"),
        ("guidance", "guidance_scale"),
        ("negative_prompt", "negative_prompt"),
        ("safety_checker", "enable_safety_checker"),
    ):
        value = getattr(tuning, field)
        if value is not None:
            arguments[name] = value
    arguments["output_format"] = "jpeg" if request.output_format == "jpeg" else "png"
    arguments["sync_mode"] = True
    endpoint = request.model
    if isinstance(request, EditRequest) and request.images:
        image_to_image, inpainting = EDIT_ENDPOINTS.get(request.model, (request.model, ""))
        arguments["image_url"] = _data_uri(request.images[0])
        if tuning.strength is not None:
            arguments["strength"] = tuning.strength
        if request.mask is not None and inpainting:
            arguments["mask_url"] = _data_uri(_fal_mask(request.mask))
            endpoint = inpainting
        else:
            endpoint = image_to_image
    return endpoint, arguments


def upscale_arguments(model: str, image: ProviderImage, factor: int) -> dict[str, Any]:
    """The JSON input of one upscale call (pure): the image as a ``data:`` URI, the factor
    under the endpoint's name; nothing else, so fal's defaults apply.

    Raises:
        KeyError: ``model`` is not one of :data:`UPSCALE_FACTOR_FIELDS`.
    """
    return {"image_url": _data_uri(image), UPSCALE_FACTOR_FIELDS[model]: factor}


@dataclass
class _SharedClient:
    """One ``fal_client.SyncClient`` per key (its ``httpx`` pool is made on first use)."""

    client: fal_client.SyncClient

    def close(self) -> None:
        """Close the SDK client's connection pool, if it made one."""
        pool = self.client.__dict__.get("_client")  # a cached_property, made on first use
        if pool is not None:
            pool.close()


class FalProvider:
    """Generate and edit images with fal's queue API.

    Args:
        api_key: The fal key (never shown in errors).
        base_url: Unused: the SDK takes its hosts from ``FAL_RUN_HOST`` /
            ``FAL_QUEUE_RUN_HOST`` at import.
        timeout: Seconds one call may take, queue wait included.
        key_source: Where the key came from, for hints.
    """

    name = PROVIDER
    #: Inpainting endpoints take a mask (``EDIT_ENDPOINTS``).
    supports_mask = True

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        key_source: str | None = None,
    ) -> None:
        import fal_client
        from fal_client.client import QUEUE_URL_FORMAT

        from steps.imaging.providers.clients import shared_client

        del base_url  # the SDK reads its hosts from the environment at import
        self._api_key = api_key
        self._timeout = timeout
        self._key_source = key_source or API_KEY_ENV
        self._root = QUEUE_URL_FORMAT.rstrip("/")
        shared = shared_client(
            PROVIDER,
            api_key,
            self._root,
            lambda: _SharedClient(fal_client.SyncClient(key=api_key, default_timeout=timeout)),
        )
        self._client = shared.client

    def close(self) -> None:
        """Nothing to do: the SDK client is shared by the process's steps, closed at exit."""

    def endpoint(self, model: str) -> str:
        """The URL a call to ``model`` is submitted to, as errors show it."""
        return f"{self._root}/{model}"

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Make ``request.count`` images in one queued call.

        Raises:
            ProviderError: The call failed (see :meth:`_failure`), timed out, or an image
                was flagged by the safety checker (not retryable).
        """
        return self._run(request)

    def edit(self, request: EditRequest) -> ProviderResult:
        """Image-to-image (``strength``) from the first reference, or inpainting with a mask."""
        return self._run(request)

    def upscale(self, model: str, image: ProviderImage, factor: int) -> ProviderImage:
        """Upscale ``image`` ``factor`` times on the upscaler endpoint ``model``, in one
        queued call (:func:`upscale_arguments`).

        Raises:
            ProviderError: The call failed, timed out, or its answer held no image.
        """
        endpoint = self.endpoint(model)
        answer = self._call(model, upscale_arguments(model, image, factor), endpoint)
        entries = self._entries(answer, endpoint)
        data = self._image_bytes(entries[0] if entries else None, 0, 1, endpoint)
        made = image_from_bytes(data, index=1, total=1, provider=PROVIDER, endpoint=endpoint)
        seed = answer.get("seed")
        returned_seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        return ProviderImage(data=made.data, mime_type=made.mime_type, seed=returned_seed)

    def _run(self, request: ImageRequest) -> ProviderResult:
        model, arguments = fal_arguments(request)
        endpoint = self.endpoint(model)
        answer = self._call(model, arguments, endpoint)
        return self._result(request, answer, endpoint)

    def _call(self, model: str, arguments: dict[str, Any], endpoint: str) -> Any:
        """One queued call, its failures as :class:`ProviderError` (the shared table)."""
        import httpx
        from fal_client.client import FalClientHTTPError

        try:
            return self._queued(model, arguments, endpoint)
        except FalClientHTTPError as exc:
            raise self._failure(exc, endpoint) from sanitized(exc, [self._api_key])
        except httpx.TimeoutException as exc:
            raise timed_out(PROVIDER, endpoint, self._timeout) from sanitized(exc, [self._api_key])
        except httpx.TransportError as exc:
            cause = redact(str(exc) or type(exc).__name__, [self._api_key])
            raise not_reached(PROVIDER, endpoint, cause, "FAL_RUN_HOST") from sanitized(
                exc, [self._api_key]
            )

    def _queued(self, model: str, arguments: dict[str, Any], endpoint: str) -> Any:
        """Submit, poll the status until done (within the timeout), fetch the result."""
        from fal_client import Completed

        handle = self._client.submit(model, arguments)
        deadline = time.monotonic() + self._timeout
        wait = _POLL_FIRST
        while True:
            status = handle.status()
            if isinstance(status, Completed):
                if status.error:
                    raise ProviderError(
                        message=f"{PROVIDER} {endpoint}: the model failed: "
                        f"{redact(status.error, [self._api_key])[:200]}"
                        + (f" ({status.error_type})" if status.error_type else ""),
                        hint="fal could not make the image; trying again may help",
                        provider=PROVIDER,
                        endpoint=endpoint,
                        status=200,
                    )
                break
            if time.monotonic() + wait > deadline:
                with contextlib.suppress(Exception):  # best effort: stop paying for it
                    handle.cancel()
                raise timed_out(PROVIDER, endpoint, self._timeout)
            time.sleep(wait)
            wait = min(wait * 2, _POLL_MAX)
        return handle.get()

    def _failure(self, exc: Any, endpoint: str) -> ProviderError:
        """A ``FalClientHTTPError`` through the shared table (422: fal's ``detail`` list)."""
        detail = exc.message
        said = _detail_text(detail)
        failure = HttpFailure(
            endpoint=endpoint,
            status=int(exc.status_code),
            code=str(exc.error_type or ""),
            said=redact(said, [self._api_key])[:300],
            body=trim_body(detail, [self._api_key]),
            param=_detail_param(detail),
        )
        return classify(failure, TERMS, key_source=self._key_source)

    def _entries(self, answer: Any, endpoint: str) -> list[object]:
        """The answer's image entries: ``images`` (generation), or ``image`` (upscalers)."""
        if isinstance(answer, Mapping):
            if isinstance(answer.get("images"), list):
                return list(answer["images"])
            if isinstance(answer.get("image"), Mapping):
                return [answer["image"]]
        raise ProviderError(
            message=f"{PROVIDER} {endpoint}: the answer has no images list: "
            f"{trim_body(answer, [self._api_key])}",
            hint="the answer did not match fal's image output; not retried",
            provider=PROVIDER,
            endpoint=endpoint,
            status=200,
            retryable=False,
        )

    def _result(self, request: ImageRequest, answer: Any, endpoint: str) -> ProviderResult:
        entries = self._entries(answer, endpoint)
        flags = answer.get("has_nsfw_concepts")
        flagged = [
            index + 1
            for index, flag in enumerate(flags if isinstance(flags, list) else [])
            if flag is True
        ]
        if flagged:
            # an image made, then withheld: it may have been billed (stage output)
            raise ModerationBlocked(
                message=f"{PROVIDER} {endpoint}: the safety checker flagged image(s) "
                f"{', '.join(map(str, flagged))} of {len(entries)} (has_nsfw_concepts); "
                "fal returns them blacked out",
                hint="rephrase the prompt; the same prompt is flagged again, so it is not retried",
                provider=PROVIDER,
                endpoint=endpoint,
                status=200,
                retryable=False,
                stage="output",
                categories=("nsfw",),
            )
        seed = answer.get("seed")
        returned_seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        images = []
        for index, entry in enumerate(entries):
            data = self._image_bytes(entry, index, len(entries), endpoint)
            image = image_from_bytes(
                data, index=index + 1, total=len(entries), provider=PROVIDER, endpoint=endpoint
            )
            images.append(
                ProviderImage(
                    data=image.data,
                    mime_type=image.mime_type,
                    # fal seeds image i of a call with seed + i
                    seed=None if returned_seed is None else returned_seed + index,
                    nsfw=False if isinstance(flags, list) else None,
                )
            )
        return ProviderResult(images=images, usage=None, model=request.model)

    def _image_bytes(self, entry: object, index: int, total: int, endpoint: str) -> bytes:
        url = entry.get("url") if isinstance(entry, Mapping) else None
        if not isinstance(url, str):
            return b""  # image_from_bytes says what is wrong
        if url.startswith("data:"):
            _, _, payload = url.partition(",")
            try:
                return base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return b""
        return self._download(url, f"image {index + 1} of {total}", endpoint)

    def _download(self, url: str, what: str, endpoint: str) -> bytes:
        """The image at ``url`` (on fal's CDN), through the safe fetcher; a failure is not
        retried (the call that made it may have been billed)."""
        from fetchflow.errors import StepError
        from steps.imaging.net.fetching import fetch_reference
        from steps.imaging.settings import image_settings

        try:
            fetched = fetch_reference(
                url, settings=image_settings(), timeout=self._timeout, what=f"{PROVIDER} {what}"
            )
        except StepError as error:
            raise ProviderError(
                message=f"{PROVIDER} {endpoint}: {redact(error.message, [self._api_key])}",
                hint=f"{error.hint}; not retried (the call may have been billed)",
                provider=PROVIDER,
                endpoint=endpoint,
                status=200,
                retryable=False,
            ) from error
        return fetched.data


def _detail_text(detail: object) -> str:
    """fal's ``detail``: a string, or a list of ``{loc, msg, type}`` (422)."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg")))
        return "; ".join(parts) or str(detail)
    return str(detail)


def _detail_param(detail: object) -> str | None:
    if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
        loc = [str(p) for p in detail[0].get("loc", ()) if p != "body"]
        return ".".join(loc) or None
    return None
