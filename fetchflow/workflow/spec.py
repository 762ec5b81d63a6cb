"""The workflow file's own keys: top level, inputs, and the keys every step has.

Step-type fields sit flat beside the common step keys and are validated by the step type's
config model (see :mod:`fetchflow.step`); everything here is what the engine itself reads.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fetchflow.step import RuleViolation, deferred
from fetchflow.templating import EXPRESSION_KEYWORDS, IMPLICIT_NAMES, JINJA_GLOBALS
from fetchflow.workflow.matrix import (
    MAX_COMBINATIONS,
    MatrixMode,
    axis_problem,
    combination_count,
    combinations_problem,
)
from fetchflow.workflow.nesting import MAX_DEPTH, value_depth

__all__ = [
    "RESERVED_IDS",
    "STEP_COMMON_KEYS",
    "TOP_LEVEL_KEYS",
    "InputSpec",
    "InputType",
    "StepCommon",
    "WorkflowHeader",
    "parse_input_value",
]

InputType = Literal["string", "integer", "number", "boolean", "list", "object"]

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"

RESERVED_IDS = (
    frozenset(
        {"inputs", "run", "matrix", "super", "for", "with", "import", "include", "block", "set"}
    )
    | EXPRESSION_KEYWORDS
    | IMPLICIT_NAMES
    | JINJA_GLOBALS
)
"""Names a step id cannot take: they mean something else inside templates."""

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "list": {"type": "array"},
    "object": {"type": "object"},
}

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _type_problem(kind: InputType, value: object) -> str | None:
    """Why ``value`` is not of input type ``kind`` (None when it is)."""
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value),  # nan and inf would pass every comparison check
        "boolean": isinstance(value, bool),
        "list": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]
    if ok:
        return None
    article = "an" if kind[0] in "aeiou" else "a"
    return f"expected {article} {kind}, got {json.dumps(value, default=str)}"


class InputSpec(BaseModel):
    """One declared workflow input (``inputs.<name>`` in templates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: InputType = Field("string", description="The value's type.")
    description: str = Field("", description="Shown by `fetchflow steps`, run forms and docs.")
    default: JsonValue = Field(None, description="Used when the run does not give a value.")
    required: bool | None = Field(
        None, description="Whether a value must be given; default: required when no default."
    )

    @property
    def has_default(self) -> bool:
        """Whether the file gave a default (``default: null`` counts)."""
        return "default" in self.model_fields_set

    @property
    def is_required(self) -> bool:
        """Whether a run must give a value."""
        return self.required if self.required is not None else not self.has_default

    @model_validator(mode="after")
    def _default_matches_type(self, info: ValidationInfo) -> InputSpec:
        if deferred(info, "type", "default"):  # one of them is wrong itself: reported so
            return self
        if self.has_default and self.default is not None:
            problem = _type_problem(self.type, self.default)
            if problem:
                raise RuleViolation(
                    f"default does not match type {self.type}: {problem}",
                    fields=("default",),
                    hint=f"give a default of type {self.type}, or change the type",
                )
        return self

    def check(self, value: object) -> str | None:
        """Why ``value`` cannot be this input (None when it can)."""
        return _type_problem(self.type, value)

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of this input's values."""
        schema = dict(_JSON_TYPES[self.type])
        if self.description:
            schema["description"] = self.description
        if self.has_default:
            schema["default"] = self.default
        return schema


def parse_input_value(spec: InputSpec, text: str) -> object:
    """Read a ``--input NAME=VALUE`` value as the input's type.

    Lists and objects are JSON (``'["a", "b"]'``); a list also accepts ``a,b,c``.

    Raises:
        ValueError: The text is not a value of that type (the message says what was found).
    """
    kind = spec.type
    if kind == "string":
        return text
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {text!r}")
        return number
    try:
        value = json.loads(text)
        too_deep = value_depth(value) > MAX_DEPTH
    except RecursionError:  # deeper than JSON's reader goes
        value, too_deep = None, True
    except json.JSONDecodeError:
        if kind == "list" and not text.strip().startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        raise ValueError(f"expected a JSON {kind}, got {text!r}") from None
    if too_deep:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise ValueError(
            f"expected a {kind} nested at most {MAX_DEPTH} levels deep "
            f"(lists and objects inside each other), got {shown!r}"
        )
    problem = spec.check(value)
    if problem:
        raise ValueError(problem)
    return value


class WorkflowHeader(BaseModel):
    """The top-level keys of a workflow file, except ``steps``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="The workflow's name; the Prefect flow's name.")
    description: str = Field("", description="What the workflow makes.")
    inputs: dict[str, InputSpec] = Field(
        default_factory=dict, description="Values a run can be given: `inputs.<name>`."
    )
    budget_usd: float | None = Field(
        None,
        gt=0,
        description="Stop a run before its first billable call when its estimate is over "
        "this (USD). `fetchflow run --budget` overrides it.",
    )
    approval: Literal["none", "batch"] = Field(
        "none",
        description="batch: before anything runs, one form lists every billable step "
        "(each its own row) to approve, edit or deny.",
    )
    approval_timeout_seconds: float = Field(
        3600, gt=0, le=7 * 86400, description="How long the batch form waits."
    )

    @field_validator("budget_usd")
    @classmethod
    def _budget_is_finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):  # .inf: no guard at all
            raise RuleViolation(
                f"must be a finite amount of US dollars, got {value}",
                fields=(),
                hint="give the most a run may cost, e.g. budget_usd: 2.50, or remove it",
            )
        return value

    @field_validator("inputs")
    @classmethod
    def _input_names_are_identifiers(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for name in value:
            if not name.isidentifier():
                raise RuleViolation(
                    f"input name {name!r} is not an identifier (letters, digits, _)",
                    fields=(name,),
                    hint=f"rename it to {re.sub(r'[^0-9A-Za-z_]', '_', name)}",
                )
        return value


class StepCommon(BaseModel):
    """The keys every step has, whatever its type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=IDENTIFIER, description="Unique name; `<<id.output>>` elsewhere.")
    type: str = Field(description="The step type (see `fetchflow steps`).")
    name: str | None = Field(None, description="A readable title for the UI.")
    needs: list[str] = Field(
        default_factory=list,
        description="Steps that must finish first, besides the ones referenced in templates.",
    )
    on_failure: Literal["terminate", "continue"] = Field(
        "terminate",
        description="terminate: stop the run. continue: skip dependent steps, go on.",
    )
    retries: int = Field(0, ge=0, le=20, description="Extra attempts after a failure.")
    retry_delay_seconds: float = Field(
        2.0, ge=0, le=3600, description="Delay before the first retry; doubles each time."
    )
    timeout_seconds: float | None = Field(
        None, gt=0, le=86400, description="Fail the attempt when it runs longer."
    )
    cache: bool = Field(
        False,
        description="Reuse the output of an earlier run that made exactly the same rendered "
        "request (prompt, model, every parameter, seed, reference images).",
    )
    approval: Literal["none", "required"] = Field(
        "none",
        description="required: a billable step waits for a reviewer (UI form or "
        "`fetchflow approve`) before its provider call. Free steps never ask.",
    )
    approval_timeout_seconds: float = Field(
        3600, gt=0, le=7 * 86400, description="A step not approved by then fails."
    )
    matrix_mode: MatrixMode = Field(
        "product",
        description="product: every combination of the matrix axes. zip: the first values "
        "together, then the second, ... (the lists must be equally long).",
    )
    matrix: dict[str, JsonValue] | None = Field(
        None,
        description="Run the step once per combination of these axes (name: list of values, "
        "or a template that gives a list); `<< matrix.<name> >>` in its fields. The output "
        f"is one flat list in combination order. At most {MAX_COMBINATIONS} combinations.",
    )

    @field_validator("matrix")
    @classmethod
    def _matrix_axes(
        cls, value: dict[str, JsonValue] | None, info: ValidationInfo
    ) -> dict[str, JsonValue] | None:
        if value is None:
            return value
        if not value:
            raise RuleViolation(
                "a matrix needs at least one axis, got an empty mapping",
                fields=(),
                hint="write matrix: {style: [watercolor, studio photo]}, or remove matrix",
            )
        for axis, values in value.items():
            problem = axis_problem(axis, values)
            if problem is not None:
                raise RuleViolation(problem[1], fields=(problem[0],), hint=problem[2])
        written = {a: v for a, v in value.items() if isinstance(v, list)}
        mode = info.data.get("matrix_mode", "product")
        if len(written) == len(value) or mode == "product":
            problem = combinations_problem(written, mode)
            if problem is not None:
                raise RuleViolation(problem[1], fields=(problem[0],), hint=problem[2])
        return value

    @model_validator(mode="after")
    def _mode_needs_matrix(self) -> StepCommon:
        if self.matrix is None and "matrix_mode" in self.model_fields_set:
            raise RuleViolation(
                "matrix_mode is set but the step has no matrix",
                fields=("matrix_mode",),
                hint="add matrix: {axis: [values]}, or remove matrix_mode",
            )
        return self

    @property
    def written_combinations(self) -> int | None:
        """How many combinations the matrix makes, when every axis is written out."""
        if self.matrix is None:
            return None
        sizes = {a: len(v) for a, v in self.matrix.items() if isinstance(v, list)}
        if len(sizes) != len(self.matrix):
            return None
        return combination_count(sizes, self.matrix_mode)

    @field_validator("needs", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


STEP_COMMON_KEYS = tuple(StepCommon.model_fields)
TOP_LEVEL_KEYS = (*WorkflowHeader.model_fields, "steps")
