"""Google's Gemini image models through the official ``google-genai`` SDK.

A Gemini call is ``POST {base_url}/v1/models/{model}:generateContent`` with
``generationConfig{responseModalities: ["IMAGE"], imageConfig{aspectRatio, imageSize}}``;
the image comes back as an ``inlineData`` part of the first candidate. The API has no
``n``: a request for ``count`` images makes ``count`` calls, one after the other (with
``seed + i`` when a seed is set, so the images differ yet can be made again).

An HTTP 200 can still carry no image: the prompt was blocked (``promptFeedback``), the
candidate stopped for safety (``finishReason`` ``SAFETY``, ``IMAGE_SAFETY``, ...) or the
model answered in words only. Each is a :class:`~fetchflow.errors.ProviderError`; a safety
refusal is not retryable. The SDK does not retry by default and is not asked to.
``google.genai`` is imported when a provider is made, not when this module is (the image
steps' ``preflight`` imports it before the run). Providers with the same key and base URL
share one SDK client per process (:mod:`~steps.imaging.providers.clients`); each call
carries its step's timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    ProviderImage,
    ProviderResult,
)
from steps.imaging.providers.errors import RawAnswer, not_reached, retry_after_seconds, timed_out
from steps.imaging.providers.failures import HttpFailure, ProviderTerms, classify
from steps.imaging.providers.google_answers import (
    BASE_URL_CHECK,
    check_body,
    images_of,
    usage_of,
)
from steps.imaging.providers.google_edits import edit_contents
from steps.imaging.providers.redaction import public_endpoint, redact, sanitized, trim_body

if TYPE_CHECKING:
    import httpx2
    from google import genai
    from google.genai import types

__all__ = ["API_KEY_ENV", "GeminiProvider", "google_error", "takes_image_size"]

PROVIDER = "google"
#: Where users put their own Gemini key; named in hints, never read here.
API_KEY_ENV = "GEMINI_API_KEY"
#: How Google is named in failures, and what its statuses mean.
TERMS = ProviderTerms(
    name=PROVIDER,
    company="Google",
    key_name="Gemini",
    out_of_quota="the project has no quota for this model",
    quota_hint="enable billing for the Google AI project (aistudio.google.com, Billing) or use "
    "another key; retrying will not help",
    forbidden="the API key was rejected",
    forbidden_hint="the key's project may not use this model",
    passing_statuses=frozenset({408}),
)
#: The SDK's own default root and API version (google-genai 3.4.0); the tests check the
#: endpoint built from them against the path the SDK really calls.
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
API_VERSION = "v1"


class _SharedClient:
    """One ``genai.Client`` shared by the providers of a key and base URL, and the raw
    answer of each thread's last call through it.

    The raw answer is kept by an httpx hook: the SDK parses an HTML page into an exception
    and an empty body into an empty response, and the error must say what really came
    back. Thread-local: concurrent calls each read their own.
    """

    def __init__(self, api_key: str, base_url: str | None) -> None:
        from google import genai
        from google.genai import types

        self.answers = threading.local()
        self.client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                client_args={"event_hooks": {"response": [self._remember]}},
            ),
        )

    def _remember(self, response: httpx2.Response) -> None:
        self.answers.last = response

    def close(self) -> None:
        """Close the SDK client's connection pool."""
        self.client.close()


class GeminiProvider:
    """Generate images with Gemini's ``generateContent``.

    Args:
        api_key: The Gemini API key (never shown in errors).
        base_url: The API root; ``None`` lets the SDK read ``GOOGLE_GEMINI_BASE_URL``,
            else it uses ``https://generativelanguage.googleapis.com/``.
        timeout: Seconds one call may take.
    """

    name = PROVIDER
    #: ``generateContent`` has no mask: a step refuses ``mask`` for Gemini models.
    supports_mask = False

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        key_source: str | None = None,
    ) -> None:
        from steps.imaging.providers.clients import shared_client

        self._api_key = api_key
        self._key_source = key_source or API_KEY_ENV
        self._timeout = timeout
        root = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
        self._root = root.rstrip("/")
        shared = shared_client(
            PROVIDER, api_key, self._root, lambda: _SharedClient(api_key, base_url)
        )
        self._client: genai.Client = shared.client
        self._answers = shared.answers

    def close(self) -> None:
        """Nothing to do: the SDK client is shared by the process's steps, closed at exit."""

    def endpoint(self, model: str) -> str:
        """The URL a call to ``model`` goes to, as errors show it."""
        return public_endpoint(f"{self._root}/{API_VERSION}/models/{model}:generateContent")

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Make ``request.count`` images, one call each.

        Args:
            request: The calls to make.

        Returns:
            The images in call order, token counts summed over the calls, and the model
            version that answered.

        Raises:
            ProviderError: A call failed (see :func:`google_error`) or answered without
                an image; images of earlier calls are dropped with it.
        """
        return self._run(request, request.prompt)

    def edit(self, request: EditRequest) -> ProviderResult:
        """Like :meth:`generate`, each call also sending the references (no mask).

        Raises:
            ProviderError: As for :meth:`generate`; not retryable when a mask is given.
        """
        return self._run(request, edit_contents(request, self.endpoint(request.model)))

    def _run(
        self, request: ImageRequest, contents: str | list[types.PartUnionDict]
    ) -> ProviderResult:
        """``request.count`` calls of ``generate_content`` with ``contents``."""
        import httpx2
        from google.genai import errors

        endpoint = self.endpoint(request.model)
        images: list[ProviderImage] = []
        usage: dict[str, int] = {}
        model = request.model
        for index in range(request.count):
            seed = None if request.seed is None else request.seed + index
            self._answers.last = None
            try:
                response = self._client.models.generate_content(
                    model=request.model,
                    contents=contents,
                    config=_config(request, seed, self._timeout),
                )
            except ValueError as exc:  # the SDK could not decode a 2xx body as JSON
                if getattr(self._answers, "last", None) is None:
                    raise  # raised before any request was sent: a bug, not an answer
                self._check_answer(endpoint)
                raise ProviderError(
                    message=f"{PROVIDER} {endpoint}: the SDK could not read the answer: "
                    f"{redact(str(exc), [self._api_key])[:200]}",
                    hint="the answer did not match the Gemini API; not retried",
                    provider=PROVIDER,
                    endpoint=endpoint,
                    retryable=False,
                ) from sanitized(exc, [self._api_key])
            except (errors.APIError, httpx2.HTTPError) as exc:
                raise google_error(
                    exc,
                    api_key=self._api_key,
                    endpoint=endpoint,
                    timeout=self._timeout,
                    key_source=self._key_source,
                ) from sanitized(exc, [self._api_key])
            raw = self._check_answer(endpoint)
            images.extend(images_of(response, endpoint, self._api_key, raw))
            for key, value in usage_of(response).items():
                usage[key] = usage.get(key, 0) + value
            model = response.model_version or model
        return ProviderResult(images=images, usage=usage or None, model=model)

    def _check_answer(self, endpoint: str) -> dict[str, object] | None:
        """The last answer's JSON; a 2xx that is not a ``generateContent`` answer is refused.

        Raises:
            ProviderError: As :func:`~.google_answers.check_body` raises.
        """
        answer: httpx2.Response | None = getattr(self._answers, "last", None)
        if answer is None or not answer.is_success:
            return None
        return check_body(
            RawAnswer(
                PROVIDER,
                public_endpoint(answer.url),
                answer.status_code,
                answer.headers.get("content-type", ""),
                answer.read(),
                (self._api_key,),
                BASE_URL_CHECK,
            )
        )


def takes_image_size(model: str) -> bool:
    """Whether ``imageSize`` may be sent to ``model``.

    A model the catalog lists with one resolution makes only that size and takes no
    ``imageSize`` (``gemini-2.5-flash-image``: 1K only, PROVIDERS.md rule 18); a model the
    catalog does not know gets what was asked.
    """
    from steps.imaging.models.catalog import CATALOG

    spec = CATALOG.get(model)
    return spec is None or len(spec.resolutions) > 1


def _config(request: ImageRequest, seed: int | None, timeout: float) -> types.GenerateContentConfig:
    """``responseModalities: [IMAGE]``, the aspect ratio and size asked for, the seed, and
    the step's timeout for this call (the client is shared by steps of other timeouts)."""
    from google.genai import types

    size = request.resolution if takes_image_size(request.model) else None
    return types.GenerateContentConfig(
        response_modalities=["IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio, image_size=size),
        seed=seed,
        http_options=types.HttpOptions(timeout=round(timeout * 1000)),
    )


_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _error_details(details: object) -> list[Mapping[str, object]]:
    """The ``error.details[]`` entries (``RetryInfo``, ``QuotaFailure``, ``ErrorInfo``)."""
    error = details.get("error", details) if isinstance(details, Mapping) else None
    entries = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, Mapping)]


def _detail_type(entry: Mapping[str, object]) -> str:
    return str(entry.get("@type", "")).rsplit(".", 1)[-1]


def _retry_delay(entries: list[Mapping[str, object]]) -> float | None:
    """Seconds from a ``RetryInfo{retryDelay: "37s"}`` entry."""
    for entry in entries:
        if _detail_type(entry) == "RetryInfo":
            match = _RETRY_DELAY.match(str(entry.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _quota_is_zero(entries: list[Mapping[str, object]], message: str) -> bool:
    """Whether the 429 is a quota of 0 (no billing on the project), not a busy minute."""
    if "limit: 0" in message:
        return True
    for entry in entries:
        if _detail_type(entry) != "QuotaFailure":
            continue
        violations = entry.get("violations")
        for violation in violations if isinstance(violations, list) else []:
            if isinstance(violation, Mapping) and str(violation.get("quotaValue")) == "0":
                return True
    return False


def _reasons(entries: list[Mapping[str, object]]) -> set[str]:
    return {str(e.get("reason")) for e in entries if _detail_type(e) == "ErrorInfo"}


def google_error(
    exc: Exception,
    *,
    api_key: str,
    endpoint: str,
    timeout: float,
    key_source: str = API_KEY_ENV,
) -> ProviderError:
    """Translate a ``google-genai`` or transport exception into a :class:`ProviderError`.

    A timeout or a connection failure is retryable; an HTTP error answer is classified by
    :func:`~.failures.classify`, the table every provider shares (a quota of 0, ``limit:
    0``, is the empty quota; ``API_KEY_INVALID`` a rejected key; Google's ``RetryInfo`` the
    wait it asks for, before ``Retry-After``).

    Args:
        exc: A ``google.genai.errors.APIError`` or an ``httpx2.HTTPError``.
        api_key: The key in use, masked wherever it might appear.
        endpoint: The URL to name when the exception carries none.
        timeout: The timeout in force, for the message.

    Returns:
        The error to raise ``from exc``.
    """
    import httpx2
    from google.genai import errors

    secrets = (api_key,)
    if isinstance(exc, httpx2.HTTPError):
        with contextlib.suppress(RuntimeError):  # raised before a request was built
            endpoint = public_endpoint(exc.request.url)
        if isinstance(exc, httpx2.TimeoutException):
            return timed_out(PROVIDER, endpoint, timeout)
        cause = redact(str(exc) or type(exc).__name__, secrets)
        return not_reached(PROVIDER, endpoint, cause, "GOOGLE_GEMINI_BASE_URL")
    if not isinstance(exc, errors.APIError):
        return ProviderError(
            message=f"{PROVIDER} {endpoint}: unexpected error: {redact(str(exc), secrets)[:200]}",
            hint="trying again may help",
            provider=PROVIDER,
            endpoint=endpoint,
        )

    url = getattr(exc.response, "url", None)
    if url is not None:
        endpoint = public_endpoint(url)
    entries = _error_details(exc.details)
    said = redact(str(exc.message or ""), secrets)
    wait = _retry_delay(entries)
    headers = getattr(exc.response, "headers", None)
    if wait is None and isinstance(headers, Mapping):
        wait = retry_after_seconds(headers)
    failure = HttpFailure(
        endpoint=endpoint,
        status=int(exc.code),
        code=str(exc.status or ""),
        said=said,
        body=trim_body(exc.details, secrets),
        retry_after=wait,
        quota_exhausted=_quota_is_zero(entries, said),
        key_invalid="API_KEY_INVALID" in _reasons(entries),
    )
    return classify(failure, TERMS, key_source=key_source)
