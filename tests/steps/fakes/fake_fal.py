"""A fake fal queue API over HTTPS on 127.0.0.1, for the real ``fal-client`` SDK.

``fal-client`` builds ``https://{FAL_QUEUE_RUN_HOST}/{model}`` from an environment variable
read once at import, always with https: the fake serves TLS with a certificate for
127.0.0.1 issued by its own CA (made here with ``cryptography``). A process talks to it
with :meth:`FakeFal.sdk_env` in its environment before ``fal_client`` is imported:
``FAL_RUN_HOST`` and ``FAL_QUEUE_RUN_HOST`` (``127.0.0.1:<port>``) and ``SSL_CERT_FILE``
(the CA, which ``httpx`` trusts through it).

The protocol as fal speaks it: ``POST /{model}`` answers ``request_id``, ``status_url``,
``response_url``, ``cancel_url`` (status and result under ``/{owner}/{alias}/requests/{id}``
whatever the model's sub-path); the status is ``IN_PROGRESS`` once, then ``COMPLETED``
(with ``logs`` and ``metrics``); the result is ``{images: [{url, width, height,
content_type}], seed, has_nsfw_concepts, timings}``, the images as ``data:`` URIs
(``sync_mode``), drawn from the seed (same seed, same pixels). A validation error is a 422
``{"detail": [{loc, msg, type}]}``. :meth:`FakeFal.fail_next` and :meth:`FakeFal.flag_next`
script a failure or a safety-checker flag; so does a prompt (for a process the test does
not drive): one holding ``[nsfw]`` is flagged, one holding ``[422]`` refused as fal refuses
``num_inference_steps`` over 50.

URL answers: after :meth:`FakeFal.answer_with_urls`, images come as ``https://<fake>/files/
<name>.png`` URLs the fake serves itself (as fal's CDN does for an endpoint that ignores
``sync_mode``). The upscalers (:data:`UPSCALERS`: ``image_url`` and the factor under the
endpoint's name) always answer ``{image: {url, ...}, seed}`` with such a URL, the image
being the source resized ``factor`` times.
"""

from __future__ import annotations

import base64
import datetime
import io
import ipaddress
import json
import re
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

__all__ = ["FakeFal", "FalCall", "make_ca"]

#: Sizes of fal's named ``image_size`` values.
NAMED_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
#: The upscaler endpoints the fake serves, and the name each gives its factor.
UPSCALERS = {"fal-ai/clarity-upscaler": "upscale_factor", "fal-ai/aura-sr": "upscaling_factor"}
#: The seed fal "picks" when the request has none.
DEFAULT_SEED = 424242
_REQUEST = re.compile(
    r"^/(?P<app>[^/]+/[^/]+)/requests/(?P<id>[0-9a-f-]+)(?P<tail>/status|/cancel)?"
)


@dataclass(frozen=True)
class FalCall:
    """One submitted request as the fake received it.

    Attributes:
        model: The endpoint id (``fal-ai/flux/dev/image-to-image``).
        body: The JSON input.
        authorization: The ``Authorization`` header (``Key ...``).
    """

    model: str
    body: dict[str, Any]
    authorization: str


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files.

    Returns:
        ``(ca_cert, server_cert, server_key)``.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fetchflow test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _png(width: int, height: int, seed: int) -> bytes:
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 151 % 256)
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def _size(body: dict[str, Any]) -> tuple[int, int]:
    size = body.get("image_size", "landscape_4_3")
    if isinstance(size, dict):
        return int(size["width"]), int(size["height"])
    return NAMED_SIZES[str(size)]


class FakeFal:
    """The fake fal queue; use it as a context manager.

    Args:
        folder: Where the CA and certificates are written.
    """

    def __init__(self, folder: Path) -> None:
        self.ca_file, cert, key = make_ca(folder)
        self.calls: list[FalCall] = []
        #: Every request line (``GET /fal-ai/flux/requests/<id>/status``), in order.
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._failures: deque[tuple[int, object]] = deque()
        self._flags: deque[bool] = deque()
        self._results: dict[str, dict[str, Any]] = {}
        self._polled: set[str] = set()
        self._files: dict[str, bytes] = {}
        self._urls = False
        #: Every file GET (``/files/<name>.png``), in order.
        self.downloads: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = self._make_server()
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: what ``FAL_RUN_HOST`` and ``FAL_QUEUE_RUN_HOST`` take."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def sdk_env(self) -> dict[str, str]:
        """The variables a process needs, before importing ``fal_client``, to call the fake."""
        return {
            "FAL_RUN_HOST": self.host,
            "FAL_QUEUE_RUN_HOST": self.host,
            "SSL_CERT_FILE": str(self.ca_file),
        }

    def fail_next(self, status: int, body: object) -> None:
        """Answer the next submit with ``status`` and this JSON body."""
        with self._lock:
            self._failures.append((status, body))

    def flag_next(self) -> None:
        """The next result says ``has_nsfw_concepts: [true, ...]``."""
        with self._lock:
            self._flags.append(True)

    def answer_with_urls(self) -> None:
        """From now on, generation answers give https URLs (served here), not data: URIs."""
        with self._lock:
            self._urls = True

    def _image_entry(self, data: bytes, width: int, height: int, name: str) -> dict[str, Any]:
        """One answer image: a URL to this server (URL mode) or a data: URI."""
        with self._lock:
            as_url = self._urls or name.startswith("up-")
            if as_url:
                self._files[name] = data
        url = (
            f"https://{self.host}/files/{name}"
            if as_url
            else "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        )
        return {"url": url, "width": width, "height": height, "content_type": "image/png"}

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the protocol ----------------------------------------------------------------------

    def _submit(self, model: str, body: dict[str, Any], authorization: str) -> tuple[int, object]:
        with self._lock:
            self.calls.append(FalCall(model, body, authorization))
            if self._failures:
                return self._failures.popleft()
            flagged = self._flags.popleft() if self._flags else False
            if "[422]" in str(body.get("prompt", "")):
                return 422, {
                    "detail": [
                        {
                            "loc": ["body", "num_inference_steps"],
                            "msg": "ensure this value is less than or equal to 50",
                            "type": "value_error.number.not_le",
                        }
                    ]
                }
            flagged = flagged or "[nsfw]" in str(body.get("prompt", ""))
            number = len(self.calls)
        request_id = f"00000000-0000-4000-8000-{number:012d}"
        seed = body.get("seed", DEFAULT_SEED)
        if model in UPSCALERS:
            result: dict[str, Any] = {
                "image": self._upscaled(body, UPSCALERS[model], number),
                "seed": seed,
                "timings": {"inference": 0.01},
            }
        else:
            width, height = _size(body)
            count = int(body.get("num_images", 1))
            images = [
                self._image_entry(
                    _png(width, height, seed + index), width, height, f"{number}-{index}.png"
                )
                for index in range(count)
            ]
            result = {
                "images": images,
                "seed": seed,
                "has_nsfw_concepts": [flagged] * count,
                "timings": {"inference": 0.01},
                "prompt": body.get("prompt", ""),
            }
        with self._lock:
            self._results[request_id] = result
        app = "/".join(model.split("/")[:2])
        base = f"https://{self.host}/{app}/requests/{request_id}"
        return 200, {
            "request_id": request_id,
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
            "queue_position": 0,
        }

    def _upscaled(self, body: dict[str, Any], factor_field: str, number: int) -> dict[str, Any]:
        """The source (``image_url``, a data: URI) resized ``factor`` times, as a URL entry."""
        _, _, payload = str(body["image_url"]).partition(",")
        factor = int(body.get(factor_field, 2))
        with Image.open(io.BytesIO(base64.b64decode(payload))) as source:
            width, height = source.size[0] * factor, source.size[1] * factor
            large = source.convert("RGB").resize((width, height))
        out = io.BytesIO()
        large.save(out, format="PNG")
        return self._image_entry(out.getvalue(), width, height, f"up-{number}.png")

    def _status(self, request_id: str) -> tuple[int, object]:
        with self._lock:
            if request_id not in self._results:
                return 404, {"detail": "Request not found"}
            first = request_id not in self._polled
            self._polled.add(request_id)
        if first:
            return 200, {"status": "IN_PROGRESS", "logs": [], "request_id": request_id}
        return 200, {
            "status": "COMPLETED",
            "logs": [],
            "metrics": {"inference_time": 0.01},
            "request_id": request_id,
        }

    def _make_server(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("x-fal-request-id", "fake")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with fake._lock:
                    fake.lines.append(f"POST {self.path}")
                model = self.path.lstrip("/").split("?", 1)[0]
                body = json.loads(raw) if raw else {}
                self._send(*fake._submit(model, body, self.headers.get("authorization", "")))

            def do_GET(self) -> None:
                with fake._lock:
                    fake.lines.append(f"GET {self.path.split('?', 1)[0]}")
                if self.path.startswith("/files/"):
                    with fake._lock:
                        fake.downloads.append(self.path)
                        data = fake._files.get(self.path.removeprefix("/files/"))
                    if data is None:
                        self._send(404, {"detail": "no such file"})
                        return
                    self.send_response(200)
                    self.send_header("content-type", "image/png")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                match = _REQUEST.match(self.path)
                if match is None:
                    self._send(404, {"detail": "Not found"})
                elif match.group("tail") == "/status":
                    self._send(*fake._status(match.group("id")))
                else:
                    with fake._lock:
                        result = fake._results.get(match.group("id"))
                    self._send(200, result) if result else self._send(404, {"detail": "no"})

            def do_PUT(self) -> None:
                self._send(202, {"status": "CANCELLATION_REQUESTED"})

            def log_message(self, format: str, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client hanging up mid-answer

        return QuietServer(("127.0.0.1", 0), Handler)
