"""image_generation fields: every rule with its message, statically and after rendering."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fetchflow.errors import StepError, WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.run.execution import execute_step
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text
from fetchflow.workflow.plan import Plan
from steps.image_generation import ImageGenerationConfig, ImageGenerationStep
from steps.template import TemplateStep

REGISTRY = StepRegistry({"image_generation": ImageGenerationStep, "template": TemplateStep})
HEAD = """\
name: t
inputs:
  fmt: {type: string, default: png}
  n: {type: integer, default: 2}
steps:
  - id: hero
    type: image_generation
    prompt: a blue vase
"""


def check(fields: str) -> Plan:
    return check_text(HEAD + fields, "flows/t.yaml", REGISTRY, Templates())


def problem(fields: str) -> tuple[str, str]:
    with pytest.raises(WorkflowInvalid) as caught:
        check(fields)
    assert len(caught.value.problems) == 1, caught.value.format()
    found = caught.value.problems[0]
    return found.format().splitlines()[0], found.hint


RULES = [
    pytest.param(
        "    background: transparent\n    output_format: jpeg\n",
        'field "background": background: transparent needs output_format png or webp, got '
        "jpeg (JPEG has no transparency)",
        "use output_format png or webp, or background opaque",
        id="transparent-jpeg",
    ),
    pytest.param(
        "    output_compression: 80\n",
        'field "output_compression": output_compression only applies to jpeg and webp, got '
        "output_format png",
        "remove output_compression or use output_format webp (or jpeg)",
        id="compression-png",
    ),
    pytest.param(
        "    size: 1024x1024\n    aspect_ratio: '16:9'\n",
        'field "aspect_ratio": size and aspect_ratio are exclusive, got size: 1024x1024 and '
        "aspect_ratio: 16:9",
        "give size (WxH), or aspect_ratio with resolution, not both",
        id="size-and-ratio",
    ),
    pytest.param(
        "    size: 1024x1024\n    resolution: 2K\n",
        'field "resolution": size and resolution are exclusive, got size: 1024x1024 and '
        "resolution: 2K",
        "give size (WxH), or aspect_ratio with resolution, not both",
        id="size-and-resolution",
    ),
    pytest.param(
        "    size: large\n",
        'field "size": size: "large" is not WxH or auto',
        "write size: 1536x1024 (width x height in pixels) or size: auto",
        id="size-format",
    ),
    pytest.param(
        "    model: gpt-image-2\n    size: 1000x1000\n",
        'field "size": size: 1000x1000 is not a size model gpt-image-2 can make: both sides '
        "must be multiples of 16",
        "use aspect_ratio and resolution to get the closest size the model supports, or fix "
        "size as the message says",
        id="size-multiple",
    ),
    pytest.param(
        "    model: gpt-image-2\n    size: 3840x1024\n",
        'field "size": size: 3840x1024 is not a size model gpt-image-2 can make: the long '
        "side may be at most 3x the short side",
        "use aspect_ratio and resolution to get the closest size the model supports, or fix "
        "size as the message says",
        id="size-ratio",
    ),
    pytest.param(
        "    model: gpt-image-1.5\n    size: 2048x2048\n",
        'field "size": size: 2048x2048 is not a size model gpt-image-1.5 can make: use one '
        "of 1024x1024, 1536x1024, 1024x1536 or auto",
        "use aspect_ratio and resolution to get the closest size the model supports, or fix "
        "size as the message says",
        id="size-fixed",
    ),
    pytest.param(
        "    model: gemini-2.5-flash-image\n    size: 1024x1024\n",
        'field "size": size: 1024x1024 does not apply to model gemini-2.5-flash-image: it '
        "takes aspect_ratio (and resolution), not a pixel size",
        "use aspect_ratio (1:1, 16:9, ...) with resolution instead of size",
        id="size-gemini",
    ),
    pytest.param(
        "    model: gpt-image-2\n    quality: max\n",
        'field "quality": quality: max is not accepted by model gpt-image-2 (it takes auto, '
        "low, medium, high)",
        "use quality: auto",
        id="quality",
    ),
    pytest.param(
        "    model: gemini-2.5-flash-image\n    background: transparent\n",
        'field "background": background: transparent is not supported by model '
        "gemini-2.5-flash-image (Gemini image models have no background setting)",
        "use a model with transparent backgrounds (gpt-image-1.5, gpt-image-2.5-flare) or "
        "background: auto",
        id="background-model",
    ),
    pytest.param(
        "    model: gpt-image-2\n    seed: 42\n",
        'field "seed": seed: 42 is not supported by model gpt-image-2',
        "remove seed (OpenAI image models take none), or use a Gemini model or preview",
        id="seed",
    ),
    pytest.param(
        "    model: gpt-image-2\n    style: " + "x" * 32_000 + "\n",
        'field "prompt": prompt is 32,020 characters with style; model gpt-image-2 takes at '
        "most 32,000",
        "shorten the prompt (or the style)",
        id="prompt-length",
    ),
    pytest.param(
        "    count: 11\n",
        'field "count": must be less than or equal to 10; got 11',
        "use a value <= 10",
        id="count-bound",
    ),
    pytest.param(
        "    model: dall-e-3\n",
        'field "model": model dall-e-3 was retired on May 12, 2026 and no longer answers',
        "use model: gpt-image-2",
        id="retired",
    ),
    pytest.param(
        "    model: gpt-imag-2\n",
        'field "model": unknown image model "gpt-imag-2"; did you mean "gpt-image-2"?',
        "use model: gpt-image-2",
        id="unknown-model",
    ),
    pytest.param(
        "    charge_type: hosted\n    model: gpt-image-2\n    api_key_secret: my-key\n",
        'field "api_key_secret": api_key_secret names your own key, but charge_type is '
        "hosted (the operator's keys)",
        "remove api_key_secret, or use charge_type: personal",
        id="secret-hosted",
    ),
    pytest.param(
        "    api_key_secret: my-key\n",
        'field "api_key_secret": api_key_secret needs a named model: with model auto the '
        "provider the key is for is not known",
        "name the model, e.g. model: gpt-image-2",
        id="secret-auto",
    ),
]


@pytest.mark.parametrize(("fields", "message", "hint"), RULES)
def test_each_rule_names_the_fields_and_the_fix(fields: str, message: str, hint: str) -> None:
    first, found_hint = problem(fields)
    assert first.endswith(f'step "hero" (image_generation) {message}'), first
    assert found_hint == hint


def test_count_above_the_model_limit_is_refused() -> None:
    from dataclasses import replace

    from fetchflow.step import RuleViolation
    from steps.imaging.models.catalog import CATALOG
    from steps.imaging.models.rules import check_count

    small = replace(CATALOG["gpt-image-2"], max_count=4)
    with pytest.raises(RuleViolation, match=r"count: 5 is more than model gpt-image-2 accepts "):
        check_count(small, 5)
    check_count(small, 4)


def test_a_valid_step_passes_and_defaults_are_sensible() -> None:
    plan = check("    model: gpt-image-2\n    aspect_ratio: '16:9'\n    quality: high\n")
    assert "hero" in plan.steps
    config = ImageGenerationConfig(prompt="x")
    assert (config.model, config.count, config.output_format, config.charge_type) == (
        "auto",
        1,
        "png",
        "personal",
    )


def test_auto_is_checked_against_the_preview_limits() -> None:
    # auto may fall back to preview, which draws any size: 1000x1000 is fine statically.
    check("    size: 1000x1000\n    seed: 3\n    quality: max\n")


def test_a_templated_value_waits_statically_and_fails_at_run_time(tmp_path: Path) -> None:
    fields = "    background: transparent\n    output_format: << inputs.fmt >>\n"
    plan = check(fields)  # jpeg is not known yet: the rule waits
    step = plan.steps["hero"]
    store = LocalStore(tmp_path / "assets", spool_dir=tmp_path / "spool")
    ctx = StepContext(
        step_id="hero",
        step_type="image_generation",
        run_id="run-1",
        run_name="r",
        workflow="t",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger("test"),
        settings=Settings(home=tmp_path),
        templates=plan.templates,
        scope={"inputs": {"fmt": "jpeg", "n": 2}, "run": {}},
        open_store=lambda: store,
    )
    with pytest.raises(StepError) as caught:
        execute_step(step, plan.templates, ctx)
    assert caught.value.message == (
        'field "background": background: transparent needs output_format png or webp, got '
        "jpeg (JPEG has no transparency)"
    )
    assert caught.value.hint == "use output_format png or webp, or background opaque"
    assert not list((tmp_path / "assets").rglob("*.*")), "nothing may be made before the rule"


def test_a_templated_count_is_checked_after_rendering() -> None:
    check("    count: << inputs.n >>\n    model: gemini-2.5-flash-image\n")
