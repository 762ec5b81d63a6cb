"""``fetchflow server``'s file server serves the store's content files, never its state.

The generation cache's documents (``cache/<sha256 of the request>.json``: a cached step's
output, its file URLs and text) are named by a sha256 like content files; only where the
store puts content (``<sha[:2]>/<sha256>.<ext>``) is served.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchflow.orchestration.file_server import FileServer, start_file_server
from fetchflow.storage.local import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


@pytest.fixture
def served(store: LocalStore) -> Iterator[FileServer]:
    server = start_file_server(store.root)
    yield server
    server.close()


def get(server: FileServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_generation_cache_s_documents_are_not_served(
    store: LocalStore, served: FileServer
) -> None:
    record = store.put(b"text", file_name="a.txt", file_type="text/plain", step_id="s", run_id="r")
    key = Path(record.file_url.removeprefix("file://")).relative_to(store.root).as_posix()
    request_sha = "c" * 64
    store.put_state(f"cache/{request_sha}.json", {"run_id": "r", "output": "the brief"})
    # The same document one folder down, named like content but not in its sha's folder.
    store.put_state(f"cache/ab/{request_sha}.json", {"run_id": "r", "output": "the brief"})

    for path in (f"/cache/{request_sha}.json", f"/cache/ab/{request_sha}.json"):
        for method in ("GET", "HEAD"):
            status, body = get(served, path, method)
            assert status == 404, (path, method)
            assert b"the brief" not in body
    assert get(served, f"/{key}") == (200, b"text")
