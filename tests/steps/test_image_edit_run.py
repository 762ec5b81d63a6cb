"""The image_edit step run end to end through ``run``: real SDKs against the fake APIs.

References are read the way a run reads them: an asset record through a real LocalStore
and a file under a project folder (the one holding ``templates/``). What the fakes
received (multipart parts and fields, Gemini ``inlineData`` parts) is compared with the
source bytes, and every output record with the file the store holds. No Prefect.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordedRequest, fixtures
from fakes.fake_gemini import FakeGemini
from fakes.fake_openai import FakeOpenAI
from fakes.images import decode, hole_mask, inline, jpeg, png
from PIL import Image

from fetchflow.errors import StepError
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.templating import Templates
from steps.image_edit import ImageEditConfig, ImageEditStep
from steps.imaging.assets import ImageAsset
from steps.imaging.partial import PartialImages
from steps.imaging.settings import ImageSettings, use_image_settings
from steps.imaging.sources.edit_plan import BACKGROUND_REMOVAL_PROMPT

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

KEY = "sk-fetchflow-edit-run-KEY-0123456789"
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fields_of(request: RecordedRequest) -> dict[str, str]:
    return {name: values[-1] for name, values in request.fields.items()}


@dataclass(frozen=True)
class Project:
    """A project folder with ``templates/``, the run's store, and the step's context."""

    root: Path
    store: LocalStore
    ctx: StepContext

    def stored(self, data: bytes, name: str) -> dict[str, Any]:
        """An upstream step's asset record for ``data`` (as ``<< hero.output.0 >>`` renders)."""
        image = decode(data)
        record = self.store.put(
            data,
            file_name=name,
            file_type="image/png",
            step_id="hero",
            run_id="run-0",
            width=image.width,
            height=image.height,
            model="preview",
        )
        return record.model_dump(mode="json")

    def file(self, relative: str, data: bytes) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return relative


@pytest.fixture(autouse=True)
def no_provider_environment(
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No key or FETCHFLOW_* setting from the machine; no developer's ``.env`` read."""
    scrub_environ(monkeypatch)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    (root / "templates").mkdir(parents=True)
    store = LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")
    # One attempt: a failed call is not retried into a success behind the test's back.
    use_image_settings(ImageSettings(provider_attempts=1))
    ctx = StepContext(
        step_id="edit",
        step_type="image_edit",
        run_id="run-1",
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("fetchflow.test.image_edit"),
        settings=Settings(home=tmp_path),
        templates=Templates([root / "templates"]),
        scope={},
        open_store=lambda: store,
    )
    return Project(root, store, ctx)


@pytest.fixture
def openai_env(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    return fake_openai


def run(project: Project, **fields: object) -> list[ImageAsset]:
    return ImageEditStep().run(ImageEditConfig(**fields), project.ctx)  # type: ignore[arg-type]


def assert_stored(project: Project, asset: ImageAsset, output_format: str) -> Image.Image:
    """The record's file is in the store, holds its bytes, and is in ``output_format``."""
    assert project.store.path_of(asset.storage_uri).is_file()
    data = project.store.read(asset.storage_uri)
    assert sha256(data) == asset.sha256
    image = decode(data)
    assert image.format == PILLOW_FORMATS[output_format]
    assert (image.width, image.height) == (asset.width, asset.height)
    return image


HERO = png(1024, 1024, (200, 40, 40, 255))
LOGO = jpeg(256, 256, (30, 160, 60))
MASK = hole_mask(1024, 1024)
BASE = {"model": "gpt-image-1.5", "prompt": "put a straw hat on the fox", "quality": "high"}


@pytest.mark.parametrize(
    ("mode", "options", "sent"),
    [
        pytest.param(
            "edit",
            {"output_format": "jpeg", "output_compression": 60, "size": "1024x1536"},
            {"output_format": "jpeg", "output_compression": "60", "size": "1024x1536"},
            id="edit-jpeg",
        ),
        pytest.param(
            "compose",
            {"output_format": "png", "size": "1536x1024", "count": 2, "input_fidelity": "high"},
            {"output_format": "png", "size": "1536x1024", "n": "2", "input_fidelity": "high"},
            id="compose-png",
        ),
        pytest.param(
            "inpaint",
            {"output_format": "webp", "output_compression": 80, "input_fidelity": "high"},
            {"output_format": "webp", "output_compression": "80", "input_fidelity": "high"},
            id="inpaint-webp",
        ),
    ],
)
def test_openai_edit_sends_the_references_and_stores_the_images(
    mode: str,
    options: dict[str, object],
    sent: dict[str, str],
    project: Project,
    openai_env: FakeOpenAI,
) -> None:
    hero = project.stored(HERO, "hero-1.png")
    images: list[object] = [hero] if mode == "edit" else [hero, project.file("refs/logo.jpg", LOGO)]
    sources = [HERO] if mode == "edit" else [HERO, LOGO]
    if mode == "inpaint":
        options = {**options, "mask": project.file("masks/hole.png", MASK)}

    assets = run(project, images=images, background="opaque", **BASE, **options)

    [request] = openai_env.requests
    assert request.path == "/v1/images/edits" and request.credential == KEY
    parts = request.files["image[]"]
    assert [part.data for part in parts] == sources
    assert [part.content_type for part in parts] == ["image/png", "image/jpeg"][: len(sources)]
    if mode == "inpaint":
        [mask] = request.files["mask"]
        assert mask.data == MASK and mask.content_type == "image/png"
    else:
        assert "mask" not in request.files
    expected = {
        "model": "gpt-image-1.5",
        "prompt": "put a straw hat on the fox",
        "n": "1",
        "size": "auto",
        "quality": "high",
        "background": "opaque",
        **sent,
    }
    assert fields_of(request) == expected  # exactly these: no moderation, nothing else
    assert "moderation" not in request.fields

    output_format = str(options["output_format"])
    assert len(assets) == int(expected["n"])
    # With size left out, "auto" is sent and the fake answers its default 1024x1024.
    width, height = (int(side) for side in expected["size"].replace("auto", "1024x1024").split("x"))
    for index, asset in enumerate(assets):
        assert (asset.index, asset.model, asset.provider) == (index, "gpt-image-1.5", "openai")
        assert asset.file_name == f"edit-{index + 1}.{output_format.replace('jpeg', 'jpg')}"
        assert asset.prompt_sha256 == sha256(b"put a straw hat on the fox")
        provenance = asset.provenance
        assert provenance["edit"] == mode
        assert provenance["source_sha256"] == sha256(HERO)
        assert provenance["source"] == hero["storage_uri"]
        assert provenance["references"] == str(len(sources))
        assert provenance["references_sha256"] == ",".join(sha256(s) for s in sources)
        image = assert_stored(project, asset, output_format)
        assert image.size == (width, height)


def alpha_extrema(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, int]:
    low, high = image.convert("RGBA").getchannel("A").crop(box).getextrema()  # type: ignore[misc]
    return int(low), int(high)


def test_outpaint_sends_a_16_9_canvas_and_a_mask_of_the_new_borders(
    project: Project, openai_env: FakeOpenAI
) -> None:
    hero = project.stored(HERO, "hero-1.png")

    [asset] = run(
        project, images=hero, model="gpt-image-2", prompt="extend the beach", outpaint="16:9"
    )

    [request] = openai_env.requests
    [image_part] = request.files["image[]"]
    [mask_part] = request.files["mask"]
    assert image_part.content_type == mask_part.content_type == "image/png"
    canvas, mask = decode(image_part.data), decode(mask_part.data)
    assert canvas.format == mask.format == "PNG"
    width, height = canvas.size
    size_w, size_h = (int(side) for side in fields_of(request)["size"].split("x"))
    # The canvas has the ratio of the size asked (to the pixel): what is sent is what is asked.
    assert height == 1024 and width == round(1024 * size_w / size_h)
    assert mask.size == canvas.size
    left = (width - 1024) // 2
    assert alpha_extrema(mask, (0, 0, left, height)) == (0, 0)
    assert alpha_extrema(mask, (left, 0, left + 1024, height)) == (255, 255)
    assert alpha_extrema(mask, (left + 1024, 0, width, height)) == (0, 0)
    # The original picture sits unchanged in the middle of the canvas.
    middle = canvas.convert("RGBA").crop((left, 0, left + 1024, height))
    assert middle.tobytes() == decode(HERO).convert("RGBA").tobytes()

    fields = fields_of(request)
    assert fields["model"] == "gpt-image-2"
    assert "input_fidelity" not in fields and "moderation" not in fields
    assert size_w % 16 == 0 and size_h % 16 == 0
    assert abs(size_w / size_h - 16 / 9) < 0.02
    assert asset.provenance["edit"] == "outpaint"
    assert asset.provenance["source_sha256"] == sha256(HERO)  # the source, not the canvas
    assert assert_stored(project, asset, "png").size == (size_w, size_h)


def test_background_removal_edits_each_image_with_the_built_in_prompt(
    project: Project, openai_env: FakeOpenAI
) -> None:
    first, second = png(1024, 1024, (10, 90, 200, 255)), png(1024, 1024, (250, 200, 0, 255))
    records = [project.stored(first, "a.png"), project.stored(second, "b.png")]

    assets = run(project, images=records, model="gpt-image-1.5", background="transparent")

    assert len(openai_env.requests) == 2
    # The two edits are sent concurrently: in either order, one per source.
    sent = sorted(
        openai_env.requests, key=lambda r: [first, second].index(r.files["image[]"][0].data)
    )
    for request, source in zip(sent, (first, second), strict=True):
        assert [part.data for part in request.files["image[]"]] == [source]
        fields = fields_of(request)
        assert fields["prompt"] == BACKGROUND_REMOVAL_PROMPT
        assert fields["background"] == "transparent" and fields["output_format"] == "png"
        assert "moderation" not in fields and "mask" not in request.files
    assert [asset.index for asset in assets] == [0, 1]
    for asset, source in zip(assets, (first, second), strict=True):
        assert asset.provenance["edit"] == "remove_background"
        assert asset.provenance["source_sha256"] == sha256(source)
        assert asset.provenance["references_sha256"] == sha256(source)
        assert asset.prompt_sha256 == sha256(BACKGROUND_REMOVAL_PROMPT.encode())
        image = assert_stored(project, asset, "png")
        assert image.mode == "RGBA" and alpha_extrema(image, (0, 0, *image.size))[0] == 0


def test_gemini_edit_sends_the_prompt_then_every_reference_once_per_image(
    project: Project, fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    hero = project.stored(HERO, "hero-1.png")
    logo = project.file("refs/logo.jpg", LOGO)

    assets = run(
        project,
        images=[hero, logo],
        model="gemini-2.5-flash-image",
        prompt="the fox wears the logo on a cap",
        aspect_ratio="16:9",
        count=2,
    )

    assert len(fake_gemini.requests) == 2
    for request in fake_gemini.requests:
        assert request.path == "/v1/models/gemini-2.5-flash-image:generateContent"
        assert request.credential == KEY and request.json is not None
        [content] = request.json["contents"]
        text, first, second = content["parts"]
        assert text == {"text": "the fox wears the logo on a cap"}
        assert inline(first) == ("image/png", HERO)
        assert inline(second) == ("image/jpeg", LOGO)
        assert request.json["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9"
    assert [asset.index for asset in assets] == [0, 1]
    for asset in assets:
        assert (asset.model, asset.provider) == ("gemini-2.5-flash-image", "google")
        assert asset.provenance["edit"] == "compose"
        assert asset.provenance["references_sha256"] == f"{sha256(HERO)},{sha256(LOGO)}"
        assert assert_stored(project, asset, "png").size == (1344, 768)


@pytest.mark.parametrize(
    "fail",
    [
        pytest.param(lambda fake: fake.queue_server_error(500), id="500"),
        pytest.param(lambda fake: fake.queue_moderation_blocked(), id="400-moderation"),
    ],
)
def test_a_failed_second_edit_keeps_the_first_image(
    fail: Any, project: Project, openai_env: FakeOpenAI
) -> None:
    first, second = png(1024, 1024, (10, 90, 200, 255)), png(1024, 1024, (250, 200, 0, 255))
    records = [project.stored(first, "a.png"), project.stored(second, "b.png")]
    openai_env.queue(openai_env.answer)
    fail(openai_env)
    # The edits one at a time, so the failure meets the second (concurrent: the default).
    use_image_settings(ImageSettings(provider_attempts=1, provider_concurrency=1))

    with pytest.raises(
        PartialImages, match=r"1 of 2 images were made and kept before that: file://"
    ) as caught:
        run(project, images=records, model="gpt-image-1.5", prompt="add snow", each=True)

    assert len(openai_env.requests) == 2
    assert openai_env.requests[1].files["image[]"][0].data == second
    error = caught.value
    assert error.asked == 2 and error.partial_output == error.kept
    [kept] = error.kept
    assert kept["index"] == 0
    assert kept["provenance"]["source_sha256"] == sha256(first)  # type: ignore[index]
    assert kept["storage_uri"] in error.message
    asset = ImageAsset.model_validate(kept)
    assert assert_stored(project, asset, "png").size == (1024, 1024)


# -- model: auto and what the edit needs ------------------------------------------------------


@pytest.mark.parametrize(
    ("outpaint", "background", "model", "size"),
    [
        # gpt-image-1.5 makes no 16:9: auto goes on to a model with free sizes.
        pytest.param("16:9", "auto", "gpt-image-2", None, id="16:9-free-sizes"),
        pytest.param("9:16", "auto", "gpt-image-2", None, id="9:16-free-sizes"),
        # gpt-image-2 makes no transparent background; gpt-image-1.5 makes both that and 3:2.
        pytest.param("3:2", "transparent", "gpt-image-1.5", "1536x1024", id="3:2-transparent"),
    ],
)
def test_auto_outpaints_with_the_first_candidate_that_makes_the_ratio(
    project: Project,
    openai_env: FakeOpenAI,
    outpaint: str,
    background: str,
    model: str,
    size: str | None,
) -> None:
    hero = project.stored(HERO, "hero-1.png")

    [asset] = run(
        project,
        images=hero,
        model="auto",
        prompt="extend the beach",
        outpaint=outpaint,
        background=background,
    )

    [request] = openai_env.requests
    fields = fields_of(request)
    assert fields["model"] == asset.model == model
    if size is not None:
        assert fields["size"] == size
    size_w, size_h = (int(side) for side in fields["size"].split("x"))
    wide, high = (int(side) for side in outpaint.split(":"))
    assert abs(size_w / size_h / (wide / high) - 1) < 0.01
    canvas = decode(request.files["image[]"][0].data)
    assert abs(canvas.width / canvas.height / (size_w / size_h) - 1) < 0.01
    assert decode(request.files["mask"][0].data).size == canvas.size
    assert asset.provenance["edit"] == "outpaint"
    assert assert_stored(project, asset, "png").size == (size_w, size_h)


GPT_2_TRANSPARENT = (
    "gpt-image-2: background: transparent is not supported by model gpt-image-2 "
    "(transparent backgrounds are only a preview on this model)"
)
GPT_15_NO_16_9 = (
    "gpt-image-1.5: outpaint: 16:9 is not a ratio model gpt-image-1.5 can make (its sizes "
    "1024x1024, 1536x1024, 1024x1536 are 1:1, 3:2, 2:3); the result would be 3:2"
)
AUTO_REFUSED = "model: auto found image provider keys but no model that can serve this step: "


@pytest.mark.parametrize(
    ("keys", "fields", "reasons"),
    [
        pytest.param(
            ("openai",),
            {"outpaint": "16:9", "background": "transparent"},
            [GPT_2_TRANSPARENT, GPT_15_NO_16_9],
            id="openai-16:9-transparent",
        ),
        pytest.param(
            ("openai", "google"),
            {"outpaint": "16:9", "background": "transparent"},
            [
                GPT_2_TRANSPARENT,
                GPT_15_NO_16_9,
                "gemini-2.5-flash-image: background: transparent is not supported by model "
                "gemini-2.5-flash-image (Gemini image models have no background setting)",
            ],
            id="both-16:9-transparent",
        ),
        pytest.param(
            ("google",),
            {"outpaint": "16:9"},
            [
                "gemini-2.5-flash-image: outpaint needs a model that takes a mask; model "
                "gemini-2.5-flash-image edits from the prompt alone"
            ],
            id="google-outpaint",
        ),
    ],
)
def test_auto_with_no_candidate_for_the_edit_lists_each_reason_before_any_call(
    project: Project,
    fake_openai: FakeOpenAI,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[str, ...],
    fields: dict[str, str],
    reasons: list[str],
) -> None:
    if "openai" in keys:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    if "google" in keys:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    hero = project.stored(HERO, "hero-1.png")
    stored = sorted(project.store.root.rglob("*"))

    with pytest.raises(StepError) as caught:
        run(project, images=hero, model="auto", prompt="extend the beach", **fields)

    error = caught.value
    assert error.message == AUTO_REFUSED + "; ".join(reasons)
    assert error.hint == "name a model that supports these settings, or change them"
    assert error.retryable is False
    assert fake_openai.requests == [] and fake_gemini.requests == []
    assert sorted(project.store.root.rglob("*")) == stored  # nothing written
