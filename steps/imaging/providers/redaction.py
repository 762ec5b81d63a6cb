"""Keeping secrets out of what a provider failure says: endpoints, bodies, tracebacks.

A provider error may show the URL called, the start of the answer's body and the SDK's own
message; each of these can hold a key (``Incorrect API key provided: sk-...``), a signed
query or a bearer token. :func:`public_endpoint` drops credentials, query and fragment;
:func:`redact` masks the key in use and anything that looks like a key; :func:`trim_body`
keeps the redacted start of a body; :func:`sanitized` is what an error chains instead of
the SDK's exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "BODY_LIMIT",
    "UpstreamError",
    "public_endpoint",
    "redact",
    "sanitized",
    "trim_body",
]

#: How many characters of a response body an error keeps.
BODY_LIMIT = 300

#: Strings that look like credentials whoever they belong to: OpenAI keys (``sk-...``,
#: ``sk-proj-...``), Google API keys (``AIza...``) and bearer tokens.
_KEY_LIKE = re.compile(
    r"sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{12,}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{6,}"
)
_REDACTED = "[redacted]"


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
