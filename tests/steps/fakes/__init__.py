"""Fake image APIs served over real HTTP on 127.0.0.1, for the provider tests.

:class:`FakeServer` is a ``ThreadingHTTPServer`` on a free port that records every request
(:class:`RecordedRequest`: path, headers without credentials, JSON body or multipart fields
and files) and answers each from a script of canned :class:`Reply` makers, falling back to
the subclass's real-shaped success. The fakes themselves live in :mod:`.fake_openai` and
:mod:`.fake_gemini`; the pytest fixtures in :mod:`.fixtures`.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from PIL import Image

__all__ = [
    "CREDENTIAL_HEADERS",
    "FakeServer",
    "RecordedRequest",
    "Reply",
    "Script",
    "UploadedFile",
    "make_image",
]

#: Headers that carry a key; recorded apart (``credential``), never in ``headers``.
CREDENTIAL_HEADERS = frozenset({"authorization", "x-goog-api-key", "api-key"})

#: Pillow's name of each output format.
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def make_image(
    width: int,
    height: int,
    output_format: str = "png",
    *,
    transparent: bool = False,
    shade: int = 0,
) -> bytes:
    """Real image bytes of the given size and format, as a provider would send them.

    Args:
        width: Pixel width.
        height: Pixel height.
        output_format: ``png``, ``jpeg`` or ``webp``.
        transparent: An RGBA image with a fully transparent background (png and webp).
        shade: Varies the colour, so the images of one answer differ.
    """
    colour = ((40 * shade) % 256, 128, 255 - (40 * shade) % 256)
    if transparent and output_format != "jpeg":
        image = Image.new("RGBA", (width, height), (*colour, 0))
    else:
        image = Image.new("RGB", (width, height), colour)
    buffer = io.BytesIO()
    image.save(buffer, _PILLOW_FORMATS[output_format])
    return buffer.getvalue()


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class RecordedRequest:
    """What the fake received, minus anything secret.

    Attributes:
        method: ``POST``, ...
        path: The path and query, as sent.
        headers: Lower-cased header names to values, credential headers removed.
        credential: The key sent (``Bearer`` stripped), kept apart for assertions.
        json: The JSON body, when there was one.
        fields: Multipart text fields (a name may repeat).
        files: Multipart files by field name (``image[]`` repeats).
    """

    method: str
    path: str
    headers: dict[str, str]
    credential: str | None
    json: dict[str, Any] | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[UploadedFile]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """One canned HTTP answer.

    Attributes:
        status: The HTTP status.
        body: A JSON value (sent as JSON) or raw bytes.
        headers: Extra response headers; ``content-type`` replaces the default
            ``application/json`` (an empty value leaves the header out).
        delay: Seconds to wait before answering (a slow server).
        chunks: When set, the body is sent as these chunks (``transfer-encoding: chunked``),
            one at a time, flushed: a stream of server-sent events; ``body`` is unused.
        chunk_delay: Seconds between two chunks.
        cut: After the chunks, close the connection without ending the body (a stream that
            breaks).
    """

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: tuple[bytes, ...] = ()
    chunk_delay: float = 0.0
    cut: bool = False


#: Makes the reply to one request; queued on a fake with :meth:`FakeServer.queue`.
Script = Callable[[RecordedRequest], Reply]


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, list[str]], dict[str, list[UploadedFile]]]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"content-type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, list[str]] = {}
    files: dict[str, list[UploadedFile]] = {}
    for part in message.iter_parts() if isinstance(message, Message) else []:
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            files.setdefault(str(name), []).append(
                UploadedFile(str(filename), part.get_content_type(), payload)
            )
        else:
            fields.setdefault(str(name), []).append(payload.decode())
    return fields, files


class FakeServer:
    """A scripted HTTP server on ``127.0.0.1:<free port>``; use it as a context manager.

    Subclasses implement :meth:`answer` (the real-shaped success for a request); scripted
    replies queued with :meth:`queue` are used first, one per request.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        #: ``(received, answered)`` of each request answered, on ``time.monotonic()``, in
        #: the order the answers went out: which calls were in flight together.
        self.spans: list[tuple[float, float]] = []
        #: Exceptions the fake itself raised while answering (a bug in the fake or a
        #: request it cannot parse); the fixtures fail the test when any are left.
        self.crashes: list[str] = []
        self._script: deque[Script] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = self._make_server()
        # A short poll interval: shutdown() waits up to one interval, at every teardown.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def queue(self, *scripts: Script) -> None:
        """Answer the next requests with these, in order, before falling back to success."""
        with self._lock:
            self._script.extend(scripts)

    def answer(self, request: RecordedRequest) -> Reply:
        """The reply to a request nothing is scripted for."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()  # wakes any slow reply still waiting
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _reply_to(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._script.popleft() if self._script else None
        return script(request) if script is not None else self.answer(request)

    def _make_server(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                received = time.monotonic()
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                credential = next(
                    (headers[name] for name in CREDENTIAL_HEADERS if name in headers), None
                )
                if credential is not None:
                    credential = credential.removeprefix("Bearer ")
                content_type = headers.get("content-type", "")
                json_body, fields, files = None, {}, {}
                if content_type.startswith("application/json") and raw:
                    json_body = json.loads(raw)
                elif content_type.startswith("multipart/form-data"):
                    fields, files = _parse_multipart(content_type, raw)
                request = RecordedRequest(
                    method="POST",
                    path=self.path,
                    headers={k: v for k, v in headers.items() if k not in CREDENTIAL_HEADERS},
                    credential=credential,
                    json=json_body,
                    fields=fields,
                    files=files,
                )
                try:
                    reply = fake._reply_to(request)
                except Exception as exc:  # the fixture reports it; the client sees a 500
                    fake.crashes.append(f"{type(exc).__name__}: {exc}")
                    reply = Reply(500, {"error": {"message": f"fake crashed: {exc}"}})
                if reply.delay and fake._stopping.wait(reply.delay):
                    return
                if reply.chunks:
                    self._send_chunks(reply)
                    with fake._lock:
                        fake.spans.append((received, time.monotonic()))
                    return
                body = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                headers = {"content-type": "application/json", **reply.headers}
                self.send_response(reply.status)
                self.send_header("content-length", str(len(body)))
                for name, value in headers.items():
                    if value:  # an empty value: the header is left out
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                with fake._lock:
                    fake.spans.append((received, time.monotonic()))

            def _send_chunks(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("transfer-encoding", "chunked")
                for name, value in {"content-type": "text/event-stream", **reply.headers}.items():
                    if value:
                        self.send_header(name, value)
                self.end_headers()
                for number, chunk in enumerate(reply.chunks):
                    if number and reply.chunk_delay and fake._stopping.wait(reply.chunk_delay):
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                if reply.cut:  # no last chunk: the client sees the body cut short
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                # Only a client hanging up (after its timeout) is expected here.
                error = sys.exc_info()[1]
                if not isinstance(error, ConnectionError):
                    fake.crashes.append(f"{type(error).__name__}: {error}")

        return QuietServer(("127.0.0.1", 0), Handler)
