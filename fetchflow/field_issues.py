"""Pydantic errors in fetchflow's words.

Pydantic's own messages are never shown raw: each error becomes a :class:`FieldIssue` (the
field, what is wrong with the value found, and a hint) which the static check turns into a
located :class:`~fetchflow.errors.Problem`, the runner into a step error and the settings
loader into a settings error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fetchflow.errors import RuleViolation, closest

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

__all__ = ["FieldIssue", "describe_value", "field_issue", "translate_errors"]

_QUOTED = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class FieldIssue:
    """One thing wrong with one field.

    Attributes:
        loc: Where the value is, relative to the validated mapping (``("count",)``).
        message: What is wrong, with the value found.
        hint: How to fix it.
        at_parent: The problem is about the mapping itself (a missing field).
    """

    loc: tuple[str | int, ...]
    message: str
    hint: str
    at_parent: bool = False

    @property
    def field(self) -> str:
        """The dotted field name."""
        return ".".join(str(part) for part in self.loc)


def describe_value(value: object, limit: int = 80) -> str:
    """A value as it reads in a message: JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def field_issue(error: ErrorDetails, known_fields: Sequence[str]) -> FieldIssue:
    """One pydantic error in fetchflow's words (``known_fields`` for "did you mean")."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    found = describe_value(error.get("input"))
    name = str(loc[-1]) if loc else ""
    if kind == "missing":
        return FieldIssue(
            loc, f'missing required field "{name}"', f"add {name}: <value>", at_parent=True
        )
    if kind == "extra_forbidden":
        suggestion = closest(name, known_fields)
        if suggestion:
            return FieldIssue(
                loc,
                f'unknown field "{name}"; did you mean "{suggestion}"?',
                f"rename {name} to {suggestion}",
            )
        return FieldIssue(
            loc, f'unknown field "{name}"', f"known fields: {', '.join(known_fields)}"
        )
    rule = ctx.get("error")
    if isinstance(rule, RuleViolation):
        fields = tuple(rule.fields) or (name,)
        where = loc if loc and loc[-1] == fields[0] else (*loc, fields[0])
        return FieldIssue(where, rule.message, rule.hint)
    if kind == "literal_error":
        options = _QUOTED.findall(str(ctx.get("expected", "")))
        value = error.get("input")
        suggestion = closest(str(value), options) if isinstance(value, str) else None
        hint = f"did you mean {suggestion}?" if suggestion else f"use one of: {', '.join(options)}"
        return FieldIssue(loc, f"must be one of {', '.join(options)}; got {found}", hint)
    if kind == "string_pattern_mismatch" and name == "id":
        value = str(error.get("input"))
        fixed = re.sub(r"\W", "_", value)
        fixed = f"_{fixed}" if fixed[:1].isdigit() else fixed
        return FieldIssue(
            loc,
            f"must be an identifier (letters, digits and _, not starting with a digit); "
            f"got {found}",
            f"use id: {fixed}",
        )
    if kind == "value_error" and isinstance(rule, ValueError):
        return FieldIssue(loc, f"{rule}", "fix the value as the message says")
    message = error["msg"]
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    message = _lower_first(message).replace("; unable to parse string as an integer", "")
    message = message.replace(", unable to parse string as an integer", "")
    return FieldIssue(loc, f"{message}; got {found}", _hint_for(kind, ctx, error.get("input")))


def _hint_for(kind: str, ctx: Mapping[str, Any], value: object) -> str:
    if kind.startswith(("int_", "float_", "bool_", "string_type", "list_type", "dict_type")):
        expected = kind.split("_")[0]
        words = {
            "int": "a whole number, e.g. 3",
            "float": "a number, e.g. 1.5",
            "bool": "true or false",
            "string": 'text, e.g. "hello" (quote it if YAML reads it as something else)',
            "list": "a list, e.g. [a, b]",
            "dict": "a mapping of names to values",
        }
        return f"write {words.get(expected, 'a value of the right type')}"
    if "le" in ctx or "lt" in ctx or "ge" in ctx or "gt" in ctx:
        bounds = [f"{op} {ctx[op]}" for op in ("ge", "gt", "le", "lt") if op in ctx]
        names = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        return "use a value " + " and ".join(
            f"{names[b.split()[0]]} {b.split()[1]}" for b in bounds
        )
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return "change the length as the message says"
    return "check the value against `fetchflow steps`"


def translate_errors(error: ValidationError, known_fields: Sequence[str] = ()) -> list[FieldIssue]:
    """Every error of a pydantic ValidationError, in fetchflow's words."""
    return [field_issue(detail, known_fields) for detail in error.errors()]
