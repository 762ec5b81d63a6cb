"""The static check: every error kind at its exact place, all problems together, plans."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from fetchflow.errors import Problem, WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.step import OutputLength, Step, StepConfig, StepContext
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_file, check_text, template_search_path
from fetchflow.workflow.plan import Plan
from steps.template import TemplateStep

DATA = Path(__file__).parents[1] / "data"
FLOWS = DATA / "flows"
BROKEN = FLOWS / "broken"
TEMPLATES = DATA / "templates"
EXAMPLES = Path(__file__).parents[2] / "flows"

SYNTAX_HINT = (
    "check the indentation and quoting on this line and the one before; "
    "template expressions are written << expr >>"
)
EXACTLY_ONE_HINT = (
    "write the text inline with template: |, or name a file under templates/ with file:"
)
CYCLE_HINT = "remove one of these references or needs so the steps can run in order"


class Asset(BaseModel):
    """An output shaped like a stored file, to check list/object reference paths."""

    file_url: str
    file_name: str


class FetchConfig(StepConfig):
    prompt: str
    count: int = 1


class FetchStep(Step[FetchConfig, list[Asset]]):
    """A test step whose output is a list of assets and whose config has an integer."""

    config_model = FetchConfig
    output_type = list[Asset]

    def run(self, config: FetchConfig, ctx: StepContext) -> list[Asset]:
        raise AssertionError("the static check never runs a step")


@pytest.fixture(scope="module")
def registry() -> StepRegistry:
    return StepRegistry.from_entry_points()


@pytest.fixture(autouse=True)
def _outside_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ./templates is on the search path: run from an empty folder so hints are stable.
    monkeypatch.chdir(tmp_path)


def problems_of(path: Path, registry: StepRegistry) -> list[Problem]:
    with pytest.raises(WorkflowInvalid) as caught:
        check_file(path, registry)
    return caught.value.problems


def check(text: str, registry: StepRegistry | None = None) -> Plan:
    registry = registry or StepRegistry({"template": TemplateStep, "fetch": FetchStep})
    return check_text(text, "w.yaml", registry, Templates([TEMPLATES]))


def problems_in(text: str, registry: StepRegistry | None = None) -> list[tuple[object, ...]]:
    with pytest.raises(WorkflowInvalid) as caught:
        check(text, registry)
    return [
        (p.line, p.column, p.step_id, p.field, p.message, p.hint) for p in caught.value.problems
    ]


def step_problem(
    line: int,
    column: int,
    step: tuple[str, str | None],
    field: str | None,
    message: str,
    hint: str,
) -> dict[str, object]:
    return {
        "line": line,
        "column": column,
        "step_id": step[0],
        "step_type": step[1],
        "field": field,
        "message": message,
        "hint": hint,
    }


# (file stem, expected Problem fields except file). One file, one problem, one place.
BROKEN_FILES = [
    pytest.param("yaml_syntax", {"line": 5, "column": 14, "hint": SYNTAX_HINT,
                 "message": "YAML syntax error: mapping values are not allowed in this context"},
                 id="yaml-syntax"),
    pytest.param("duplicate_key", {"line": 6, "column": 5, "field": "steps.0.template",
                 "message": 'duplicate key "template" (first at line 5)',
                 "hint": 'keep one "template": YAML would silently use only the last one'},
                 id="duplicate-key"),
    pytest.param("not_a_mapping", {"line": 1, "column": 1,
                 "message": "a workflow is a mapping with name and steps, got list",
                 "hint": "start the file with name: <workflow name> and a steps: list"},
                 id="top-level-not-a-mapping"),
    pytest.param("empty", {"line": 1, "column": 1, "message": "the file is empty",
                 "hint": "start with name: and steps:"}, id="empty-file"),
    pytest.param("unknown_top_level_key", {"line": 2, "column": 1, "field": "inputz",
                 "message": 'unknown key "inputz"; did you mean "inputs"?',
                 "hint": "rename it to inputs"}, id="unknown-top-level-key"),
    pytest.param("missing_name", {"line": 1, "column": 1, "field": "name",
                 "message": 'missing required field "name"', "hint": "add name: <value>"},
                 id="missing-name"),
    pytest.param("missing_steps", {"line": 1, "column": 1,
                 "message": 'missing required key "steps"', "hint": "add a steps: list"},
                 id="missing-steps"),
    pytest.param("empty_steps", {"line": 2, "column": 1, "field": "steps",
                 "message": "steps must be a non-empty list, got an empty list",
                 "hint": "list the steps under steps:, each starting with '- id: ...'"},
                 id="empty-steps"),
    pytest.param("step_not_mapping", {"line": 6, "column": 5, "field": "steps.1",
                 "message": "each step is a mapping with id and type, got str",
                 "hint": "write the step as '- id: <name>' with 'type: <step type>' below it"},
                 id="step-not-a-mapping"),
    pytest.param("missing_id", step_problem(3, 5, ("#1", "template"), "id",
                 'missing required field "id"', "add id: <value>"), id="missing-id"),
    pytest.param("missing_type", step_problem(3, 5, ("brief", None), "type",
                 'missing required field "type"', "add type: <value>"), id="missing-type"),
    pytest.param("bad_id", step_problem(3, 5, ("hero-shot", "template"), "id",
                 "must be an identifier (letters, digits and _, not starting with a digit); "
                 'got "hero-shot"', "use id: hero_shot"), id="bad-id"),
    pytest.param("reserved_id", step_problem(3, 9, ("inputs", "template"), "id",
                 '"inputs" cannot be a step id: it means something else in templates',
                 "rename the step, e.g. inputs_step"), id="reserved-id"),
    pytest.param("duplicate_step_id", step_problem(6, 9, ("brief", "template"), "id",
                 'duplicate step id "brief" (first used at line 3)',
                 "give every step its own id"), id="duplicate-step-id"),
    pytest.param("unknown_step_type", step_problem(4, 11, ("brief", "templte"), "type",
                 'unknown step type "templte"; did you mean "template"?', "use template"),
                 id="unknown-step-type"),
    pytest.param("unknown_field", step_problem(5, 5, ("brief", "template"), "templat",
                 'unknown field "templat"; did you mean "template"?',
                 "rename templat to template"), id="unknown-field"),
    pytest.param("wrong_type", step_problem(5, 5, ("brief", "template"), "retries",
                 'must be a valid integer; '
                 'got "many"', "write a whole number, e.g. 3"), id="wrong-type"),
    pytest.param("bad_enum", step_problem(5, 5, ("brief", "template"), "on_failure",
                 'must be one of terminate, continue; got "contine"',
                 "did you mean continue?"), id="bad-enum"),
    pytest.param("input_default_type", {"line": 5, "column": 5, "field": "default",
                 "subject": 'input "count"',
                 "message": 'default does not match type integer: expected an integer, '
                 'got "three"', "hint": "give a default of type integer, or change the type"},
                 id="input-default-wrong-type"),
    pytest.param("bad_input_name", {"line": 3, "column": 3, "subject": 'input "product-name"',
                 "message": "input name 'product-name' is not an identifier (letters, digits, _)",
                 "hint": "rename it to product_name"}, id="bad-input-name"),
    pytest.param("template_syntax", step_problem(9, 7, ("brief", "template"), "template",
                 "template syntax error: expected token 'name', got 'end of print statement'",
                 "values are written << expr >>, statements <% ... %>, comments <# ... #>"),
                 id="template-syntax-in-block"),
    pytest.param("unknown_reference_root", step_problem(8, 28, ("caption", "template"),
                 "template", '"breif.output": unknown name "breif"; did you mean "brief"?',
                 "use brief"), id="unknown-reference-root"),
    pytest.param("undeclared_input", step_problem(11, 18, ("brief", "template"), "template",
                 '"inputs.prodcut": no input "prodcut" is declared; did you mean "product"?',
                 "use inputs.product"), id="undeclared-input"),
    pytest.param("bad_reference_field", step_problem(8, 26, ("caption", "template"), "template",
                 "\"brief.output.foo\": brief.output is a string, it has no field 'foo'",
                 "use brief.output itself"), id="field-of-a-string-output"),
    pytest.param("self_reference", step_problem(5, 25, ("brief", "template"), "template",
                 '"brief.output": a step cannot use its own output',
                 "reference an earlier step, or split this step in two"), id="self-reference"),
    pytest.param("needs_unknown", step_problem(8, 5, ("caption", "template"), "needs",
                 'needs unknown step "breif"; did you mean "brief"?', "use brief"),
                 id="needs-unknown"),
    pytest.param("needs_itself", step_problem(5, 5, ("brief", "template"), "needs",
                 "a step cannot need itself", "remove brief from needs"), id="needs-itself"),
    pytest.param("cycle", step_problem(3, 5, ("a", "template"), None,
                 "steps depend on each other in a cycle: b -> a -> b", CYCLE_HINT), id="cycle"),
    pytest.param("private_attribute", step_problem(5, 22, ("brief", "template"), "template",
                 "template refused: '__class__' is a private attribute, templates cannot "
                 "reach it", "templates may read inputs, run and step outputs only"),
                 id="private-attribute"),
    pytest.param("missing_template_file", step_problem(5, 11, ("brief", "template"), "file",
                 'template file "no_such_file.j2" not found',
                 f"put it in a templates/ folder next to the workflow (searched: "
                 f"{TEMPLATES.resolve()})"), id="missing-template-file"),
    pytest.param("template_and_file", step_problem(8, 5, ("brief", "template"), "template",
                 "give exactly one of template and file, got both", EXACTLY_ONE_HINT),
                 id="template-and-file"),
    pytest.param("template_nor_file", step_problem(3, 5, ("brief", "template"), "template",
                 "give exactly one of template and file, got neither", EXACTLY_ONE_HINT),
                 id="neither-template-nor-file"),
]  # fmt: skip


@pytest.mark.parametrize(("stem", "expected"), BROKEN_FILES)
def test_broken_file_reports_its_one_problem_in_place(
    stem: str, expected: dict[str, object], registry: StepRegistry
) -> None:
    path = BROKEN / f"{stem}.yaml"

    assert problems_of(path, registry) == [Problem(file=str(path), **expected)]  # type: ignore[arg-type]


def test_every_broken_file_has_a_case() -> None:
    covered = {param.values[0] for param in BROKEN_FILES}
    # Files with several problems, each checked by its own test (open_model_options: in
    # tests/steps/imaging/models/test_open_model_options.py).
    extra = {"include_bad_reference", "many_problems", "open_model_options"}

    assert {path.stem for path in BROKEN.glob("*.yaml")} == covered | extra


def test_problem_in_an_included_template_is_located_in_that_file(registry: StepRegistry) -> None:
    problems = problems_of(BROKEN / "include_bad_reference.yaml", registry)

    assert problems == [
        Problem(
            file=str(TEMPLATES.resolve() / "bad_reference.j2"),
            line=3,
            column=10,
            step_id="brief",
            step_type="template",
            field="template",
            message='"inputs.prodct": no input "prodct" is declared; did you mean "product"?',
            hint="use inputs.product",
        )
    ]


def test_all_problems_are_reported_together_in_file_order(registry: StepRegistry) -> None:
    path = BROKEN / "many_problems.yaml"

    with pytest.raises(WorkflowInvalid) as caught:
        check_file(path, registry)

    found = [(p.line, p.column, p.step_id, p.field, p.message) for p in caught.value.problems]
    assert found == [
        (5, 5, "a", None, "steps depend on each other in a cycle: b -> a -> b"),
        (14, 5, "c", "on_failure", 'must be one of terminate, continue; got "contine"'),
        (17, 11, "hero", "type", 'unknown step type "templte"; did you mean "template"?'),
        (21, 5, "caption", "templat", 'unknown field "templat"; did you mean "template"?'),
        (24, 19, "note", "template",
         '"inputs.prodcut": no input "prodcut" is declared; did you mean "product"?'),
        (25, 9, "a", "id", 'duplicate step id "a" (first used at line 5)'),
        (28, 1, None, "inputz", 'unknown key "inputz"; did you mean "inputs"?'),
        (31, 3, None, "inputs.product", 'duplicate key "product" (first at line 30)'),
    ]  # fmt: skip
    report = str(caught.value).splitlines()
    assert report[0] == (
        f'{path}:5:5: step "a" (template): steps depend on each other in a cycle: b -> a -> b'
    )
    assert report[1] == f"  hint: {CYCLE_HINT}"
    assert len(report) == 16


def test_problem_format_is_where_what_message_and_hint() -> None:
    problem = Problem(
        message="m",
        hint="h",
        file="f.yaml",
        line=3,
        column=7,
        step_id="s",
        step_type="t",
        field="x",
    )

    assert problem.format() == 'f.yaml:3:7: step "s" (t) field "x": m\n  hint: h'


@pytest.mark.parametrize(
    "path",
    [*sorted(FLOWS.glob("*.yaml")), EXAMPLES / "hello.yaml"],
    ids=lambda path: path.stem,
)
def test_valid_files_give_a_plan(path: Path, registry: StepRegistry) -> None:
    plan = check_file(path, registry)

    assert plan.file == path
    assert plan.steps
    assert all(step.type == "template" for step in plan.steps.values())


def test_plan_of_the_chain_has_dependencies_and_policies(registry: StepRegistry) -> None:
    plan = check_file(FLOWS / "chain.yaml", registry)

    assert plan.name == "chain"
    assert plan.edges == {
        "caption": (),
        "brief": (),
        "handoff": ("caption", "brief"),
        "archive": ("handoff",),
    }
    assert plan.order() == ["caption", "brief", "handoff", "archive"]
    assert plan.downstream("brief") == ["handoff", "archive"]
    archive = plan.steps["archive"].common
    assert (archive.on_failure, archive.retries, archive.timeout_seconds) == ("continue", 2, 30)
    assert plan.steps["brief"].title == "Shot brief"
    assert plan.steps["brief"].line == 12
    assert plan.steps["handoff"].templated == frozenset({"template"})
    assert plan.steps["archive"].templated == frozenset()


def test_plan_of_merged_steps_shares_the_anchored_settings(registry: StepRegistry) -> None:
    plan = check_file(FLOWS / "merge.yaml", registry)

    second = plan.steps["second"]
    assert (second.common.retries, second.common.on_failure) == (2, "continue")
    assert second.raw_config == {"template": "shared text"}


def test_file_step_reads_the_steps_its_file_references(registry: StepRegistry) -> None:
    plan = check_file(FLOWS / "include.yaml", registry)

    assert plan.steps["caption"].raw_config == {"file": "caption.j2"}
    assert plan.header.inputs["brand"].default == "acme"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("nope.yaml", "No such file or directory", id="missing"),
        pytest.param(".", "Is a directory", id="directory"),
    ],
)
def test_unreadable_file_is_one_problem(name: str, reason: str, registry: StepRegistry) -> None:
    path = Path(name)

    assert problems_of(path, registry) == [
        Problem(
            message=f"cannot read the workflow file: {reason}",
            hint="check the path (fetchflow validate flows/<name>.yaml)",
            file=name,
        )
    ]


def test_template_search_path_finds_the_nearest_templates_folder(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "project" / "flows").mkdir(parents=True)
    extra = tmp_path / "extra"

    found = template_search_path(tmp_path / "project" / "flows" / "w.yaml", extra)

    assert found == [extra, (tmp_path / "templates").resolve()]


# -- references into structured outputs (a test step whose output is a list of assets) ------

HERO = """\
name: refs
inputs:
  n: {type: integer, default: 2}
steps:
  - id: hero
    type: fetch
    prompt: a mug
    count: << inputs.n >>
  - id: caption
    type: template
    template: |
      << hero.output.0.file_url >>
      << hero.output.file_url >>
      << hero.output.0.file_nme >>
      << hero.outpt >> << run.idd >>
      << hero.output.0.url >>
"""


def test_reference_paths_are_checked_against_the_output_schema() -> None:
    assert problems_in(HERO) == [
        (13, 10, "caption", "template",
         "\"hero.output.file_url\": hero.output is a list, it has no field 'file_url'",
         "pick an item first: hero.output.0.file_url"),
        (14, 10, "caption", "template",
         "\"hero.output.0.file_nme\": hero.output.0 has no field 'file_nme'; "
         "did you mean 'file_name'?", "use hero.output.0.file_name"),
        (15, 10, "caption", "template",
         '"hero.outpt": a step exposes only "output", got "outpt"', "use hero.output"),
        (15, 27, "caption", "template", '"run.idd": run has no field "idd"; did you mean "id"?',
         "fields of run: id, name, started_at"),
        (16, 10, "caption", "template",
         "\"hero.output.0.url\": hero.output.0 has no field 'url'; did you mean 'file_url'?",
         "use hero.output.0.file_url"),
    ]  # fmt: skip


def test_template_in_a_non_string_field_waits_for_the_run() -> None:
    text = HERO.split("      << hero.output.file_url")[0]

    plan = check(text)

    assert plan.steps["hero"].templated == frozenset({"count"})
    assert plan.steps["caption"].depends_on == ("hero",)


def test_wrong_type_in_a_non_templated_field_of_a_plugin_step() -> None:
    text = "name: x\nsteps:\n  - id: hero\n    type: fetch\n    prompt: p\n    count: many\n"

    assert problems_in(text) == [
        (6, 5, "hero", "count",
         'must be a valid integer; got "many"',
         "write a whole number, e.g. 3"),
    ]  # fmt: skip


def test_references_to_a_step_with_problems_are_not_reported_twice() -> None:
    text = (
        "name: x\nsteps:\n  - id: a\n    type: nope\n  - id: b\n    type: template\n"
        "    template: << a.output.whatever >>\n"
    )

    assert problems_in(text) == [
        (4, 11, "a", "type", 'unknown step type "nope"',
         "step types: fetch, template (see fetchflow steps)"),
    ]  # fmt: skip


def test_longer_cycle_is_reported_with_its_whole_path() -> None:
    text = (
        "name: x\nsteps:\n"
        "  - id: a\n    type: template\n    template: << b.output >>\n"
        "  - id: b\n    type: template\n    template: << c.output >>\n"
        "  - id: c\n    type: template\n    template: << a.output >>\n"
    )

    assert problems_in(text) == [
        (3, 5, "a", None, "steps depend on each other in a cycle: c -> b -> a -> c", CYCLE_HINT)
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("<< ''['_secret'] >>", "'_secret' is a private attribute", id="subscript"),
        pytest.param("<< [].__dict__ >>", "'__dict__' is a private attribute", id="dunder"),
        pytest.param(
            "<% set f = [] %><< f.__len__ >>",
            "'__len__' is a private attribute",
            id="on-a-local-name",
        ),
    ],
)
def test_private_lookups_are_refused_before_the_run(template: str, message: str) -> None:
    text = f'name: x\nsteps:\n  - id: a\n    type: template\n    template: "{template}"\n'

    [(line, _, _, _, found, _)] = problems_in(text)

    assert line == 5
    assert found == f"template refused: {message}, templates cannot reach it"


def test_bad_input_default_is_the_only_problem_reported() -> None:
    text = (
        "name: x\ninputs:\n  count: {type: integer, default: three}\nsteps:\n"
        "  - id: a\n    type: template\n    template: << inputs.count >>\n"
    )

    assert [found[4] for found in problems_in(text)] == [
        'default does not match type integer: expected an integer, got "three"'
    ]


def test_unknown_input_key_suggests_an_input_field() -> None:
    text = (
        "name: x\ninputs:\n  count:\n    type: integer\n    defualt: 3\nsteps:\n"
        "  - id: a\n    type: template\n    template: hi\n"
    )

    assert problems_in(text) == [
        (5, 5, None, "defualt", 'unknown field "defualt"; did you mean "default"?',
         "rename defualt to default"),
    ]  # fmt: skip


def test_common_key_problem_does_not_hide_config_problems() -> None:
    text = (
        "name: x\nsteps:\n  - id: hero\n    type: fetch\n    retries: 21\n"
        "    prompt: p\n    count: many\n"
    )

    assert [(found[0], found[3]) for found in problems_in(text)] == [
        (5, "retries"),
        (7, "count"),
    ]


@pytest.mark.parametrize(
    ("template", "column"),
    [
        pytest.param('"about << a.outpt >>"', 25, id="root-name-inside-the-key"),
        pytest.param('"A << inputs.n >> and << inputs.m >>"', 40, id="second-use-of-a-root"),
    ],
)
def test_reference_is_located_at_the_reference_itself(template: str, column: int) -> None:
    text = (
        "name: x\ninputs:\n  n: {type: integer, default: 1}\nsteps:\n"
        "  - id: a\n    type: template\n    template: hi\n"
        f"  - id: b\n    type: template\n    template: {template}\n"
    )

    [(line, found_column, *_)] = problems_in(text)

    assert (line, found_column) == (10, column)


def test_unparsable_lookup_is_a_template_syntax_error() -> None:
    text = (
        "name: x\ninputs:\n  obj: {type: object, default: {}}\nsteps:\n"
        "  - id: a\n    type: template\n    template: << inputs.obj.2nd >>\n"
    )

    [(line, _, _, _, message, _)] = problems_in(text)

    assert (line, message.split(":")[0]) == (7, "template syntax error")


def test_a_step_reports_an_unknown_key_a_bad_type_and_a_broken_rule_together() -> None:
    text = (
        "name: x\ninputs:\n  brand: {type: string, default: acme}\nsteps:\n"
        "  - id: a\n    type: template\n    template: hi\n    file: brand.j2\n"
        "    colour: blue\n"
        "  - id: b\n    type: fetch\n    prompt: hi\n    count: two\n    colour: blue\n"
    )

    assert problems_in(text) == [
        (7, 5, "a", "template", "give exactly one of template and file, got both",
         EXACTLY_ONE_HINT),
        (9, 5, "a", "colour", 'unknown field "colour"', "fields of template: template, file"),
        (13, 5, "b", "count", 'must be a valid integer; got "two"', "write a whole number, e.g. 3"),
        (14, 5, "b", "colour", 'unknown field "colour"', "fields of fetch: prompt, count"),
    ]  # fmt: skip


def test_a_misspelt_field_keeps_the_rules_of_the_field_it_was_meant_to_be_waiting() -> None:
    text = "name: x\nsteps:\n  - id: a\n    type: template\n    templat: hi\n    colour: 1\n"

    assert problems_in(text) == [
        (5, 5, "a", "templat", 'unknown field "templat"; did you mean "template"?',
         "rename templat to template"),
        (6, 5, "a", "colour", 'unknown field "colour"', "fields of template: template, file"),
    ]  # fmt: skip


def test_an_input_reports_an_unknown_key_and_a_default_of_the_wrong_type_together() -> None:
    text = (
        "name: x\ninputs:\n"
        "  count:\n    type: integer\n    default: abc\n    colr: 1\n"
        "  size:\n    type: intger\n    default: 5\n"
        "steps:\n  - id: a\n    type: template\n    template: hi\n"
    )

    assert problems_in(text) == [
        (5, 5, None, "default",
         'default does not match type integer: expected an integer, got "abc"',
         "give a default of type integer, or change the type"),
        (6, 5, None, "colr", 'unknown field "colr"',
         "known fields: type, description, default, required"),
        # The type is wrong itself: the default is not checked against a guess.
        (8, 5, None, "type",
         'must be one of string, integer, number, boolean, list, object; got "intger"',
         "did you mean integer?"),
    ]  # fmt: skip


class CountedStep(Step[FetchConfig, list[Asset]]):
    """A plugin-style step that says its output's length: ``count`` assets."""

    config_model = FetchConfig
    output_type = list[Asset]

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        return OutputLength.counted(FetchConfig, fields, templated)

    def run(self, config: FetchConfig, ctx: StepContext) -> list[Asset]:
        raise AssertionError("the static check never runs a step")


def test_indexes_are_checked_against_the_length_a_step_says() -> None:
    registry = StepRegistry({"template": TemplateStep, "fetch": FetchStep, "counted": CountedStep})
    text = (
        "name: x\nsteps:\n"
        "  - id: a\n    type: counted\n    prompt: hi\n    count: 3\n"
        "  - id: b\n    type: fetch\n    prompt: hi\n    count: 3\n"
        "  - id: c\n    type: counted\n    prompt: hi\n    count: two\n"
        "  - id: d\n    type: template\n"
        "    template: << a.output.2.file_url >> << a.output.3.file_url >> << b.output.7 >>"
        " << c.output.9 >>\n"
    )

    assert problems_in(text, registry) == [
        (14, 5, "c", "count", 'must be a valid integer; got "two"', "write a whole number, e.g. 3"),
        (17, 44, "d", "template",
         '"a.output.3.file_url": a.output has 3 items (set by count), so there is no item 3',
         "use an index from 0 to 2 (or -3 to -1), or change count"),
    ]  # fmt: skip


class BoundedConfig(StepConfig):
    count: int = Field(1, ge=1, le=10)


@pytest.mark.parametrize(
    ("fields", "templated", "expected"),
    [
        pytest.param({}, frozenset(), OutputLength(1, ("count",), at_most=1), id="default"),
        pytest.param({"count": 3}, frozenset(), OutputLength(3, ("count",), at_most=3), id="3"),
        pytest.param(
            {"count": "<< inputs.n >>"},
            frozenset({"count"}),
            OutputLength(None, ("count",), at_most=10),
            id="templated-bounded-by-le",
        ),
        pytest.param({"count": 0}, frozenset(), None, id="below-ge-is-its-own-problem"),
        pytest.param({"count": 11}, frozenset(), None, id="above-le-is-its-own-problem"),
        pytest.param({"count": "two"}, frozenset(), None, id="not-a-number"),
        pytest.param({"count": True}, frozenset(), None, id="a-boolean"),
    ],
)
def test_output_length_counted(
    fields: dict[str, object], templated: frozenset[str], expected: OutputLength | None
) -> None:
    assert OutputLength.counted(BoundedConfig, fields, templated) == expected
