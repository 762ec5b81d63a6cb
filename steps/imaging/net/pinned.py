"""Connections to vetted addresses only: the DNS-rebinding guard of the reference fetcher.

The host of a URL is resolved once and every address checked
(:mod:`steps.imaging.net.fetching`); the connection classes here override
``connect()`` to open the TCP socket to one of those addresses itself, never to a fresh
resolution of the name. ``http.client`` still sends the URL's host in ``Host``, and https
wraps the socket with ``server_hostname`` = the URL's host, so SNI and certificate checks
are against the name.
"""

from __future__ import annotations

import http.client
import socket
import ssl

__all__ = ["pinned_connection"]


def _connect_first(addresses: list[str], port: int, timeout: float | None) -> socket.socket:
    last_error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as error:
            last_error = error
    assert last_error is not None  # addresses is never empty
    raise last_error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to vetted addresses only; the ``Host`` header still names the URL's host."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._vetted = addresses

    def connect(self) -> None:
        """Open the socket to a vetted address, never to a fresh resolution of the name."""
        self.sock = _connect_first(self._vetted, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to vetted addresses only; SNI and certificate checks use the URL's host."""

    def __init__(
        self, host: str, port: int, *, addresses: list[str], timeout: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=tls)
        self._vetted = addresses
        self._tls = tls

    def connect(self) -> None:
        """Open the socket to a vetted address, then TLS with the URL's host name."""
        raw = _connect_first(self._vetted, self.port, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def pinned_connection(
    scheme: str, host: str, port: int, addresses: list[str], timeout: float
) -> http.client.HTTPConnection:
    """An http(s) connection to ``host`` that opens its socket to ``addresses`` only.

    Args:
        scheme: ``http`` or ``https`` (TLS with the system's trust store).
        host: The URL's host: sent in ``Host``, and the name the certificate must match.
        port: The port.
        addresses: The host's addresses, resolved and vetted by the caller.
        timeout: Seconds for connecting and each read.
    """
    if scheme == "https":
        tls = ssl.create_default_context()
        return _PinnedHTTPSConnection(host, port, addresses=addresses, timeout=timeout, tls=tls)
    return _PinnedHTTPConnection(host, port, addresses=addresses, timeout=timeout)
