"""Step matrices, pure: a step's ``matrix:`` axes become its list of combinations.

A step with ``matrix:`` runs once per combination of its axis values, in the order
:func:`itertools.product` gives for the axes as written (``matrix_mode: zip`` pairs the
lists item by item instead)::

    - id: hero
      type: image_generation
      matrix:
        product: << inputs.products >>        # a template that gives a list
        style: [watercolor, studio photo]     # a list written out
      prompt: a << matrix.style >> of a << matrix.product >>

Its output is one flat list: each combination's items in combination order (a step whose
output is not a list gives one item per combination). The rules for axes (names are
identifiers, lists are non-empty, zip lists are equally long, at most
:data:`MAX_COMBINATIONS` combinations) are checked here once: by the static check for lists
written out, and when the step runs, before any billable call, for templated ones.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_origin

from fetchflow.matrix_grid import record_name
from fetchflow.step import OutputLength, Step
from fetchflow.templating import is_template

__all__ = [
    "MAX_COMBINATIONS",
    "AxisProblem",
    "MatrixMode",
    "axis_problem",
    "combination_count",
    "combination_label",
    "combinations",
    "combinations_problem",
    "describe_matrix",
    "is_list_output",
    "matrix_output_length",
    "matrix_output_schema",
]

MatrixMode = Literal["product", "zip"]

#: The most combinations one step's matrix may make (each can be a billable call).
MAX_COMBINATIONS = 256

#: ``(axis, message, hint)``: what is wrong with a matrix, and the axis to point at.
AxisProblem = tuple[str, str, str]

_AXIS_HINT = "write a list, e.g. style: [watercolor, studio photo], or a template that gives one"


def axis_problem(axis: str, value: object) -> AxisProblem | None:
    """What is wrong with one axis as written (a list or a template); None if nothing."""
    if not axis.isidentifier():
        fixed = "".join(c if c.isalnum() or c == "_" else "_" for c in axis) or "axis"
        fixed = fixed if fixed[0].isalpha() or fixed[0] == "_" else f"_{fixed}"
        return (
            axis,
            f"matrix axis name {axis!r} is not an identifier (letters, digits, _); "
            "templates read it as matrix.<name>",
            f"rename it to {fixed}",
        )
    if isinstance(value, str) and is_template(value):
        return None
    if not isinstance(value, list):
        return (axis, f"a matrix axis is a list of values, got {_shown(value)}", _AXIS_HINT)
    if not value:
        return (
            axis,
            "a matrix axis needs at least one value, got an empty list",
            f"list the values of {axis}, or remove the axis",
        )
    return None


def rendered_axis_problem(axis: str, value: object, template: str) -> AxisProblem | None:
    """What is wrong with the list a templated axis rendered to; None if nothing."""
    if not isinstance(value, list):
        return (
            axis,
            f"a matrix axis is a list of values, got {_shown(value)} (rendered from {template!r})",
            "make the template give a list, e.g. an input of type list",
        )
    if not value:
        return (
            axis,
            f"a matrix axis needs at least one value, got an empty list (rendered from "
            f"{template!r})",
            "give the template at least one value",
        )
    return None


def combinations_problem(
    axes: Mapping[str, Sequence[object]], mode: MatrixMode
) -> AxisProblem | None:
    """What is wrong with the axes together (zip lengths, too many combinations)."""
    if not axes:
        return None
    names = list(axes)
    if mode == "zip":
        first = names[0]
        for name in names[1:]:
            if len(axes[name]) != len(axes[first]):
                lengths = ", ".join(f"{n} has {len(axes[n])}" for n in names)
                return (
                    name,
                    f"matrix_mode zip pairs the axes item by item, so they need as many "
                    f"values each: {lengths}",
                    f"give {name} {len(axes[first])} values, or use matrix_mode: product "
                    "for every combination",
                )
    count = combination_count({name: len(values) for name, values in axes.items()}, mode)
    if count > MAX_COMBINATIONS:
        sizes = " × ".join(f"{name} {len(values)}" for name, values in axes.items())
        return (
            names[0],
            f"the matrix makes {count} combinations ({sizes}), more than {MAX_COMBINATIONS}",
            f"use fewer values, split the step in two, or use matrix_mode: zip; a matrix makes "
            f"at most {MAX_COMBINATIONS} combinations",
        )
    return _repeated(axes, mode)


def _repeated(axes: Mapping[str, Sequence[object]], mode: MatrixMode) -> AxisProblem | None:
    """A combination the matrix would make twice (paid twice, under one name)."""

    def key(value: object) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    names = list(axes)
    if mode == "product":
        for name in names:
            seen: set[str] = set()
            for value in axes[name]:
                if key(value) in seen:
                    return (
                        name,
                        f"{_shown(value)} is listed twice in {name}, so every combination "
                        "with it would be made (and paid for) twice",
                        f"list each value of {name} once",
                    )
                seen.add(key(value))
        return None
    pairs: set[str] = set()
    for row in zip(*axes.values(), strict=True):
        if key(row) in pairs:
            shown = ", ".join(f"{n}={_shown(v)}" for n, v in zip(names, row, strict=True))
            return (
                names[-1],
                f"matrix_mode zip pairs {shown} twice, so that combination would be made "
                "(and paid for) twice",
                "change one of the two pairs, or remove one",
            )
        pairs.add(key(row))
    return None


def combination_count(sizes: Mapping[str, int], mode: MatrixMode) -> int:
    """How many combinations axes of these sizes make."""
    if not sizes:
        return 0
    if mode == "zip":
        return min(sizes.values())
    count = 1
    for size in sizes.values():
        count *= size
    return count


def combinations(axes: Mapping[str, Sequence[Any]], mode: MatrixMode) -> list[dict[str, Any]]:
    """Every combination of the axis values, in a stable order (axes as written).

    ``product``: :func:`itertools.product` of the lists (the last axis changes fastest);
    ``zip``: the first values together, then the second, and so on.
    """
    names = list(axes)
    rows = zip(*axes.values(), strict=True) if mode == "zip" else itertools.product(*axes.values())
    return [dict(zip(names, row, strict=True)) for row in rows]


def combination_label(values: Mapping[str, object]) -> str:
    """A combination as messages and tables show it: ``product=mug style=watercolor``."""
    return " ".join(f"{name}={_plain(value)}" for name, value in values.items())


def is_list_output(step_cls: type[Step[Any, Any]]) -> bool:
    """Whether the step's output is a list (a matrix joins such outputs into one list)."""
    origin = get_origin(step_cls.output_type)
    return origin is list or step_cls.output_type is list


def matrix_output_schema(step_cls: type[Step[Any, Any]]) -> dict[str, Any]:
    """The JSON Schema of a matrix step's output: its own when it is a list, else a list
    of it (one item per combination)."""
    schema = step_cls.output_schema()
    if is_list_output(step_cls):
        return schema
    defs = schema.get("$defs")
    item = {key: value for key, value in schema.items() if key != "$defs"}
    wrapped: dict[str, Any] = {"type": "array", "items": item}
    if defs is not None:
        wrapped["$defs"] = defs
    return wrapped


def matrix_output_length(
    per_combination: OutputLength | None,
    count: int | None,
    list_output: bool,
) -> OutputLength | None:
    """How long a matrix step's output is, from the length of one combination's output.

    Args:
        per_combination: What the step's fields say of one combination's output length.
        count: The number of combinations, when every axis is written out.
        list_output: Whether the step's output is a list (else one item per combination).
    """
    if not list_output:
        per_combination = OutputLength(1, (), at_most=1)
    if per_combination is None:
        return None
    fields = ("matrix", *per_combination.fields)
    once = per_combination.once  # added by finish_matrix, not by each combination
    if count is None:
        return OutputLength(
            None,
            fields,
            at_most=None
            if per_combination.at_most is None
            else (per_combination.at_most - once) * MAX_COMBINATIONS + once,
        )
    items = None if per_combination.items is None else (per_combination.items - once) * count
    at_most = None if per_combination.at_most is None else (per_combination.at_most - once) * count
    return OutputLength(
        None if items is None else items + once,
        fields,
        at_most=None if at_most is None else at_most + once,
        why=per_combination.why,  # no field a template: why only "at most" is known
    )


def _plain(value: object) -> str:
    if isinstance(value, str):
        return value
    return record_name(value) or json.dumps(value, default=str)


def _shown(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:59] + "…"


def describe_matrix(axes: Mapping[str, object], mode: MatrixMode) -> str:
    """What ``fetchflow validate`` says of a matrix: ``6 combinations (product 3 × style 2)``,
    or which axes are templates (their lists are known when the step runs)."""
    joiner = " zip " if mode == "zip" else " × "
    parts = [
        f"{name} {len(values)}" if isinstance(values, list) else f"{name} (a template)"
        for name, values in axes.items()
    ]
    sizes = {name: len(values) for name, values in axes.items() if isinstance(values, list)}
    if len(sizes) == len(axes):
        count = combination_count(sizes, mode)
        return f"{count} combination{'s' if count != 1 else ''} ({joiner.join(parts)})"
    return f"combinations known when it runs ({joiner.join(parts)})"
