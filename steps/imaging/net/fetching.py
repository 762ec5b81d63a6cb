"""Reference images fetched from http(s) URLs, the URL treated as hostile input.

Steps that read reference images (image_edit) take upstream assets, files under the project
or URLs. A URL comes from a workflow author or a template value, so :func:`fetch_reference`
refuses what would turn fetchflow against its own network (server-side request forgery):
schemes other than http(s); ``user:pass@`` in the URL; a host with *any* address that is
loopback, private, link-local (cloud metadata included), multicast, reserved, unspecified or
otherwise not public, IPv4-mapped and 6to4 forms included, unless ``allow_private_urls`` is
set; more than :data:`MAX_REDIRECTS` redirects (every hop is checked like the first URL); a
body over ``max_reference_bytes`` (a larger Content-Length is refused before the body, and
the body is read in chunks and abandoned past the cap); bytes without a PNG, JPEG, WebP or
GIF signature (the Content-Type is not trusted).

DNS rebinding: the host is resolved once, and the connection goes to the vetted addresses
only (:func:`~steps.imaging.net.pinned.pinned_connection`), the certificate still
checked against the URL's host. Proxy variables are ignored on purpose: a proxy would
resolve the name again, out of our sight.

Messages show the URL without query string, fragment or credentials (a presigned URL's
signature lives in the query); :attr:`FetchedImage.url` is that same form, safe to store.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

from fetchflow.errors import StepError
from steps.imaging.net.pinned import pinned_connection
from steps.imaging.pixels.formats import sniff_mime_type

if TYPE_CHECKING:
    from steps.imaging.settings import ImageSettings

__all__ = [
    "MAX_REDIRECTS",
    "FetchedImage",
    "address_class",
    "fetch_reference",
    "redact_url",
]

#: How many redirects one fetch follows.
MAX_REDIRECTS = 3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ALLOWED_SCHEMES = ("http", "https")
_SHOWN_URL_MAX = 200
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_ALLOW_SETTING = "FETCHFLOW_ALLOW_PRIVATE_URLS"
_CAP_SETTING = "FETCHFLOW_MAX_REFERENCE_BYTES"


@dataclass(frozen=True)
class FetchedImage:
    """A reference image fetched over http(s).

    Attributes:
        data: The image's bytes, exactly as served.
        mime_type: ``image/png``, ``image/jpeg``, ``image/webp`` or ``image/gif``, from the
            bytes' signature.
        url: The URL the bytes came from (after redirects), without query string,
            fragment or credentials.
        sha256: Hex SHA-256 of ``data``.
    """

    data: bytes
    mime_type: str
    url: str
    sha256: str


def redact_url(url: str) -> str:
    """``url`` without credentials, query string or fragment, shortened for messages."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown if len(shown) <= _SHOWN_URL_MAX else shown[: _SHOWN_URL_MAX - 1] + "…"


def address_class(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from by default, or None for a public address.

    IPv6 forms that carry an IPv4 address (``::ffff:127.0.0.1``, 6to4 ``2002::/16``) are
    judged by the IPv4 address inside.
    """
    if isinstance(address, ipaddress.IPv6Address):
        for form, inner in (("IPv4-mapped", address.ipv4_mapped), ("6to4", address.sixtofour)):
            if inner is not None:
                inner_class = address_class(inner)
                return f"{form} {inner_class}" if inner_class else None
    if address in _METADATA_ADDRESSES:
        return "link-local (cloud metadata)"
    for name, test in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),  # before private: 240.0.0.0/4 is both
        ("private", address.is_private),
    ):
        if test:
            return name
    # e.g. 100.64.0.0/10 (carrier-grade NAT): neither private nor public.
    return None if address.is_global else "non-public"


@dataclass(frozen=True)
class _Target:
    """One URL checked and taken apart; ``shown`` is what messages print."""

    scheme: str
    host: str
    port: int
    request_path: str
    shown: str


def _refused(shown: str, message: str, hint: str, *, retryable: bool = False) -> StepError:
    return StepError(message=f"{shown}: {message}", hint=hint, retryable=retryable)


def _check_url(url: str, shown: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _refused(shown, f"malformed URL ({error})", "fix the URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise _refused(
            shown,
            f'only http and https URLs can be fetched, got scheme "{scheme or "(none)"}"',
            "use an http(s) URL, an asset of an earlier step, or a file under the project",
        )
    if parts.username is not None or parts.password is not None:
        raise _refused(
            shown,
            "the URL carries credentials (user:password@), which are never sent",
            "use a presigned URL, or make the image readable without credentials",
        )
    host = parts.hostname
    if not host:
        raise _refused(shown, "the URL has no host", "write the URL as https://host/path")
    if not _is_literal(host):
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refused(shown, "the host name is not valid", "fix the host name") from None
    path = parts.path or "/"
    return _Target(
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        request_path=f"{path}?{parts.query}" if parts.query else path,
        shown=shown,
    )


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _vetted_addresses(target: _Target, *, allow_private: bool) -> list[str]:
    """Resolve the host once; every address must pass (the connection uses only these)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise _refused(
            target.shown,
            f"cannot resolve host {target.host} ({error})",
            "check the host name and this machine's DNS",
            retryable=True,
        ) from error
    addresses: list[str] = []
    for *_, sockaddr in infos:
        text = str(sockaddr[0])
        address = ipaddress.ip_address(text.split("%", 1)[0])
        refused_as = address_class(address)
        # Cloud metadata endpoints hand out credentials: refused even on a private network.
        metadata = refused_as is not None and "metadata" in refused_as
        if refused_as and (metadata or not allow_private):
            literal = _is_literal(target.host)
            shown_host = target.host if literal else f"{target.host} ({address})"
            article = "an" if refused_as[0] in "aeiouIU" else "a"
            raise _refused(
                target.shown,
                f"{shown_host} is {article} {refused_as} address; fetching from it is refused",
                "cloud metadata endpoints are never fetched"
                if metadata
                else "use a public URL, or set "
                f"{_ALLOW_SETTING}=true if fetchflow may reach your private network",
            )
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise _refused(
            target.shown,
            f"host {target.host} has no IPv4 or IPv6 address",
            "check the host name",
            retryable=True,
        )
    return addresses


def _read_capped(
    response: http.client.HTTPResponse, target: _Target, cap: int, deadline: float
) -> bytes:
    declared = (response.getheader("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise _refused(
            target.shown,
            f"the image is {int(declared)} bytes (Content-Length), over the cap of {cap} bytes",
            f"use a smaller image, or raise {_CAP_SETTING} (at most 524288000)",
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(min(_CHUNK, cap + 1 - total)):
        total += len(chunk)
        if total > cap:
            raise _refused(
                target.shown,
                f"the image is more than {cap} bytes (stopped reading at {total}), over the "
                f"cap of {cap} bytes",
                f"use a smaller image, or raise {_CAP_SETTING} (at most 524288000)",
            )
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError("the body took longer than the timeout")
    return b"".join(chunks)


def _status_error(response: http.client.HTTPResponse, target: _Target) -> StepError:
    status = response.status
    # No body in the message: S3's SignatureDoesNotMatch answer echoes the signature.
    detail = f"HTTP {status} {response.reason}"
    # 5xx and 429 are the server's passing trouble; any other status will not change.
    retryable = status >= 500 or status == 429
    hint = "try again later" if retryable else "check the URL and that the image is readable"
    return _refused(target.shown, detail, hint, retryable=retryable)


def fetch_reference(
    url: str, *, settings: ImageSettings, timeout: float = 30.0, what: str = "reference image"
) -> FetchedImage:
    """Fetch the image at an http(s) URL, refusing anything hostile (see the module doc).

    Args:
        url: The image's URL, as the workflow (or a provider's answer) gave it.
        settings: ``allow_private_urls`` and ``max_reference_bytes`` are used.
        timeout: Seconds for the whole fetch, redirects included.
        what: What the image is, first in messages (``fal image 1 of 2``).

    Returns:
        The bytes, their MIME type (from their signature), the redacted final URL and the
        bytes' SHA-256.

    Raises:
        StepError: Refused (scheme, credentials, address, size, not an image, too many
            redirects, a 4xx) with ``retryable=False``; a network error, timeout, 429 or
            5xx with ``retryable=True``. Messages never show a query string or credentials.
    """
    deadline = time.monotonic() + timeout
    origin = redact_url(url)
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        shown = f"{what} {redact_url(current)}"
        if hop:
            shown = f"{shown} (redirected from {origin})"
        target = _check_url(current, shown)
        addresses = _vetted_addresses(target, allow_private=settings.allow_private_urls)
        connection = pinned_connection(
            target.scheme,
            target.host,
            target.port,
            addresses,
            max(deadline - time.monotonic(), 0.001),
        )
        response: http.client.HTTPResponse | None = None
        try:
            connection.request(
                "GET",
                target.request_path,
                headers={
                    "Accept": "image/png, image/jpeg, image/webp, image/gif",
                    "Accept-Encoding": "identity",
                    "User-Agent": "fetchflow",
                },
            )
            response = connection.getresponse()
            if response.status in _REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise _refused(shown, f"HTTP {response.status} without Location", "")
                if hop == MAX_REDIRECTS:
                    hint = "use the image's final URL"
                    raise _refused(shown, f"more than {MAX_REDIRECTS} redirects", hint)
                current = urljoin(current, location.strip())
                continue
            if response.status != 200:
                raise _status_error(response, target)
            data = _read_capped(response, target, settings.max_reference_bytes, deadline)
        except ssl.SSLCertVerificationError as error:
            raise _refused(
                shown,
                f"TLS certificate not valid for {target.host} ({error.verify_message})",
                "fix the server's certificate, or use another URL",
            ) from error
        except http.client.InvalidURL:
            # Its text quotes the path and query, which may hold a signature.
            raise _refused(
                shown, "malformed URL (spaces or control characters)", "fix the URL"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            reason = str(error) or type(error).__name__
            raise _refused(
                shown,
                f"could not fetch from {target.host}:{target.port} ({reason})",
                "check that the server is up and reachable; the step can be retried",
                retryable=True,
            ) from error
        finally:
            # The response holds its own reference to the socket: close both.
            if response is not None:
                response.close()
            connection.close()
        mime = sniff_mime_type(data)
        if mime is None:
            content_type = (response.getheader("Content-Type") or "none")[:60]
            raise _refused(
                shown,
                f"not a PNG, JPEG, WebP or GIF image (Content-Type {content_type}, "
                f"{len(data)} bytes starting {data[:12]!r})",
                "use the URL of the image itself, not of a page showing it",
            )
        return FetchedImage(
            data=data,
            mime_type=mime,
            url=redact_url(current),
            sha256=hashlib.sha256(data).hexdigest(),
        )
    raise AssertionError("unreachable: the last hop returns or raises")  # pragma: no cover
