"""The local store's file server: what it serves, what it refuses, and the links to it."""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from fetchflow.orchestration.file_server import (
    FileServer,
    public_links,
    resolve_request,
    start_file_server,
)
from fetchflow.storage.local import LocalStore


def png(width: int = 8, height: int = 6) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


@pytest.fixture
def served(store: LocalStore) -> Iterator[FileServer]:
    server = start_file_server(store.root)
    yield server
    server.close()


def request(
    server: FileServer, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        # putrequest sends the path as given (no normalisation of ``..`` on the way).
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def key_of(store: LocalStore, file_url: str) -> str:
    return Path(file_url.removeprefix("file://")).relative_to(store.root).as_posix()


def test_a_stored_image_is_served_with_its_type(store: LocalStore, served: FileServer) -> None:
    data = png()
    record = store.put(data, file_name="hero-1.png", file_type="image/png", step_id="s", run_id="r")
    key = key_of(store, record.file_url)

    status, headers, body = request(served, f"/{key}")
    assert (status, headers["Content-Type"], body) == (200, "image/png", data)
    assert headers["Content-Length"] == str(len(data))
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, headers, body = request(served, f"/{key}", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(len(data)), b"")


@pytest.mark.parametrize(
    ("file_name", "file_type", "expected"),
    [
        ("a.webp", "image/webp", "image/webp"),
        ("a.jpg", "image/jpeg", "image/jpeg"),
        ("a.gif", "image/gif", "image/gif"),
        ("a.txt", "text/plain", "text/plain; charset=utf-8"),
    ],
    ids=["webp", "jpeg", "gif", "text"],
)
def test_content_types(
    store: LocalStore, served: FileServer, file_name: str, file_type: str, expected: str
) -> None:
    record = store.put(b"bytes", file_name=file_name, file_type=file_type, step_id="s", run_id="r")
    status, headers, _ = request(served, f"/{key_of(store, record.file_url)}")
    assert (status, headers["Content-Type"]) == (200, expected)


def test_refusals_are_404_and_never_leak(
    store: LocalStore, served: FileServer, tmp_path: Path
) -> None:
    record = store.put(png(), file_name="x.png", file_type="image/png", step_id="s", run_id="r")
    key = key_of(store, record.file_url)
    folder, name = key.rsplit("/", 1)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    outside_sha = "f" * 64
    (tmp_path / f"{outside_sha}.png").write_bytes(png())
    (store.root / folder / f"{'e' * 64}.png").symlink_to(tmp_path / f"{outside_sha}.png")
    store.put_state("runs/r1/run.json", {"id": "r1"})
    (store.root / folder / f".{'d' * 64}.png").write_bytes(png())

    refused = {
        "dot-dot": f"/{folder}/../../secret.txt",
        "encoded-dot-dot": f"/{folder}/%2e%2e/%2e%2e/{outside_sha}.png",
        "absolute": f"/{tmp_path}/{outside_sha}.png",
        "encoded-absolute": f"/%2F{str(tmp_path).lstrip('/')}/{outside_sha}.png",
        "double-slash": f"//{str(tmp_path).lstrip('/')}/{outside_sha}.png",
        "symlink-out": f"/{folder}/{'e' * 64}.png",
        "missing": f"/{folder}/{'0' * 64}.png",
        "directory-listing": f"/{folder}/",
        "root-listing": "/",
        "run-state": "/runs/r1/run.json",
        "hidden": f"/{folder}/.{'d' * 64}.png",
        "backslash": f"/{folder}\\..\\..\\secret.txt",
        "nul": f"/{folder}/{name}%00.png",
    }
    for case, path in refused.items():
        status, _, body = request(served, path)
        assert status == 404, case
        assert b"top secret" not in body and b"PNG" not in body, case
    assert request(served, f"/{key}")[0] == 200  # the real file next to them is served
    assert request(served, f"/{key}", method="POST")[0] == 501


def test_resolve_request_allows_only_content_named_files_under_the_root(tmp_path: Path) -> None:
    sha = "a" * 64
    (tmp_path / "aa").mkdir()
    (tmp_path / "aa" / f"{sha}.png").write_bytes(b"x")
    (tmp_path / "aa" / "notes.png").write_bytes(b"x")
    assert resolve_request(tmp_path, f"/aa/{sha}.png") == (tmp_path / "aa" / f"{sha}.png")
    assert resolve_request(tmp_path, f"/aa/{sha}.png?x=1") == (tmp_path / "aa" / f"{sha}.png")
    assert resolve_request(tmp_path, "/aa/notes.png") is None
    assert resolve_request(tmp_path, f"aa/{sha}.png") is None


def test_public_links_map_local_file_urls_through_the_server(tmp_path: Path) -> None:
    root = tmp_path / "assets"
    state = tmp_path / "server.json"
    assert public_links(state) is None  # no server
    state.write_text(json.dumps({"api_url": "http://x/api", "ui_url": "http://x"}))
    assert public_links(state) is None  # a server that serves no files (an S3 store)
    state.write_text(json.dumps({"files_url": "http://127.0.0.1:4201", "files_root": str(root)}))
    links = public_links(state)
    assert links is not None
    inside = (root / "ab" / "ab cd.png").as_uri()
    assert links(inside) == "http://127.0.0.1:4201/ab/ab%20cd.png"
    assert links((tmp_path / "other" / "x.png").as_uri()).startswith("file://")
    assert links("https://cdn.example/x.png") == "https://cdn.example/x.png"


def test_the_server_stops_and_frees_its_port(store: LocalStore) -> None:
    server = start_file_server(store.root)
    port = int(server.url.rsplit(":", 1)[1])
    server.close()
    again = start_file_server(store.root, port=port)
    assert again.url.endswith(f":{port}")
    again.close()
