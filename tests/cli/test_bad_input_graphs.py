"""Bad input catalogue, graphs: deep chains and cycles, deep values, list indexes, and every
problem of one step reported together.

Run through the real command in a subprocess, like the main catalogue
(:mod:`test_bad_input_catalogue`). The big workflows (10 000 steps) are written by the tests
into ``tmp_path``; the small broken files live in ``tests/data/catalogue/graphs/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_bad_input_catalogue import (  # noqa: F401
    CYCLE_HINT,
    Case,
    Sandbox,
    expected_stderr,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

GRAPHS = Path(__file__).resolve().parents[1] / "data" / "catalogue" / "graphs"

#: Wall-clock bound for validating 10 000 steps in a subprocess (about 2 s on a quiet
#: machine, start-up included); generous for a loaded CI runner.
DEEP_SECONDS = 20

DEEP_HINT = "flatten this value: a workflow needs a few levels at most"
DEEP = "values nested more than 100 levels deep (lists and mappings inside each other)"


def _template_step(step_id: str, template: str, needs: str | None = None) -> str:
    text = f'  - id: {step_id}\n    type: template\n    template: "{template}"\n'
    return text + (f"    needs: [{needs}]\n" if needs else "")


def _chain(length: int, *, consumer_first: bool) -> str:
    """``s1 <- s2 <- ... <- sN``, each step reading the one before."""
    steps = [
        _template_step(f"s{i}", f"<< s{i - 1}.output >>!" if i > 1 else "start")
        for i in range(1, length + 1)
    ]
    if consumer_first:
        steps.reverse()
    return "name: deep chain\nsteps:\n" + "".join(steps)


def _ring(length: int, *, by_needs: bool) -> str:
    """``s1 <- s2 <- ... <- sN <- s1``, by references or by ``needs``."""
    steps = []
    for i in range(1, length + 1):
        before = f"s{i - 1 if i > 1 else length}"
        if by_needs:
            steps.append(_template_step(f"s{i}", "text", needs=before))
        else:
            steps.append(_template_step(f"s{i}", f"<< {before}.output >>"))
    return "name: deep cycle\nsteps:\n" + "".join(steps)


def _validate(box: Sandbox, path: Path, text: str) -> tuple[int, str, str, float]:
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    outcome = box.fetchflow("validate", str(path))
    seconds = time.monotonic() - started
    box.assert_nothing_happened(outcome)
    return outcome.code, outcome.stdout, outcome.stderr, seconds


@pytest.mark.parametrize(
    ("length", "consumer_first"),
    [
        pytest.param(1500, True, id="1500-consumer-first"),
        pytest.param(10_000, True, id="10000-consumer-first"),
        pytest.param(10_000, False, id="10000-producer-first"),
    ],
)
def test_a_deep_chain_validates(
    length: int,
    consumer_first: bool,
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "chain.yaml"

    code, stdout, stderr, seconds = _validate(
        sandbox, path, _chain(length, consumer_first=consumer_first)
    )

    assert (code, stderr) == (0, "")
    assert stdout == f"{path}: ok ({length} steps)\n"
    assert seconds < DEEP_SECONDS


@pytest.mark.parametrize(
    "by_needs",
    [
        pytest.param(False, id="references"),
        pytest.param(True, id="needs"),
    ],
)
def test_a_deep_cycle_is_one_problem_with_a_shortened_path(
    by_needs: bool,
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "cycle.yaml"

    code, stdout, stderr, seconds = _validate(sandbox, path, _ring(10_000, by_needs=by_needs))

    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == [
        f'{path}:3:5: step "s1" (template): steps depend on each other in a cycle: '
        "s2 -> s3 -> s4 -> ... (9995 more) ... -> s10000 -> s1 -> s2",
        f"  hint: {CYCLE_HINT}",
        f"{path}: 1 problem",
    ]
    assert seconds < DEEP_SECONDS


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("text", "case"),
    [
        pytest.param(
            "name: deep\ninputs:\n  x:\n    type: list\n    default: " + _nested(500) + "\n"
            "steps:\n" + _template_step("a", "hi"),
            Case(f'5:111: field "inputs.x.default": {DEEP}', DEEP_HINT),
            id="input-default-500-deep",
        ),
        pytest.param(
            "name: deep\nsteps:\n  - id: a\n    type: template\n    template: "
            + _nested(900)
            + "\n",
            Case(f'5:112: field "steps.0.template": {DEEP}', DEEP_HINT),
            id="step-field-900-deep",
        ),
        pytest.param(
            "name: deep\nsteps:\n  - id: a\n    type: template\n    template:\n      "
            + "[{a: " * 120
            + "1"
            + "}]" * 120
            + "\n",
            Case(f'6:248: field "steps.0.template": {DEEP}', DEEP_HINT),
            id="lists-and-mappings-240-deep",
        ),
        pytest.param(
            "name: deep\nx: &x " + _nested(60) + "\nsteps:\n  - id: a\n    type: template\n"
            "    template: " + "[" * 60 + "*x" + "]" * 60 + "\n",
            Case(f'2:44: field "steps.0.template": {DEEP}', DEEP_HINT),
            id="deep-by-an-alias",
        ),
    ],
)
def test_deeply_nested_values_are_one_clear_problem(
    text: str,
    case: Case,
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep.yaml"

    code, stdout, stderr, _ = _validate(sandbox, path, text)

    assert (code, stdout) == (2, "")
    lines = stderr.splitlines()
    assert lines == expected_stderr(path, case, lines, summary=True)


# -- every problem of a step at once ---------------------------------------------------------

HERO = 'step "hero" (image_generation)'
GENERATION_FIELDS = (
    "fields of image_generation: prompt, model, size, aspect_ratio, resolution, count, "
    "quality, background, output_format, output_compression, partial_images, seed, steps, "
    "guidance, negative_prompt, strength, safety_checker, charge_type, api_key_secret, "
    "on_moderation, provenance_prompt, contact_sheet, moderation, style"
)
TRANSPARENT_JPEG = (
    'field "background": background: transparent needs output_format png or webp, got jpeg '
    "(JPEG has no transparency)"
)
TRANSPARENT_HINT = "use output_format png or webp, or background opaque"

#: file stem -> every problem, in file order.
MANY_PROBLEM_CASES = {
    "unknown_key_and_transparent_jpeg": [
        Case(f"6:5: {HERO} {TRANSPARENT_JPEG}", TRANSPARENT_HINT),
        Case(f'8:5: {HERO} field "colour": unknown field "colour"', GENERATION_FIELDS),
    ],
    "three_problems_in_one_step": [
        Case(f'6:5: {HERO} field "count": must be a valid integer; got "two"',
             "write a whole number, e.g. 3"),
        Case(f'8:5: {HERO} field "output_compression": output_compression only applies to '
             "jpeg and webp, got output_format png",
             "remove output_compression or use output_format webp (or jpeg)"),
        Case(f'9:5: {HERO} field "colour": unknown field "colour"', GENERATION_FIELDS),
    ],
    # output_format is wrong itself: the transparency rule waits for a valid one.
    "bad_field_waits_its_rule": [
        Case(f'7:5: {HERO} field "output_format": must be one of png, jpeg, webp; got "jpg"',
             "did you mean jpeg?"),
        Case(f'8:5: {HERO} field "colour": unknown field "colour"', GENERATION_FIELDS),
    ],
    # A broken rule stops the rules after it: each is found in a round of its own.
    "two_broken_rules": [
        Case(f'7:5: {HERO} field "aspect_ratio": size and aspect_ratio are exclusive, got '
             "size: 1024x1024 and aspect_ratio: 16:9",
             "give size (WxH), or aspect_ratio with resolution, not both"),
        Case(f"8:5: {HERO} {TRANSPARENT_JPEG}", TRANSPARENT_HINT),
    ],
    # A rule checked before the fields stops every field: the others are still checked.
    "edit_moderation_and_more": [
        Case('7:5: step "warmer" (image_edit) field "moderation": moderation does not apply '
             "to edits (OpenAI's image edits take no moderation setting)",
             "remove moderation from this step"),
        Case('8:5: step "warmer" (image_edit) field "colour": unknown field "colour"',
             "fields of image_edit: images, prompt, model, size, aspect_ratio, resolution, "
             "count, quality, background, output_format, output_compression, partial_images, "
             "seed, steps, guidance, negative_prompt, strength, safety_checker, charge_type, "
             "api_key_secret, on_moderation, provenance_prompt, contact_sheet, mask, "
             "outpaint, input_fidelity, each"),
        Case(f'9:5: step "warmer" (image_edit) {TRANSPARENT_JPEG}', TRANSPARENT_HINT),
    ],
    "templated_and_unknown": [
        Case(f"10:5: {HERO} {TRANSPARENT_JPEG}", TRANSPARENT_HINT),
        Case(f'12:5: {HERO} field "sizee": unknown field "sizee"; did you mean "size"?',
             "rename sizee to size"),
    ],
}  # fmt: skip


@pytest.mark.parametrize(("stem", "cases"), MANY_PROBLEM_CASES.items(), ids=MANY_PROBLEM_CASES)
def test_every_problem_of_a_step_is_reported_together(
    stem: str,
    cases: list[Case],
    sandbox: Sandbox,  # noqa: F811
) -> None:
    path = GRAPHS / f"{stem}.yaml"

    outcome = sandbox.fetchflow("validate", str(path))

    assert (outcome.code, outcome.stdout) == (2, ""), outcome.stderr
    expected = [line for case in cases for line in (f"{path}:{case.first}", f"  hint: {case.hint}")]
    assert outcome.stderr.splitlines() == [*expected, f"{path}: {len(cases)} problems"]
    sandbox.assert_nothing_happened(outcome)


# -- list indexes against the length the fields say ------------------------------------------

CAPTION = 'step "caption" (template) field "template"'
PAST_TWO = "use an index from 0 to 1 (or -2 to -1), or change"

INDEX_CASES = {
    "index_past_count": Case(
        f'9:19: {CAPTION}: "hero.output.5.file_url": hero.output has 2 items (set by count), '
        "so there is no item 5",
        f"{PAST_TWO} count",
    ),
    "index_past_default_count": Case(
        f'8:19: {CAPTION}: "hero.output.1.file_url": hero.output has 1 item (set by count), '
        "so there is no item 1",
        "use hero.output.0, or change count",
    ),
    "negative_index_past_count": Case(
        f'9:19: {CAPTION}: "hero.output[-3].file_url": hero.output has 2 items (set by count), '
        "so there is no item -3",
        f"{PAST_TWO} count",
    ),
    "index_past_templated_count_limit": Case(
        f'13:19: {CAPTION}: "hero.output.10.file_url": hero.output has at most 10 items '
        "(count is a template), so there is no item 10",
        "use an index below 10; the exact number is known only once count is rendered, when "
        "the step runs",
    ),
    "index_past_transform_inputs": Case(
        f'9:19: {CAPTION}: "thumbs.output.2.file_url": thumbs.output has 2 items (set by '
        "images), so there is no item 2",
        f"{PAST_TWO} images",
    ),
    "index_past_edits_each": Case(
        f'11:19: {CAPTION}: "warmer.output.4.file_url": warmer.output has 4 items (set by '
        "count and images), so there is no item 4",
        "use an index from 0 to 3 (or -4 to -1), or change count or images",
    ),
    "index_past_one_edit": Case(
        f'10:19: {CAPTION}: "together.output.2.file_url": together.output has 2 items (set '
        "by count), so there is no item 2",
        f"{PAST_TWO} count",
    ),
}


@pytest.mark.parametrize(("stem", "case"), INDEX_CASES.items(), ids=INDEX_CASES)
def test_an_index_past_a_known_length_is_refused_before_anything_is_paid(
    stem: str,
    case: Case,
    sandbox: Sandbox,  # noqa: F811
) -> None:
    path = GRAPHS / f"{stem}.yaml"

    for command in ("validate", "run"):
        outcome = sandbox.fetchflow(command, str(path))

        assert (outcome.code, outcome.stdout) == (2, ""), outcome.stderr
        lines = outcome.stderr.splitlines()
        assert lines == expected_stderr(path, case, lines, summary=command == "validate")
        sandbox.assert_nothing_happened(outcome)


def test_indexes_every_count_allows_pass(sandbox: Sandbox) -> None:  # noqa: F811
    path = GRAPHS / "indexes_within_counts.yaml"

    outcome = sandbox.fetchflow("validate", str(path))

    assert (outcome.code, outcome.stderr) == (0, "")
    assert outcome.stdout == f"{path}: ok (4 steps)\n"


@pytest.mark.parametrize("depth", [101, 5000], ids=["101-deep", "5000-deep"])
def test_a_deeply_nested_input_value_is_one_clear_problem(
    depth: int,
    sandbox: Sandbox,  # noqa: F811
) -> None:
    path = GRAPHS / "list_input.yaml"

    outcome = sandbox.fetchflow("run", str(path), "--input", "tags=" + _nested(depth))

    assert (outcome.code, outcome.stdout) == (2, ""), outcome.stderr
    assert outcome.stderr.splitlines() == [
        '--input: input "tags": expected a list nested at most 100 levels deep (lists and '
        "objects inside each other), got '" + "[" * 39 + "…'",
        "  hint: give tags a value of type list",
    ]
    sandbox.assert_nothing_happened(outcome)
