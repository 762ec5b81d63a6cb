"""Bad input to the image steps: numbers, sizes, ratios, files, and the images themselves.

The file cases (``tests/data/catalogue/images/*.yaml``) run ``fetchflow validate`` in a
subprocess through the catalogue's sandbox: exit 2, one located problem with its hint, no
traceback, no provider request, no write, no Prefect. The project folder of these files is
``tests/data`` (the folder holding ``templates/``), which is what their paths are relative
to. The image cases feed broken files (``tests/data/catalogue/images/refs/``: a header
claiming 400 MP, one claiming 100 MP that Pillow would only warn about, 48 MP, a truncated
PNG, a PNG signature before HTML, an empty file) to every place a step decodes an image;
each must be one clear error naming the field and the file, raised before any call.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_bad_input_catalogue import (  # noqa: F401
    Case,
    Sandbox,
    expected_stderr,
    fake_gemini,
    fake_openai,
    probe_dir,
)
from test_bad_input_catalogue import sandbox as sandbox

from fetchflow.errors import StepError
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.templating import Templates
from steps.image_edit import ImageEditConfig, ImageEditStep
from steps.image_generation import ImageGenerationConfig
from steps.image_transform import ImageTransformConfig, ImageTransformStep
from steps.imaging.models.catalog import ASPECT_RATIOS, CATALOG, RESOLUTIONS, closest_size
from steps.imaging.options import numeric_fields
from steps.imaging.pixels.canvas import check_mask, outpaint_canvas
from steps.imaging.pixels.finishing import inspect_image
from steps.imaging.pixels.transform import TransformSpec, transform_image
from steps.imaging.sources.edit_plan import plan_edits
from steps.imaging.sources.references import Reference

DATA = Path(__file__).parents[1] / "data"
CASES = DATA / "catalogue" / "images"
REFS = CASES / "refs"
HERO = 'step "hero" (image_generation)'
EDIT = 'step "hero" (image_edit)'
TRANSFORM = 'step "hero" (image_transform)'
BOOLEAN = "(YAML reads yes, no, on, off, true and false as booleans)"
ZERO_HINT = "give both sides in pixels, e.g. size: 1024x1024, or size: auto"
MISSING_HINT = (
    "check the path: it is relative to the folder holding templates/ (else the current folder)"
)

FILE_CASES = {
    "size_zero_auto": Case(
        f'6:5: {HERO} field "size": size: 0x0 has a side of 0 pixels', ZERO_HINT
    ),
    "size_zero_width_preview": Case(
        f'7:5: {HERO} field "size": size: 0x16 has a side of 0 pixels', ZERO_HINT
    ),
    "size_zero_height_gpt_image_2": Case(
        f'7:5: {HERO} field "size": size: 16x0 has a side of 0 pixels', ZERO_HINT
    ),
    "size_hex_auto": Case(
        f'6:5: {HERO} field "size": size must be WxH text, got the number 0 (YAML reads 0x16 '
        "and the like as hexadecimal numbers)",
        'quote it, e.g. size: "1024x1024", or write size: auto',
    ),
    "count_yes": Case(
        f'6:5: {HERO} field "count": count must be a number, got the boolean true {BOOLEAN}',
        "write a whole number, e.g. 3",
    ),
    "seed_true_preview": Case(
        f'7:5: {HERO} field "seed": seed must be a number, got the boolean true {BOOLEAN}',
        "write a whole number, e.g. 3",
    ),
    "edit_compression_on": Case(
        f'8:5: {EDIT} field "output_compression": output_compression must be a number, got '
        f"the boolean true {BOOLEAN}",
        "write a whole number, e.g. 3",
    ),
    "transform_scale_true": Case(
        f'6:5: {TRANSFORM} field "scale": scale must be a number, got the boolean true {BOOLEAN}',
        "write a number, e.g. 1.5",
    ),
    "transform_width_no": Case(
        f'6:5: {TRANSFORM} field "width": width must be a number, got the boolean false {BOOLEAN}',
        "write a whole number, e.g. 3",
    ),
    "outpaint_16_9_gpt_image_1_5": Case(
        f'8:5: {EDIT} field "outpaint": outpaint: 16:9 is not a ratio model gpt-image-1.5 can '
        "make (its sizes 1024x1024, 1536x1024, 1024x1536 are 1:1, 3:2, 2:3); the result would "
        "be 3:2",
        'use outpaint: "3:2", or a model with free sizes (gpt-image-2) for 16:9',
    ),
    "outpaint_4_3_gpt_image_1_mini": Case(
        f'8:5: {EDIT} field "outpaint": outpaint: 4:3 is not a ratio model gpt-image-1-mini can '
        "make (its sizes 1024x1024, 1536x1024, 1024x1536 are 1:1, 3:2, 2:3); the result would "
        "be 3:2",
        'use outpaint: "3:2", or a model with free sizes (gpt-image-2) for 4:3',
    ),
    "edit_missing_image": Case(
        f'5:5: {EDIT} field "images": reference "catalogue/images/refs/nowhere.png" is not a '
        f"file under the project folder {DATA.resolve()}",
        MISSING_HINT,
    ),
    "edit_missing_mask": Case(
        f'6:5: {EDIT} field "mask": reference "catalogue/images/masks/sky.png" is not a file '
        f"under the project folder {DATA.resolve()}",
        MISSING_HINT,
    ),
    "transform_missing_image": Case(
        f'5:5: {TRANSFORM} field "images": reference "refs/landscape.png" is not a file under '
        f"the project folder {DATA.resolve()}",
        MISSING_HINT,
    ),
    "edit_absolute_image": Case(
        f'5:5: {EDIT} field "images": reference "/etc/hosts" is an absolute path; files are '
        f"read only under the project folder {DATA.resolve()}",
        "give the path relative to the project folder, e.g. assets/logo.png",
    ),
    "transform_image_outside_project": Case(
        f'5:5: {TRANSFORM} field "images": reference "../../README.md" leaves the project '
        f"folder {DATA.resolve()}",
        "give a path inside the project folder, without ..",
    ),
}
VALID_FILES = ["templated_format_with_compression"]


def test_every_case_file_is_a_case() -> None:
    assert {path.stem for path in CASES.glob("*.yaml")} == {*FILE_CASES, *VALID_FILES}


@pytest.mark.parametrize(
    ("stem", "case"), [pytest.param(s, c, id=s) for s, c in FILE_CASES.items()]
)
def test_validate_reports_one_problem_and_does_nothing(
    stem: str, case: Case, sandbox: Sandbox
) -> None:
    path = CASES / f"{stem}.yaml"

    outcome = sandbox.fetchflow("validate", str(path))

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert lines == expected_stderr(path, case, lines, summary=True)
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize("stem", VALID_FILES)
def test_a_rule_over_a_templated_field_waits_for_the_run(stem: str, sandbox: Sandbox) -> None:
    path = CASES / f"{stem}.yaml"

    outcome = sandbox.fetchflow("validate", str(path))

    assert (outcome.code, outcome.stderr) == (0, ""), outcome.stderr
    sandbox.assert_nothing_happened(outcome)


# -- the class, in process: every numeric field, every model ----------------------------------

CONFIGS = {
    "image_generation": (ImageGenerationConfig, {"prompt": "a vase", "model": "preview"}),
    "image_edit": (ImageEditConfig, {"images": "a.png", "prompt": "x", "model": "preview"}),
    "image_transform": (ImageTransformConfig, {"images": "a.png"}),
}


def _numeric_cases() -> list[object]:
    return [
        pytest.param(model, base, field, flag, id=f"{step}-{field}-{flag}")
        for step, (model, base) in CONFIGS.items()
        for field in numeric_fields(model)
        for flag in (True, False)
    ]


def test_the_numeric_fields_are_found() -> None:
    assert set(numeric_fields(ImageEditConfig)) == {
        "count",
        "output_compression",
        "seed",
        "partial_images",
        "steps",
        "guidance",
        "strength",
    }
    assert numeric_fields(ImageTransformConfig) == {
        "width": int,
        "height": int,
        "scale": float,
        "output_compression": int,
    }


@pytest.mark.parametrize(("model", "base", "field", "flag"), _numeric_cases())
def test_no_numeric_field_takes_a_boolean(
    model: type[ImageGenerationConfig], base: dict[str, object], field: str, flag: bool
) -> None:
    # Also what a rendered template (<< inputs.flag >>) meets at run time.
    with pytest.raises(
        ValueError, match=f"{field} must be a number, got the boolean {flag!s}".lower()
    ):
        model.model_validate({**base, field: flag})


@pytest.mark.parametrize("model", ["auto", *CATALOG])
@pytest.mark.parametrize("size", ["0x0", "0x16", "16x0", "0x1024"])
def test_a_zero_side_is_refused_for_every_model(model: str, size: str) -> None:
    with pytest.raises(ValueError, match=f"size: {size} has a side of 0 pixels"):
        ImageGenerationConfig.model_validate({"prompt": "x", "model": model, "size": size})


@pytest.mark.parametrize("size", ["99999x99999", "16x99999", "4097x4097"])
def test_absurd_sizes_are_refused_by_the_model_rules(size: str) -> None:
    with pytest.raises(ValueError, match=f"size: {size} is not a size model preview can make"):
        ImageGenerationConfig.model_validate({"prompt": "x", "size": size})


# -- outpaint: what is asked is what is sent ---------------------------------------------------

MASK_MODELS = [name for name, spec in CATALOG.items() if spec.mask]


def picture(size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def reference(data: bytes, name: str) -> Reference:
    return Reference(data, hashlib.sha256(data).hexdigest(), f"file:refs/{name}", name)


@pytest.mark.parametrize("resolution", [None, *RESOLUTIONS])
@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
@pytest.mark.parametrize("model", MASK_MODELS)
def test_an_outpaint_canvas_has_the_ratio_of_the_size_asked_or_is_refused(
    model: str, ratio: str, resolution: str | None
) -> None:
    spec = CATALOG[model]
    source = reference(picture((300, 300) if ratio != "1:1" else (300, 200)), "shot.png")
    asked = closest_size(spec, ratio, resolution)
    assert asked.width is not None and asked.height is not None
    w, h = (int(part) for part in ratio.split(":"))
    try:
        [group] = plan_edits(spec, [source], each=True, outpaint=ratio, resolution=resolution)
    except StepError as error:
        # Refused only where a fixed size has another ratio, before any call.
        assert spec.sizes and abs(asked.width / asked.height / (w / h) - 1) > 0.01
        assert error.message.startswith(f"outpaint: {ratio} is not a ratio model {model} can make")
        assert error.retryable is False
        return
    import io

    from PIL import Image

    canvas = Image.open(io.BytesIO(group.inputs.images[0].data))
    # To the pixel: the canvas is the shape the model is asked for (free sizes round each
    # side to a multiple of 16: 21:9 is asked as 1248x528, 1.3% off).
    assert abs(canvas.width - canvas.height * asked.width / asked.height) <= 1
    assert abs(asked.width / asked.height / (w / h) - 1) <= 0.02


# -- images that cannot be decoded: named, refused before any call ----------------------------

BAD_IMAGES = {
    "bomb.png": "claims more pixels than the 40,000,000-pixel safety limit (a decompression bomb?)",
    "bomb_warning.png": (
        "claims more pixels than the 40,000,000-pixel safety limit (a decompression bomb?)"
    ),
    "over_limit.png": "is 8000x6000, over the 40,000,000-pixel safety limit",
    "truncated.png": ": 6,004 bytes that are not a readable image (truncated)",
    "not_an_image.png": ": 34 bytes that are not a readable image (not a format Pillow knows)",
}
SIZE_HINT = "use a smaller image (an image_transform step can shrink it)"


def _hole_mask() -> bytes:
    import io

    from PIL import Image

    image = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


HOLE_MASK = _hole_mask()


def bad(name: str) -> Reference:
    return reference((REFS / name).read_bytes(), name)


def _expected(where: str, name: str) -> str:
    return f"{where}{'' if BAD_IMAGES[name].startswith(':') else ' '}{BAD_IMAGES[name]}"


@pytest.mark.parametrize("name", BAD_IMAGES)
@pytest.mark.parametrize("outpaint", [None, "16:9"])
def test_an_edit_reference_that_cannot_be_decoded_is_named(name: str, outpaint: str | None) -> None:
    good = reference(picture((64, 64)), "good.png")

    with pytest.raises(StepError) as caught:
        plan_edits(CATALOG["gpt-image-2"], [good, bad(name)], each=True, outpaint=outpaint)

    assert caught.value.message == _expected(f"images[1] (file:refs/{name})", name)
    assert caught.value.retryable is False


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_a_mask_that_cannot_be_decoded_is_named(name: str) -> None:
    first = reference(picture((64, 64)), "good.png")

    with pytest.raises(StepError) as caught:
        plan_edits(CATALOG["gpt-image-1.5"], [first], each=False, mask=bad(name))

    assert caught.value.message == _expected(f"mask (file:refs/{name})", name)


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_the_pure_helpers_name_what_they_were_given(name: str) -> None:
    data = (REFS / name).read_bytes()

    with pytest.raises(StepError) as outpainted:
        outpaint_canvas(data, "16:9", what="images[0] (a record)")
    with pytest.raises(StepError) as masked:
        check_mask(HOLE_MASK, data, first_image="images[0] (https://example.com/a.png)")
    with pytest.raises(StepError) as transformed:
        transform_image(data, TransformSpec(width=8), source="images[2] (file:refs/x.png)")

    assert outpainted.value.message == _expected("images[0] (a record)", name)
    assert masked.value.message == _expected("images[0] (https://example.com/a.png)", name)
    assert transformed.value.message == _expected("images[2] (file:refs/x.png)", name)


@pytest.mark.parametrize("name", ["bomb.png", "bomb_warning.png"])
def test_a_provider_answer_over_pillows_limit_is_an_error_not_a_warning(name: str) -> None:
    with pytest.raises(StepError, match="over Pillow's decompression-bomb limit"):
        inspect_image((REFS / name).read_bytes(), "image/png", source="model x (openai)")


def test_an_empty_file_is_said_to_be_empty() -> None:
    with pytest.raises(StepError) as caught:
        transform_image(b"", TransformSpec(width=8), source="images[0] (file:refs/empty.png)")
    assert caught.value.message == "images[0] (file:refs/empty.png) is empty (0 bytes)"


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, LocalStore, StepContext]:
    monkeypatch.setenv("FETCHFLOW_PROVIDER_ATTEMPTS", "1")  # a failed call is not retried
    root = tmp_path / "project"
    (root / "templates").mkdir(parents=True)
    (root / "refs").mkdir()
    for path in REFS.iterdir():
        (root / "refs" / path.name).write_bytes(path.read_bytes())
    store = LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")
    ctx = StepContext(
        step_id="hero",
        step_type="image_edit",
        run_id="run-1",
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("fetchflow.test.bad_images"),
        settings=Settings(home=tmp_path),
        templates=Templates([root / "templates"]),
        scope={},
        open_store=lambda: store,
    )
    return root, store, ctx


@pytest.mark.parametrize("name", ["bomb.png", "truncated.png"])
def test_a_run_refuses_a_bad_file_before_any_write(
    name: str, project: tuple[Path, LocalStore, StepContext]
) -> None:
    _root, store, ctx = project
    files = ["refs/landscape.png", f"refs/{name}"]
    expected = _expected(f"images[1] (file:refs/{name})", name)

    with pytest.raises(StepError) as transformed:
        ImageTransformStep().run(ImageTransformConfig(images=files, width=32), ctx)
    with pytest.raises(StepError) as edited:
        config = ImageEditConfig(images=files, prompt="x", model="preview", outpaint="16:9")
        ImageEditStep().run(config, replace(ctx, step_type="image_edit"))

    assert transformed.value.message == expected
    assert edited.value.message == expected
    assert not store.root.exists() or not any(store.root.rglob("*.*"))


# -- every cross-field rule waits while any field it reads is a template ---------------------

LONG = "x" * 32_001
SEVENTEEN = [f"shots/{n}.png" for n in range(17)]
RULE_CASES = {
    "transparent-jpeg": (
        ImageGenerationConfig,
        {"background": "transparent", "output_format": "jpeg"},
    ),
    "compression-png": (ImageGenerationConfig, {"output_compression": 80, "output_format": "png"}),
    "size-and-ratio": (ImageGenerationConfig, {"size": "1024x1024", "aspect_ratio": "16:9"}),
    "size-and-resolution": (ImageGenerationConfig, {"size": "1024x1024", "resolution": "2K"}),
    "secret-hosted": (
        ImageGenerationConfig,
        {"api_key_secret": "mine", "charge_type": "hosted"},
    ),
    "secret-auto": (ImageGenerationConfig, {"api_key_secret": "mine", "model": "auto"}),
    "size-model": (ImageGenerationConfig, {"size": "1000x1000", "model": "gpt-image-1.5"}),
    "quality-model": (
        ImageGenerationConfig,
        {"quality": "high", "model": "gemini-2.5-flash-image"},
    ),
    "background-model": (
        ImageGenerationConfig,
        {"background": "transparent", "model": "gemini-2.5-flash-image"},
    ),
    "seed-model": (ImageGenerationConfig, {"seed": 7, "model": "gpt-image-2"}),
    "prompt-model": (ImageGenerationConfig, {"prompt": LONG, "model": "gpt-image-2"}),
    "mask-and-outpaint": (ImageEditConfig, {"mask": "m.png", "outpaint": "3:2"}),
    "outpaint-and-size": (ImageEditConfig, {"outpaint": "3:2", "size": "1024x1024"}),
    "mask-model": (ImageEditConfig, {"mask": "m.png", "model": "gemini-2.5-flash-image"}),
    "fidelity-model": (ImageEditConfig, {"input_fidelity": "high", "model": "gpt-image-2"}),
    "outpaint-model": (ImageEditConfig, {"outpaint": "16:9", "model": "gpt-image-1.5"}),
    "references-model": (ImageEditConfig, {"images": SEVENTEEN, "model": "gpt-image-1.5"}),
    "no-prompt-opaque": (ImageEditConfig, {"prompt": None, "background": "opaque"}),
    "scale-and-width": (ImageTransformConfig, {"scale": 0.5, "width": 64}),
    "ratio-and-sides": (ImageTransformConfig, {"aspect_ratio": "1:1", "width": 8, "height": 9}),
    "pad-color-crop": (ImageTransformConfig, {"pad_color": "black", "fit": "crop"}),
    "transparent-pad-jpeg": (
        ImageTransformConfig,
        {"pad_color": "transparent", "output_format": "jpeg"},
    ),
    "transform-compression-png": (
        ImageTransformConfig,
        {"output_compression": 80, "output_format": "png"},
    ),
}
_BASES = {
    ImageGenerationConfig: {"prompt": "a vase"},
    ImageEditConfig: {"images": "a.png", "prompt": "x", "model": "gpt-image-1.5"},
    ImageTransformConfig: {"images": "a.png", "fit": "pad"},
}


def _rule_cases() -> list[object]:
    return [
        pytest.param(model, {**_BASES[model], **fields}, field, id=f"{name}-{field}")
        for name, (model, fields) in RULE_CASES.items()
        for field in fields
    ]


@pytest.mark.parametrize(("model", "raw", "field"), _rule_cases())
def test_a_rule_waits_while_any_field_it_reads_is_templated(
    model: type[ImageGenerationConfig], raw: dict[str, object], field: str
) -> None:
    from fetchflow.step import RuleViolation
    from fetchflow.workflow.validation import validate_config

    # As written, the rule is broken (and it is at run time, once rendered to these values);
    # its message names every field it reads.
    with pytest.raises(ValueError) as broken:
        model.model_validate(raw)
    rules = [e["ctx"]["error"] for e in broken.value.errors() if "ctx" in e]  # type: ignore[attr-defined]
    assert any(isinstance(rule, RuleViolation) and field in rule.fields for rule in rules)

    templated = {**raw, field: "<< inputs.value >>"}
    _, issues = validate_config(model, templated, frozenset({field}))

    assert issues == []
