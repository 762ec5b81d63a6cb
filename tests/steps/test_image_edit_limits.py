"""image_edit's run-time limits (plan_edits over real images) and its cost estimate.

References are real Pillow images in :class:`Reference` values, checked against catalog
specs (or copies with a smaller limit, so no test needs megabytes). Every refusal is a
:class:`StepError` that is not retryable: nothing was sent, and sending again cannot help.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace

import pytest
from PIL import Image

from fetchflow.errors import StepError
from fetchflow.settings import Settings
from steps.image_edit import ImageEditConfig, ImageEditStep
from steps.imaging.models.catalog import CATALOG, ModelSpec
from steps.imaging.pixels.formats import sniff_format
from steps.imaging.sources.edit_plan import edit_mode, plan_edits
from steps.imaging.sources.references import Reference

OPENAI = CATALOG["gpt-image-1.5"]
GEMINI = CATALOG["gemini-2.5-flash-image"]
CONVERT = "convert it first with an image_transform step (output_format: png)"


def encode(image: Image.Image, image_format: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, image_format)
    return out.getvalue()


def picture(size: tuple[int, int] = (64, 48), image_format: str = "PNG") -> bytes:
    return encode(Image.new("RGB", size, (200, 40, 40)), image_format)


def reference(data: bytes, name: str = "a.png") -> Reference:
    return Reference(data, hashlib.sha256(data).hexdigest(), f"file:shots/{name}", name)


def mask(size: tuple[int, int] = (64, 48), hole: int = 0) -> bytes:
    """An RGBA PNG, opaque but for one corner pixel of alpha ``hole``."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, hole))
    return encode(image)


def refusal(
    spec: ModelSpec,
    references: list[Reference],
    *,
    each: bool,
    mask: Reference | None = None,
    outpaint: str | None = None,
) -> StepError:
    """The StepError plan_edits raises; it must not be retryable (nothing was sent)."""
    with pytest.raises(StepError) as caught:
        plan_edits(spec, references, each=each, mask=mask, outpaint=outpaint)
    assert caught.value.retryable is False
    return caught.value


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- references: format, size, number ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "found"),
    [
        pytest.param(picture(image_format="GIF"), "b.gif", "gif", id="gif"),
        pytest.param(b"%PDF-1.7", "b.pdf", "not a PNG, JPEG or WEBP image", id="unknown"),
    ],
)
def test_a_format_the_model_does_not_edit_is_refused(data: bytes, name: str, found: str) -> None:
    error = refusal(OPENAI, [reference(picture()), reference(data, name)], each=False)

    assert error.message == (
        f"images[1] (file:shots/{name}) is {found}; model gpt-image-1.5 edits png, jpeg, webp only"
    )
    assert error.hint == CONVERT


@pytest.mark.parametrize(
    ("image_format", "found", "mime"),
    [("PNG", "png", "image/png"), ("JPEG", "jpeg", "image/jpeg"), ("WEBP", "webp", "image/webp")],
)
def test_png_jpeg_and_webp_are_sent_with_their_type(
    image_format: str, found: str, mime: str
) -> None:
    data = picture(image_format=image_format)

    [group] = plan_edits(OPENAI, [reference(data)], each=False)

    assert sniff_format(data) == found
    assert [(image.data, image.mime_type) for image in group.inputs.images] == [(data, mime)]


def test_a_reference_over_the_model_size_limit_is_refused() -> None:
    data = picture()
    spec = replace(OPENAI, edit_max_image_bytes=len(data) - 1)

    error = refusal(spec, [reference(data)], each=False)

    assert error.message == (
        f"images[0] (file:shots/a.png) is {len(data):,} bytes; model gpt-image-1.5 takes "
        f"references up to {len(data) - 1:,} bytes"
    )
    assert error.hint.startswith("make it smaller first with an image_transform step")
    # The limit is inclusive: a file of exactly that size is sent.
    at_limit = replace(spec, edit_max_image_bytes=len(data))
    assert len(plan_edits(at_limit, [reference(data)], each=False)) == 1


def test_a_gemini_request_over_its_byte_total_is_refused() -> None:
    first, second = picture(), picture((80, 60))
    total = len(first) + len(second)
    spec = replace(GEMINI, edit_max_request_bytes=total - 1)

    error = refusal(spec, [reference(first), reference(second, "b.png")], each=False)

    assert error.message == (
        f"images: 2 references of {total:,} bytes in all; model gemini-2.5-flash-image takes "
        f"at most {total - 1:,} bytes in one request"
    )
    assert error.hint == "send fewer or smaller images (an image_transform step can shrink them)"
    # One by one, each request is under the total.
    assert len(plan_edits(spec, [reference(first), reference(second)], each=True)) == 2


def test_more_references_than_one_edit_takes_are_refused_with_each_as_the_way_out() -> None:
    refs = [reference(picture(), f"{n}.png") for n in range(4)]

    error = refusal(GEMINI, refs, each=False)

    assert error.message == (
        "images: 4 references; model gemini-2.5-flash-image takes at most 3 in one edit"
    )
    assert error.hint == (
        "give at most 3 images, or each: true to edit them one by one, or a model that takes "
        "4 (gemini-3-pro-image-preview, gemini-3.1-flash-image-preview, gpt-image-1-mini)"
    )


def test_each_makes_one_edit_per_reference() -> None:
    refs = [reference(picture((64 + n, 48)), f"{n}.png") for n in range(4)]

    groups = plan_edits(GEMINI, refs, each=True)

    assert [group.references for group in groups] == [(ref,) for ref in refs]
    assert [[image.data for image in group.inputs.images] for group in groups] == [
        [ref.data] for ref in refs
    ]
    assert {group.mode for group in groups} == {"edit"}


def test_one_edit_takes_every_reference_in_order_as_a_composition() -> None:
    refs = [reference(picture((64 + n, 48)), f"{n}.png") for n in range(3)]

    [group] = plan_edits(GEMINI, refs, each=False)

    assert group.references == tuple(refs)
    assert [image.data for image in group.inputs.images] == [ref.data for ref in refs]
    assert (group.mode, group.inputs.mask) == ("compose", None)


# -- masks and outpainting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask_data", "message", "hint"),
    [
        pytest.param(
            mask((32, 32)),
            "mask: 32x32 but the first image is 64x48; they must be the same size",
            "resize the mask to 64x48",
            id="other-size",
        ),
        pytest.param(
            picture(image_format="JPEG"),
            "mask: not a PNG file (masks must be PNG with an alpha channel)",
            "export the mask as PNG with transparency: transparent where to edit",
            id="not-png",
        ),
        pytest.param(
            picture(),
            "mask: the PNG has no alpha channel (mode RGB); OpenAI reads where to edit from "
            "fully transparent pixels",
            "save the mask as RGBA PNG, with alpha 0 where the image should change",
            id="no-alpha",
        ),
        pytest.param(
            mask(hole=10),
            "mask: no fully transparent pixel (lowest alpha 10); nothing would be edited",
            "make the area to change fully transparent (alpha 0)",
            id="nothing-transparent",
        ),
    ],
)
def test_a_mask_the_api_would_refuse_is_refused_first(
    mask_data: bytes, message: str, hint: str
) -> None:
    error = refusal(OPENAI, [reference(picture())], each=False, mask=reference(mask_data, "m"))

    assert (error.message, error.hint) == (message, hint)


def test_a_mask_is_checked_against_the_first_image_of_every_edit() -> None:
    refs = [reference(picture()), reference(picture((80, 60)), "b.png")]

    error = refusal(OPENAI, refs, each=True, mask=reference(mask(), "m.png"))

    assert error.message == "mask: 64x48 but the first image is 80x60; they must be the same size"


def test_a_good_mask_is_sent_with_the_references() -> None:
    mask_data = mask()

    [group] = plan_edits(
        OPENAI, [reference(picture())], each=False, mask=reference(mask_data, "m.png")
    )

    assert group.inputs.mask is not None
    assert (group.inputs.mask.data, group.inputs.mask.mime_type) == (mask_data, "image/png")
    assert group.mode == "inpaint"


@pytest.mark.parametrize(
    ("mask_reference", "outpaint", "field"),
    [
        pytest.param(reference(mask(), "m.png"), None, "mask", id="mask"),
        pytest.param(None, "16:9", "outpaint", id="outpaint"),
    ],
)
def test_mask_and_outpaint_need_a_model_that_takes_a_mask(
    mask_reference: Reference | None, outpaint: str | None, field: str
) -> None:
    references = [reference(picture())]
    error = refusal(GEMINI, references, each=False, mask=mask_reference, outpaint=outpaint)

    assert error.message == (
        f"{field} needs a model that takes a mask; model gemini-2.5-flash-image edits from the "
        "prompt alone"
    )
    assert error.hint == (
        "use an OpenAI model (gpt-image-1.5, gpt-image-2) or preview, or leave "
        f"{field} out and say in the prompt what to change"
    )


def test_outpaint_sends_a_centred_canvas_of_the_ratio_and_a_mask_of_the_new_border() -> None:
    original = picture((90, 90), "JPEG")

    # gpt-image-2 is asked for 1024x768 (4:3 exactly): the canvas has that ratio.
    [group] = plan_edits(CATALOG["gpt-image-2"], [reference(original)], each=False, outpaint="4:3")

    [image], canvas_mask = group.inputs.images, group.inputs.mask
    assert canvas_mask is not None
    assert image.mime_type == canvas_mask.mime_type == "image/png"
    canvas, drawn = decode(image.data), decode(canvas_mask.data)
    assert canvas.size == drawn.size == (120, 90)  # 90 * 4 / 3
    alpha = drawn.getchannel("A")
    left = (120 - 90) // 2
    columns = (0, left - 1, left, left + 89, left + 90, 119)
    assert [alpha.getpixel((x, 45)) for x in columns] == [0, 0, 255, 255, 0, 0]
    assert canvas.getchannel("A").getpixel((0, 45)) == 0  # the new area starts empty
    assert group.mode == "outpaint"
    assert group.references == (reference(original),)  # provenance: the original, not the canvas


def test_an_outpainting_canvas_over_the_size_limit_is_refused() -> None:
    noise = Image.effect_noise((90, 90), 60).convert("RGB")
    original = encode(noise, "JPEG")
    spec = replace(OPENAI, edit_max_image_bytes=len(original))

    error = refusal(spec, [reference(original)], each=False, outpaint="3:2")

    assert error.message.startswith("images[0] (file:shots/a.png): its 3:2 outpainting canvas is ")
    assert error.message.endswith(
        f"bytes; model gpt-image-1.5 takes references up to {len(original):,} bytes"
    )
    assert error.hint == "make the image smaller first with an image_transform step (width)"


def test_an_outpaint_to_the_ratio_the_image_has_is_refused_before_any_call() -> None:
    error = refusal(OPENAI, [reference(picture((150, 100)))], each=False, outpaint="3:2")

    assert error.message == (
        "images[0] (file:shots/a.png) is already 3:2: outpaint would add nothing"
    )
    assert error.hint == "remove outpaint, or give a ratio the image does not have yet"


@pytest.mark.parametrize(
    ("spec", "asked", "sent"),
    [
        pytest.param(OPENAI, "high", "high", id="1.5-high"),
        pytest.param(OPENAI, "low", "low", id="1.5-low"),
        pytest.param(CATALOG["gpt-image-1-mini"], "low", "low", id="mini-low"),
        pytest.param(CATALOG["gpt-image-1-mini"], "high", None, id="mini-high-dropped"),
        pytest.param(CATALOG["gpt-image-2"], "high", None, id="2-dropped"),
        pytest.param(GEMINI, "low", None, id="gemini-dropped"),
        pytest.param(OPENAI, None, None, id="not-asked"),
    ],
)
def test_input_fidelity_is_sent_only_where_the_model_takes_it(
    spec: ModelSpec, asked: str | None, sent: str | None
) -> None:
    [group] = plan_edits(spec, [reference(picture())], each=False, input_fidelity=asked)

    assert group.inputs.input_fidelity == sent


@pytest.mark.parametrize(
    ("outpaint", "has_mask", "background_removal", "references", "mode"),
    [
        pytest.param(True, False, True, 3, "outpaint", id="outpaint-first"),
        pytest.param(False, True, True, 3, "inpaint", id="mask-before-background"),
        pytest.param(False, False, True, 3, "remove_background", id="background-removal"),
        pytest.param(False, False, False, 2, "compose", id="several"),
        pytest.param(False, False, False, 1, "edit", id="one"),
    ],
)
def test_edit_mode(
    outpaint: bool, has_mask: bool, background_removal: bool, references: int, mode: str
) -> None:
    found = edit_mode(
        outpaint=outpaint,
        mask=has_mask,
        background_removal=background_removal,
        references=references,
    )

    assert found == mode


def test_background_removal_edits_are_marked_in_provenance() -> None:
    groups = plan_edits(OPENAI, [reference(picture())], each=True, background_removal=True)

    assert [group.mode for group in groups] == ["remove_background"]


def test_provenance_names_the_edited_image_and_every_reference() -> None:
    refs = [reference(picture((64 + n, 48)), f"{n}.png") for n in range(3)]

    [group] = plan_edits(OPENAI, refs, each=False)

    assert group.provenance() == {
        "edit": "compose",
        "source_sha256": refs[0].sha256,
        "source": "file:shots/0.png",
        "references": "3",
        "references_sha256": ",".join(ref.sha256 for ref in refs),
    }


# -- the estimate ----------------------------------------------------------------------------


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with an OpenAI key in the environment and no other provider's."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return Settings(_env_file=None)


MINI_LOW = {"model": "gpt-image-1-mini", "quality": "low", "size": "1024x1024", "prompt": "x"}


def test_each_over_a_written_list_costs_one_edit_per_image(settings: Settings) -> None:
    single = ImageEditStep.estimate(ImageEditConfig(images="a.png", **MINI_LOW), settings)
    three = ImageEditStep.estimate(
        ImageEditConfig(images=["a.png", "b.png", "c.png"], each=True, **MINI_LOW), settings
    )
    together = ImageEditStep.estimate(
        ImageEditConfig(images=["a.png", "b.png", "c.png"], **MINI_LOW), settings
    )

    assert single is not None and single.cost_usd == pytest.approx(0.005)
    assert three is not None and three.cost_usd == pytest.approx(3 * 0.005)
    assert (three.images, three.detail) == (
        3,
        "3 edit(s) of 1 x gpt-image-1-mini low 1024x1024 at $0.005",
    )
    assert together is not None and together.cost_usd == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("model", "cost"),
    [pytest.param("gpt-image-1-mini", None, id="priced"), pytest.param("preview", 0.0, id="free")],
)
def test_each_over_an_upstream_output_is_counted_at_run_time(
    settings: Settings, model: str, cost: float | None
) -> None:
    options = {**MINI_LOW, "model": model, "images": "<< hero.output >>", "each": True}

    found = ImageEditStep.estimate(ImageEditConfig(**options), settings)

    assert found is not None and (found.cost_usd, found.images) == (cost, None)
    assert found.detail.startswith("one edit per image of << hero.output >>: 1 x ")


def test_each_over_a_list_holding_an_upstream_output_has_no_cost_yet(
    settings: Settings,
) -> None:
    config = ImageEditConfig(images=["<< hero.output >>", "b.png"], each=True, **MINI_LOW)

    found = ImageEditStep.estimate(config, settings)

    assert found is not None and found.cost_usd is None


def test_outpaint_is_estimated_at_the_size_it_asks_for(settings: Settings) -> None:
    config = ImageEditConfig(
        images="a.png", outpaint="3:2", model="gpt-image-1-mini", quality="low", prompt="x"
    )

    found = ImageEditStep.estimate(config, settings)

    assert found is not None and found.cost_usd is None


def keyed_settings(monkeypatch: pytest.MonkeyPatch, *variables: str) -> Settings:
    """Settings with a key in each of ``variables`` and no other provider key."""
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in variables:
        monkeypatch.setenv(name, "test-key")
    return Settings(_env_file=None)


AUTO_REFUSED = "model: auto found image provider keys but no model that can serve this step: "


@pytest.mark.parametrize(
    ("keys", "fields", "detail"),
    [
        pytest.param(
            ("OPENAI_API_KEY",),
            {"outpaint": "16:9"},
            "1 edit(s) of 1 x gpt-image-2 auto 1088x608, no published price",
            id="outpaint-16:9-gpt-image-2",
        ),
        pytest.param(
            ("OPENAI_API_KEY",),
            {"outpaint": "3:2", "background": "transparent"},
            "1 edit(s) of 1 x gpt-image-1.5 auto 1536x1024, no published price",
            id="outpaint-3:2-transparent-gpt-image-1.5",
        ),
        pytest.param(
            ("OPENAI_API_KEY",),
            {"outpaint": "16:9", "background": "transparent"},
            "1 edit(s) of 1 x auto ("
            + AUTO_REFUSED
            + "gpt-image-2: background: transparent is not supported by model gpt-image-2 "
            "(transparent backgrounds are only a preview on this model); gpt-image-1.5: "
            "outpaint: 16:9 is not a ratio model gpt-image-1.5 can make (its sizes 1024x1024, "
            "1536x1024, 1024x1536 are 1:1, 3:2, 2:3); the result would be 3:2)",
            id="outpaint-16:9-transparent-none",
        ),
        pytest.param(
            ("GEMINI_API_KEY",),
            {"mask": "m.png"},
            "1 x auto ("
            + AUTO_REFUSED
            + "gemini-2.5-flash-image: mask needs a model that takes a mask; model "
            "gemini-2.5-flash-image edits from the prompt alone)",
            id="mask-gemini-none",
        ),
    ],
)
def test_auto_is_estimated_at_the_model_the_run_picks_for_the_edit(
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[str, ...],
    fields: dict[str, str],
    detail: str,
) -> None:
    settings = keyed_settings(monkeypatch, *keys)
    config = ImageEditConfig(images="a.png", model="auto", prompt="x", **fields)  # type: ignore[arg-type]

    found = ImageEditStep.estimate(config, settings)

    assert found is not None and (found.cost_usd, found.detail) == (None, detail)
