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

A request with ``partial_images`` is streamed (``stream=True``): each partial image goes to
the request's ``on_partial`` as it arrives, the final image and its usage come back as from
a plain call. A stream that stops before its final image (the connection dropped, no event
within the timeout, an ``error`` event) is a retryable
:class:`~steps.imaging.providers.base.StreamBroken` saying how many partial images had come
and what that may have cost; a refusal sent inside the stream is classified like the same
refusal sent as a 400 answer (:func:`openai_error`), never retried.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, cast

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    ProviderResult,
)
from steps.imaging.providers.errors import RawAnswer, not_reached, retry_after_seconds, timed_out
from steps.imaging.providers.failures import HttpFailure, ProviderTerms, classify
from steps.imaging.providers.openai_answers import BASE_URL_CHECK, StreamReader, read_answer
from steps.imaging.providers.openai_requests import edit_params, generation_params
from steps.imaging.providers.redaction import public_endpoint, redact, sanitized, trim_body

if TYPE_CHECKING:
    import openai
    from openai import BaseModel as SDKModel
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
        if request.partial_images > 0:
            return self._stream(generate, generation_params(request), request, self.endpoint)
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
        if request.partial_images > 0:
            return self._stream(edit, edit_params(request), request, endpoint)
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

    def _stream(
        self,
        method: Callable[..., LegacyAPIResponse[ImagesResponse]],
        params: dict[str, object],
        request: ImageRequest,
        endpoint: str,
    ) -> ProviderResult:
        """One streamed call: partial images to ``request.on_partial``, the final images back.

        An answer that is not an event stream (a gateway that ignored ``stream``) is read as
        a plain answer.
        """
        import httpx2
        import openai

        secrets = [self._api_key]
        try:
            raw = method(**params)
        except openai.OpenAIError as exc:
            raise self._error(exc, endpoint) from sanitized(exc, secrets)
        answered = public_endpoint(raw.http_request.url)
        if not raw.headers.get("content-type", "").startswith("text/event-stream"):
            try:
                content = raw.http_response.read()
            except httpx2.HTTPError as exc:  # the answer was cut off
                raise self._error(
                    openai.APIConnectionError(request=raw.http_request), endpoint
                ) from sanitized(exc, secrets)
            return read_answer(
                RawAnswer(
                    PROVIDER,
                    answered,
                    raw.status_code,
                    raw.headers.get("content-type", ""),
                    content,
                    (self._api_key,),
                    BASE_URL_CHECK,
                ),
                model=request.model,
            )
        reader = StreamReader(
            endpoint=answered,
            model=request.model,
            asked=request.count,
            on_partial=request.on_partial,
        )
        # With stream=True the SDK parses the answer into a Stream of events, not the
        # ImagesResponse the method is typed with.
        stream = cast("openai.Stream[SDKModel]", raw.parse())
        try:
            for event in stream:
                reader.take(event.to_dict())
                if len(reader.images) >= request.count:
                    break  # every image asked for is here (and paid for)
        except openai.OpenAIError as exc:
            if reader.images:
                return reader.result()  # what came before the break was made and paid for
            raise self._broken(exc, reader, request.label) from sanitized(exc, secrets)
        finally:
            stream.close()
        return reader.result(label=request.label)

    def _error(self, exc: openai.OpenAIError, endpoint: str) -> ProviderError:
        return openai_error(
            exc,
            api_key=self._api_key,
            endpoint=endpoint,
            timeout=self._timeout,
            key_source=self._key_source,
        )

    def _broken(self, exc: openai.OpenAIError, reader: StreamReader, label: str) -> ProviderError:
        """The error of a stream that stopped before its final image (see the module)."""
        import httpx2
        import openai

        secrets = (self._api_key,)
        if isinstance(exc, openai.APITimeoutError):
            return reader.broken(f"no event within {self._timeout:g} s", label=label)
        if isinstance(exc, openai.APIConnectionError):
            return reader.broken(redact(str(exc.__cause__ or exc), secrets), label=label)
        if not isinstance(exc, openai.APIError):
            return reader.broken(redact(str(exc), secrets)[:200], label=label)
        body = exc.body if isinstance(exc.body, Mapping) else {}
        if body.get("code") in _MODERATION_CODES or body.get("type") in _MODERATION_CODES:
            # A refusal inside the stream: the same error as the 400 a plain call gets.
            refused = openai.BadRequestError(
                str(body.get("message") or exc.message),
                response=httpx2.Response(400, request=exc.request),
                body=body,
            )
            error = self._error(refused, reader.endpoint)
            return dataclasses.replace(error, message=f"{error.message}; {reader.billed()}")
        said = redact(str(body.get("message") or exc.message), secrets)[:200]
        return reader.broken(f"the stream sent an error: {said}", label=label)


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
