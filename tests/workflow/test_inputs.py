"""Run inputs: ``--input NAME=VALUE`` read as the declared types, defaults, requirements."""

from __future__ import annotations

import re

import pytest

from fetchflow.errors import Problem, WorkflowInvalid
from fetchflow.workflow.inputs import parse_input_args, resolve_inputs
from fetchflow.workflow.spec import InputSpec, WorkflowHeader, parse_input_value

HEADER = WorkflowHeader.model_validate(
    {
        "name": "inputs",
        "inputs": {
            "product": {"type": "string"},
            "count": {"type": "integer", "default": 3},
            "ratio": {"type": "number", "default": 1.5},
            "draft": {"type": "boolean", "default": False},
            "angles": {"type": "list", "default": ["front"]},
            "extra": {"type": "object", "default": {}},
            "note": {"type": "string", "required": False},
        },
    }
)


def spec(kind: str) -> InputSpec:
    return InputSpec.model_validate({"type": kind})


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        pytest.param("string", " as is, 1 ", " as is, 1 ", id="string-untouched"),
        pytest.param("boolean", "yes", True, id="bool-yes"),
        pytest.param("boolean", "No", False, id="bool-no"),
        pytest.param("boolean", "true", True, id="bool-true"),
        pytest.param("boolean", "FALSE", False, id="bool-false"),
        pytest.param("boolean", "1", True, id="bool-1"),
        pytest.param("boolean", "0", False, id="bool-0"),
        pytest.param("boolean", "on", True, id="bool-on"),
        pytest.param("integer", " 42 ", 42, id="integer"),
        pytest.param("integer", "-3", -3, id="negative-integer"),
        pytest.param("number", "1.5", 1.5, id="number"),
        pytest.param("number", "2", 2.0, id="number-from-integer-text"),
        pytest.param("list", '["a", "b"]', ["a", "b"], id="json-list"),
        pytest.param("list", "a, b ,c", ["a", "b", "c"], id="comma-list"),
        pytest.param("list", "solo", ["solo"], id="one-item-list"),
        pytest.param("object", '{"lens": "35mm"}', {"lens": "35mm"}, id="json-object"),
    ],
)
def test_parse_input_value(kind: str, text: str, expected: object) -> None:
    value = parse_input_value(spec(kind), text)

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        pytest.param("boolean", "maybe", "expected a boolean (true/false), got 'maybe'",
                     id="bool"),
        pytest.param("integer", "3.5", "expected an integer, got '3.5'", id="integer"),
        pytest.param("number", "many", "expected a number, got 'many'", id="number"),
        pytest.param("list", '{"a": 1}', 'expected a list, got {"a": 1}', id="list-got-object"),
        pytest.param("list", "[1, 2", "expected a JSON list, got '[1, 2'", id="broken-json-list"),
        pytest.param("object", "a=1", "expected a JSON object, got 'a=1'", id="object-not-json"),
        pytest.param("object", "[1]", "expected an object, got [1]", id="object-got-list"),
    ],
)  # fmt: skip
def test_parse_input_value_refuses_other_types(kind: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_input_value(spec(kind), text)


def test_parse_input_args_reads_the_declared_types() -> None:
    values = parse_input_args(HEADER, ["count=7", "draft=yes", "angles=a,b", "product=x=y"])

    assert values == {"count": 7, "draft": True, "angles": ["a", "b"], "product": "x=y"}


def test_parse_input_args_reports_every_bad_pair_in_the_order_given() -> None:
    pairs = ["count", "=3", "prodcut=mug", "colour=red", "count=many"]

    with pytest.raises(WorkflowInvalid) as caught:
        parse_input_args(HEADER, pairs)

    assert caught.value.problems == [
        Problem(message="expected NAME=VALUE, got 'count'", hint="write --input count=3",
                file="--input"),
        Problem(message="expected NAME=VALUE, got '=3'", hint="write --input count=3",
                file="--input"),
        Problem(message='the workflow declares no input "prodcut"; did you mean "product"?',
                hint="use --input product=...", file="--input", subject='input "prodcut"'),
        Problem(message='the workflow declares no input "colour"',
                hint="declared inputs: product, count, ratio, draft, angles, extra, note",
                file="--input", subject='input "colour"'),
        Problem(message="expected an integer, got 'many'",
                hint="give count a value of type integer", file="--input",
                subject='input "count"'),
    ]  # fmt: skip
    assert str(caught.value).splitlines()[0] == "--input: expected NAME=VALUE, got 'count'"


def test_resolve_inputs_fills_defaults_and_keeps_given_values() -> None:
    resolved = resolve_inputs(HEADER, {"product": "mug", "count": 5})

    assert resolved == {
        "product": "mug",
        "count": 5,
        "ratio": 1.5,
        "draft": False,
        "angles": ["front"],
        "extra": {},
        "note": None,
    }


def test_resolve_inputs_reports_missing_wrong_and_unknown_together() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        resolve_inputs(HEADER, {"count": "five", "colour": "red"}, file="run.json")

    assert caught.value.problems == [
        Problem(message="is required and has no default",
                hint="run with --input product=<string>", file="run.json",
                subject='input "product"'),
        Problem(message='expected an integer, got "five"', hint="give a value of type integer",
                file="run.json", subject='input "count"'),
        Problem(message='the workflow declares no input "colour"',
                hint="declared inputs: product, count, ratio, draft, angles, extra, note",
                file="run.json", subject='input "colour"'),
    ]  # fmt: skip
    assert 'run.json: input "product": is required and has no default' in str(caught.value)


@pytest.mark.parametrize(
    ("declared", "required"),
    [
        pytest.param({"type": "string"}, True, id="no-default-is-required"),
        pytest.param({"type": "string", "default": "x"}, False, id="default-is-optional"),
        pytest.param({"type": "string", "default": None}, False, id="null-default-is-optional"),
        pytest.param({"type": "string", "required": False}, False, id="explicitly-optional"),
        pytest.param({"type": "string", "default": "x", "required": True}, True,
                     id="explicitly-required"),
    ],
)  # fmt: skip
def test_input_spec_is_required(declared: dict[str, object], required: bool) -> None:
    assert InputSpec.model_validate(declared).is_required is required


def test_input_spec_json_schema() -> None:
    declared = {"type": "list", "description": "Angles.", "default": ["a"]}

    assert InputSpec.model_validate(declared).json_schema() == {
        "type": "array",
        "description": "Angles.",
        "default": ["a"],
    }
