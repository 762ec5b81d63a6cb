"""image_transform: references (records, files, URLs), the config rules, the Pillow core."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from fetchflow.errors import StepError, StorageError
from fetchflow.settings import Settings
from fetchflow.step import RuleViolation, StepContext
from fetchflow.storage.local import LocalStore
from fetchflow.templating import Templates
from steps.imaging.references import (
    check_images_value,
    project_root_of,
    resolve_references,
)


def image_bytes(
    size: tuple[int, int] = (40, 20),
    kind: str = "PNG",
    color: tuple[int, ...] = (200, 30, 30),
    mode: str = "RGB",
    exif: Image.Exif | None = None,
) -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, size, color)
    if exif is not None:
        image.save(buffer, kind, exif=exif)
    else:
        image.save(buffer, kind)
    return buffer.getvalue()


PNG = image_bytes()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


def context(
    tmp_path: Path, store: LocalStore, templates: Templates | None = None, **settings: object
) -> StepContext:
    return StepContext(
        step_id="thumbs",
        step_type="image_transform",
        run_id="run-1",
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("fetchflow.test.transform"),
        settings=Settings(home=tmp_path / "home", **settings),  # type: ignore[arg-type]
        templates=templates or Templates(),
        scope={},
        open_store=lambda: store,
    )


def put_record(store: LocalStore, data: bytes = PNG, name: str = "hero-1.png") -> dict[str, object]:
    record = store.put(
        data,
        file_name=name,
        file_type="image/png",
        step_id="hero",
        run_id="run-0",
        width=40,
        height=20,
        model="preview",
    )
    return record.model_dump(mode="json")


# --- references: the field's shape ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "hero.png",
        "https://example.com/a.png",
        {"storage_uri": "file:///x.png"},
        ["a.png", {"storage_uri": "s3://b/k.png"}],
    ],
    ids=["path", "url", "record", "list"],
)
def test_images_value_shapes_accepted(value: object) -> None:
    check_images_value(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "images is an empty list"),
        ("  ", "images holds an empty string"),
        ({"file_url": "x"}, "images holds a mapping without storage_uri \\(keys: file_url\\)"),
        (42, "images must be an image reference or a list of them, got int 42"),
        ([["a.png"]], "images must be an image reference or a list of them, got list"),
    ],
    ids=["empty-list", "empty-string", "mapping-without-uri", "number", "nested-list"],
)
def test_images_value_shapes_refused(value: object, message: str) -> None:
    with pytest.raises(RuleViolation, match=message):
        check_images_value(value)


# --- references: reading them --------------------------------------------------------------


def test_a_record_is_read_through_the_store(tmp_path: Path, store: LocalStore) -> None:
    record = put_record(store)
    ctx = context(tmp_path, store)
    [ref] = resolve_references(record, ctx=ctx, project_root=tmp_path)
    assert ref.data == PNG
    assert ref.sha256 == hashlib.sha256(PNG).hexdigest() == record["sha256"]
    assert ref.source == record["storage_uri"]
    assert ref.file_name == "hero-1.png"


def test_a_list_of_records_and_a_file_keeps_the_order(tmp_path: Path, store: LocalStore) -> None:
    other = image_bytes(color=(0, 0, 255))
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "logo.png").write_bytes(other)
    records = [put_record(store), "art/logo.png"]
    refs = resolve_references(records, ctx=context(tmp_path, store), project_root=tmp_path)
    assert [r.data for r in refs] == [PNG, other]
    assert refs[1].source == "file:art/logo.png"
    assert refs[1].file_name == "logo.png"
    assert refs[1].sha256 == hashlib.sha256(other).hexdigest()


def test_a_record_the_store_does_not_hold_is_an_error(tmp_path: Path, store: LocalStore) -> None:
    record = put_record(store)
    Path(str(record["storage_uri"]).removeprefix("file://")).unlink()
    with pytest.raises(StorageError, match="failed: No such file or directory"):
        resolve_references(record, ctx=context(tmp_path, store), project_root=tmp_path)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../secret.png", 'reference "../secret.png" leaves the project folder'),
        ("art/../../secret.png", 'reference "art/../../secret.png" leaves the project folder'),
        ("/etc/passwd", 'reference "/etc/passwd" is an absolute path'),
        ("missing.png", 'reference "missing.png" is not a file under the project folder'),
        ("file:///etc/passwd", "has scheme file: only http\\(s\\) URLs"),
        ("ftp://example.com/a.png", "has scheme ftp: only http\\(s\\) URLs"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "missing", "file-url", "ftp"],
)
def test_paths_outside_the_project_are_refused(
    tmp_path: Path, store: LocalStore, path: str, message: str
) -> None:
    project = tmp_path / "project"
    (project / "art").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(PNG)
    with pytest.raises(StepError, match=message):
        resolve_references(path, ctx=context(tmp_path, store), project_root=project)


def test_a_symlink_out_of_the_project_is_refused(tmp_path: Path, store: LocalStore) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    (project / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(StepError, match=r'reference "link\.png" leaves the project folder'):
        resolve_references("link.png", ctx=context(tmp_path, store), project_root=project)


def test_a_project_file_over_the_cap_is_refused(tmp_path: Path, store: LocalStore) -> None:
    (tmp_path / "big.png").write_bytes(bytes(2000))
    ctx = context(tmp_path, store, max_reference_bytes=1024)
    with pytest.raises(StepError, match=r'"big\.png" is 2,000 bytes, over the 1,024-byte limit'):
        resolve_references("big.png", ctx=ctx, project_root=tmp_path)


def test_the_project_root_is_the_folder_above_templates(tmp_path: Path, store: LocalStore) -> None:
    (tmp_path / "templates").mkdir()
    ctx = context(tmp_path, store, templates=Templates([tmp_path / "templates"]))
    assert project_root_of(ctx) == tmp_path.resolve()


@pytest.fixture
def image_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/img/ref.png?sig=secret"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_http_url_is_fetched_when_private_urls_are_allowed(
    tmp_path: Path, store: LocalStore, image_server: str
) -> None:
    ctx = context(tmp_path, store, allow_private_urls=True)
    [ref] = resolve_references(image_server, ctx=ctx, project_root=tmp_path)
    assert ref.data == PNG
    assert ref.sha256 == hashlib.sha256(PNG).hexdigest()
    assert ref.file_name == "ref.png"
    assert "secret" not in ref.source and ref.source.endswith("/img/ref.png")


def test_loopback_is_refused_by_default(
    tmp_path: Path, store: LocalStore, image_server: str
) -> None:
    with pytest.raises(StepError, match="loopback"):
        resolve_references(image_server, ctx=context(tmp_path, store), project_root=tmp_path)
