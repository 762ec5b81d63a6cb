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
from pydantic import ValidationError

from fetchflow.errors import StepError, StorageError, WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.settings import Settings
from fetchflow.step import RuleViolation, StepContext
from fetchflow.storage.local import LocalStore
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_file, check_text
from fetchflow.workflow.inputs import resolve_inputs
from fetchflow.workflow.plan import Plan
from steps.image_transform import ImageTransformConfig, ImageTransformStep, settings_sha256
from steps.imaging.pixels.transform import TransformSpec, transform_image
from steps.imaging.settings import ImageSettings, use_image_settings
from steps.imaging.sources.references import (
    check_images_value,
    project_root_of,
    resolve_references,
)

FLOWS = Path(__file__).resolve().parents[2] / "flows"


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
    tmp_path: Path,
    store: LocalStore,
    templates: Templates | None = None,
    **image_settings: object,
) -> StepContext:
    use_image_settings(ImageSettings(**image_settings))  # type: ignore[arg-type]
    return StepContext(
        step_id="thumbs",
        step_type="image_transform",
        run_id="run-1",
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("fetchflow.test.transform"),
        settings=Settings(home=tmp_path / "home"),
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
        [[{"storage_uri": "s3://b/1.png"}, {"storage_uri": "s3://b/2.png"}], "a.png"],
    ],
    ids=["path", "url", "record", "list", "step-output-in-a-list"],
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
        ([[["a.png"]]], "images must be an image reference or a list of them, got list"),
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


def test_a_step_output_and_a_file_keep_their_order(tmp_path: Path, store: LocalStore) -> None:
    other = image_bytes(color=(0, 0, 255))
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "logo.png").write_bytes(other)
    third = image_bytes(color=(0, 255, 0))
    records = [[put_record(store), put_record(store, third)], "art/logo.png"]
    refs = resolve_references(records, ctx=context(tmp_path, store), project_root=tmp_path)
    assert [r.data for r in refs] == [PNG, third, other]
    assert refs[2].source == "file:art/logo.png"
    assert refs[2].file_name == "logo.png"
    assert refs[2].sha256 == hashlib.sha256(other).hexdigest()


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


# --- config rules: static check with the real registry -------------------------------------

FLOW_HEAD = """\
name: t
steps:
  - id: hero
    type: image_generation
    prompt: a mug
    model: preview
  - id: thumbs
    type: image_transform
    images: "<< hero.output >>"
"""


def check(fields: str) -> Plan:
    registry = StepRegistry.from_entry_points()
    return check_text(FLOW_HEAD + fields, "t.yaml", registry, Templates())


def test_the_step_is_registered_and_free() -> None:
    step = StepRegistry.from_entry_points().get("image_transform")
    assert step is ImageTransformStep
    assert step.produces_files and not step.billable


@pytest.mark.parametrize(
    "fields",
    [
        "    width: 512\n    output_format: webp\n    output_compression: 80\n",
        "    height: 300\n",
        "    scale: 0.5\n",
        "    width: 300\n    height: 200\n    fit: pad\n    pad_color: '#ff0000'\n",
        "    width: 300\n    aspect_ratio: '1:1'\n    fit: pad\n    pad_color: transparent\n",
        "    output_format: jpeg\n",
    ],
    ids=["width-webp", "height", "scale", "both-sides-pad", "ratio-transparent", "convert"],
)
def test_valid_configs_check_clean(fields: str) -> None:
    assert check(fields).steps


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            "    scale: 2\n    width: 100\n",
            "scale and width are exclusive, got scale: 2.0 and width: 100",
        ),
        ("    scale: 2\n    height: 100\n", "scale and height are exclusive"),
        (
            "    width: 10\n    height: 10\n    aspect_ratio: '16:9'\n",
            r"aspect_ratio: 16:9 conflicts with width and height \(10x10 already sets the ratio\)",
        ),
        ("    pad_color: black\n", "pad_color: black only applies with fit: pad, got fit: crop"),
        ("    fit: pad\n    pad_color: nocolour\n", 'pad_color: "nocolour" is not a colour'),
        (
            "    fit: pad\n    pad_color: transparent\n    output_format: jpeg\n",
            "pad_color: transparent needs output_format png or webp, got jpeg",
        ),
        (
            "    output_format: png\n    output_compression: 50\n",
            "output_compression only applies to jpeg and webp, got output_format png",
        ),
        (
            "    output_compression: 50\n",
            r"output_compression only applies to jpeg and webp, got output_format none",
        ),
        ("    width: 9000\n", "width"),
        ("    output_format: gif\n", "output_format"),
        ("    aspect_ratio: '5:4'\n", "aspect_ratio"),
    ],
    ids=[
        "scale-width",
        "scale-height",
        "ratio-both-sides",
        "pad-color-without-pad",
        "bad-colour",
        "transparent-jpeg",
        "compression-png",
        "compression-kept-format",
        "width-too-large",
        "format",
        "ratio",
    ],
)
def test_broken_rules_are_reported(fields: str, message: str) -> None:
    with pytest.raises(WorkflowInvalid, match=message):
        check(fields)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ("[]", "images is an empty list"),
        ("{file_url: x}", r"images holds a mapping without storage_uri \(keys: file_url\)"),
        ("7", "images must be an image reference or a list of them, got int 7"),
    ],
    ids=["empty", "mapping", "number"],
)
def test_bad_images_values_are_reported(images: str, message: str) -> None:
    text = FLOW_HEAD.replace('"<< hero.output >>"', images)
    with pytest.raises(WorkflowInvalid, match=message):
        check_text(text, "t.yaml", StepRegistry.from_entry_points(), Templates())


def test_a_step_output_inside_a_list_checks_and_validates_once_rendered(
    tmp_path: Path, store: LocalStore
) -> None:
    text = FLOW_HEAD.replace('"<< hero.output >>"', '["<< hero.output >>", art/logo.png]')
    (tmp_path / "templates").mkdir()
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # validate checks it is there
    templates = Templates([tmp_path / "templates"])
    assert check_text(text, "t.yaml", StepRegistry.from_entry_points(), templates).steps
    rendered = [[put_record(store), put_record(store)], "art/logo.png"]
    config = ImageTransformConfig.model_validate({"images": rendered, "width": 8})
    assert config.images == rendered


def test_a_rule_on_a_templated_field_waits_for_rendering() -> None:
    plan = check("    output_format: \"<< 'png' >>\"\n    output_compression: 50\n")
    assert plan.steps
    with pytest.raises(ValidationError, match="output_compression only applies to jpeg and webp"):
        ImageTransformConfig.model_validate(
            {"images": "a.png", "output_format": "png", "output_compression": 50}
        )


# --- the Pillow core -----------------------------------------------------------------------


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (TransformSpec(width=20), (20, 10)),
        (TransformSpec(height=40), (80, 40)),
        (TransformSpec(width=400), (400, 200)),
        (TransformSpec(scale=0.5), (20, 10)),
        (TransformSpec(scale=3), (120, 60)),
        (TransformSpec(width=30, height=30), (30, 30)),
        (TransformSpec(aspect_ratio="1:1"), (20, 20)),
        (TransformSpec(aspect_ratio="1:1", fit="pad"), (40, 40)),
        (TransformSpec(aspect_ratio="9:16", width=90), (90, 160)),
        (TransformSpec(), (40, 20)),
    ],
    ids=[
        "width",
        "height-up",
        "upscale",
        "half",
        "triple",
        "both-crop",
        "ratio-crop",
        "ratio-pad",
        "ratio-and-width",
        "identity",
    ],
)
def test_sizes(spec: TransformSpec, size: tuple[int, int]) -> None:
    result = transform_image(PNG, spec, source="test")
    assert (result.width, result.height) == size == decode(result.data).size


def test_crop_keeps_the_centre() -> None:
    source = Image.new("RGB", (30, 10), (255, 0, 0))
    source.paste((0, 0, 255), (10, 0, 20, 10))  # a blue middle third
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    result = decode(
        transform_image(buffer.getvalue(), TransformSpec(aspect_ratio="1:1"), source="t").data
    )
    assert result.size == (10, 10)
    assert {result.getpixel((x, y)) for x in range(10) for y in range(10)} == {(0, 0, 255)}


def test_pad_uses_the_pad_colour() -> None:
    spec = TransformSpec(aspect_ratio="1:1", fit="pad", pad_color="#00ff00")
    result = decode(transform_image(PNG, spec, source="t").data)
    assert result.size == (40, 40) and result.mode == "RGB"
    assert result.getpixel((0, 0)) == (0, 255, 0)  # the band above
    assert result.getpixel((20, 20)) == (200, 30, 30)  # the image in the middle
    assert result.getpixel((39, 39)) == (0, 255, 0)  # the band below


def test_pad_defaults_to_white() -> None:
    spec = TransformSpec(aspect_ratio="1:1", fit="pad", output_format="jpeg")
    result = decode(transform_image(PNG, spec, source="t").data)
    red, green, blue = pixel(result, (20, 1))
    assert min(red, green, blue) >= 253  # white, give or take JPEG's rounding


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_transparent_pad_is_transparent(output_format: str) -> None:
    spec = TransformSpec(
        aspect_ratio="1:1", fit="pad", pad_color="transparent", output_format=output_format
    )
    result = decode(transform_image(PNG, spec, source="t").data)
    assert result.mode == "RGBA"
    assert pixel(result, (0, 0))[3] == 0
    assert result.getpixel((20, 20)) == (200, 30, 30, 255)


def test_a_transparent_pad_of_a_jpeg_source_keeps_alpha_in_png() -> None:
    jpeg = image_bytes(kind="JPEG")
    result = transform_image(
        jpeg, TransformSpec(aspect_ratio="1:1", fit="pad", pad_color="transparent"), source="t"
    )
    assert result.format == "png" and result.source_format == "jpeg"
    assert pixel(decode(result.data), (0, 0))[3] == 0


@pytest.mark.parametrize(
    ("kind", "output_format", "expected", "pil"),
    [
        ("PNG", None, "png", "PNG"),
        ("JPEG", None, "jpeg", "JPEG"),
        ("WEBP", None, "webp", "WEBP"),
        ("GIF", None, "png", "PNG"),
        ("PNG", "jpeg", "jpeg", "JPEG"),
        ("JPEG", "webp", "webp", "WEBP"),
    ],
    ids=["keep-png", "keep-jpeg", "keep-webp", "gif-to-png", "png-to-jpeg", "jpeg-to-webp"],
)
def test_formats(kind: str, output_format: str | None, expected: str, pil: str) -> None:
    mode = "P" if kind == "GIF" else "RGB"
    color: tuple[int, ...] = (3,) if kind == "GIF" else (200, 30, 30)
    data = image_bytes(kind=kind, mode=mode, color=color)
    result = transform_image(data, TransformSpec(output_format=output_format), source="t")
    assert result.format == expected
    assert result.file_type == f"image/{expected}"
    assert decode(result.data).format == pil


def test_compression_changes_the_bytes() -> None:
    noisy = Image.effect_noise((256, 256), 80).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    sizes = {
        level: len(
            transform_image(
                buffer.getvalue(),
                TransformSpec(output_format="jpeg", output_compression=level),
                source="t",
            ).data
        )
        for level in (10, 95)
    }
    assert sizes[10] < sizes[95]
    lossy = transform_image(
        buffer.getvalue(), TransformSpec(output_format="webp", output_compression=50), source="t"
    )
    lossless = transform_image(buffer.getvalue(), TransformSpec(output_format="webp"), source="t")
    assert len(lossy.data) < len(lossless.data)


def exif_with_orientation() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "GPS and all"  # Software
    return exif


@pytest.mark.parametrize("output_format", ["jpeg", "png", "webp"])
def test_exif_orientation_is_applied_then_metadata_dropped(output_format: str) -> None:
    data = image_bytes(size=(40, 20), kind="JPEG", exif=exif_with_orientation())
    assert dict(decode(data).getexif())  # the input has EXIF
    result = transform_image(data, TransformSpec(output_format=output_format), source="t")
    out = decode(result.data)
    assert out.size == (20, 40) == (result.width, result.height)  # rotated upright
    assert not dict(out.getexif())
    assert "exif" not in out.info and "icc_profile" not in out.info
    assert b"SecretCam" not in result.data


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TransformSpec(width=8193), "the output would be 8193x4096, over the limit of 8192"),
        (TransformSpec(scale=16, width=None), None),
    ],
    ids=["side", "pixels"],
)
def test_outputs_over_the_cap_are_refused(spec: TransformSpec, message: str | None) -> None:
    data = PNG if message else image_bytes(size=(500, 500))
    expected = message or r"the output would be 8000x8000, over the limit .* 40,000,000 pixels"
    with pytest.raises(StepError, match=expected):
        transform_image(data, spec, source="image x")


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(StepError, match=r"image x: 9 bytes that are not a readable image"):
        transform_image(b"not a png", TransformSpec(), source="image x")


def test_an_input_over_the_pixel_limit_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, "PNG")
    with pytest.raises(StepError, match="image x is 8000x6000, over the 40,000,000-pixel"):
        transform_image(buffer.getvalue(), TransformSpec(), source="image x")


# --- the step ------------------------------------------------------------------------------


def test_several_images_give_one_record_each_with_provenance(
    tmp_path: Path, store: LocalStore
) -> None:
    first = put_record(store)
    second_bytes = image_bytes(size=(100, 50), color=(0, 0, 255))
    (tmp_path / "logo.png").write_bytes(second_bytes)
    (tmp_path / "templates").mkdir()
    ctx = context(tmp_path, store, templates=Templates([tmp_path / "templates"]))
    config = ImageTransformConfig.model_validate(
        {"images": [first, "logo.png"], "width": 10, "output_format": "webp"}
    )
    assets = ImageTransformStep().run(config, ctx)
    assert [a.index for a in assets] == [0, 1]
    assert [(a.width, a.height) for a in assets] == [(10, 5), (10, 5)]
    assert [a.file_name for a in assets] == ["thumbs-1.webp", "thumbs-2.webp"]
    assert all(a.model == a.provider == "pillow" and a.cost_usd == 0.0 for a in assets)
    assert assets[0].provenance["source_sha256"] == first["sha256"]
    assert assets[0].provenance["source"] == first["storage_uri"]
    assert assets[1].provenance["source_sha256"] == hashlib.sha256(second_bytes).hexdigest()
    assert assets[1].provenance["source"] == "file:logo.png"
    assert assets[0].prompt_sha256 == assets[1].prompt_sha256 == settings_sha256(config)
    for asset in assets:
        data = store.read(asset.storage_uri)
        assert hashlib.sha256(data).hexdigest() == asset.sha256
        assert decode(data).format == "WEBP"


def test_the_settings_hash_changes_with_the_settings() -> None:
    one = ImageTransformConfig.model_validate({"images": "a.png", "width": 10})
    two = ImageTransformConfig.model_validate({"images": "b.png", "width": 10})
    three = ImageTransformConfig.model_validate({"images": "a.png", "width": 11})
    assert settings_sha256(one) == settings_sha256(two) != settings_sha256(three)


# --- the example flow ----------------------------------------------------------------------


@pytest.mark.prefect
def test_the_thumbnails_example_runs_offline(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchflow.orchestration.runner import run_plan

    for variable in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    plan = check_file(FLOWS / "thumbnails.yaml", StepRegistry.from_entry_points())
    report = run_plan(plan, resolve_inputs(plan.header, {}), settings=Settings(home=tmp_path))
    assert report.status == "completed", report.message
    hero, thumbs = report.steps["hero"].output, report.steps["thumbs"].output
    assert isinstance(hero, list) and isinstance(thumbs, list) and len(thumbs) == len(hero) == 2
    store = LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")
    for source, thumb in zip(hero, thumbs, strict=True):
        assert thumb["width"] == 512 and thumb["file_type"] == "image/webp"
        assert thumb["height"] == round(source["height"] * 512 / source["width"])
        assert thumb["provenance"]["source_sha256"] == source["sha256"]
        assert decode(store.read(thumb["storage_uri"])).size == (512, thumb["height"])
    text = report.steps["handoff"].output
    assert isinstance(text, str) and thumbs[0]["file_url"] in text
