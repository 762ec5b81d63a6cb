"""The open-weight options (steps, guidance, negative_prompt, strength, safety_checker):
which model takes which, their ranges, fal's prices, and ``model: auto`` choosing by them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from fetchflow.errors import StepError
from steps.imaging.models.catalog import CATALOG, price_for
from steps.imaging.models.choice import choose_model
from steps.imaging.models.rules import Tuning
from steps.imaging.settings import ImageSettings

ROOT = Path(__file__).parents[4]
BROKEN = Path("tests") / "data" / "flows" / "broken" / "open_model_options.yaml"

#: What ``fetchflow validate`` says about each step of the broken file, in file order.
EXPECTED = f"""\
{BROKEN}:8:5: step "openai_guidance" (image_generation) field "guidance": guidance: 7.5 is not taken by model gpt-image-2 (it takes no guidance scale)
  hint: remove guidance, or use a model that takes it (fal-ai/flux/dev, fal-ai/fast-sdxl)
{BROKEN}:13:5: step "schnell_steps" (image_generation) field "steps": steps: 30 is out of range for model fal-ai/flux/schnell (it takes 1-12)
  hint: use steps between 1 and 12, or a model that takes 30 (fal-ai/flux/dev, fal-ai/fast-sdxl)
{BROKEN}:18:5: step "dev_negative" (image_generation) field "negative_prompt": negative_prompt: "blurry" is not taken by model fal-ai/flux/dev (it takes no negative prompt)
  hint: remove negative_prompt, or use a model that takes it (fal-ai/fast-sdxl)
{BROKEN}:23:5: step "gemini_safety" (image_generation) field "safety_checker": safety_checker: false is not taken by model gemini-2.5-flash-image (it takes no safety checker switch)
  hint: remove safety_checker, or use a model that takes it (fal-ai/flux/schnell, fal-ai/flux/dev, fal-ai/flux-pro/v1.1, fal-ai/fast-sdxl)
{BROKEN}:29:5: step "sdxl_strength" (image_edit) field "strength": strength: 0.01 is out of range for model fal-ai/fast-sdxl (it takes 0.05-1)
  hint: use strength between 0.05 and 1, or a model that takes 0.01 (fal-ai/flux/dev)
{BROKEN}:34:5: step "generation_strength" (image_generation) field "strength": strength: 0.5 applies to image-to-image, and image_generation starts from no image
  hint: remove strength, or use an image_edit step with images: and strength
{BROKEN}:39:5: step "pro_edit" (image_edit) field "model": model fal-ai/flux-pro/v1.1 makes images from a prompt only: it does not edit images
  hint: use a model that edits (fal-ai/flux/dev, fal-ai/fast-sdxl)
{BROKEN}: 7 problems
"""  # noqa: E501


def test_validate_names_each_option_its_model_and_range(clean_env: Mapping[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "validate", str(BROKEN)],
        cwd=ROOT,
        env=dict(clean_env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == EXPECTED


@pytest.mark.parametrize(
    ("model", "width", "height", "price"),
    [
        pytest.param("fal-ai/flux/schnell", 1024, 1024, 0.003, id="schnell-1mp"),
        pytest.param("fal-ai/flux/dev", 1024, 768, 0.025, id="dev-under-1mp"),
        pytest.param("fal-ai/flux/dev", 1536, 1024, 0.05, id="dev-started-2nd-mp"),
        pytest.param("fal-ai/flux-pro/v1.1", 2048, 2048, 0.16, id="pro-4mp"),
        pytest.param("fal-ai/fast-sdxl", 1024, 1024, None, id="sdxl-gpu-seconds"),
    ],
)
def test_fal_prices_per_started_megapixel(
    model: str, width: int, height: int, price: float | None
) -> None:
    assert price_for(CATALOG[model], "auto", width, height) == price


def _auto(environ: Mapping[str, str], tuning: Tuning) -> str:
    return choose_model(
        "auto",
        charge_type="personal",
        size="auto",
        quality="auto",
        background="auto",
        settings=ImageSettings(),
        environ=environ,
        tuning=tuning,
    ).name


def test_auto_picks_the_first_candidate_taking_the_options() -> None:
    keys = {"OPENAI_API_KEY": "sk-test-openai", "FAL_KEY": "fal-test"}
    assert _auto(keys, Tuning()) == "gpt-image-2"
    assert _auto(keys, Tuning(steps=28, guidance=3.5)) == "fal-ai/flux/dev"
    assert _auto(keys, Tuning(negative_prompt="blurry")) == "fal-ai/fast-sdxl"
    assert _auto({}, Tuning(steps=28)) == "preview"  # no key: the offline preview


def test_auto_with_keys_but_no_model_taking_the_options_says_why() -> None:
    with pytest.raises(StepError, match=r"gpt-image-2: guidance: 7.5 is not taken by model"):
        _auto({"OPENAI_API_KEY": "sk-test-openai"}, Tuning(guidance=7.5))


AUTO_GUIDANCE = """name: auto guidance
steps:
  - id: drawn
    type: image_generation
    prompt: a kite
    model: auto
  - id: tuned
    type: image_generation
    prompt: a kite
    model: auto
    guidance: 25
"""


def test_run_refuses_auto_with_options_no_keyed_model_takes_before_the_run(
    clean_env: Mapping[str, str], tmp_path: Path
) -> None:
    # validate checks auto against the preview (which takes guidance 0-35); the run knows
    # the keys: no keyed model takes 25, said before the run, not in the step after others
    (tmp_path / "auto.yaml").write_text(AUTO_GUIDANCE, encoding="utf-8")
    env = {
        **clean_env,
        "OPENAI_API_KEY": "sk-test-openai",
        "FAL_KEY": "fal-test",
        "FETCHFLOW_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }

    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", "auto.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        'fetchflow: auto.yaml:7: step "tuned" (image_generation): model: auto found image '
        "provider keys but no model that can serve this step: gpt-image-2: guidance: 25 is not "
        "taken by model gpt-image-2 (it takes no guidance scale); gpt-image-1.5: guidance: 25 "
        "is not taken by model gpt-image-1.5 (it takes no guidance scale); fal-ai/flux/dev: "
        "guidance: 25 is out of range for model fal-ai/flux/dev (it takes 1-20); "
        "fal-ai/fast-sdxl: guidance: 25 is out of range for model fal-ai/fast-sdxl (it takes "
        "0-20)\n"
        "  hint: name a model that supports these settings, or change them\n"
    )
    assert not (tmp_path / "home" / "prefect").exists(), "the run started"


@pytest.mark.parametrize("field", ["guidance", "strength"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_guidance_and_strength_must_be_finite(field: str, value: float) -> None:
    from steps.image_edit import ImageEditConfig

    with pytest.raises(ValueError, match="finite number"):
        ImageEditConfig.model_validate(
            {"images": "art/x.png", "prompt": "x", "model": "fal-ai/flux/dev", field: value}
        )
