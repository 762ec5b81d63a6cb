"""What the hosted image providers share when an answer goes wrong.

::

    ProviderError (fetchflow.errors)   a provider refused or could not be reached
    ├── RateLimited                    HTTP 429 that a later try can pass; ``retry_after``
    └── ModerationBlocked              the safety system refused; ``stage``, ``categories``

Besides the error type, this module holds the pieces both SDK wrappers build a
:class:`~fetchflow.errors.ProviderError` with (never leaking a secret: what they quote goes
through :mod:`.redaction`): :func:`timed_out` and :func:`not_reached` (no answer),
:func:`rate_limited` and :func:`retry_after_seconds` (the server's ``retry-after-ms`` /
``retry-after`` header), :func:`image_from_bytes` (decoded bytes that must be an image), and
:class:`RawAnswer` (a 2xx whose body is not the API's JSON: an HTML page, plain text, an
empty body, JSON of another shape or an event stream). The one table that classifies an
HTTP error answer for every provider is :mod:`.failures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from fetchflow.errors import ProviderError
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.providers.base import ProviderImage
from steps.imaging.providers.redaction import trim_body

__all__ = [
    "ModerationBlocked",
    "RateLimited",
    "RawAnswer",
    "image_from_bytes",
    "not_reached",
    "rate_limited",
    "retry_after_seconds",
    "timed_out",
]


@dataclass
class RateLimited(ProviderError):
    """The provider answered 429 for a rate limit; trying later can succeed.

    Attributes:
        retry_after: Seconds the server asked to wait (``retry-after-ms``, ``retry-after``
            or Google's ``RetryInfo``), or ``None`` when it did not say.
    """

    retry_after: float | None = None


@dataclass
class ModerationBlocked(ProviderError):
    """The provider's safety system refused the request: never retried as it is.

    The step's ``on_moderation`` decides what happens next (fail, skip, retry with a new
    seed or a rephrase hint, another model).

    Attributes:
        stage: ``input`` (the prompt or references were refused, nothing was made),
            ``output`` (an image was made, then withheld: it may have been billed), or
            ``""`` when the provider did not say.
        categories: The categories the provider named (``sexual``, ``violence``), if any.
    """

    retryable: bool = False
    stage: str = ""
    categories: tuple[str, ...] = ()


def timed_out(provider: str, endpoint: str, timeout: float) -> ProviderError:
    """A call that got no answer in time (retryable)."""
    return ProviderError(
        message=f"{provider} {endpoint}: no answer within {timeout:g} s",
        hint="the provider is slow or unreachable: run again later, or give the provider a "
        "longer timeout",
        provider=provider,
        endpoint=endpoint,
    )


def not_reached(provider: str, endpoint: str, cause: str, base_url_variable: str) -> ProviderError:
    """A call that could not connect (retryable); ``cause`` already redacted."""
    return ProviderError(
        message=f"{provider} {endpoint}: could not connect ({cause})",
        hint=f"check the network, and {base_url_variable} if it is set (calling {endpoint})",
        provider=provider,
        endpoint=endpoint,
    )


def rate_limited(
    head: str,
    said: str,
    *,
    provider: str,
    endpoint: str,
    status: int,
    body: str,
    wait: float | None,
) -> RateLimited:
    """A 429 for a rate limit: retryable after ``wait`` seconds when the server said."""
    after = f"wait {wait:g} s" if wait is not None else "wait a little"
    return RateLimited(
        message=f"{head}: rate limited: {said}",
        hint=f"{after} and try again, or run fewer image steps at once",
        provider=provider,
        endpoint=endpoint,
        status=status,
        body=body,
        retry_after=wait,
    )


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """How long the server asked to wait, from ``retry-after-ms`` or ``retry-after``.

    Args:
        headers: The response headers (a case-insensitive mapping, as httpx gives them).
        now: The current time, for ``retry-after`` given as an HTTP date.

    Returns:
        Seconds (never negative), or ``None`` when neither header is usable.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(float(milliseconds) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def image_from_bytes(
    data: bytes, *, index: int, total: int, provider: str, endpoint: str
) -> ProviderImage:
    """Wrap decoded image bytes, refusing bytes that are not an image at all.

    Only the leading bytes are checked here; whether the whole image decodes is the
    step's check. The MIME type is the one the bytes announce, whatever the provider said.

    Args:
        data: The decoded bytes.
        index: 1-based position of the image in the answer, for the message.
        total: How many images the answer held.
        provider: The provider's name, for the error.
        endpoint: The URL called (already made public), for the error.

    Returns:
        The image.

    Raises:
        ProviderError: ``retryable`` (a garbled answer is worth another try) when the
            bytes are empty or not PNG, JPEG, WEBP or GIF.
    """
    mime_type = sniff_mime_type(data)
    if mime_type is None:
        found = "no bytes" if not data else f"{len(data)} bytes starting {data[:8]!r}"
        raise ProviderError(
            message=f"{provider} {endpoint}: image {index} of {total} is not a PNG, JPEG, "
            f"WEBP or GIF image, got {found}",
            hint="the provider sent a garbled answer; trying again usually helps",
            provider=provider,
            endpoint=endpoint,
            status=200,
            retryable=True,
        )
    return ProviderImage(data=data, mime_type=mime_type)


@dataclass(frozen=True)
class RawAnswer:
    """A 2xx answer as it came back, before it is read: what an error about it quotes.

    Attributes:
        provider: The provider's name.
        endpoint: The URL called (already public).
        status: The HTTP status (a 2xx).
        content_type: The ``content-type`` header, ``""`` when there was none.
        content: The body as received.
        secrets: Exact values to mask (the key in use).
        check: What to check first when the answer is not the API's
            (``check that OPENAI_BASE_URL points at ...``).
    """

    provider: str
    endpoint: str
    status: int
    content_type: str
    content: bytes = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    check: str

    def unexpected(self, what: str) -> ProviderError:
        """The answer is not what the API sends (not retryable: it may have been billed).

        The message names the endpoint, the status, the content type and the start of the
        body (redacted); the hint says where to look and why the call is not repeated.

        Args:
            what: What is wrong with the answer (``the answer is not JSON``).
        """
        kind = self.content_type.split(";", 1)[0].strip() or "no content-type"
        trimmed = trim_body(self.content, self.secrets)
        return ProviderError(
            message=f"{self.provider} {self.endpoint}: {self.status} {kind}: {what}: "
            + (trimmed if trimmed else "(empty body)"),
            hint=f"{self.check}; not retried: the provider answered {self.status}, so the call "
            "may have been billed",
            provider=self.provider,
            endpoint=self.endpoint,
            status=self.status,
            body=trimmed,
            retryable=False,
        )
