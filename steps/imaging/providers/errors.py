"""What the hosted image providers share when an answer goes wrong.

::

    ProviderError (fetchflow.errors)   a provider refused or could not be reached
    └── RateLimited                    HTTP 429 that a later try can pass; ``retry_after``

Besides the error type, this module holds the small pieces both SDK wrappers use to build
a :class:`~fetchflow.errors.ProviderError` that never leaks a secret: :func:`public_endpoint`
(a URL without credentials or query), :func:`redact` and :func:`trim_body` (the start of a
response body with key-looking strings masked), :func:`retry_after_seconds` (the server's
``retry-after-ms`` / ``retry-after`` header) and :func:`image_from_bytes` (turn decoded bytes
into a :class:`~steps.imaging.providers.base.ProviderImage`, refusing bytes that are no
image at all), and :func:`unexpected_answer` (a 2xx whose body is not the API's JSON: an
HTML page, plain text, an empty body, JSON of another shape or an event stream).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from fetchflow.errors import ProviderError
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.providers.base import ProviderImage

__all__ = [
    "BODY_LIMIT",
    "RateLimited",
    "image_from_bytes",
    "not_reached",
    "public_endpoint",
    "rate_limited",
    "redact",
    "retry_after_seconds",
    "sniff_mime_type",
    "timed_out",
    "trim_body",
    "unexpected_answer",
]

#: How many characters of a response body an error keeps.
BODY_LIMIT = 300

#: Strings that look like credentials whoever they belong to: OpenAI keys (``sk-...``,
#: ``sk-proj-...``), Google API keys (``AIza...``) and bearer tokens.
_KEY_LIKE = re.compile(
    r"sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{12,}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{6,}"
)
_REDACTED = "[redacted]"


@dataclass
class RateLimited(ProviderError):
    """The provider answered 429 for a rate limit; trying later can succeed.

    Attributes:
        retry_after: Seconds the server asked to wait (``retry-after-ms``, ``retry-after``
            or Google's ``RetryInfo``), or ``None`` when it did not say.
    """

    retry_after: float | None = None


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


def public_endpoint(url: object) -> str:
    """The URL of a call as errors may show it: no credentials, query or fragment.

    Args:
        url: A URL (``str`` or an ``httpx`` URL object).

    Returns:
        ``scheme://host[:port]/path``.
    """
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask the given secret values and anything that looks like an API key.

    Args:
        text: Any text that came from a provider (a message, a body).
        secrets: Exact values to mask (the API key in use); empty values are ignored.

    Returns:
        The text with each secret and key-looking string replaced by ``[redacted]``.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return _KEY_LIKE.sub(_REDACTED, text)


class UpstreamError(Exception):
    """An SDK exception as tracebacks may show it: its type and redacted message.

    Provider errors chain this instead of the SDK's own exception, whose message can echo the
    API key back (``Incorrect API key provided: sk-...``) into every logged traceback.
    """


def sanitized(exc: BaseException, secrets: Iterable[str] = ()) -> UpstreamError:
    """A stand-in for ``exc`` that is safe to chain (``raise ... from sanitized(exc, [key])``)."""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return UpstreamError(f"{kind}: {redact(str(exc), secrets)}")


def trim_body(body: object, secrets: Iterable[str] = (), limit: int = BODY_LIMIT) -> str:
    """The start of a response body, redacted, as one line of at most ``limit`` characters.

    Args:
        body: A decoded JSON body (dict or list), text, bytes or ``None``.
        secrets: Exact values to mask, as for :func:`redact`.
        limit: The most characters kept; longer bodies end with ``...``.

    Returns:
        The redacted, trimmed body; ``""`` for ``None``.
    """
    if body is None:
        return ""
    if isinstance(body, bytes):
        text = body.decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
        except ValueError:  # a circular structure; fall back to its repr
            text = repr(body)
    text = redact(" ".join(text.split()), secrets)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def unexpected_answer(
    what: str,
    *,
    provider: str,
    endpoint: str,
    status: int,
    content_type: str,
    body: object,
    secrets: Iterable[str],
    check: str,
) -> ProviderError:
    """A 2xx answer that is not what the API sends (not retryable: it may have been billed).

    The message names the endpoint, the status, the content type and the start of the body
    (redacted); the hint says where to look (``check``) and why the call is not repeated.

    Args:
        what: What is wrong with the answer (``the answer is not JSON``).
        provider: The provider's name.
        endpoint: The URL called (already public).
        status: The HTTP status (a 2xx).
        content_type: The ``content-type`` header, ``""`` when there was none.
        body: The body as received (bytes, text or decoded JSON).
        secrets: Exact values to mask (the key in use).
        check: What to check first (``check that OPENAI_BASE_URL points at ...``).

    Returns:
        The error to raise.
    """
    kind = content_type.split(";", 1)[0].strip() or "no content-type"
    trimmed = trim_body(body, secrets)
    return ProviderError(
        message=f"{provider} {endpoint}: {status} {kind}: {what}: "
        + (trimmed if trimmed else "(empty body)"),
        hint=f"{check}; not retried: the provider answered {status}, so the call may have "
        "been billed",
        provider=provider,
        endpoint=endpoint,
        status=status,
        body=trimmed,
        retryable=False,
    )
