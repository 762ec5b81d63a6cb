"""Artifacts: keys, thumbnails, gallery, tables, summary and progress.

The content functions are tested as plain functions; publishing is tested in real Prefect
flow runs against the session's server, reading the artifacts back through Prefect's client.
"""

from __future__ import annotations

import base64
import io
import random
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from PIL import Image

from fetchflow.orchestration.artifacts import MAX_KEY_LENGTH, artifact_key
from fetchflow.run import artifact_content
from fetchflow.run.artifact_content import (
    GALLERY_BUDGET,
    ThumbnailCache,
    asset_records,
    asset_table,
    render_gallery,
    render_output,
    render_summary,
    thumbnail_uri,
)
from fetchflow.run.report import RunReport, StepResult
from fetchflow.storage import LocalStore

DATA_URI = re.compile(r"data:image/(?:webp|jpeg);base64,([A-Za-z0-9+/=]+)")
LINKED_THUMB = re.compile(r"\[!\[[^\]]*\]\((data:image/[^)]+)\)\]\(([^)]+)\)")
SIGNED = "https://bucket.s3.amazonaws.com/a/b.png?X-Amz-Signature=deadbeef&X-Amz-Credential=AK"


def png(width: int, height: int, *, mode: str = "RGB", noise: bool = False) -> bytes:
    """A real PNG (noise compresses badly: it makes large thumbnails)."""
    image = Image.new(mode, (width, height), "teal")
    if noise:
        image = Image.frombytes(mode, (width, height), random.randbytes(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decode(uri: str) -> Image.Image:
    match = DATA_URI.fullmatch(uri)
    assert match is not None, uri[:60]
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


def stored_records(store: LocalStore, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Asset records (as JSON data, the way steps output them) of real PNGs in ``store``."""
    records = []
    for number, (width, height) in enumerate(sizes, 1):
        record = store.put(
            png(width, height),
            file_name=f"hero-{number}.png",
            file_type="image/png",
            step_id="hero",
            run_id="run-1",
            width=width,
            height=height,
            model="preview",
        )
        records.append(record.model_dump(mode="json"))
    return records


def prefect_key_is_valid(key: str) -> bool:
    """Validate with Prefect's own artifact key type (what its client and server use)."""
    from prefect.client.schemas.actions import ArtifactCreate
    from pydantic import ValidationError

    try:
        ArtifactCreate(key=key)
    except ValidationError:
        return False
    return True


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("hello", "hero", "output"), "hello-hero-output"),
        (("Product Shots", "hero_1", "assets"), "product-shots-hero-1-assets"),
        (("Café Crème", "run-summary"), "cafe-creme-run-summary"),
        (("--a__b--",), "a-b"),
        (("", "__"), "fetchflow"),
        (("日本",), "fetchflow"),
    ],
    ids=["plain", "spaces-underscores", "accents", "edges", "empty", "no-ascii"],
)
def test_artifact_key(parts: tuple[str, ...], expected: str) -> None:
    assert artifact_key(*parts) == expected
    assert prefect_key_is_valid(expected)


def test_prefect_refuses_what_artifact_key_repairs() -> None:
    assert not prefect_key_is_valid("hello_hero")
    assert not prefect_key_is_valid("Hello")


def test_long_keys_are_cut_but_stay_distinct() -> None:
    first, second = artifact_key("w" * 150, "a"), artifact_key("w" * 150, "b")
    assert first != second
    assert len(first) == len(second) == MAX_KEY_LENGTH
    assert prefect_key_is_valid(first)


# -- thumbnails and gallery -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "mode", "expected"),
    [
        ((1200, 800), "RGB", (256, 171)),
        ((300, 900), "RGBA", (85, 256)),
        ((40, 20), "RGB", (40, 20)),
    ],
    ids=["landscape", "portrait-alpha", "small-not-enlarged"],
)
def test_thumbnail_is_small_and_keeps_the_aspect(
    size: tuple[int, int], mode: str, expected: tuple[int, int]
) -> None:
    uri = thumbnail_uri(png(*size, mode=mode))
    assert decode(uri).size == expected
    assert len(uri) < 20_000


def render(records: list[dict[str, Any]], read_bytes: Callable[[str], bytes] | None) -> str:
    return render_gallery(
        records, step_id="hero", step_title="Hero shot", step_type="image", read_bytes=read_bytes
    )


def test_gallery_links_every_thumbnail_to_its_file(store: LocalStore) -> None:
    records = stored_records(store, [(800, 600), (512, 512), (64, 128)])
    markdown = render(records, store.read)
    linked = LINKED_THUMB.findall(markdown)
    assert [url for _, url in linked] == [record["file_url"] for record in records]
    assert all(max(decode(uri).size) <= 256 for uri, _ in linked)
    assert "### Hero shot · image" in markdown
    assert "| 1 | [hero-1.png](file://" in markdown
    assert " | 800×600 | " in markdown
    # Local files: the UI cannot open file:// links, so the gallery says where they are.
    folder = records[0]["file_url"].removeprefix("file://").rsplit("/", 2)[0]
    assert f"made 3 images. The files are in the local store, under `{folder}` (run" in markdown
    # Through the local store's file server, the links open.
    served = render_gallery(
        records,
        step_id="hero",
        step_title="Hero shot",
        step_type="image",
        read_bytes=store.read,
        links=lambda url: url.replace("file://", "http://127.0.0.1:4201"),
    )
    served_links = [url for _, url in LINKED_THUMB.findall(served)]
    assert all(url.startswith("http://127.0.0.1:4201/") for url in served_links)
    assert "| 1 | [hero-1.png](http://127.0.0.1:4201/" in served
    assert "made 3 images. Click a thumbnail for the full file." in served
    https = [
        {**record, "file_url": f"https://cdn.example/{i}.png"} for i, record in enumerate(records)
    ]
    assert "made 3 images. Click a thumbnail for the full file." in render(https, store.read)


def test_unreadable_files_keep_their_link_and_say_why(store: LocalStore) -> None:
    records = stored_records(store, [(100, 100), (100, 100)])
    records[1]["storage_uri"] = "file:///elsewhere/x.png"
    warnings: list[str] = []

    markdown = render_gallery(
        records,
        step_id="hero",
        step_title="hero",
        step_type="image",
        read_bytes=store.read,
        warn=warnings.append,
    )

    assert len(LINKED_THUMB.findall(markdown)) == 1
    assert f"| 2 | [hero-2.png]({records[1]['file_url']}) | " in markdown
    assert "no preview: StorageError" in markdown
    assert len(warnings) == 1 and "hero-2.png" in warnings[0] and "outside" in warnings[0]


def test_bytes_that_are_no_image_and_a_missing_store_give_notes(store: LocalStore) -> None:
    records = stored_records(store, [(10, 10)])
    assert "no preview: UnidentifiedImageError" in render(records, lambda _: b"not an image")
    assert "no preview: the store is not readable here" in render(records, None)


def test_gallery_stays_within_its_budget(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 150_000  # a quarter of the real one, to keep the test quick
    monkeypatch.setattr(artifact_content, "GALLERY_BUDGET", budget)
    random.seed(7)
    records = []
    for number in range(12):
        record = store.put(
            png(300, 300, noise=True),
            file_name=f"noise-{number}.png",
            file_type="image/png",
            step_id="hero",
            run_id="run-1",
        )
        records.append(record.model_dump(mode="json"))

    markdown = render(records, store.read)

    thumbs = [uri for uri, _ in LINKED_THUMB.findall(markdown)]
    assert sum(len(uri) for uri in thumbs) <= budget
    assert "no preview: the gallery is full (size limit)" in markdown
    assert {max(decode(uri).size) for uri in thumbs} == {256, 96}
    assert all(f"noise-{number}.png" in markdown for number in range(12))


def test_the_real_budget_holds_dozens_of_thumbnails() -> None:
    thumbnail = thumbnail_uri(png(1024, 1024, noise=True))  # the worst case: pure noise
    assert GALLERY_BUDGET // len(thumbnail) >= 24
    assert GALLERY_BUDGET < 1_000_000


def test_names_and_urls_cannot_inject_markdown(store: LocalStore) -> None:
    records = stored_records(store, [(10, 10)])
    records[0]["file_name"] = "x](javascript:alert(1)) <b>"
    records[0]["file_url"] = "javascript:alert(1)"
    markdown = render(records, store.read)
    assert "](javascript" not in markdown.replace("\\](javascript", "")
    assert "x\\]\\(javascript:alert\\(1\\)\\) \\<b\\>" in markdown


def test_asset_table_rows() -> None:
    record = {
        "id": "abc",
        "file_url": "https://x/y.png",
        "file_name": "y.png",
        "file_type": "image/png",
        "file_size": 2048,
        "storage_uri": "s3://b/y.png",
        "width": 3,
        "height": 2,
        "cost_usd": 0.04,
    }
    assert asset_table([record]) == [
        {
            "file_name": "y.png",
            "file_type": "image/png",
            "size": "2.0 KiB",
            "dimensions": "3×2",
            "model": "",
            "cost_usd": 0.04,
            "id": "abc",
            "file_url": "https://x/y.png",
        }
    ]


@pytest.mark.parametrize(
    "output",
    [None, "text", [], [1, 2], [{"file_url": "u"}], {"file_url": "u", "file_name": "n"}],
    ids=["none", "str", "empty", "ints", "partial-record", "dict"],
)
def test_what_is_not_a_list_of_records(output: object) -> None:
    assert asset_records(output) is None


def test_text_output_is_fenced_and_truncated() -> None:
    text = "```\n" + "x" * 5000
    markdown = render_output(text, step_id="brief", step_title="Brief", step_type="template")
    assert markdown.splitlines()[4] == "````text"
    assert "… (1004 more characters)" in markdown
    data = render_output({"a": [1]}, step_id="b", step_title="b", step_type="t")
    assert '```json\n{\n  "a": [\n    1\n  ]\n}\n```' in data


# -- summary ----------------------------------------------------------------------------------


def summary_report() -> RunReport:
    record = {
        "id": "a",
        "file_url": SIGNED,
        "file_name": "a.png",
        "file_type": "image/png",
        "storage_uri": "s3://bucket/a/b.png",
        "cost_usd": 0.04,
        "usage": {"input_tokens": 10, "output_tokens": 100},
    }
    return RunReport(
        workflow="shots",
        run_id="r",
        status="partial",
        message="1 step(s) failed (upload) and 1 were skipped",
        steps={
            "hero": StepResult("completed", [record, record], None, 2.5, 1),
            "upload": StepResult("failed", None, f"PUT {SIGNED} failed: 403 | denied", 1.0, 3),
            "caption": StepResult("skipped", None, 'skipped: upstream step "upload" failed'),
        },
    )


def test_summary_has_a_row_per_step_and_totals_but_no_signed_urls() -> None:
    markdown = render_summary(
        summary_report(),
        step_titles={"hero": "Hero shot", "upload": "upload", "caption": "caption"},
        step_types={"hero": "image", "upload": "push", "caption": "template"},
        seconds=4.2,
    )
    lines = markdown.splitlines()
    assert lines[0] == "## shots: partial in 4.2 s"
    rows = [line for line in lines if line.startswith("| ")][1:]
    assert rows[0].startswith("| Hero shot (`hero`) | image | ✓ completed | 2.50 s | 1 | 2 |")
    assert "input\\_tokens 20, output\\_tokens 200 | $0.0800 |" in rows[0]
    assert rows[1].startswith("| `upload` | push | ✗ failed | 1.00 s | 3 |")
    assert "403 \\| denied" in rows[1]
    assert rows[2].startswith("| `caption` | template | – skipped |")
    assert rows[3].startswith(
        "| **total** |  | 1 completed, 1 failed, 1 skipped | 3.50 s | 4 | 2 |"
    )
    assert "X-Amz" not in markdown and "file_url" not in markdown
    assert "https://bucket.s3.amazonaws.com/a/b.png?…" in markdown


# -- publishing in real flow runs -------------------------------------------------------------


@pytest.fixture
def run_flow(prefect_api: str) -> Iterator[Callable[[Callable[[], object]], UUID]]:
    """Run ``body`` as a flow (with a task it may submit) and return the flow run id."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    def run(body: Callable[[], object]) -> UUID:
        state = flow(name="artifact-tests", persist_result=False)(body)(return_state=True)
        assert state.is_completed(), state.message
        run_id = state.state_details.flow_run_id
        assert run_id is not None
        return UUID(str(run_id))

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield run


def read_artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The artifacts of one flow run (its own and its task runs'), by key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import Artifact

    with get_client(sync_client=True) as client:
        # Not client.read_artifacts: Prefect 3.8.8's client sends every filter left out as
        # null, which its server refuses (422), and any task-run filter, even an empty one,
        # hides the flow run's own artifacts. The API itself takes the filter alone.
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}},
                "sort": "KEY_ASC",
                "limit": 50,
                "offset": 0,
            },
        )
    found = [Artifact.model_validate(item) for item in response.json()]
    return {str(artifact.key): artifact for artifact in found}


@pytest.mark.prefect
def test_step_output_artifacts_belong_to_the_task_run(
    run_flow: Callable[[Callable[[], object]], UUID], store: LocalStore
) -> None:
    from prefect import task

    from fetchflow.orchestration.artifacts import publish_step_output

    records = stored_records(store, [(1024, 768), (512, 512), (300, 900)])
    published: dict[str, list[str]] = {}

    @task(name="hero", persist_result=False)
    def hero() -> None:
        published["hero"] = publish_step_output(
            workflow="Product Shots",
            step_id="hero",
            step_title="Hero shot",
            step_type="image_generation",
            output=records,
            read_bytes=store.read,
        )
        published["brief"] = publish_step_output(
            workflow="Product Shots",
            step_id="brief",
            step_title="brief",
            step_type="template",
            output="A blue vase",
            read_bytes=None,
        )

    artifacts = read_artifacts(run_flow(lambda: hero.submit().wait()))

    assert published["hero"] == ["product-shots-hero-output"]  # gallery and table in one
    assert published["brief"] == ["product-shots-brief-output"]
    assert set(artifacts) == {*published["hero"], *published["brief"]}
    assert all(prefect_key_is_valid(key) for key in artifacts)
    assert all(artifact.task_run_id is not None for artifact in artifacts.values())
    gallery = artifacts["product-shots-hero-output"]
    assert gallery.type == "markdown"
    linked = LINKED_THUMB.findall(gallery.data)
    assert [url for _, url in linked] == [record["file_url"] for record in records]
    assert [max(decode(uri).size) for uri, _ in linked] == [256, 256, 256]
    for number in (1, 2, 3):
        assert f"| {number} | [hero-{number}.png](file://" in gallery.data
    assert " | 1024×768 | " in gallery.data
    assert "A blue vase" in artifacts["product-shots-brief-output"].data


@pytest.mark.prefect
def test_run_summary_is_an_artifact_of_the_flow_run(
    run_flow: Callable[[Callable[[], object]], UUID],
) -> None:
    from fetchflow.orchestration.artifacts import publish_run_summary

    keys: list[str | None] = []
    report = summary_report()

    def body() -> None:
        keys.append(
            publish_run_summary(report, step_titles={}, step_types={"hero": "image"}, seconds=1)
        )

    artifacts = read_artifacts(run_flow(body))

    assert keys == ["shots-run-summary"]
    summary = artifacts["shots-run-summary"]
    assert summary.task_run_id is None
    assert summary.description == "shots: partial"
    assert "| `hero` | image | ✓ completed |" in summary.data
    assert "| **total** |" in summary.data and "X-Amz" not in summary.data


@pytest.mark.prefect
def test_progress_from_worker_threads_ends_at_100(
    run_flow: Callable[[Callable[[], object]], UUID],
) -> None:
    from prefect import task

    from fetchflow.orchestration.artifacts import StepProgress

    @task(name="many", persist_result=False)
    def many() -> None:
        progress = StepProgress(workflow="shots", step_id="many", min_interval=0)
        progress.start(6)
        with ThreadPoolExecutor(3) as pool:  # plain threads: no Prefect context in them
            list(pool.map(lambda _: progress.advance(), range(6)))
        assert progress.percent == 100

    artifacts = read_artifacts(run_flow(lambda: many.submit().wait()))

    progress = artifacts["shots-many-progress"]
    assert progress.type == "progress"
    assert progress.data == 100
    assert progress.description == "6 of 6 done"
    assert progress.task_run_id is not None


def test_outside_a_run_nothing_is_published_and_nothing_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fetchflow.orchestration.artifacts import publish_step_output

    keys = publish_step_output(
        workflow="w", step_id="s", step_title="s", step_type="t", output="x", read_bytes=None
    )
    assert keys == []
    assert "artifact w-s-output not published: not inside a Prefect run" in caplog.text


def test_thumbnails_are_made_once_per_content_and_kept_on_disk(
    store: LocalStore, tmp_path: Path
) -> None:
    records = stored_records(store, [(800, 600), (300, 300)])
    cache = ThumbnailCache(tmp_path / "thumbnails")
    first = render_gallery(
        records,
        step_id="hero",
        step_title="h",
        step_type="i",
        read_bytes=store.read,
        thumbnails=cache,
    )
    assert cache.made == 2

    def unreadable(_: str) -> bytes:
        raise AssertionError("a cached thumbnail must not read the file again")

    again = render_gallery(
        records,
        step_id="hero",
        step_title="h",
        step_type="i",
        read_bytes=unreadable,
        thumbnails=cache,
    )
    later = ThumbnailCache(tmp_path / "thumbnails")  # a later run: another process
    from_disk = render_gallery(
        records,
        step_id="hero",
        step_title="h",
        step_type="i",
        read_bytes=unreadable,
        thumbnails=later,
    )
    assert first == again == from_disk
    assert (cache.made, later.made) == (2, 0)


@pytest.mark.prefect
def test_background_publishing_is_done_when_the_publisher_is_drained(
    run_flow: Callable[[Callable[[], object]], UUID], store: LocalStore
) -> None:
    from prefect import task

    from fetchflow.orchestration.artifacts import drain_publisher, publish_step_output

    records = stored_records(store, [(640, 480)])
    published: dict[str, list[str]] = {}

    @task(name="steps", persist_result=False)
    def steps() -> None:
        published["brief"] = publish_step_output(
            workflow="w",
            step_id="brief",
            step_title="brief",
            step_type="template",
            output="A *blue* vase " + "x" * 5000,
            read_bytes=None,
            background=True,
        )
        published["hero"] = publish_step_output(
            workflow="w",
            step_id="hero",
            step_title="hero",
            step_type="image_generation",
            output=records,
            read_bytes=store.read,
            background=True,
        )

    def body() -> None:
        steps.submit().wait()
        assert drain_publisher(60)

    artifacts = read_artifacts(run_flow(body))

    assert published == {"brief": ["w-brief-output"], "hero": ["w-hero-output"]}
    assert set(artifacts) == {"w-brief-output", "w-hero-output"}
    text = artifacts["w-brief-output"].data
    assert "A *blue* vase" in text and "… (1014 more characters)" in text  # fenced, trimmed
    assert all(artifact.task_run_id is not None for artifact in artifacts.values())
    assert len(LINKED_THUMB.findall(artifacts["w-hero-output"].data)) == 1


@pytest.mark.prefect
def test_text_outputs_are_one_artifact_of_the_run(prefect_api: str, tmp_path: Path) -> None:
    from fetchflow.orchestration.runner import run_plan
    from fetchflow.registry import StepRegistry
    from fetchflow.settings import Settings
    from fetchflow.workflow.checking import check_file
    from fetchflow.workflow.inputs import resolve_inputs

    plan = check_file(
        Path(__file__).resolve().parents[2] / "flows" / "hello.yaml",
        StepRegistry.from_entry_points(),
    )
    settings = Settings(_env_file=None, home=tmp_path / "home")  # type: ignore[call-arg]
    report = run_plan(plan, resolve_inputs(plan.header, {"product": "teapot"}), settings=settings)

    artifacts = read_artifacts(UUID(report.run_id))

    texts = artifacts["hello-text-outputs"]
    assert texts.task_run_id is None  # the run's, one for all its steps
    assert texts.data.startswith("## hello: text outputs")
    for step_id in ("brief", "caption", "handoff"):
        assert f"Output of step `{step_id}`:" in texts.data
    assert "Meet the teapot." in texts.data
    assert [key for key in artifacts if key.endswith("-output")] == []  # no call per step
