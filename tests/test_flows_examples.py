"""Every example in flows/ checks clean; the image examples run offline end to end."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from fetchflow.registry import StepRegistry
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs

FLOWS = Path(__file__).resolve().parents[1] / "flows"
EXAMPLES = sorted(FLOWS.glob("*.yaml"))
KEY_VARIABLES = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "FAL_KEY")


@pytest.fixture(scope="module")
def registry() -> StepRegistry:
    return StepRegistry.from_entry_points()


def test_there_are_image_examples() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"product_shot.yaml", "storyboard.yaml", "matrix.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_checks_clean(path: Path, registry: StepRegistry) -> None:
    plan = check_file(path, registry)
    assert plan.steps


@pytest.mark.prefect
@pytest.mark.parametrize(
    ("name", "summary_step", "image_steps"),
    [
        ("product_shot", "handoff", ("hero",)),
        ("storyboard", "summary", ("opening", "middle", "closing", "title_card")),
        ("matrix", "contact", ("shots", "first_look")),
        ("open_models", "summary", ("draft",)),
    ],
)
def test_image_example_runs_offline(
    name: str,
    summary_step: str,
    image_steps: tuple[str, ...],
    registry: StepRegistry,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fetchflow.orchestration.runner import run_plan

    for variable in KEY_VARIABLES:  # model: auto must fall back to the free preview
        monkeypatch.delenv(variable, raising=False)
    plan = check_file(FLOWS / f"{name}.yaml", registry)
    report = run_plan(plan, resolve_inputs(plan.header, {}), settings=Settings(home=tmp_path))
    assert report.status == "completed", report.message
    text = report.steps[summary_step].output
    assert isinstance(text, str)
    for step_id in image_steps:
        output = report.steps[step_id].output
        assert isinstance(output, list) and output
        first = output[0]
        assert first["model"] == "preview"
        assert first["file_url"] in text
        path = Path(first["storage_uri"].removeprefix("file://"))
        assert path.is_file() and path.stat().st_size == first["file_size"]
    if name == "matrix":  # one record per combination, in combination order, each labelled
        output = report.steps["shots"].output
        assert isinstance(output, list)
        *shots, sheet = output  # contact_sheet: true adds the grid, last
        assert sheet["provenance"]["kind"] == "contact_sheet"
        assert sheet["file_name"] == "shots-contact-sheet.png" and sheet["file_url"] in text
        assert [(r["matrix"]["product"], r["matrix"]["style"]) for r in shots] == [
            (product, style)
            for product in ("mug", "tote bag", "poster")
            for style in ("watercolor", "studio photo")
        ]
        assert all(r["file_url"] in text for r in shots)


def _run_example(name: str, registry: StepRegistry, home: Path) -> dict[str, object]:
    from fetchflow.orchestration.runner import run_plan

    plan = check_file(FLOWS / f"{name}.yaml", registry)
    report = run_plan(plan, resolve_inputs(plan.header, {}), settings=Settings(home=home))
    assert report.status == "completed", report.message
    return {step_id: result.output for step_id, result in report.steps.items()}


def _records(outputs: dict[str, object], step_id: str) -> list[dict[str, object]]:
    records = outputs[step_id]
    assert isinstance(records, list) and records
    for record in records:
        path = Path(str(record["storage_uri"]).removeprefix("file://"))
        assert path.is_file() and path.stat().st_size == record["file_size"]
    return records


def _open(record: dict[str, object]) -> Image.Image:
    with Image.open(str(record["storage_uri"]).removeprefix("file://")) as image:
        image.load()
        return image


@pytest.mark.prefect
def test_refine_keeps_every_version(
    registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> None:
    outputs = _run_example("refine", registry, tmp_path)
    v1, v2, v3 = (_records(outputs, step)[0] for step in ("v1", "v2", "v3"))
    assert len({v1["sha256"], v2["sha256"], v3["sha256"]}) == 3
    assert v2["provenance"]["source_sha256"] == v1["sha256"]  # type: ignore[index]
    assert v3["provenance"]["source_sha256"] == v2["sha256"]  # type: ignore[index]
    assert v2["provenance"]["edit"] == v3["provenance"]["edit"] == "edit"  # type: ignore[index]
    (thumb,) = _records(outputs, "thumb")
    assert (thumb["width"], thumb["height"], thumb["file_type"]) == (480, 360, "image/webp")
    assert str(v3["file_url"]) in str(outputs["versions"])


@pytest.mark.prefect
def test_compose_sends_every_reference(
    registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> None:
    outputs = _run_example("compose", registry, tmp_path)
    mug, plant = _records(outputs, "mug")[0], _records(outputs, "plant")[0]
    (scene,) = _records(outputs, "scene")
    assert scene["provenance"] == {  # type: ignore[comparison-overlap]
        **scene["provenance"],  # type: ignore[dict-item]
        "edit": "compose",
        "references": "2",
        "references_sha256": f"{mug['sha256']},{plant['sha256']}",
    }
    width, height = _open(scene).size
    assert (width, abs(width / height - 3 / 2) < 0.01) == (1024, True)  # 3:2 at 1K
    styled = _records(outputs, "styled")
    linen = hashlib.sha256((FLOWS / "assets" / "linen.png").read_bytes()).hexdigest()
    assert len(styled) == 2
    for record in styled:
        provenance = record["provenance"]
        assert provenance["references_sha256"] == f"{scene['sha256']},{linen}"  # type: ignore[index]
        assert provenance["source"] == scene["storage_uri"]  # type: ignore[index]


@pytest.mark.prefect
def test_repaint_inpaints_then_outpaints(
    registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> None:
    outputs = _run_example("repaint", registry, tmp_path)
    (shot,) = _records(outputs, "shot")
    (backdrop,) = _records(outputs, "backdrop")
    (banner,) = _records(outputs, "banner")
    assert backdrop["provenance"]["edit"] == "inpaint"  # type: ignore[index]
    assert (backdrop["width"], backdrop["height"]) == (shot["width"], shot["height"])
    assert banner["provenance"]["edit"] == "outpaint"  # type: ignore[index]
    assert banner["provenance"]["source_sha256"] == backdrop["sha256"]  # type: ignore[index]
    width, height = _open(banner).size
    assert abs(width / height - 16 / 9) < 0.01


@pytest.mark.prefect
def test_cutout_removes_each_background(
    registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> None:
    outputs = _run_example("cutout", registry, tmp_path)
    shots = _records(outputs, "shots")
    cutouts = _records(outputs, "cutouts")
    assert [c["provenance"]["source_sha256"] for c in cutouts] == [  # type: ignore[index]
        s["sha256"] for s in shots
    ]
    for record in [*cutouts, *_records(outputs, "squares")]:
        image = _open(record)
        assert image.mode == "RGBA"
        low, high = image.getchannel("A").getextrema()
        assert (low, high) == (0, 255)  # a transparent backdrop around an opaque subject
    assert {(r["width"], r["height"]) for r in _records(outputs, "squares")} == {(512, 512)}


@pytest.mark.prefect
def test_upscale_doubles_the_preview(
    registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> None:
    outputs = _run_example("upscale", registry, tmp_path)
    (hero,) = _records(outputs, "hero")
    (large,) = _records(outputs, "large")
    assert (hero["width"], hero["height"]) == (512, 512)
    assert (large["width"], large["height"]) == (1024, 1024) == _open(large).size
    assert (large["model"], large["provider"], large["cost_usd"]) == ("pillow", "pillow", 0.0)
    provenance = large["provenance"]
    assert provenance["upscaled_from"] == hero["sha256"]  # type: ignore[index]
    assert provenance["source"] == hero["storage_uri"]  # type: ignore[index]
    assert (provenance["factor"], provenance["method"]) == ("2", "lanczos")  # type: ignore[index]
    note = str(outputs["handoff"])
    assert f"at 1024x1024: {large['file_url']}" in note
    assert f"Upscaled 2x (lanczos) from {hero['file_url']}" in note
