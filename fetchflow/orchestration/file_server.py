"""The local store's files over HTTP, so links in the Prefect UI open them.

Browsers do not follow ``file://`` links from a web page (the Prefect UI drops them), so
``fetchflow server`` also serves the local asset store on its own loopback port
(:func:`start_file_server`, a small threaded HTTP server) and writes its base URL in
``server.json``. A run that finds it shows ``http://127.0.0.1:PORT/<key>`` links in its
artifacts (:func:`public_links`); the records themselves keep the store's ``file://`` URLs.

Only content-named files under the store's root are served (``<sha[:2]>/<sha256>.<ext>``,
the objects the store writes): no run state, no hidden file, no directory listing, nothing
through a symlink that leaves the root, no ``..``. GET and HEAD only; Range is not
supported. Content-named files never change, so they are served as immutable.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import posixpath
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from fetchflow.storage.keys import sha256_of_key

__all__ = [
    "FileServer",
    "content_type",
    "public_links",
    "resolve_request",
    "start_file_server",
]

#: Well-known types first: mimetypes' tables differ between platforms (no webp on some).
_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
}
_CHUNK = 256 * 1024


def content_type(path: Path) -> str:
    """The ``Content-Type`` of a served file, from its extension."""
    suffix = path.suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def resolve_request(root: Path, url_path: str) -> Path | None:
    """The file a request path names under ``root``, or None when it must not be served.

    Refused: anything that is not a content-named file (``<sha[:2]>/<sha256>.<ext>``) of the
    store (``cache/<sha256>.json`` is a state document),
    an empty or hidden segment, ``..``, a backslash or NUL, an absolute path after
    decoding, a directory, a missing file, and a path whose real location (symlinks
    resolved) is outside ``root``.
    """
    path = unquote(urlsplit(url_path).path)
    if "\\" in path or "\x00" in path or not path.startswith("/"):
        return None
    relative = path[1:]
    segments = relative.split("/")
    if not relative or any(not part or part.startswith(".") for part in segments):
        return None  # "", "//x" (absolute once decoded), ".", "..", hidden files
    sha = sha256_of_key(segments[-1])
    if posixpath.isabs(relative) or sha is None:
        return None
    if len(segments) < 2 or segments[-2] != sha[:2]:
        return None  # not where the store puts content: cache/<sha256>.json is run state
    real_root = root.resolve()
    try:
        candidate = (real_root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None  # missing, or a symlink loop
    if not candidate.is_relative_to(real_root) or not candidate.is_file():
        return None
    return candidate


def _handler(root: Path) -> type[BaseHTTPRequestHandler]:
    class StoreFiles(BaseHTTPRequestHandler):
        server_version = "fetchflow-files"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            path = resolve_request(root, self.path)
            if path is None:
                self.send_error(HTTPStatus.NOT_FOUND, "not a file of the local asset store")
                return
            try:
                source = path.open("rb")
            except OSError:
                self.send_error(HTTPStatus.NOT_FOUND, "not a file of the local asset store")
                return
            with source:
                size = path.stat().st_size
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", content_type(path))
                self.send_header("Content-Length", str(size))
                self.send_header("Cache-Control", "public, max-age=31536000, immutable")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                if body:
                    with contextlib.suppress(ConnectionError):
                        shutil.copyfileobj(source, self.wfile, _CHUNK)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a request log line per thumbnail click is noise in the server's terminal

    return StoreFiles


@dataclass
class FileServer:
    """A running store file server.

    Attributes:
        url: Its base URL (``http://127.0.0.1:4201``); a file is ``url + "/" + key``.
        root: The store folder it serves.
    """

    url: str
    root: Path
    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_file_server(root: Path, host: str = "127.0.0.1", port: int = 0) -> FileServer:
    """Serve ``root``'s content-named files on ``host:port`` (0: a free port) in a thread.

    Raises:
        OSError: The port cannot be bound.
    """
    server = ThreadingHTTPServer((host, port), _handler(root.resolve()))
    server.daemon_threads = True
    bound = server.server_address[1]
    base = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    thread = threading.Thread(target=server.serve_forever, name="fetchflow-files", daemon=True)
    thread.start()
    return FileServer(base, root.resolve(), server, thread)


def link_for(file_url: str, base_url: str, root: Path) -> str:
    """``file_url`` as a link to the file server when it is a ``file://`` URL of a file
    under ``root``; anything else unchanged."""
    parts = urlsplit(file_url)
    if parts.scheme != "file" or parts.netloc not in {"", "localhost"}:
        return file_url
    path = Path(unquote(parts.path))
    if not path.is_relative_to(root):
        return file_url
    return f"{base_url.rstrip('/')}/{quote(path.relative_to(root).as_posix())}"


def public_links(state_file: Path) -> Callable[[str], str] | None:
    """How to show local ``file://`` URLs in the UI: through the file server that
    ``fetchflow server`` noted in ``state_file`` (``server.json``); None without one.

    The file is only read, not checked against the server (a run checks that once, when
    it looks for the server); a link to a stopped server is no worse than a ``file://``.
    """
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    base, root = state.get("files_url"), state.get("files_root")
    if not (isinstance(base, str) and isinstance(root, str)):
        return None
    folder = Path(root)
    return lambda file_url: link_for(file_url, base, folder)
