"""OpenAI's GPT image models through the official ``openai`` SDK.

One :class:`OpenAIProvider` call is one ``POST {base_url}/images/generations`` (JSON in,
``data[].b64_json`` out). The SDK's own retries are off (``max_retries=0``): fetchflow
counts attempts itself and the engine retries a step, so a 429 or 500 costs exactly one
request here and comes back as a :class:`~fetchflow.errors.ProviderError` saying whether
another try can help (:func:`openai_error`).

Only parameters GPT image models accept are sent: never ``response_format`` or ``style``
(DALL·E only), and ``output_compression`` only with jpeg or webp. ``openai`` is imported
when a provider is made, not when this module is (the image steps' ``preflight`` imports it
before the run). Providers with the same key and base URL share one SDK client per process
(:mod:`~steps.imaging.providers.clients`), each with its step's timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    ProviderResult,
)
from steps.imaging.providers.errors import RawAnswer, not_reached, retry_after_seconds, timed_out
from steps.imaging.providers.failures import HttpFailure, ProviderTerms, classify
from steps.imaging.providers.openai_answers import BASE_URL_CHECK, read_answer
from steps.imaging.providers.openai_requests import edit_params, generation_params
from steps.imaging.providers.redaction import public_endpoint, redact, sanitized, trim_body

if TYPE_CHECKING:
    import openai
    from openai._legacy_response import LegacyAPIResponse
    from openai.types import ImagesResponse

__all__ = ["API_KEY_ENV", "OpenAIProvider", "generation_params", "openai_error"]

PROVIDER = "openai"
#: Where users put their own OpenAI key; named in hints, never read here.
API_KEY_ENV = "OPENAI_API_KEY"
#: How OpenAI is named in failures, and what its statuses mean.
TERMS = ProviderTerms(
    name=PROVIDER,
    company="OpenAI",
    key_name="OpenAI",
    out_of_quota="the account is out of quota",
    quota_hint="add credit or raise the limit in the OpenAI billing settings "
    "(platform.openai.com/settings/organization/billing), or use another key; "
    "retrying will not help",
    forbidden="the key may not do this",
    forbidden_hint="no access to this model, project or region",
    passing_statuses=frozenset({408, 409}),
)
#: The SDK's own default root (openai 3.52), when neither ``base_url`` nor
#: ``OPENAI_BASE_URL`` gives one.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Error codes of a refused prompt: GPT image models, then the DALL·E-era code.
_MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})


class OpenAIProvider:
    """Generate images with OpenAI's Images API.

    Args:
        api_key: The OpenAI API key (never shown in errors).
        base_url: The API root (``.../v1``); ``None`` lets the SDK read ``OPENAI_BASE_URL``,
            else it uses ``https://api.openai.com/v1``.
        timeout: Seconds one call may take, connecting included.
    """

    name = PROVIDER
    #: ``images.edit`` takes a mask (alpha 0 = edit here; PNG, same size as the first image).
    supports_mask = True

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        key_source: str | None = None,
    ) -> None:
        import openai

        from steps.imaging.providers.clients import shared_client

        self._api_key = api_key
        self._key_source = key_source or API_KEY_ENV
        self._timeout = timeout
        root = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        shared = shared_client(
            PROVIDER,
            api_key,
            root,
            lambda: openai.OpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
            ),
        )
        # The step's own timeout on a copy that shares the client's connection pool.
        self._client: openai.OpenAI = shared.with_options(timeout=timeout)

    def close(self) -> None:
        """Nothing to do: the SDK client is shared by the process's steps, closed at exit."""

    @property
    def endpoint(self) -> str:
        """The generations URL this provider calls, as errors show it."""
        return public_endpoint(f"{self._client.base_url}images/generations")

    def generate(self, request: ImageRequest) -> ProviderResult:
        """Make ``request.count`` images in one call.

        Args:
            request: The call to make.

        Returns:
            The decoded images, in the order returned, with the call's token usage.

        Raises:
            ProviderError: The API refused or failed (see :func:`openai_error`), or it
                answered without usable images (retryable).
        """
        # The SDK types each argument as a Literal; the values were checked by the step's
        # rules before any call, so the dict goes through as is.
        generate: Callable[..., LegacyAPIResponse[ImagesResponse]] = (
            self._client.images.with_raw_response.generate
        )
        return self._call(generate, generation_params(request), request.model, self.endpoint)

    def edit(self, request: EditRequest) -> ProviderResult:
        """Make ``request.count`` images from the references in one ``images/edits`` call.

        The parameters are :func:`~steps.imaging.providers.openai_requests.edit_params`'s;
        errors are mapped as for :meth:`generate`.

        Args:
            request: The edit to make (at least one reference image).

        Returns:
            The decoded images, in the order returned, with the call's token usage.

        Raises:
            ProviderError: As for :meth:`generate`.
        """
        edit: Callable[..., LegacyAPIResponse[ImagesResponse]] = (
            self._client.images.with_raw_response.edit
        )
        endpoint = public_endpoint(f"{self._client.base_url}images/edits")
        return self._call(edit, edit_params(request), request.model, endpoint)

    def _call(
        self,
        method: Callable[..., LegacyAPIResponse[ImagesResponse]],
        params: dict[str, object],
        model: str,
        endpoint: str,
    ) -> ProviderResult:
        """One SDK call, its errors mapped (:func:`openai_error`) and its answer read.

        The raw answer is read here (:func:`~.openai_answers.read_answer`), not the SDK's
        parse of it: for a body that is not JSON the SDK hands back a bare string.
        """
        import openai

        try:
            raw = method(**params)
            content = raw.content
        except openai.OpenAIError as exc:
            raise openai_error(
                exc,
                api_key=self._api_key,
                endpoint=endpoint,
                timeout=self._timeout,
                key_source=self._key_source,
            ) from sanitized(exc, [self._api_key])
        answer = RawAnswer(
            PROVIDER,
            public_endpoint(raw.http_request.url),
            raw.status_code,
            raw.headers.get("content-type", ""),
            content,
            (self._api_key,),
            BASE_URL_CHECK,
        )
        return read_answer(answer, model=model)


def openai_error(
    exc: openai.OpenAIError,
    *,
    api_key: str,
    endpoint: str,
    timeout: float,
    key_source: str = API_KEY_ENV,
) -> ProviderError:
    """Translate an ``openai`` SDK exception into a :class:`ProviderError`.

    A timeout or a connection failure is retryable; an HTTP error answer is classified by
    :func:`~.failures.classify`, the table every provider shares (``insufficient_quota``
    is the empty quota; ``moderation_blocked`` and ``content_policy_violation`` the
    moderation refusals).

    Args:
        exc: What the SDK raised.
        api_key: The key in use, masked wherever it might appear.
        endpoint: The URL to name when the exception carries none.
        timeout: The timeout in force, for the message.

    Returns:
        The error to raise ``from exc``.
    """
    import openai

    secrets = (api_key,)
    request = getattr(exc, "request", None)
    if request is not None:
        endpoint = public_endpoint(request.url)
    if isinstance(exc, openai.APITimeoutError):
        return timed_out(PROVIDER, endpoint, timeout)
    if isinstance(exc, openai.APIConnectionError):
        cause = redact(str(exc.__cause__ or exc), secrets)
        return not_reached(PROVIDER, endpoint, cause, "OPENAI_BASE_URL")
    if not isinstance(exc, openai.APIStatusError):
        what = redact(str(exc), secrets)[:200]
        return ProviderError(
            message=f"{PROVIDER} {endpoint}: unexpected answer: {what}",
            hint="the answer did not match the Images API; trying again may help",
            provider=PROVIDER,
            endpoint=endpoint,
            body=trim_body(getattr(exc, "body", None), secrets),
        )

    body = exc.body if isinstance(exc.body, Mapping) else {}
    code = str(exc.code or exc.type or "")
    param = body.get("param")
    stage, categories = _moderation_facts(body)
    failure = HttpFailure(
        endpoint=endpoint,
        status=exc.status_code,
        code=code,
        said=redact(str(body.get("message") or exc.message), secrets),
        body=trim_body(exc.body, secrets),
        retry_after=retry_after_seconds(exc.response.headers),
        quota_exhausted=code == "insufficient_quota",
        moderation=_moderation_details(body) if code in _MODERATION_CODES else None,
        param=str(param) if param else None,
        moderation_stage=stage,
        moderation_categories=categories,
    )
    return classify(failure, TERMS, key_source=key_source)


def _moderation_facts(body: Mapping[str, object]) -> tuple[str, tuple[str, ...]]:
    """The stage and categories of an error body's ``moderation_details`` ("", () if none)."""
    details = body.get("moderation_details")
    if not isinstance(details, Mapping):
        return "", ()
    categories = details.get("categories")
    named = tuple(str(c) for c in categories) if isinstance(categories, list) else ()
    return str(details.get("moderation_stage") or ""), named


def _moderation_details(body: Mapping[str, object]) -> str:
    """`` (stage: input; categories: sexual, violence)`` from ``moderation_details``."""
    details = body.get("moderation_details")
    if not isinstance(details, Mapping):
        return ""
    parts = []
    stage = details.get("moderation_stage")
    if stage:
        parts.append(f"stage: {stage}")
    categories = details.get("categories")
    if isinstance(categories, list) and categories:
        parts.append("categories: " + ", ".join(str(c) for c in categories))
    return f" ({'; '.join(parts)})" if parts else ""
