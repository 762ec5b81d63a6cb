"""Resource bombs, sandbox tricks and YAML slips, through the real command.

The files in ``tests/data/catalogue/bombs/`` each hold one way a workflow can make fetchflow
work without bound or reach past the template sandbox: a YAML alias bomb ("billion laughs")
under 1 KB, templates that build huge strings, ranges or loops, format strings that reach
private attributes, and the YAML slips that read a template as a mapping or let a quote run
on. ``fetchflow validate`` must refuse each with one located problem and a hint, exit 2, in
bounded time and memory, before anything billable or any write (the catalogue's harness
checks the fakes and the files). The last tests run a workflow whose template is sized by an
``--input``: the step must end with a message naming the step and field, not a MemoryError.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest
import test_bad_input_catalogue as catalogue
from test_bad_input_catalogue import Case, Sandbox, expected_stderr

# The catalogue's fixtures, used by name.
fake_openai = catalogue.fake_openai
fake_gemini = catalogue.fake_gemini
probe_dir = catalogue.probe_dir
sandbox = catalogue.sandbox

BOMBS = Path(__file__).resolve().parents[1] / "data" / "catalogue" / "bombs"

ALIAS_BOMB = (
    "aliases expand this value past the limit of 1000000 added values or 10000000 added "
    'characters (an alias bomb, "billion laughs")'
)
ALIAS_HINT = "write the value out, or repeat a smaller anchor fewer times"
LIMITS_HINT = (
    "templates may build values of at most 1000000 characters or items, integers of 10000 "
    "bits, and make 100000 loop steps and calls per field: build smaller values, or do the "
    "heavy work in a step"
)
PRIVATE_HINT = "templates may read inputs, run and step outputs only"
BRIEF = 'step "brief" (template) field "template"'
UNQUOTED_HINT = (
    'a value that starts with { is read as a YAML mapping: quote it ("{{ brief.output }}") '
    "or write << brief.output >>"
)

CASES = {
    "yaml_alias_bomb_in_input_default": Case(
        f'5:5: field "inputs.product.default": {ALIAS_BOMB}', ALIAS_HINT
    ),
    "yaml_alias_bomb_in_prompt": Case(
        f'6:15: field "steps.0.prompt.words": {ALIAS_BOMB}', ALIAS_HINT
    ),
    "yaml_unquoted_template": Case(
        '8:15: field "steps.1.template": {{ brief.output }} is read as a YAML mapping, not as '
        "a template",
        UNQUOTED_HINT,
    ),
    "yaml_unquoted_template_then_text": Case(
        "8:15: YAML syntax error: did not find expected key (while parsing a block mapping)",
        UNQUOTED_HINT,
    ),
    "yaml_unclosed_quote_runs_on": Case(
        "5:15: YAML syntax error: this quote is not closed on its line: the value runs on to "
        "line 8",
        'close the quote (") on line 5, or write a long text as a block (key: |)',
    ),
    "format_private_attribute": Case(
        f"9:23: {BRIEF}: template refused: '__class__' is a private attribute, templates "
        "cannot reach it",
        PRIVATE_HINT,
    ),
    "format_map_private_item": Case(
        f"11:20: {BRIEF}: template refused: '__globals__' is a private attribute, templates "
        "cannot reach it",
        PRIVATE_HINT,
    ),
    "format_nested_spec_private": Case(
        f"9:26: {BRIEF}: template refused: '__init__' is a private attribute, templates "
        "cannot reach it",
        PRIVATE_HINT,
    ),
    "template_changes_a_list": Case(
        f"11:16: {BRIEF}: template refused: append() would change a value, templates cannot",
        "build a new value instead: << items + [x] >>, << dict(a, key=value) >>, or keep a "
        "running value in <% set ns = namespace(items=[]) %> with "
        "<% set ns.items = ns.items + [x] %>",
    ),
    "template_string_times_huge": Case(
        '6:28: step "hero" (image_generation) field "prompt": template refused: \'*\' would '
        "make a value of 10000000000 characters or items, over the limit of 1000000",
        LIMITS_HINT,
    ),
    "template_huge_range": Case(
        f"5:37: {BRIEF}: template refused: Range too big. The sandbox blocks ranges larger "
        "than MAX_RANGE (100000).",
        LIMITS_HINT,
    ),
    "template_huge_center": Case(
        f"5:26: {BRIEF}: template refused: the filter center would make a value of "
        "10000000000 characters or items, over the limit of 1000000",
        LIMITS_HINT,
    ),
    "template_nested_loops": Case(
        f"6:7: {BRIEF}: template refused: the template made more than 100000 loop steps and calls",
        LIMITS_HINT,
    ),
    "template_nested_too_deep": Case(
        f"5:15: {BRIEF}: template refused: it nests too deeply to be read",
        "write it with fewer nested brackets, operators or blocks",
    ),
}

#: Address space for the subprocess: a bomb that escaped would fail fast, not swap.
MEMORY_LIMIT = 2 * 1024**3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture
def bounded(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox, its subprocesses limited to 2 GiB of address space."""
    run = catalogue.subprocess.run

    def limited(*args: object, **kwargs: object) -> object:
        return run(*args, preexec_fn=_limit_memory, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(catalogue.subprocess, "run", limited)
    return sandbox


@pytest.mark.parametrize(("stem", "case"), [pytest.param(s, c, id=s) for s, c in CASES.items()])
def test_validate_refuses_a_bomb_with_one_located_problem(
    stem: str, case: Case, bounded: Sandbox
) -> None:
    path = BOMBS / f"{stem}.yaml"

    outcome = bounded.fetchflow("validate", str(path))

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert lines == expected_stderr(path, case, lines, summary=True)
    assert outcome.seconds < 10
    bounded.assert_nothing_happened(outcome)


def test_the_bomb_files_are_small() -> None:
    for stem in ("yaml_alias_bomb_in_input_default", "yaml_alias_bomb_in_prompt"):
        assert (BOMBS / f"{stem}.yaml").stat().st_size < 1024


@pytest.mark.parametrize(
    "stem", ["template_string_times_huge", "yaml_alias_bomb_in_prompt", "yaml_unquoted_template"]
)
def test_run_refuses_a_bomb_before_anything_billable(stem: str, bounded: Sandbox) -> None:
    path = BOMBS / f"{stem}.yaml"

    outcome = bounded.fetchflow("run", str(path))

    assert outcome.code == 2, outcome.stderr
    lines = outcome.stderr.splitlines()
    assert lines == expected_stderr(path, CASES[stem], lines, summary=False)
    bounded.assert_nothing_happened(outcome)


# -- run time: a template sized by an --input --------------------------------------------------


def _run(sandbox: Sandbox, prefect_api: str, *inputs: str) -> tuple[int, str, dict[str, object]]:
    sandbox.env["PREFECT_API_URL"] = prefect_api
    arguments = [part for value in inputs for part in ("--input", value)]
    outcome = sandbox.fetchflow(
        "run", str(BOMBS / "run_template_from_input.yaml"), "--json", *arguments
    )
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert "MemoryError" not in outcome.stderr + outcome.stdout
    assert outcome.seconds < 50
    report = json.loads(outcome.stdout) if outcome.stdout.strip() else {}
    return outcome.code, outcome.stderr, report


def _step(report: dict[str, object], step: str) -> dict[str, object]:
    steps = report["steps"]
    assert isinstance(steps, dict)
    return dict(steps[step])


@pytest.mark.prefect
def test_a_string_sized_by_an_input_past_the_limit_fails_its_step_clearly(
    bounded: Sandbox, prefect_api: str
) -> None:
    code, stderr, report = _run(bounded, prefect_api, "times=10000000000")

    assert code == 1, stderr
    brief = _step(report, "brief")
    assert brief["status"] == "failed"
    assert brief["error"] == (
        'step "brief": field "template": template refused: \'*\' would make a value of '
        "20000000000 characters or items, over the limit of 1000000\n  hint: " + LIMITS_HINT
    )
    # The run's message names the step once.
    assert str(report["message"]).startswith(
        'step "brief" failed: field "template": template refused: \'*\' would make'
    )
    assert bounded.openai.requests == []


@pytest.mark.prefect
def test_a_format_string_from_an_input_cannot_reach_private_attributes(
    bounded: Sandbox, prefect_api: str
) -> None:
    code, stderr, report = _run(bounded, prefect_api, "pattern={0.__class__.__mro__}")

    assert code == 1, stderr
    caption = _step(report, "caption")
    assert caption["status"] == "failed"
    assert str(caption["error"]).startswith(
        'step "caption": field "template": template refused: access to attribute '
        "'__class__' of 'str' object is unsafe."
    )
    assert _step(report, "brief")["status"] == "completed"
