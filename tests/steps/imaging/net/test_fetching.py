"""fetch_reference against real HTTP(S) servers on 127.0.0.1.

Two stdlib calls are replaced by a fake network where a test needs a public host:
``socket.getaddrinfo`` (the fake DNS: names ending in ``.test``) and, for the tests whose
first hop must be a public address, ``socket.create_connection`` (the fake routing: a
public IP is delivered to a local server, and every connection attempt is recorded).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fetchflow.errors import StepError
from steps.imaging.net.fetching import (
    MAX_REDIRECTS,
    address_class,
    fetch_reference,
    redact_url,
)
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.settings import ImageSettings

CAP = 1024
PUBLIC_IP = "93.184.216.34"


def image_bytes(kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, kind)
    return buffer.getvalue()


PNG = image_bytes("PNG")


def settings(*, allow_private: bool = False, cap: int = CAP) -> ImageSettings:
    return ImageSettings(allow_private_urls=allow_private, max_reference_bytes=cap)


# --- the servers -------------------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect(location: str) -> Route:
    return lambda handler: send(handler, 302, b"", Location=location, Content_Length="0")


def endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.end_headers()  # no Content-Length: the body runs until the connection closes
    chunk = PNG + bytes(64 * 1024)
    for _ in range(1000):  # ~64 MiB unless the client hangs up first
        handler.wfile.write(chunk)


@dataclass
class Server:
    """A local server; ``routes`` maps a path (without query) to its answer."""

    server: ThreadingHTTPServer
    routes: dict[str, Route] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{self.port}{path}"


def start_server(tls: ssl.SSLContext | None = None) -> Server:
    box: dict[str, Server] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            box["server"].hosts.append(self.headers.get("Host", ""))
            route = box["server"].routes.get(self.path.split("?", 1)[0])
            if route is None:
                send(self, 404, b"no such thing", Content_Length="13")
            else:
                route(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class QuietServer(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the client hanging up mid-body is what some tests want

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    box["server"] = Server(httpd)
    box["server"].routes.update(
        {
            "/cat.png": lambda h: send(
                h, 200, PNG, Content_Type="image/png", Content_Length=str(len(PNG))
            ),
            "/big-declared": lambda h: send(h, 200, PNG + bytes(CAP), Content_Length="1130"),
            "/endless": endless,
            "/page.html": lambda h: send(h, 200, b"<html>hi</html>", Content_Type="text/html"),
            "/lying.png": lambda h: send(h, 200, b"<html>hi</html>", Content_Type="image/png"),
            "/boom": lambda h: send(h, 500, b"oops", Content_Length="4"),
            "/hop/1": redirect("/cat.png"),
            "/hop/2": redirect("/hop/1"),
            "/hop/3": redirect("/hop/2"),
            "/hop/4": redirect("/hop/3"),
            "/to-ftp": redirect("ftp://127.0.0.1/cat.png?X-Amz-Signature=secret"),
            "/to-file": redirect("file:///etc/passwd"),
        }
    )
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return box["server"]


@pytest.fixture
def server() -> Iterator[Server]:
    running = start_server()
    yield running
    running.server.shutdown()
    running.server.server_close()


# --- the fake network ----------------------------------------------------------------------


@dataclass
class Network:
    """Fake DNS answers (one list per lookup; the last repeats) and fake routes."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    connections: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    fake = Network()
    real_getaddrinfo = socket.getaddrinfo
    real_create_connection = socket.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if not str(host).endswith(".test"):
            return real_getaddrinfo(host, port, *args, **kwargs)
        fake.lookups.append(host)
        queue = fake.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in addresses
        ]

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        fake.connections.append(address)
        return real_create_connection(fake.routes.get(address[0], address), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return fake


def refused(url: str, *, allow_private: bool = False, cap: int = CAP) -> StepError:
    with pytest.raises(StepError) as caught:
        fetch_reference(url, settings=settings(allow_private=allow_private, cap=cap), timeout=5)
    return caught.value


# --- the pure core -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local (cloud metadata)"),
        ("::ffff:93.184.216.34", None),
        ("2002:7f00:1::", "6to4 loopback"),
    ],
    ids=lambda value: str(value),
)
def test_address_class(address: str, expected: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (image_bytes("JPEG"), "image/jpeg"),
        (image_bytes("WEBP"), "image/webp"),
        (image_bytes("GIF"), "image/gif"),
        (b"<html>", None),
        (b"", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
    ],
    ids=["png", "jpeg", "webp", "gif", "html", "empty", "riff-wave"],
)
def test_sniff_image_type(data: bytes, expected: str | None) -> None:
    assert sniff_mime_type(data) == expected


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    shown = redact_url("https://me:hunter2@Bucket.example:8443/a/b.png?X-Amz-Signature=s#frag")
    assert shown == "https://bucket.example:8443/a/b.png"
    assert redact_url("http://[::1]:80/x?y") == "http://[::1]:80/x"


# --- the fetch -----------------------------------------------------------------------------


def test_loopback_refused_by_default(server: Server) -> None:
    error = refused(server.url("/cat.png"))
    assert "127.0.0.1 is a loopback address" in error.message
    assert "FETCHFLOW_ALLOW_PRIVATE_URLS=true" in error.hint
    assert not error.retryable
    assert server.hosts == []  # refused before connecting


def test_localhost_name_refused(server: Server) -> None:
    error = refused(server.url("/cat.png", host="localhost"))
    assert "localhost (" in error.message
    assert "is a loopback address" in error.message


def test_allowed_private_fetches_the_bytes(server: Server) -> None:
    fetched = fetch_reference(
        server.url("/cat.png?X-Amz-Signature=secret"), settings=settings(allow_private=True)
    )
    assert fetched.data == PNG
    assert fetched.sha256 == hashlib.sha256(PNG).hexdigest()
    assert fetched.mime_type == "image/png"
    assert fetched.url == server.url("/cat.png")


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "file"),
        ("ftp://example.com/a.png", "ftp"),
        ("data:image/png;base64,iVBORw0KGgo=", "data"),
        ("gopher://example.com:70/_x", "gopher"),
        ("example.com/a.png", "(none)"),
    ],
    ids=["file", "ftp", "data", "gopher", "no-scheme"],
)
def test_other_schemes_refused(url: str, scheme: str) -> None:
    error = refused(url, allow_private=True)
    assert f'only http and https URLs can be fetched, got scheme "{scheme}"' in error.message
    assert "http(s) URL" in error.hint
    assert not error.retryable


@pytest.mark.parametrize("allow_private", [False, True])
def test_name_resolving_to_cloud_metadata_refused(network: Network, allow_private: bool) -> None:
    network.answers["metadata.test"] = [["169.254.169.254"]]
    error = refused("http://metadata.test/latest/meta-data/", allow_private=allow_private)
    assert (
        "metadata.test (169.254.169.254) is a link-local (cloud metadata) address" in error.message
    )
    # Even where private addresses are allowed: metadata endpoints hand out credentials.
    assert error.hint == "cloud metadata endpoints are never fetched"
    assert network.connections == []


def test_one_private_address_among_public_ones_is_enough(network: Network) -> None:
    network.answers["mixed.test"] = [[PUBLIC_IP, "10.0.0.5"]]
    error = refused("http://mixed.test/a.png")
    assert "mixed.test (10.0.0.5) is a private address" in error.message


def test_ipv4_mapped_loopback_refused(server: Server) -> None:
    error = refused(server.url("/cat.png", host="[::ffff:127.0.0.1]"))
    assert "::ffff:127.0.0.1 is an IPv4-mapped loopback address" in error.message


def test_credentials_in_url_refused_and_never_shown(server: Server) -> None:
    error = refused(server.url("/cat.png", host="admin:hunter2@127.0.0.1"), allow_private=True)
    assert "credentials" in error.message
    assert "hunter2" not in str(error)
    assert "admin" not in str(error)


def test_connects_to_the_vetted_address_with_the_original_host(
    server: Server, network: Network
) -> None:
    # A rebinding DNS: public for the check, loopback for any later lookup.
    network.answers["cdn.test"] = [[PUBLIC_IP], ["127.0.0.1"]]
    network.routes[PUBLIC_IP] = ("127.0.0.1", server.port)
    fetched = fetch_reference(f"http://cdn.test:{server.port}/cat.png", settings=settings())
    assert fetched.data == PNG
    assert network.lookups == ["cdn.test"]
    assert network.connections == [(PUBLIC_IP, server.port)]
    assert server.hosts == [f"cdn.test:{server.port}"]


def test_redirects_are_followed_up_to_the_limit(server: Server) -> None:
    fetched = fetch_reference(
        server.url(f"/hop/{MAX_REDIRECTS}"), settings=settings(allow_private=True)
    )
    assert fetched.data == PNG
    assert fetched.url == server.url("/cat.png")
    error = refused(server.url(f"/hop/{MAX_REDIRECTS + 1}"), allow_private=True)
    assert f"more than {MAX_REDIRECTS} redirects" in error.message
    assert not error.retryable


def test_redirect_to_another_allowed_host(server: Server) -> None:
    other = start_server()
    try:
        server.routes["/elsewhere"] = redirect(other.url("/cat.png", host="localhost"))
        fetched = fetch_reference(server.url("/elsewhere"), settings=settings(allow_private=True))
    finally:
        other.server.shutdown()
        other.server.server_close()
    assert fetched.data == PNG
    assert fetched.url == other.url("/cat.png", host="localhost")
    assert other.hosts == [f"localhost:{other.port}"]


@pytest.mark.parametrize(("path", "scheme"), [("/to-ftp", "ftp"), ("/to-file", "file")])
def test_redirect_to_another_scheme_refused(server: Server, path: str, scheme: str) -> None:
    error = refused(server.url(path), allow_private=True)
    assert f'got scheme "{scheme}"' in error.message
    assert f"(redirected from {server.url(path)})" in error.message


def test_each_redirect_hop_is_vetted_again(server: Server, network: Network) -> None:
    network.answers["cdn.test"] = [[PUBLIC_IP]]
    network.answers["internal.test"] = [["10.1.2.3"]]
    network.routes[PUBLIC_IP] = ("127.0.0.1", server.port)
    server.routes["/to-internal"] = redirect("http://internal.test/admin.png")
    server.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    error = refused(f"http://cdn.test:{server.port}/to-internal")
    assert "internal.test (10.1.2.3) is a private address" in error.message
    error = refused(f"http://cdn.test:{server.port}/to-metadata")
    assert "169.254.169.254 is a link-local (cloud metadata) address" in error.message
    assert network.connections == [(PUBLIC_IP, server.port)] * 2


def test_declared_size_over_the_cap_refused_before_the_body(server: Server) -> None:
    error = refused(server.url("/big-declared"), allow_private=True)
    assert f"the image is 1130 bytes (Content-Length), over the cap of {CAP} bytes" in str(error)
    assert "FETCHFLOW_MAX_REFERENCE_BYTES" in error.hint
    assert not error.retryable


def test_streamed_body_over_the_cap_stops_reading(server: Server) -> None:
    error = refused(server.url("/endless"), allow_private=True)
    assert f"more than {CAP} bytes (stopped reading at {CAP + 1}), over the cap" in error.message


def test_a_body_just_at_the_cap_is_fine(server: Server) -> None:
    body = PNG + bytes(CAP - len(PNG))
    server.routes["/exactly-cap"] = lambda h: send(h, 200, body)  # no Content-Length
    fetched = fetch_reference(server.url("/exactly-cap"), settings=settings(allow_private=True))
    assert fetched.data == body


@pytest.mark.parametrize(
    ("path", "content_type"), [("/page.html", "text/html"), ("/lying.png", "image/png")]
)
def test_non_image_refused_whatever_the_content_type(
    server: Server, path: str, content_type: str
) -> None:
    error = refused(server.url(path), allow_private=True)
    assert f"not a PNG, JPEG, WebP or GIF image (Content-Type {content_type}" in error.message
    assert not error.retryable


def test_server_error_is_retryable_and_not_found_is_not(server: Server) -> None:
    error = refused(server.url("/boom"), allow_private=True)
    assert "HTTP 500" in error.message
    assert error.retryable
    error = refused(server.url("/missing"), allow_private=True)
    assert "HTTP 404" in error.message
    assert not error.retryable


def test_connection_refused_is_retryable(server: Server) -> None:
    url = server.url("/cat.png")
    server.server.shutdown()
    server.server.server_close()
    error = refused(url, allow_private=True)
    assert "could not fetch from 127.0.0.1" in error.message
    assert error.retryable


def test_unknown_host_is_retryable(network: Network) -> None:
    error = refused("http://nowhere.test/a.png")
    assert "cannot resolve host nowhere.test" in error.message
    assert error.retryable


@pytest.mark.parametrize(
    ("path", "allow_private"),
    [("/cat.png", False), ("/missing", True), ("/to-ftp", True), ("/hop/4", True)],
    ids=["refused-address", "404", "redirect-to-ftp", "too-many-redirects"],
)
def test_signatures_never_appear_in_messages(
    server: Server, path: str, allow_private: bool
) -> None:
    error = refused(server.url(f"{path}?X-Amz-Signature=secret"), allow_private=allow_private)
    assert "secret" not in str(error)
    assert "X-Amz-Signature" not in str(error)


# --- https: the vetted IP, the URL's name for SNI and the certificate ---------------------


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fetchflow test CA")])
    ca_cert = certificate("fetchflow test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("images.test", leaf_key, ca_name, ca_key, ca=False)

    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # trusted by the client
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    running = start_server(tls=context)
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_https_uses_the_url_host_for_sni_and_the_certificate(
    tls_server: Server, network: Network
) -> None:
    network.answers["images.test"] = [["127.0.0.1"]]
    network.answers["other.test"] = [["127.0.0.1"]]
    fetched = fetch_reference(
        tls_server.url("/cat.png", host="images.test"), settings=settings(allow_private=True)
    )
    assert fetched.data == PNG
    assert tls_server.hosts == [f"images.test:{tls_server.port}"]
    assert network.connections == [("127.0.0.1", tls_server.port)]

    error = refused(tls_server.url("/cat.png", host="other.test"), allow_private=True)
    assert "TLS certificate not valid for other.test" in error.message
    assert not error.retryable
