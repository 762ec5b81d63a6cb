"""The bad input catalogue: every way a workflow file or a ``--input`` can be wrong.

Each case is one file in ``tests/data/catalogue/`` named for its problem (the ``--input``
cases share the valid ``run_inputs.yaml``) and is run through the real command in a
subprocess, as a user runs it: ``python -m fetchflow.cli validate FILE`` for file
problems, ``python -m fetchflow.cli run FILE --input ...`` for input problems. For every
case:

- the exit code is 2;
- stderr is exactly one problem: ``path:line:col: ...`` (expected verbatim in the tables
  below), its ``hint:`` line and, for ``validate``, the ``1 problem`` summary; no traceback;
- stdout is empty;
- nothing billable was called: the fake OpenAI and Gemini servers (which the environment
  points every key, personal and hosted, at) received no request;
- nothing was written: no store folder, no spool, no Prefect home, and Prefect was never
  imported (a ``sitecustomize`` probe on ``PYTHONPATH`` records ``sys.modules`` at exit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

# The fake servers live in tests/steps/fakes, imported as ``fakes`` the way the step tests
# import them (tests/steps has no __init__.py: it would clash with the ``steps`` package).
_STEP_TESTS = str(Path(__file__).resolve().parents[1] / "steps")
if _STEP_TESTS not in sys.path:
    sys.path.insert(0, _STEP_TESTS)

from fakes import fixtures  # noqa: E402
from fakes.fake_gemini import FakeGemini  # noqa: E402
from fakes.fake_openai import FakeOpenAI  # noqa: E402

from fetchflow.registry import StepRegistry  # noqa: E402

#: The installed step types, as the "unknown step type" hint lists them.
STEP_TYPES = StepRegistry.from_entry_points().names()

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CATALOGUE = DATA / "catalogue"
RUN_INPUTS = CATALOGUE / "run_inputs.yaml"

SYNTAX_HINT = (
    "check the indentation and quoting on this line and the one before; "
    "template expressions are written << expr >>"
)
CYCLE_HINT = "remove one of these references or needs so the steps can run in order"
PRIVATE = "template refused: '__class__' is a private attribute, templates cannot reach it"
PRIVATE_HINT = "templates may read inputs, run and step outputs only"
HERO = 'step "hero" (image_generation)'
CAPTION = 'step "caption" (template)'
MAKE_SIZE_HINT = (
    "use aspect_ratio and resolution to get the closest size the model supports, "
    "or fix size as the message says"
)

#: Runs at the subprocess's start: at exit, writes every Prefect module it imported.
_PROBE = """\
import atexit
import os
import sys


def _record_prefect_imports():
    path = os.environ.get("CATALOGUE_IMPORTS_FILE")
    if path:
        names = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
        with open(path, "w", encoding="utf-8") as out:
            out.write("\\n".join(names))


atexit.register(_record_prefect_imports)
"""


@dataclass(frozen=True)
class Case:
    """One catalogue entry.

    Attributes:
        first: The problem's first line after ``path:`` (``line:col: ...``), or, for an
            ``--input`` case, the whole first line.
        hint: The text after ``  hint: ``.
    """

    first: str
    hint: str
    exact: bool = True


def expected_stderr(path: Path, case: Case, lines: list[str], *, summary: bool) -> list[str]:
    """The lines ``case`` expects; an inexact case (a bug whose fix will choose the words)
    takes the actual first line when it starts with ``case.first`` and any non-empty hint.
    """
    first, hint = f"{path}:{case.first}", f"  hint: {case.hint}"
    if not case.exact:
        if len(lines) >= 2 and lines[0].startswith(first):
            first = lines[0]
        if len(lines) >= 2 and lines[1].startswith("  hint: ") and lines[1][8:].strip():
            hint = lines[1]
    return [first, hint, f"{path}: 1 problem"] if summary else [first, hint]


# -- the file cases: file stem -> first line after "path:", hint -----------------------------

IMAGE_RULE_CASES = {
    "image_transparent_jpeg": Case(
        f'7:5: {HERO} field "background": background: transparent needs output_format png or '
        "webp, got jpeg (JPEG has no transparency)",
        "use output_format png or webp, or background opaque",
    ),
    "image_compression_png": Case(
        f'7:5: {HERO} field "output_compression": output_compression only applies to jpeg and '
        "webp, got output_format png",
        "remove output_compression or use output_format webp (or jpeg)",
    ),
    "image_compression_over_100": Case(
        f'7:5: {HERO} field "output_compression": must be less than or equal to 100; got 120',
        "use a value <= 100",
    ),
    "image_size_and_aspect_ratio": Case(
        f'7:5: {HERO} field "aspect_ratio": size and aspect_ratio are exclusive, got size: '
        "1536x1024 and aspect_ratio: 16:9",
        "give size (WxH), or aspect_ratio with resolution, not both",
    ),
    "image_size_and_resolution": Case(
        f'7:5: {HERO} field "resolution": size and resolution are exclusive, got size: '
        "1024x1024 and resolution: 2K",
        "give size (WxH), or aspect_ratio with resolution, not both",
    ),
    "image_size_not_wxh": Case(
        f'6:5: {HERO} field "size": size: "1536 by 1024" is not WxH or auto',
        "write size: 1536x1024 (width x height in pixels) or size: auto",
    ),
    "image_size_model_cannot_make": Case(
        f'7:5: {HERO} field "size": size: 1000x1000 is not a size model gpt-image-1.5 can '
        "make: use one of 1024x1024, 1536x1024, 1024x1536 or auto",
        MAKE_SIZE_HINT,
    ),
    "image_size_not_multiple_of_16": Case(
        f'7:5: {HERO} field "size": size: 1500x1000 is not a size model gpt-image-2 can make: '
        "both sides must be multiples of 16",
        MAKE_SIZE_HINT,
    ),
    "image_size_on_ratio_model": Case(
        f'7:5: {HERO} field "size": size: 1024x1024 does not apply to model '
        "gemini-2.5-flash-image: it takes aspect_ratio (and resolution), not a pixel size",
        "use aspect_ratio (1:1, 16:9, ...) with resolution instead of size",
    ),
    "image_bad_aspect_ratio": Case(
        f'6:5: {HERO} field "aspect_ratio": must be one of 1:1, 16:9, 4:3, 3:2, 5:4, 21:9, '
        '9:16, 3:4, 2:3, 4:5; got "5:3"',
        "did you mean 5:4?",
    ),
    "image_quality_model_lacks": Case(
        f'7:5: {HERO} field "quality": quality: high is not accepted by model '
        "gemini-2.5-flash-image (it takes auto)",
        "use quality: auto",
    ),
    "image_quality_xhigh_on_gpt_image_2": Case(
        f'7:5: {HERO} field "quality": quality: xhigh is not accepted by model gpt-image-2 '
        "(it takes auto, low, medium, high)",
        "use quality: auto",
    ),
    "image_transparent_on_gemini": Case(
        f'7:5: {HERO} field "background": background: transparent is not supported by model '
        "gemini-2.5-flash-image (Gemini image models have no background setting)",
        "use a model with transparent backgrounds (gpt-image-1.5, gpt-image-2.5-flare) or "
        "background: auto",
    ),
    "image_seed_on_openai": Case(
        f'7:5: {HERO} field "seed": seed: 42 is not supported by model gpt-image-2',
        "remove seed (OpenAI image models take none), or use a Gemini model or preview",
    ),
    "image_prompt_too_long": Case(
        f'7:5: {HERO} field "prompt": prompt is 32,100 characters with style; model '
        "gpt-image-2 takes at most 32,000",
        "shorten the prompt (or the style)",
    ),
    "image_empty_prompt": Case(
        f'5:5: {HERO} field "prompt": string should have at least 1 character; got ""',
        "change the length as the message says",
    ),
    "image_count_zero": Case(
        f'6:5: {HERO} field "count": must be greater than or equal to 1; got 0',
        "use a value >= 1",
    ),
    "image_count_eleven": Case(
        f'6:5: {HERO} field "count": must be less than or equal to 10; got 11',
        "use a value <= 10",
    ),
    "image_retired_model": Case(
        f'6:5: {HERO} field "model": model dall-e-3 was retired on May 12, 2026 and no longer '
        "answers",
        "use model: gpt-image-2",
    ),
    "image_unknown_model": Case(
        f'6:5: {HERO} field "model": unknown image model "gpt-image-22"; did you mean '
        '"gpt-image-2"?',
        "use model: gpt-image-2",
    ),
    "image_bad_charge_type": Case(
        f'6:5: {HERO} field "charge_type": must be one of personal, hosted; got "personnal"',
        "did you mean personal?",
    ),
    "image_api_key_secret_hosted": Case(
        f'8:5: {HERO} field "api_key_secret": api_key_secret names your own key, but '
        "charge_type is hosted (the operator's keys)",
        "remove api_key_secret, or use charge_type: personal",
    ),
    "image_api_key_secret_auto": Case(
        f'6:5: {HERO} field "api_key_secret": api_key_secret needs a named model: with model '
        "auto the provider the key is for is not known",
        "name the model, e.g. model: gpt-image-2",
    ),
    "prompt_as_mapping": Case(
        f'6:5: {HERO} field "prompt": prompt must be text, got dict {{"A blue vase": "on a '
        'white table"}',
        "a colon makes YAML read the prompt as a mapping: quote the prompt, or write it as a "
        "block (prompt: |)",
    ),
}

ENGINE_CASES = {
    "yaml_unclosed_quote": Case(
        "5:13: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar)",
        SYNTAX_HINT,
    ),
    "yaml_unclosed_flow_list": Case(
        "7:7: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)",
        SYNTAX_HINT,
    ),
    "yaml_tab_indentation": Case(
        "4:1: YAML syntax error: found a tab character that violates indentation (while "
        "scanning a plain scalar)",
        SYNTAX_HINT,
    ),
    "yaml_recursive_alias": Case(
        '3:5: field "steps.0.0": an alias refers to the anchor it is inside of (the value '
        "would be endless)",
        "anchor a value that does not contain the alias",
    ),
    "yaml_undefined_alias": Case("6:9: YAML syntax error: found undefined alias", SYNTAX_HINT),
    "duplicate_key_in_step": Case(
        '7:5: field "steps.0.model": duplicate key "model" (first at line 6)',
        'keep one "model": YAML would silently use only the last one',
    ),
    "not_a_mapping": Case(
        "1:1: a workflow is a mapping with name and steps, got list",
        "start the file with name: <workflow name> and a steps: list",
    ),
    "unknown_top_level_key": Case(
        '2:1: field "step": unknown key "step"; did you mean "steps"?',
        "rename it to steps",
    ),
    "missing_name": Case(
        '1:1: field "name": missing required field "name"',
        "add name: <value>",
    ),
    "wrong_type_name": Case(
        '1:1: field "name": must be a valid string; got ["hero", "shot"]',
        'write text, e.g. "hello" (quote it if YAML reads it as something else)',
    ),
    "steps_not_a_list": Case(
        '2:1: field "steps": steps must be a non-empty list, got {"hero": {"type": '
        '"image_generation", "prompt": "a blue vase on a white table"}}',
        "list the steps under steps:, each starting with '- id: ...'",
    ),
    "unknown_step_field": Case(
        f'5:5: {HERO} field "promt": unknown field "promt"; did you mean "prompt"?',
        "rename promt to prompt",
    ),
    "missing_required_prompt": Case(
        f'3:5: {HERO} field "prompt": missing required field "prompt"',
        "add prompt: <value>",
    ),
    "wrong_type_count": Case(
        f'6:5: {HERO} field "count": must be a valid integer; got "two"',
        "write a whole number, e.g. 3",
    ),
    "wrong_type_timeout": Case(
        f'6:5: {HERO} field "timeout_seconds": must be a valid number, unable to parse string '
        'as a number; got "soon"',
        "write a number, e.g. 1.5",
    ),
    "wrong_type_needs": Case(
        f'5:5: {HERO} field "needs": must be a valid list; got 3',
        "write a list, e.g. [a, b]",
    ),
    "negative_retries": Case(
        f'6:5: {HERO} field "retries": must be greater than or equal to 0; got -1',
        "use a value >= 0",
    ),
    "bad_enum_output_format": Case(
        f'6:5: {HERO} field "output_format": must be one of png, jpeg, webp; got "gif"',
        "use one of: png, jpeg, webp",
    ),
    "bad_enum_on_failure": Case(
        f'6:5: {HERO} field "on_failure": must be one of terminate, continue; got "ignore"',
        "use one of: terminate, continue",
    ),
    "bad_step_id": Case(
        '3:5: step "2hero" (image_generation) field "id": must be an identifier (letters, digits '
        'and _, not starting with a digit); got "2hero"',
        "use id: _2hero",
    ),
    "reserved_step_id": Case(
        '3:9: step "run" (image_generation) field "id": "run" cannot be a step id: it means '
        "something else in templates",
        "rename the step, e.g. run_step",
    ),
    "duplicate_step_id": Case(
        f'6:9: {HERO} field "id": duplicate step id "hero" (first used at line 3)',
        "give every step its own id",
    ),
    "empty_step_type": Case(
        '4:11: step "hero" field "type": the step type is empty',
        f"step types: {', '.join(STEP_TYPES)} (see fetchflow steps)",
    ),
    "unknown_step_type": Case(
        '4:11: step "hero" (image_generaton) field "type": unknown step type '
        '"image_generaton"; did you mean "image_generation"?',
        "use image_generation",
    ),
    "input_unknown_type": Case(
        '3:11: input "count" field "type": must be one of string, integer, number, boolean, list, '
        'object; got "int"',
        "did you mean integer?",
    ),
    "input_default_wrong_type": Case(
        '3:26: input "count" field "default": default does not match type integer: expected '
        'an integer, got "two"',
        "give a default of type integer, or change the type",
    ),
    "undefined_reference_root": Case(
        f'8:23: {CAPTION} field "template": "heroo.output.0.file_url": unknown name "heroo"; '
        'did you mean "hero"?',
        "use hero",
    ),
    "mistyped_output_field": Case(
        f'8:23: {CAPTION} field "template": "hero.output.0.url": hero.output.0 has no field '
        "'url'; did you mean 'file_url'?",
        "use hero.output.0.file_url",
    ),
    "list_field_on_a_list": Case(
        f'8:23: {CAPTION} field "template": "hero.output.file_url": hero.output is a list, '
        "it has no field 'file_url'",
        "pick an item first: hero.output.0.file_url",
    ),
    "undeclared_input": Case(
        f'7:24: {HERO} field "prompt": "inputs.prodct": no input "prodct" is declared; did '
        'you mean "product"?',
        "use inputs.product",
    ),
    "self_reference": Case(
        f'5:22: {HERO} field "prompt": "hero.output.0.file_url": a step cannot use its own output',
        "reference an earlier step, or split this step in two",
    ),
    "cycle_of_three": Case(
        '3:5: step "brief" (template): steps depend on each other in a cycle: hero -> '
        "caption -> brief -> hero",
        CYCLE_HINT,
    ),
    "needs_unknown": Case(
        f'8:5: {HERO} field "needs": needs unknown step "brif"; did you mean "brief"?',
        "use brief",
    ),
    "private_attribute": Case(f'7:32: {HERO} field "prompt": {PRIVATE}', PRIVATE_HINT),
    "private_attribute_via_attr_filter": Case(
        f'7:40: {HERO} field "prompt": {PRIVATE}',
        PRIVATE_HINT,
    ),
    "template_syntax_error": Case(
        f'7:13: {HERO} field "prompt": template syntax error: Unexpected end of template. '
        "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The "
        "innermost block that needs to be closed is 'if'.",
        "values are written << expr >>, statements <% ... %>, comments <# ... #>",
    ),
    "missing_template_file": Case(
        '5:11: step "brief" (template) field "file": template file "no_such_brief.j2" not found',
        f"put it in a templates/ folder next to the workflow (searched: {DATA / 'templates'})",
    ),
}

FILE_CASES = {**IMAGE_RULE_CASES, **ENGINE_CASES}

#: Cases where fetchflow is wrong today: the tables say what it should print.
BUGS: dict[str, str] = {}


def file_params(stems: list[str] | None = None) -> list[object]:
    """``pytest.param(stem, case)`` per file case, the known bugs marked xfail(strict)."""
    return [
        pytest.param(
            stem,
            FILE_CASES[stem],
            id=stem,
            marks=[pytest.mark.xfail(strict=True, reason=BUGS[stem])] if stem in BUGS else [],
        )
        for stem in stems or list(FILE_CASES)
    ]


# -- the --input cases: (id, --input values, first line, hint) -------------------------------

INPUT_CASES = [
    pytest.param(
        ["product=vase", "count=abc"],
        Case(
            "--input: input \"count\": expected an integer, got 'abc'",
            "give count a value of type integer",
        ),
        id="input-integer-not-a-number",
    ),
    pytest.param(
        ["product=vase", "count=2.5"],
        Case(
            "--input: input \"count\": expected an integer, got '2.5'",
            "give count a value of type integer",
        ),
        id="input-integer-with-a-fraction",
    ),
    pytest.param(
        ["product=vase", "hd=maybe"],
        Case(
            "--input: input \"hd\": expected a boolean (true/false), got 'maybe'",
            "give hd a value of type boolean",
        ),
        id="input-boolean-not-true-or-false",
    ),
    pytest.param(
        ["product=vase", 'angles=["front"'],
        Case(
            '--input: input "angles": expected a JSON list, got \'["front"\'',
            "give angles a value of type list",
        ),
        id="input-list-broken-json",
    ),
    pytest.param(
        ["product=vase", 'angles={"front": 1}'],
        Case(
            '--input: input "angles": expected a list, got {"front": 1}',
            "give angles a value of type list",
        ),
        id="input-list-given-an-object",
    ),
    pytest.param(
        ["prodct=vase"],
        Case(
            '--input: input "prodct": the workflow declares no input "prodct"; did you mean '
            '"product"?',
            "use --input product=...",
        ),
        id="input-unknown-name",
    ),
    pytest.param(
        ["product"],
        Case("--input: expected NAME=VALUE, got 'product'", "write --input count=3"),
        id="input-missing-equals",
    ),
    pytest.param(
        ["=vase"],
        Case("--input: expected NAME=VALUE, got '=vase'", "write --input count=3"),
        id="input-missing-name",
    ),
    pytest.param(
        [],
        Case(
            '--input: input "product": is required and has no default',
            "run with --input product=<string>",
        ),
        id="input-required-missing",
    ),
]

#: File problems of billable steps also stop ``run`` before anything is called.
RUN_FILE_CASES = [
    "image_transparent_jpeg",
    "image_api_key_secret_hosted",
    "mistyped_output_field",
    "yaml_tab_indentation",
]


# -- the harness -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    prefect_modules: list[str]


@dataclass(frozen=True)
class Sandbox:
    """A subprocess environment whose every key and base URL points at the fakes."""

    tmp: Path
    env: dict[str, str]
    openai: FakeOpenAI
    gemini: FakeGemini

    @property
    def home(self) -> Path:
        return self.tmp / "home"

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    def fetchflow(self, *args: str) -> Outcome:
        imports = self.tmp / "prefect-imports.txt"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "fetchflow.cli", *args],
            env={**self.env, "CATALOGUE_IMPORTS_FILE": str(imports)},
            cwd=self.tmp / "cwd",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
        seconds = time.monotonic() - started
        recorded = imports.read_text(encoding="utf-8").split() if imports.exists() else None
        assert recorded is not None, f"the import probe did not run: {done.stderr}"
        return Outcome(done.returncode, done.stdout, done.stderr, seconds, recorded)

    def assert_nothing_happened(self, outcome: Outcome) -> None:
        """Only our message: no traceback, no provider call, no file, no Prefect."""
        assert "Traceback" not in outcome.stderr
        assert 'File "' not in outcome.stderr
        assert "internal error" not in outcome.stderr
        assert self.openai.requests == []
        assert self.gemini.requests == []
        assert not self.store.exists() or not any(self.store.rglob("*"))
        assert not (self.home / "prefect").exists()
        assert not (self.home / "spool").exists()
        assert not (self.home / "assets").exists()
        assert outcome.prefect_modules == []


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("import-probe")
    (folder / "sitecustomize.py").write_text(_PROBE, encoding="utf-8")
    return folder


@pytest.fixture
def sandbox(
    tmp_path: Path,
    probe_dir: Path,
    fake_openai: FakeOpenAI,
    fake_gemini: FakeGemini,
    clean_env: Mapping[str, str],
) -> Sandbox:
    env = dict(clean_env)  # nothing of a developer's shell that would change what it does
    # The repository first: the venv's editable install maps ``fetchflow`` as a namespace
    # package outside the repository, where ``from fetchflow import Step`` then fails.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(probe_dir)])
    env["NO_COLOR"] = "1"
    env["FETCHFLOW_HOME"] = str(tmp_path / "home")
    env["FETCHFLOW_STORE"] = str(tmp_path / "store")
    for prefix, fake in (("OPENAI", fake_openai), ("GEMINI", fake_gemini)):
        env[f"FETCHFLOW_HOSTED_{prefix}_API_KEY"] = f"hosted-{prefix.lower()}-catalogue-key"
        env[f"FETCHFLOW_HOSTED_{prefix}_BASE_URL"] = fake.base_url
    env["OPENAI_API_KEY"] = "sk-catalogue-test-key"
    env["OPENAI_BASE_URL"] = fake_openai.base_url
    env["GEMINI_API_KEY"] = "gemini-catalogue-test-key"
    env["GOOGLE_GEMINI_BASE_URL"] = fake_gemini.base_url
    (tmp_path / "cwd").mkdir()  # an empty cwd: no ./.env, no ./templates
    return Sandbox(tmp_path, env, fake_openai, fake_gemini)


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(("stem", "case"), file_params())
def test_validate_reports_one_problem_and_does_nothing(
    stem: str, case: Case, sandbox: Sandbox
) -> None:
    path = CATALOGUE / f"{stem}.yaml"

    outcome = sandbox.fetchflow("validate", str(path))

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert lines == expected_stderr(path, case, lines, summary=True)
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(("values", "case"), INPUT_CASES)
def test_run_with_bad_inputs_exits_2_before_prefect(
    values: list[str], case: Case, sandbox: Sandbox
) -> None:
    arguments = [part for value in values for part in ("--input", value)]

    outcome = sandbox.fetchflow("run", str(RUN_INPUTS), *arguments)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.splitlines() == [case.first, f"  hint: {case.hint}"]
    assert outcome.seconds < 10
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(("stem", "case"), file_params(RUN_FILE_CASES))
def test_run_of_a_broken_file_exits_2_before_anything_billable(
    stem: str, case: Case, sandbox: Sandbox
) -> None:
    path = CATALOGUE / f"{stem}.yaml"

    outcome = sandbox.fetchflow("run", str(path))

    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert lines == expected_stderr(path, case, lines, summary=False)
    assert outcome.seconds < 10
    sandbox.assert_nothing_happened(outcome)


def test_the_run_inputs_workflow_itself_is_valid(sandbox: Sandbox) -> None:
    # Otherwise the --input cases would not reach the inputs at all.
    outcome = sandbox.fetchflow("validate", str(RUN_INPUTS))

    assert (outcome.code, outcome.stdout, outcome.stderr) == (0, f"{RUN_INPUTS}: ok (1 step)\n", "")
    sandbox.assert_nothing_happened(outcome)


def test_every_catalogue_file_is_a_case() -> None:
    files = {path.stem for path in CATALOGUE.glob("*.yaml")} - {RUN_INPUTS.stem}

    assert set(FILE_CASES) == files
    assert set(BUGS) <= files
    assert set(RUN_FILE_CASES) <= files
    assert len(FILE_CASES) + len(INPUT_CASES) >= 40


def test_the_oversized_prompt_is_over_every_models_limit() -> None:
    text = (CATALOGUE / "image_prompt_too_long.yaml").read_text(encoding="utf-8")
    prompt = next(line for line in text.splitlines() if line.startswith("    prompt: "))

    assert len(prompt.removeprefix("    prompt: ")) == 32_100
