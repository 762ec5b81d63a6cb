"""image_upscale: the Pillow core (sizes, Lanczos, limits), the step's records, its rules as
``fetchflow validate`` reports them over the files in tests/data/upscale/."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from fetchflow.errors import StepError, WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.settings import Settings
from fetchflow.step import CostEstimate, RuleViolation, StepContext
from fetchflow.storage.local import LocalStore
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text
from steps.image_upscale import (
    ImageUpscaleConfig,
    ImageUpscaleStep,
    lookup_upscaler,
    settings_sha256,
)
from steps.imaging.pixels.upscale import upscale_image
from steps.imaging.settings import ImageSettings, use_image_settings

DATA = Path(__file__).resolve().parents[1] / "data" / "upscale"
KNOWN = "(known: auto, pillow, fal-ai/clarity-upscaler, fal-ai/aura-sr)"
LIMIT = "over the limit of 8192 pixels a side and 40,000,000 pixels in all"


def png(
    size: tuple[int, int] = (24, 16), mode: str = "RGB", color: object = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def checkerboard(cells: int = 8) -> Image.Image:
    board = Image.new("L", (cells, cells), 0)
    for x in range(cells):
        for y in range(cells):
            if (x + y) % 2:
                board.putpixel((x, y), 255)
    return board


def encoded(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header says ``width``x``height`` and whose pixel data is a few bytes of
    garbage: decoding it fails, so a refusal that names its size came from the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"garbage")


# --- the Pillow core ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "factor"),
    [((24, 16), 2), ((24, 16), 4), ((1, 1), 4), ((333, 7), 2)],
    ids=["2x", "4x", "one-pixel", "odd-sides"],
)
def test_the_output_is_exactly_factor_times_the_source(size: tuple[int, int], factor: int) -> None:
    result = upscale_image(png(size), factor, source="images[0] (t)")
    expected = (size[0] * factor, size[1] * factor)
    assert (result.width, result.height) == expected == opened(result.data).size
    assert result.source_size == size
    assert (result.format, result.file_type, result.source_format) == ("png", "image/png", "png")


def test_lanczos_is_not_nearest_neighbour_on_a_checkerboard() -> None:
    board = checkerboard()
    result = opened(upscale_image(encoded(board), 4, source="t").data).convert("L")
    nearest = board.resize((32, 32), Image.Resampling.NEAREST)
    lanczos = board.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS).convert("L")
    assert result.tobytes() != nearest.tobytes()
    assert result.tobytes() == lanczos.tobytes()  # Pillow's Lanczos, pixel for pixel
    # Nearest only copies the two levels; Lanczos interpolates between them (and rings).
    assert set(nearest.tobytes()) == {0, 255}
    assert len(set(result.tobytes())) > 10


def test_transparency_survives_and_formats_follow_the_source() -> None:
    rgba = upscale_image(png(mode="RGBA", color=(0, 0, 255, 0)), 2, source="t")
    assert opened(rgba.data).mode == "RGBA"
    assert opened(rgba.data).getchannel("A").getextrema() == (0, 0)
    jpeg = upscale_image(encoded(Image.new("RGB", (10, 10), "red"), "JPEG"), 2, source="t")
    assert (jpeg.format, opened(jpeg.data).format) == ("jpeg", "JPEG")
    gif = upscale_image(encoded(Image.new("P", (10, 10), 3), "GIF"), 2, source="t")
    assert (gif.format, gif.source_format) == ("png", "gif")


def test_output_format_and_compression_apply() -> None:
    noisy = encoded(Image.effect_noise((64, 64), 80).convert("RGB"))
    lossy = upscale_image(noisy, 2, source="t", output_format="webp", output_compression=30)
    lossless = upscale_image(noisy, 2, source="t", output_format="webp")
    assert opened(lossy.data).format == opened(lossless.data).format == "WEBP"
    assert len(lossy.data) < len(lossless.data)


def test_exif_orientation_is_applied_before_the_factor() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display
    exif[0x010F] = "SecretCam"
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), "red").save(buffer, "JPEG", exif=exif)
    result = upscale_image(buffer.getvalue(), 2, source="t")
    assert (result.width, result.height) == (40, 80) == opened(result.data).size
    assert b"SecretCam" not in result.data


@pytest.mark.parametrize(
    ("size", "factor", "hint"),
    [
        ((3000, 2000), 4, "use factor: 2, or shrink the image first (an image_transform step)"),
        ((5000, 3000), 2, "shrink the image first (an image_transform step)"),
        ((4500, 4500), 2, "shrink the image first (an image_transform step)"),
    ],
    ids=["4x-side", "2x-side", "2x-pixels"],
)
def test_an_output_over_the_limits_is_refused_from_the_header(
    size: tuple[int, int], factor: int, hint: str
) -> None:
    # No pixel data at all: the refusal comes from the header, before anything is decoded.
    data = header_only_png(*size)
    width, height = size
    with pytest.raises(StepError) as caught:
        upscale_image(data, factor, source="images[0] (file:big.png)")
    assert caught.value.message == (
        f"images[0] (file:big.png): a {factor}x upscale of {width}x{height} would be "
        f"{width * factor}x{height * factor}, {LIMIT}"
    )
    assert caught.value.hint == hint
    assert caught.value.retryable is False


def test_the_largest_allowed_output_passes_the_check() -> None:
    # 8192x4880 = 39,976,960 pixels: allowed, so the decoder is reached (and finds garbage);
    # one more column is over the side limit and never reaches it.
    with pytest.raises(StepError, match=r"^t: \d+ bytes that are not a readable image"):
        upscale_image(header_only_png(2048, 1220), 4, source="t")
    with pytest.raises(StepError, match=r"would be 8196x4880, over the limit"):
        upscale_image(header_only_png(2049, 1220), 4, source="t")


def test_garbage_is_refused_by_the_guarded_decoder() -> None:
    with pytest.raises(StepError, match=r"t: 9 bytes that are not a readable image"):
        upscale_image(b"not a png", 2, source="t")


# --- the config --------------------------------------------------------------------------


def test_auto_is_pillow_and_a_provider_model_would_be_a_row() -> None:
    assert lookup_upscaler("auto") == lookup_upscaler("pillow")
    assert lookup_upscaler("auto").method == "lanczos"
    with pytest.raises(RuleViolation, match='unknown upscale model "pilow"; did you mean'):
        lookup_upscaler("pilow")


def test_the_settings_hash_reads_auto_as_pillow() -> None:
    auto = ImageUpscaleConfig.model_validate({"images": "a.png"})
    pillow = ImageUpscaleConfig.model_validate({"images": "b.png", "model": "pillow"})
    four = ImageUpscaleConfig.model_validate({"images": "a.png", "factor": 4})
    assert settings_sha256(auto) == settings_sha256(pillow) != settings_sha256(four)


def test_a_templated_factor_is_checked_once_rendered() -> None:
    text = (
        "name: t\nsteps:\n  - id: large\n    type: image_upscale\n"
        '    images: https://example.com/a.png\n    factor: "<< 2 + 1 >>"\n'
    )
    assert check_text(text, "t.yaml", StepRegistry.from_entry_points(), Templates()).steps
    with pytest.raises(ValidationError, match="factor must be 2 or 4, got 3"):
        ImageUpscaleConfig.model_validate({"images": "a.png", "factor": 3})


def test_a_misspelt_model_is_a_workflow_error() -> None:
    text = "name: t\nsteps:\n  - id: large\n    type: image_upscale\n    images: x.png\n"
    with pytest.raises(WorkflowInvalid, match=r'unknown field "modle"; did you mean "model"'):
        check_text(
            text + "    modle: pillow\n", "t.yaml", StepRegistry.from_entry_points(), Templates()
        )


def test_the_step_is_registered_and_pillow_is_free() -> None:
    step = StepRegistry.from_entry_points().get("image_upscale")
    assert step is ImageUpscaleStep
    assert step.produces_files and step.billable  # a provider upscaler bills
    auto = ImageUpscaleConfig.model_validate({"images": ["a.png", "b.png"]})
    assert step.estimate(auto, Settings()) == CostEstimate(0.0, 2, "pillow (lanczos): free")


def test_a_provider_upscaler_is_priced_per_started_output_megapixel() -> None:
    record = {"storage_uri": "file:///x.png", "width": 1024, "height": 768}
    config = ImageUpscaleConfig.model_validate(
        {"images": [record, record], "model": "fal-ai/clarity-upscaler", "factor": 2}
    )
    # 2048x1536 = 3 MP started, at $0.03: $0.09 an image
    assert ImageUpscaleStep.estimate(config, Settings()) == CostEstimate(
        0.18,
        2,
        "fal-ai/clarity-upscaler 2x to 2048x1536, 2048x1536, $0.03 per output megapixel",
    )
    unknown = config.model_copy(update={"images": "https://example.com/a.png"})
    assert ImageUpscaleStep.estimate(unknown, Settings()) == CostEstimate(
        None,
        1,
        "fal-ai/clarity-upscaler 2x, $0.03 per output megapixel: a source size is known "
        "when it runs",
    )


# --- the step ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")


def context(tmp_path: Path, store: LocalStore) -> StepContext:
    use_image_settings(ImageSettings())
    (tmp_path / "templates").mkdir(exist_ok=True)
    return StepContext(
        step_id="large",
        step_type="image_upscale",
        run_id="run-1",
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("fetchflow.test.upscale"),
        settings=Settings(home=tmp_path / "home"),
        templates=Templates([tmp_path / "templates"]),
        scope={},
        open_store=lambda: store,
    )


def test_one_record_per_image_with_the_source_in_provenance(
    tmp_path: Path, store: LocalStore
) -> None:
    first = png((24, 16))
    record = store.put(
        first,
        file_name="hero-1.png",
        file_type="image/png",
        step_id="hero",
        run_id="run-0",
        width=24,
        height=16,
        model="preview",
    ).model_dump(mode="json")
    second = encoded(checkerboard(), "PNG")
    (tmp_path / "board.png").write_bytes(second)
    config = ImageUpscaleConfig.model_validate(
        {"images": [record, "board.png"], "factor": 4, "output_format": "webp"}
    )
    assets = ImageUpscaleStep().run(config, context(tmp_path, store))
    assert [(a.index, a.width, a.height) for a in assets] == [(0, 96, 64), (1, 32, 32)]
    assert [a.file_name for a in assets] == ["large-1.webp", "large-2.webp"]
    assert [a.file_type for a in assets] == ["image/webp", "image/webp"]
    assert all(a.model == a.provider == "pillow" and a.cost_usd == 0.0 for a in assets)
    assert all(a.seed is None and a.usage is None and a.charge_type == "personal" for a in assets)
    assert assets[0].prompt_sha256 == settings_sha256(config)
    digest = settings_sha256(config)
    assert assets[0].provenance == {
        "upscaled_from": record["sha256"],
        "source_sha256": record["sha256"],
        "source": record["storage_uri"],
        "source_format": "png",
        "source_size": "24x16",
        "factor": "4",
        "method": "lanczos",
        "settings_sha256": digest,
        "index": "0",
        "output_format": "webp",
    }
    assert assets[1].provenance["upscaled_from"] == hashlib.sha256(second).hexdigest()
    assert assets[1].provenance["source"] == "file:board.png"
    for asset in assets:
        data = store.read(asset.storage_uri)
        assert hashlib.sha256(data).hexdigest() == asset.sha256
        assert opened(data).size == (asset.width, asset.height)


def test_a_refused_image_stores_nothing(tmp_path: Path, store: LocalStore) -> None:
    (tmp_path / "small.png").write_bytes(png())
    (tmp_path / "big.png").write_bytes(header_only_png(3000, 2000))
    config = ImageUpscaleConfig.model_validate({"images": ["small.png", "big.png"], "factor": 4})
    with pytest.raises(
        StepError,
        match=re.escape(
            "images[1] (file:big.png): a 4x upscale of 3000x2000 would be 12000x8000, " + LIMIT
        ),
    ):
        ImageUpscaleStep().run(config, context(tmp_path, store))
    assert not list((tmp_path / "assets").rglob("*.png"))


# --- fetchflow validate over tests/data/upscale ----------------------------------------------

REFUSED = {
    "factor-three": (
        "6:5",
        "factor",
        "factor must be 2 or 4, got 3",
        "use factor: 2 or factor: 4 (upscale twice for more; image_transform's scale "
        "resizes by any factor)",
    ),
    "factor-boolean": (
        "6:5",
        "factor",
        "factor must be 2 or 4, got the boolean true",
        "use factor: 2 or factor: 4 (upscale twice for more; image_transform's scale "
        "resizes by any factor)",
    ),
    "model-misspelt": (
        "6:5",
        "model",
        f'unknown upscale model "pilow"; did you mean "pillow"? {KNOWN}',
        "use model: pillow",
    ),
    "model-fal-misspelt": (
        "6:5",
        "model",
        'unknown upscale model "fal-ai/clarity-upscaller"; did you mean '
        f'"fal-ai/clarity-upscaler"? {KNOWN}',
        "use model: fal-ai/clarity-upscaler",
    ),
    "factor-not-taken": (
        "7:5",
        "factor",
        "factor: 2 is not taken by model fal-ai/aura-sr (it takes 4)",
        "use factor: 4, or model: auto",
    ),
    "model-unknown": (
        "6:5",
        "model",
        f'unknown upscale model "real-esrgan" {KNOWN}',
        "use model: auto (Pillow's Lanczos, free), or one of: pillow, fal-ai/clarity-upscaler, "
        "fal-ai/aura-sr",
    ),
    "images-empty-list": (
        "5:5",
        "images",
        "images is an empty list",
        "give at least one image: images: << hero.output >>",
    ),
    "images-empty-string": (
        "5:5",
        "images",
        "images holds an empty string",
        "give an asset record, an http(s) URL or a file under the project",
    ),
    "compression-png": (
        "7:5",
        "output_compression",
        "output_compression only applies to jpeg and webp, got output_format png",
        "remove output_compression or use output_format webp (or jpeg)",
    ),
    "too-large-4x": (
        "5:5",
        "images",
        f'images[0] "art/large.png": a 4x upscale of 3000x2000 would be 12000x8000, {LIMIT}',
        "use factor: 2, or shrink the image first (an image_transform step)",
    ),
    "too-large-2x": (
        "5:5",
        "images",
        f'images[1] "art/huge.png": a 2x upscale of 5000x3000 would be 10000x6000, {LIMIT}',
        "shrink the image first (an image_transform step)",
    ),
}
VALID = {"ok-4x": 1, "ok-2x-large": 1, "ok-templated": 2}


@pytest.fixture(scope="module")
def validation() -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FETCHFLOW_")}
    names = [*REFUSED, *VALID]
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "validate", *(f"flows/{n}.yaml" for n in names)],
        cwd=DATA,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_case_files_are_all_listed() -> None:
    assert {path.stem for path in (DATA / "flows").glob("*.yaml")} == {*REFUSED, *VALID}


@pytest.mark.parametrize("name", list(REFUSED))
def test_each_rule_is_reported_with_its_location_step_and_field(
    validation: subprocess.CompletedProcess[str], name: str
) -> None:
    where, field, message, hint = REFUSED[name]
    expected = (
        f'flows/{name}.yaml:{where}: step "large" (image_upscale) field "{field}": {message}\n'
        f"  hint: {hint}\n"
        f"flows/{name}.yaml: 1 problem\n"
    )
    assert expected in validation.stderr


@pytest.mark.parametrize("name", list(VALID))
def test_allowed_upscales_validate_ok(
    validation: subprocess.CompletedProcess[str], name: str
) -> None:
    steps = VALID[name]
    line = f"flows/{name}.yaml: ok ({steps} step{'s' if steps > 1 else ''})"
    assert line in validation.stdout.splitlines()


def test_refused_files_exit_2_without_a_traceback(
    validation: subprocess.CompletedProcess[str],
) -> None:
    assert validation.returncode == 2
    assert "Traceback" not in validation.stderr
    assert "prefect" not in validation.stderr.lower()
