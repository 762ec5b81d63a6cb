"""The JSON Schema of workflow files agrees with the static check on valid and invalid files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from fetchflow.errors import WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.step import Step, StepConfig, StepContext
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text
from fetchflow.workflow.schema import workflow_schema
from steps.template import TemplateStep

ROOT = Path(__file__).parents[2]
FLOWS = Path(__file__).parents[1] / "data" / "flows"
NEEDS_BUG = (
    "BUG: the schema says needs is a list, but the check accepts one step id as a string "
    "(needs: handoff)"
)
VALID = [
    pytest.param(
        path,
        id=path.stem,
    )
    for path in [*sorted(FLOWS.glob("*.yaml")), ROOT / "flows" / "hello.yaml"]
]


class CountConfig(StepConfig):
    count: int = 1
    ratio: float = 0.5
    label: str = ""


class CountStep(Step[CountConfig, int]):
    """A step with non-string fields."""

    config_model = CountConfig
    output_type = int

    def run(self, config: CountConfig, ctx: StepContext) -> int:
        return config.count


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = workflow_schema(StepRegistry.from_entry_points())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def count_validator() -> Draft202012Validator:
    registry = StepRegistry({"template": TemplateStep, "count": CountStep})
    return Draft202012Validator(workflow_schema(registry))


def errors(validator: Draft202012Validator, document: object) -> list[str]:
    """Every message, those of the oneOf branches (one per step type) included."""
    found: list[str] = []
    todo = list(validator.iter_errors(document))
    while todo:
        error = todo.pop()
        found.append(error.message)
        todo.extend(error.context or [])
    return sorted(found)


def workflow(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "w", "steps": list(steps)}


@pytest.mark.parametrize("path", VALID)
def test_valid_workflows_match_the_schema(validator: Draft202012Validator, path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert errors(validator, document) == []


def test_schema_describes_the_registered_step_types() -> None:
    schema = workflow_schema(StepRegistry({"template": TemplateStep, "count": CountStep}))

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["name", "steps"]
    assert schema["properties"]["steps"]["items"] == {
        "oneOf": [{"$ref": "#/$defs/step_count"}, {"$ref": "#/$defs/step_template"}]
    }
    template = schema["$defs"]["step_template"]
    assert template["properties"]["type"]["const"] == "template"
    assert template["required"] == ["id", "type"]
    assert {"template", "file", "retries", "needs"} <= set(template["properties"])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(
            workflow({"id": "a", "type": "template", "templat": "x"}),
            "Additional properties are not allowed ('templat' was unexpected)",
            id="unknown-step-field",
        ),
        pytest.param(
            {**workflow({"id": "a", "type": "template"}), "inputz": {}},
            "Additional properties are not allowed ('inputz' was unexpected)",
            id="unknown-top-level-key",
        ),
        pytest.param({"name": "w"}, "'steps' is a required property", id="missing-steps"),
        pytest.param({"name": "w", "steps": []}, "[] should be non-empty", id="empty-steps"),
    ],
)
def test_schema_rejects_what_the_check_rejects(
    validator: Draft202012Validator, document: dict[str, Any], message: str
) -> None:
    assert message in errors(validator, document)


def test_needs_may_be_one_step_id(validator: Draft202012Validator) -> None:
    document = workflow(
        {"id": "a", "type": "template", "template": "x"},
        {"id": "b", "type": "template", "template": "y", "needs": "a"},
    )

    assert errors(validator, document) == []


@pytest.mark.parametrize(
    "step",
    [
        pytest.param({"id": "a", "type": "template", "retries": "many"}, id="wrong-type"),
        pytest.param({"id": "a", "type": "template", "on_failure": "contine"}, id="bad-enum"),
        pytest.param({"id": "a-b", "type": "template"}, id="bad-id"),
        pytest.param({"id": "a", "type": "templte"}, id="unknown-type"),
        pytest.param({"type": "template"}, id="missing-id"),
    ],
)
def test_schema_rejects_bad_steps(validator: Draft202012Validator, step: dict[str, Any]) -> None:
    assert not validator.is_valid(workflow(step))


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        pytest.param({"count": 3, "ratio": 1.5}, True, id="plain-values"),
        pytest.param({"count": "<< inputs.n >>"}, True, id="template-in-integer"),
        pytest.param({"ratio": "{{ inputs.r }}"}, True, id="curly-template-in-number"),
        pytest.param({"count": "<% if x %>1<% endif %>"}, True, id="statement-template"),
        pytest.param({"count": "three"}, False, id="text-in-integer"),
        pytest.param({"label": "no template needed"}, True, id="plain-string"),
    ],
)
def test_template_strings_are_accepted_for_non_string_fields(
    count_validator: Draft202012Validator, fields: dict[str, Any], valid: bool
) -> None:
    document = workflow({"id": "a", "type": "count", **fields})

    assert count_validator.is_valid(document) is valid


# -- templates: the schema takes one wherever validate does ----------------------------------

#: The least each step type needs besides the field under test.
_REQUIRED: dict[str, dict[str, object]] = {
    "image_generation": {"prompt": "a blue vase"},
    "image_edit": {"images": "assets/vase.png", "prompt": "make it red"},
    "image_transform": {"images": "assets/vase.png"},
    "template": {"template": "hello"},
}
_TEMPLATES = ("<< inputs.value >>", "{{ inputs.value }}")


def _field_cases() -> list[object]:
    registry = StepRegistry.from_entry_points()
    cases = []
    for step_type, step_cls in registry.items():
        for field in step_cls.config_model.model_fields:
            for template in _TEMPLATES:
                style = "angle" if template.startswith("<<") else "curly"
                cases.append(
                    pytest.param(step_type, field, template, id=f"{step_type}-{field}-{style}")
                )
    return cases


def _templated_workflow(step_type: str, field: str, template: str) -> dict[str, Any]:
    step = {"id": "a", "type": step_type, **_REQUIRED.get(step_type, {}), field: template}
    if step_type == "template" and field == "file":
        del step["template"]  # template and file are exclusive
    return {"name": "w", "inputs": {"value": {"type": "string", "default": "x"}}, "steps": [step]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """A project folder holding the image the required fields name."""
    root = tmp_path_factory.mktemp("project")
    (root / "templates").mkdir()
    (root / "assets").mkdir()
    (root / "assets" / "vase.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return Templates([root / "templates"])


@pytest.mark.parametrize(("step_type", "field", "template"), _field_cases())
def test_every_field_validate_accepts_as_a_template_the_schema_accepts(
    validator: Draft202012Validator,
    project: Templates,
    step_type: str,
    field: str,
    template: str,
) -> None:
    document = _templated_workflow(step_type, field, template)
    text = yaml.safe_dump(document, sort_keys=False)
    try:
        check_text(text, "w.yaml", StepRegistry.from_entry_points(), project)
    except WorkflowInvalid as invalid:  # validate refuses it: the schema must too
        assert not validator.is_valid(document), [p.message for p in invalid.problems]
    else:
        assert errors(validator, document) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("output_format", "gif", id="enum"),
        pytest.param("count", True, id="boolean-count"),
        pytest.param("count", 0, id="count-zero"),
        pytest.param("output_compression", "eighty", id="text-in-number"),
    ],
)
def test_schema_still_refuses_bad_plain_values(
    validator: Draft202012Validator, field: str, value: object
) -> None:
    step = {"id": "a", "type": "image_generation", "prompt": "a vase", field: value}
    assert not validator.is_valid(workflow(step))
