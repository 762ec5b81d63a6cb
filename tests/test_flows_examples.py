"""Every example in flows/ checks clean; the image examples run offline end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchflow.checking import check_file
from fetchflow.inputs import resolve_inputs
from fetchflow.settings import Settings
from fetchflow.step import StepRegistry

FLOWS = Path(__file__).resolve().parents[1] / "flows"
EXAMPLES = sorted(FLOWS.glob("*.yaml"))
KEY_VARIABLES = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture(scope="module")
def registry() -> StepRegistry:
    return StepRegistry.from_entry_points()


def test_there_are_image_examples() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"product_shot.yaml", "storyboard.yaml"} <= names


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
    from fetchflow.runner import run_plan

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
