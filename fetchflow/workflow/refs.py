"""Every reference a step's templates can use, with its type and description: the variable
picker behind ``fetchflow refs`` and the editor's completion.

A step can read the workflow's ``inputs``, the ``run`` fields and the output of every step
it can depend on without making a cycle: the steps upstream of it and the independent ones
(reading one makes it upstream), never itself or a step downstream of it. An output is listed
path by path from its step type's output JSON Schema (the same schema the checker checks
paths against): ``hero.output``, ``hero.output.N``, ``hero.output.N.file_url``... where ``N``
stands for any item of a list. Pure: no I/O, no Prefect.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fetchflow.workflow.graph import downstream_of
from fetchflow.workflow.matrix import is_list_output, matrix_output_length, matrix_output_schema
from fetchflow.workflow.template_checks import RUN_FIELDS

if TYPE_CHECKING:
    from fetchflow.step import OutputLength, Step
    from fetchflow.workflow.plan import Plan
    from fetchflow.workflow.spec import InputSpec, StepCommon

__all__ = [
    "ANY_ITEM",
    "RUN_DESCRIPTIONS",
    "Ref",
    "StepRefs",
    "children",
    "input_refs",
    "output_refs",
    "plan_refs",
    "readable_steps",
    "run_refs",
    "value_at",
]

#: How a list's item is written in a listed path: ``hero.output.N.file_url``.
ANY_ITEM = "N"

#: What each ``run`` field holds (its type is in ``RUN_FIELDS``).
RUN_DESCRIPTIONS = {
    "id": "The run's id (the Prefect flow run id).",
    "name": "The run's name (the Prefect flow run name, e.g. cheerful-otter).",
    "started_at": "When the run started, ISO 8601 in UTC.",
}

#: Nested objects are listed this deep below ``output`` (a recursive schema stops earlier).
MAX_DEPTH = 6


@dataclass(frozen=True)
class Ref:
    """One reference a template can use.

    Attributes:
        path: How it is written, ``N`` for any item of a list (``hero.output.N.file_url``).
        type: Its type in JSON terms: ``string``, ``integer | null``, ``list[object]``...
        description: What it holds.
        default: An input's default (``has_default`` says whether there is one).
        has_default: Whether ``default`` means something.
        items: For a list output, what its step's fields say of its length (``2``,
            ``at most 4``), else empty.
    """

    path: str
    type: str
    description: str = ""
    default: object = None
    has_default: bool = False
    items: str = ""

    @property
    def root(self) -> str:
        """``inputs``, ``run`` or the step id."""
        return self.path.split(".", 1)[0]

    def to_json(self) -> dict[str, object]:
        """The stable JSON form (``default`` only for an input that has one)."""
        document: dict[str, object] = {
            "path": self.path,
            "type": self.type,
            "description": self.description,
        }
        if self.has_default:
            document["default"] = self.default
        if self.items:
            document["items"] = self.items
        return document


@dataclass(frozen=True)
class StepRefs:
    """What one step's templates can use.

    Attributes:
        step_id: The step.
        step_type: Its type.
        upstream: The steps it reads now (references and ``needs``), file order.
        readable: Every step it may read (``upstream`` and the independent ones).
        refs: Every reference: inputs, then each readable step's output, then ``run``.
    """

    step_id: str
    step_type: str
    upstream: tuple[str, ...]
    readable: tuple[str, ...]
    refs: list[Ref] = field(default_factory=list)


def readable_steps(edges: Mapping[str, Sequence[str]], step_id: str) -> list[str]:
    """The steps ``step_id`` may read without a cycle, in ``edges``' order."""
    below = {step_id, *downstream_of(dict(edges), step_id)}
    return [other for other in edges if other not in below]


def input_refs(inputs: Mapping[str, InputSpec]) -> list[Ref]:
    """``inputs.<name>`` for each declared input."""
    return [
        Ref(
            f"inputs.{name}",
            "list" if spec.type == "list" else spec.type,
            spec.description,
            spec.default,
            spec.has_default,
        )
        for name, spec in inputs.items()
    ]


def run_refs() -> list[Ref]:
    """``run.id``, ``run.name``, ``run.started_at``."""
    return [
        Ref(f"run.{name}", kind, RUN_DESCRIPTIONS.get(name, ""))
        for name, kind in RUN_FIELDS.items()
    ]


def matrix_refs(common: StepCommon) -> list[Ref]:
    """``matrix.<axis>`` for each axis of a step's matrix (none without one)."""
    found = []
    for axis, values in (common.matrix or {}).items():
        if isinstance(values, list):
            kinds = sorted({_json_type(value) for value in values})
            said = ", ".join(json.dumps(value, default=str) for value in values[:5])
            more = ", …" if len(values) > 5 else ""
            found.append(
                Ref(
                    f"matrix.{axis}",
                    " | ".join(kinds),
                    f"This combination's {axis}: one of {said}{more}.",
                )
            )
        else:
            found.append(Ref(f"matrix.{axis}", "any", f"This combination's {axis}: from {values}."))
    return found


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else "null"


def output_refs(
    step_id: str,
    step_cls: type[Step[Any, Any]],
    length: OutputLength | None = None,
    schema: dict[str, Any] | None = None,
) -> list[Ref]:
    """``<step>.output`` and every path inside it, from the step type's output schema (or
    ``schema``: a matrix step's)."""
    schema = schema or step_cls.output_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    found = list(_paths(schema, defs, f"{step_id}.output", 0, frozenset()))
    if found and not found[0].description:
        summary = step_cls.summary()
        found[0] = Ref(found[0].path, found[0].type, f"The output of {step_id}. {summary}".strip())
    if found and length is not None and found[0].type.startswith("list"):
        found[0] = Ref(found[0].path, found[0].type, found[0].description, items=_items(length))
    return found


def _items(length: OutputLength) -> str:
    if length.items is not None:
        return str(length.items)
    if length.at_most is not None:
        return f"at most {length.at_most}"
    return ""


def plan_refs(plan: Plan, only: str | None = None) -> list[StepRefs]:
    """What each step of ``plan`` (or only the step ``only``) can use, in file order."""
    edges = plan.edges
    inputs = input_refs(plan.header.inputs)
    outputs: dict[str, list[Ref]] = {}
    listed: list[StepRefs] = []
    for step_id, step in plan.steps.items():
        if only is not None and step_id != only:
            continue
        readable = readable_steps(edges, step_id)
        refs = [*inputs, *matrix_refs(step.common)]
        for other in readable:
            if other not in outputs:
                planned = plan.steps[other]
                length = planned.step_cls.output_length(planned.raw_config, planned.templated)
                schema = None
                if planned.common.matrix is not None:
                    schema = matrix_output_schema(planned.step_cls)
                    length = matrix_output_length(
                        length,
                        planned.common.written_combinations,
                        is_list_output(planned.step_cls),
                    )
                outputs[other] = output_refs(other, planned.step_cls, length, schema)
            refs += outputs[other]
        refs += run_refs()
        listed.append(StepRefs(step_id, step.type, step.depends_on, tuple(readable), refs))
    return listed


def children(refs: Sequence[Ref], typed: str) -> list[Ref]:
    """The references one lookup below ``typed`` (``hero.output.0`` -> its fields): what
    completes ``typed.``. A number in ``typed`` matches ``N``."""
    parts = [ANY_ITEM if part.isdigit() else part for part in typed.split(".")] if typed else []
    found: list[Ref] = []
    for ref in refs:
        path = ref.path.split(".")
        if len(path) == len(parts) + 1 and path[: len(parts)] == parts:
            found.append(ref)
    return found


def value_at(value: object, path: Sequence[str]) -> tuple[bool, object]:
    """Follow ``path`` (names and list indexes as text) into ``value``: ``(found, value)``."""
    for part in path:
        if isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(value) <= index < len(value):
                return False, None
            value = value[index]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


# -- the output schema, path by path ---------------------------------------------------------


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``schema`` with its ``$ref`` followed, and the name it referred to (if any)."""
    name = None
    while "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = {**defs.get(name, {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, name


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = schema.get("anyOf") or schema.get("oneOf")
    return list(found) if isinstance(found, list) else []


def type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A schema's type as users read it: ``string``, ``integer | null``, ``list[object]``."""
    schema, _ = _resolve(schema, defs)
    branches = _branches(schema)
    if branches:
        return " | ".join(dict.fromkeys(type_text(branch, defs) for branch in branches))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join("list" if k == "array" else str(k) for k in kind)
    if kind == "array" or "items" in schema:
        items = schema.get("items")
        return f"list[{type_text(items, defs)}]" if isinstance(items, dict) and items else "list"
    if kind == "object" or "properties" in schema:
        return "object"
    if "const" in schema:
        return type(schema["const"]).__name__.replace("str", "string")
    if "enum" in schema:
        return "string"
    return str(kind) if isinstance(kind, str) else "any"


def _summary(description: str) -> str:
    """A description's first paragraph on one line (a model's docstring may run on, with an
    ``Attributes:`` section: one row of the listing shows its summary only)."""
    return " ".join(description.strip().split("\n\n", 1)[0].split())


def _paths(
    schema: dict[str, Any], defs: dict[str, Any], shown: str, depth: int, seen: frozenset[str]
) -> Iterator[Ref]:
    """``shown`` and every path below it (lists by ``N``), depth first, fields in order."""
    resolved, name = _resolve(schema, defs)
    description = _summary(str(schema.get("description") or resolved.get("description") or ""))
    yield Ref(shown, type_text(resolved, defs), description)
    if depth >= MAX_DEPTH or (name is not None and name in seen):
        return
    inside = seen | ({name} if name else set())
    # Of several types (``X | null``), the first with something inside is listed.
    for branch in [resolved, *_branches(resolved)]:
        branch, branch_name = _resolve(branch, defs)
        if branch_name is not None and branch_name in inside and branch is not resolved:
            continue
        items = branch.get("items")
        if isinstance(items, dict) and items:
            yield from _paths(items, defs, f"{shown}.{ANY_ITEM}", depth + 1, inside)
            return
        properties = branch.get("properties")
        if isinstance(properties, dict) and properties:
            marked = inside | ({branch_name} if branch_name else set())
            for key, sub in properties.items():
                yield from _paths(sub, defs, f"{shown}.{key}", depth + 1, marked)
            return
