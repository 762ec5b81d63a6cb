"""image_edit's static rules as users meet them: ``fetchflow validate`` over real files.

Every case is a workflow file of its own; one ``fetchflow validate`` subprocess checks them
all, and each test reads its file's lines back: the location (``file:line:col``), the step,
the field, the message and the hint.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from steps.imaging.models.catalog import CATALOG
from steps.imaging.models.rules import EditNeeds, unsupported

HEAD = """\
name: edit rules
steps:
  - id: warmer
    type: image_edit
"""
#: Seventeen literal references: one more than OpenAI's edits take in one call.
SEVENTEEN = "[" + ", ".join(f"shots/{n}.png" for n in range(1, 18)) + "]"


def step(*lines: str) -> str:
    """A one-step workflow whose step fields start at line 5."""
    return HEAD + "".join(f"    {line}\n" for line in lines)


@dataclass(frozen=True)
class Refused:
    """A file ``fetchflow validate`` must refuse with one problem."""

    text: str
    where: str  # line:col
    field: str
    message: str
    hint: str


REFUSED = {
    "moderation": Refused(
        step("images: a.png", "prompt: warmer light", "moderation: low"),
        "7:5",
        "moderation",
        "moderation does not apply to edits (OpenAI's image edits take no moderation setting)",
        "remove moderation from this step",
    ),
    "mask-gemini": Refused(
        step("images: a.png", "prompt: x", "model: gemini-2.5-flash-image", "mask: m.png"),
        "8:5",
        "mask",
        "mask needs a model that takes a mask; model gemini-2.5-flash-image edits from the "
        "prompt alone",
        "use an OpenAI model (gpt-image-1.5, gpt-image-2) or preview, or leave mask out and "
        "say in the prompt what to change",
    ),
    "outpaint-gemini": Refused(
        step("images: a.png", "prompt: x", "model: gemini-2.5-flash-image", "outpaint: '16:9'"),
        "8:5",
        "outpaint",
        "outpaint needs a model that takes a mask; model gemini-2.5-flash-image edits from "
        "the prompt alone",
        "use an OpenAI model (gpt-image-1.5, gpt-image-2) or preview, or leave outpaint out "
        "and say in the prompt what to change",
    ),
    "mask-flux-pro": Refused(
        step("images: a.png", "prompt: x", "model: fal-ai/flux-pro/v1.1", "mask: m.png"),
        "7:5",
        "model",
        "model fal-ai/flux-pro/v1.1 makes images from a prompt only: it does not edit images",
        "use a model that edits (fal-ai/flux/dev, fal-ai/fast-sdxl)",
    ),
    "fidelity-high-mini": Refused(
        step("images: a.png", "prompt: x", "model: gpt-image-1-mini", "input_fidelity: high"),
        "8:5",
        "input_fidelity",
        "input_fidelity: high is not taken by model gpt-image-1-mini (it takes low)",
        "use input_fidelity: low, or gpt-image-1.5 for high",
    ),
    "fidelity-gpt-image-2": Refused(
        step("images: a.png", "prompt: x", "model: gpt-image-2", "input_fidelity: low"),
        "8:5",
        "input_fidelity",
        "input_fidelity: low is not taken by model gpt-image-2",
        "remove input_fidelity (gpt-image-2 and later keep details without it; gpt-image-1.5 "
        "takes high or low)",
    ),
    "seventeen-openai": Refused(
        step(f"images: {SEVENTEEN}", "prompt: x", "model: gpt-image-1.5"),
        "5:5",
        "images",
        "images: 17 references; model gpt-image-1.5 takes at most 16 in one edit",
        "give at most 16 images, or each: true to edit them one by one",
    ),
    "four-gemini": Refused(
        step("images: [a.png, b.png, c.png, d.png]", "prompt: x", "model: gemini-2.5-flash-image"),
        "5:5",
        "images",
        "images: 4 references; model gemini-2.5-flash-image takes at most 3 in one edit",
        "give at most 3 images, or each: true to edit them one by one, or a model that takes "
        "4 (gemini-3-pro-image-preview, gemini-3.1-flash-image-preview, gpt-image-1-mini)",
    ),
    "each-false-background-removal": Refused(
        # Background removal edits each image alone by default; each: false asks for one call.
        step(
            f"images: {SEVENTEEN}", "model: gpt-image-1.5", "background: transparent", "each: false"
        ),
        "5:5",
        "images",
        "images: 17 references; model gpt-image-1.5 takes at most 16 in one edit",
        "give at most 16 images, or each: true to edit them one by one",
    ),
    "mask-list": Refused(
        step("images: a.png", "prompt: x", "mask: [m.png, n.png]"),
        "7:5",
        "mask",
        "mask is one PNG, got a list of 2",
        "give one mask, e.g. mask: << masks.output.0 >> or mask: masks/sky.png",
    ),
    "mask-and-outpaint": Refused(
        step("images: a.png", "prompt: x", "mask: m.png", "outpaint: '16:9'"),
        "7:5",
        "mask",
        "mask and outpaint are exclusive, got both (outpaint: 16:9); outpaint builds its own mask",
        "give mask to repaint an area, or outpaint to extend the canvas",
    ),
    "outpaint-size": Refused(
        step("images: a.png", "prompt: x", "outpaint: '16:9'", "size: 1024x1024"),
        "8:5",
        "size",
        "outpaint: 16:9 sets the output's aspect ratio, but size: 1024x1024 is given too",
        "remove size (use resolution for a larger image)",
    ),
    "outpaint-aspect-ratio": Refused(
        step("images: a.png", "prompt: x", "outpaint: '16:9'", "aspect_ratio: '1:1'"),
        "8:5",
        "aspect_ratio",
        "outpaint: 16:9 sets the output's aspect ratio, but aspect_ratio: 1:1 is given too",
        "remove aspect_ratio (use resolution for a larger image)",
    ),
    "prompt-missing": Refused(
        step("images: a.png"),
        "3:5",  # no prompt line: the step itself
        "prompt",
        "prompt is missing: an edit says what to change",
        "add prompt: <what to change>, or background: transparent (and no prompt) to remove "
        "the background",
    ),
    "prompt-empty": Refused(
        step("images: a.png", "prompt: '  '"),
        "6:5",
        "prompt",
        "prompt is missing: an edit says what to change (prompt is empty)",
        "add prompt: <what to change>, or background: transparent (and no prompt) to remove "
        "the background",
    ),
    "remove-background-gpt-image-2": Refused(
        step("images: a.png", "model: gpt-image-2", "background: transparent"),
        "7:5",
        "background",
        "background: transparent is not supported by model gpt-image-2 (transparent "
        "backgrounds are only a preview on this model)",
        "use a model with transparent backgrounds (gpt-image-1.5, gpt-image-2.5-flare) or "
        "background: auto",
    ),
    "transparent-jpeg": Refused(
        step("images: a.png", "prompt: x", "background: transparent", "output_format: jpeg"),
        "7:5",
        "background",
        "background: transparent needs output_format png or webp, got jpeg (JPEG has no "
        "transparency)",
        "use output_format png or webp, or background opaque",
    ),
    "compression-png": Refused(
        step("images: a.png", "prompt: x", "output_compression: 80"),
        "7:5",
        "output_compression",
        "output_compression only applies to jpeg and webp, got output_format png",
        "remove output_compression or use output_format webp (or jpeg)",
    ),
    "unknown-model": Refused(
        step("images: a.png", "prompt: x", "model: gpt-image-15"),
        "7:5",
        "model",
        'unknown image model "gpt-image-15"; did you mean "gpt-image-1.5"?',
        "use model: gpt-image-1.5",
    ),
    "images-empty": Refused(
        step("images: []", "prompt: x"),
        "5:5",
        "images",
        "images is an empty list",
        "give at least one image: images: << hero.output >>",
    ),
}

#: Files that must pass, with the number of steps ``validate`` reports.
VALID = {
    "each-seventeen": (
        step(f"images: {SEVENTEEN}", "prompt: x", "model: gpt-image-1.5", "each: true"),
        1,
    ),
    # Outpainting edits each image alone by default: seventeen is fine.
    "outpaint-seventeen": (
        step(f"images: {SEVENTEEN}", "prompt: x", "model: gpt-image-1.5", "outpaint: '3:2'"),
        1,
    ),
    "remove-background-gpt-image-1.5": (
        step("images: a.png", "model: gpt-image-1.5", "background: transparent"),
        1,
    ),
    # model: auto is checked against preview (what it falls back to without keys); the
    # model it picks at run time must make the ratio, or the next candidate is tried.
    "auto-outpaint-16-9": (step("images: a.png", "prompt: x", "outpaint: '16:9'"), 1),
    "auto-outpaint-16-9-transparent": (
        step("images: a.png", "prompt: x", "outpaint: '16:9'", "background: transparent"),
        1,
    ),
    "fidelity-high-1.5": (
        step("images: a.png", "prompt: x", "model: gpt-image-1.5", "input_fidelity: high"),
        1,
    ),
    # The references are an upstream output: how many is only known at run time.
    "templated-images": (
        "name: edit rules\nsteps:\n  - id: hero\n    type: image_generation\n    prompt: a vase\n"
        "  - id: warmer\n    type: image_edit\n    images: << hero.output >>\n    prompt: x\n"
        "    model: gemini-2.5-flash-image\n",
        2,
    ),
}

#: One file, four steps, four different problems: all must be reported, in line order.
SEVERAL = """\
name: several
steps:
  - id: one
    type: image_edit
    images: a.png
    prompt: x
    moderation: auto
  - id: two
    type: image_edit
    images: a.png
    prompt: x
    model: gemini-2.5-flash-image
    mask: m.png
  - id: three
    type: image_edit
    images: a.png
  - id: four
    type: image_edit
    images: a.png
    prompt: x
    model: gpt-imag-2
"""


@dataclass(frozen=True)
class Validation:
    """One ``fetchflow validate`` over every case file."""

    returncode: int
    stdout: str
    stderr: str
    blocks: dict[str, list[str]]  # file -> its problem lines (summary line excluded)


def validate_all(folder: Path) -> Validation:
    flows = folder / "flows"
    flows.mkdir()
    texts = {
        **{name: case.text for name, case in REFUSED.items()},
        **{name: text for name, (text, _) in VALID.items()},
        "several": SEVERAL,
    }
    for name, text in texts.items():
        (flows / f"{name}.yaml").write_text(text)
    # The files the cases name (validate checks they exist under the project folder, here
    # the current folder: there is no templates/).
    (folder / "shots").mkdir()
    for name in ["a", "b", "c", "d", "m", *(f"shots/{n}" for n in range(1, 18))]:
        (folder / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("FETCHFLOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "validate", *(f"flows/{n}.yaml" for n in texts)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    blocks: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in result.stderr.splitlines():
        summary = re.fullmatch(r"flows/(\S+)\.yaml: \d+ problems?", line)
        if summary:
            blocks[summary[1]] = pending
            pending = []
        else:
            pending.append(line)
    return Validation(result.returncode, result.stdout, result.stderr, blocks)


@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> Validation:
    return validate_all(tmp_path_factory.mktemp("edit-rules"))


@pytest.mark.parametrize("name", list(REFUSED))
def test_each_rule_is_reported_with_its_location_field_and_fix(
    validation: Validation, name: str
) -> None:
    case = REFUSED[name]

    assert validation.blocks.get(name) == [
        f'flows/{name}.yaml:{case.where}: step "warmer" (image_edit) field "{case.field}": '
        f"{case.message}",
        f"  hint: {case.hint}",
    ]
    assert f"flows/{name}.yaml: 1 problem\n" in validation.stderr


@pytest.mark.parametrize("name", list(VALID))
def test_allowed_edits_validate_ok(validation: Validation, name: str) -> None:
    steps = VALID[name][1]

    assert f"flows/{name}.yaml: ok ({steps} step{'s' if steps > 1 else ''})" in (
        validation.stdout.splitlines()
    )
    assert name not in validation.blocks


def test_every_problem_of_a_file_is_reported_in_line_order(validation: Validation) -> None:
    assert validation.blocks["several"] == [
        'flows/several.yaml:7:5: step "one" (image_edit) field "moderation": moderation does '
        "not apply to edits (OpenAI's image edits take no moderation setting)",
        "  hint: remove moderation from this step",
        'flows/several.yaml:13:5: step "two" (image_edit) field "mask": mask needs a model that '
        "takes a mask; model gemini-2.5-flash-image edits from the prompt alone",
        "  hint: use an OpenAI model (gpt-image-1.5, gpt-image-2) or preview, or leave mask out "
        "and say in the prompt what to change",
        'flows/several.yaml:14:5: step "three" (image_edit) field "prompt": prompt is missing: '
        "an edit says what to change",
        "  hint: add prompt: <what to change>, or background: transparent (and no prompt) to "
        "remove the background",
        'flows/several.yaml:21:5: step "four" (image_edit) field "model": unknown image model '
        '"gpt-imag-2"; did you mean "gpt-image-2"?',
        "  hint: use model: gpt-image-2",
    ]
    assert "flows/several.yaml: 4 problems\n" in validation.stderr


def test_refused_files_exit_2_without_a_traceback(validation: Validation) -> None:
    assert validation.returncode == 2
    assert "Traceback" not in validation.stderr
    # Every refused file has its block, and nothing is printed but problems and hints.
    assert set(validation.blocks) == {*REFUSED, "several"}
    lines = [line for block in validation.blocks.values() for line in block]
    assert all(
        line.startswith("  hint: ") or re.match(r"flows/\S+\.yaml:\d+:\d+: step ", line)
        for line in lines
    ), lines


def test_the_hint_for_too_many_references_offers_each(validation: Validation) -> None:
    hint = validation.blocks["seventeen-openai"][1]

    assert "each: true" in hint
    assert "use a model that takes more" not in hint


# -- model: auto's test of each candidate (the rules the run refuses a named model by) -------

GPT_15_16_9 = (
    "outpaint: 16:9 is not a ratio model gpt-image-1.5 can make (its sizes 1024x1024, "
    "1536x1024, 1024x1536 are 1:1, 3:2, 2:3); the result would be 3:2"
)
NO_MASK = "{field} needs a model that takes a mask; model {model} edits from the prompt alone"


@pytest.mark.parametrize(
    ("model", "edit", "reason"),
    [
        pytest.param("gpt-image-1.5", EditNeeds(outpaint="16:9"), GPT_15_16_9, id="1.5-16:9"),
        pytest.param("gpt-image-1.5", EditNeeds(outpaint="3:2"), None, id="1.5-3:2"),
        pytest.param("gpt-image-1.5", EditNeeds(outpaint="2:3"), None, id="1.5-2:3"),
        pytest.param("gpt-image-1.5", EditNeeds(mask=True), None, id="1.5-mask"),
        pytest.param("gpt-image-2", EditNeeds(outpaint="16:9"), None, id="2-16:9"),
        pytest.param("gpt-image-2", EditNeeds(outpaint="21:9"), None, id="2-21:9"),
        pytest.param(
            "gemini-2.5-flash-image",
            EditNeeds(mask=True),
            NO_MASK.format(field="mask", model="gemini-2.5-flash-image"),
            id="gemini-mask",
        ),
        pytest.param(
            "gemini-2.5-flash-image",
            EditNeeds(outpaint="1:1"),
            NO_MASK.format(field="outpaint", model="gemini-2.5-flash-image"),
            id="gemini-outpaint",
        ),
        pytest.param("gemini-2.5-flash-image", EditNeeds(), None, id="gemini-plain-edit"),
        pytest.param("preview", EditNeeds(outpaint="21:9"), None, id="preview-21:9"),
    ],
)
def test_auto_tests_each_candidate_by_the_edit_rules(
    model: str, edit: EditNeeds, reason: str | None
) -> None:
    found = unsupported(CATALOG[model], size="auto", quality="auto", background="auto", edit=edit)

    assert found == reason
