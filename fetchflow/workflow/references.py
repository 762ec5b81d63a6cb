"""Finds ``<<step.output...>>`` paths in parsed templates and checks them against schemas.

A reference is a chain of attribute and constant-index lookups that starts at a name the
template does not define itself: ``hero.output.0.file_url`` is
``Reference(root="hero", path=("output", 0, "file_url"))``. Paths are checked against JSON
Schemas (the referenced step's output schema, the declared inputs), so a typo is reported
with its closest valid spelling before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import nodes

from fetchflow.errors import closest
from fetchflow.templating import EXPRESSION_KEYWORDS, IMPLICIT_NAMES

if TYPE_CHECKING:
    from fetchflow.step import OutputLength

__all__ = [
    "Reference",
    "check_index",
    "check_path",
    "closest",
    "find_references",
    "missing_item",
    "simple_references",
    "unsafe_attributes",
]

_DICT_METHODS = frozenset({"items", "keys", "values", "get"})


@dataclass(frozen=True)
class Reference:
    """One lookup chain in a template.

    Attributes:
        root: The name the chain starts at (``inputs``, ``run`` or a step id).
        path: The constant lookups after the root.
        lineno: The template line it is on (1-based).
    """

    root: str
    path: tuple[str | int, ...]
    lineno: int
    exact: bool = False
    """Whether ``text`` is exactly how the reference is written (the fast path knows)."""
    guarded: bool = False
    """Whether it is read only under a condition (``<% if %>``, ``x if c else y``, the
    right side of ``and``/``or``, ``| default``, ``is defined``): an item past a list's end
    may be the case the template guards against."""

    @property
    def text(self) -> str:
        """``hero.output.0.file_url``."""
        text = self.root
        for part in self.path:
            text = _joined(text, part)
        return text


def _joined(shown: str, key: str | int) -> str:
    """``hero.output`` and ``0`` -> ``hero.output.0``; a negative index as written:
    ``hero.output[-1]``."""
    return f"{shown}[{key}]" if isinstance(key, int) and key < 0 else f"{shown}.{key}"


def _chain(node: nodes.Expr) -> tuple[nodes.Expr, list[str | int]]:
    """Walk down Getattr/constant Getitem nodes; return the base and the path (in order)."""
    from jinja2 import nodes

    path: list[str | int] = []
    while True:
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const | nodes.Neg):
            value = _constant_key(node.arg)
            if value is None:
                break
            path.append(value)
            node = node.node
        else:
            break
    path.reverse()
    return node, path


def _constant_key(arg: nodes.Expr) -> str | int | None:
    """The key of ``x["name"]``, ``x[3]`` or ``x[-1]``; None for anything else."""
    from jinja2 import nodes

    negative = isinstance(arg, nodes.Neg)
    if isinstance(arg, nodes.Neg):
        arg = arg.node
    if not isinstance(arg, nodes.Const):
        return None
    value = arg.value
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if negative:
        return -value if isinstance(value, int) else None
    return value


def _walk(root: nodes.Node, roots: frozenset[str]) -> Iterator[Reference]:
    """Every reference under ``root``, in template order (a loop: any depth is fine)."""
    from jinja2 import nodes

    todo: list[tuple[nodes.Node, bool]] = [(root, False)]
    while todo:
        node, guarded = todo.pop()
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
            base, path = _chain(node)
            if isinstance(base, nodes.Name) and base.name in roots:
                yield Reference(base.name, tuple(path), node.lineno, guarded=guarded)
                continue
            if base is not node:
                todo.append((base, guarded))
                continue
        children = list(node.iter_child_nodes())
        if not guarded:
            guarded_children = _guarded_children(node)
            todo.extend((child, id(child) in guarded_children) for child in reversed(children))
        else:
            todo.extend((child, True) for child in reversed(children))


def _guarded_children(node: nodes.Node) -> set[int]:
    """The children of ``node`` read only under a condition (by ``id``)."""
    from jinja2 import nodes

    parts: list[nodes.Node] = []
    if isinstance(node, nodes.If):
        parts = [*node.body, *node.elif_, *node.else_]
    elif isinstance(node, nodes.CondExpr):
        parts = [node.expr1, *([node.expr2] if node.expr2 is not None else [])]
    elif isinstance(node, nodes.And | nodes.Or):
        parts = [node.right]
    elif (isinstance(node, nodes.Filter) and node.name in ("default", "d")) or (
        isinstance(node, nodes.Test) and node.name in ("defined", "undefined")
    ):
        parts = list(node.iter_child_nodes())
    return {id(part) for part in parts}


def _all_nodes(root: nodes.Node) -> Iterator[nodes.Node]:
    """``root`` and every node under it, in template order.

    Jinja's own ``find_all`` recurses, one generator per level; this loop does not.
    """
    todo = [root]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(reversed(list(node.iter_child_nodes())))


def _context_names(ast: nodes.Template) -> frozenset[str]:
    """Names the template reads but never sets (so they come from the scope)."""
    from jinja2 import nodes

    loaded: set[str] = set()
    stored: set[str] = set()
    for name in _all_nodes(ast):
        if isinstance(name, nodes.Name):
            (loaded if name.ctx == "load" else stored).add(name.name)
    return frozenset(loaded - stored - IMPLICIT_NAMES)


def find_references(ast: nodes.Template, ignore: frozenset[str]) -> list[Reference]:
    """Every lookup chain in ``ast`` that starts at a name the template does not define.

    Names the template sets itself (``<% set %>``, loop variables, macro arguments) and the
    ``ignore`` names (environment globals such as ``range``) are not references.
    """
    roots = _context_names(ast) - ignore
    if not roots:
        return []
    return list(_walk(ast, roots))


# A template made only of text and simple value lookups (``<< hero.output.0.file_url >>``),
# the vast majority, is checked without Jinja's parser: that keeps `fetchflow validate` of a
# large workflow fast. Anything else goes through the full parse.
_SIMPLE_EXPR = re.compile(
    r"<<\s*([A-Za-z][A-Za-z0-9_]*(?:\.(?:[A-Za-z][A-Za-z0-9_]*|0|[1-9][0-9]*))*)\s*>>"
)
_NOT_SIMPLE = re.compile(r"<<|>>|<%|%>|<#|#>|\{\{|\{%|\{#")
_KEYWORDS = EXPRESSION_KEYWORDS | IMPLICIT_NAMES


def simple_references(source: str, ignore: frozenset[str]) -> list[Reference] | None:
    """References of a template made only of text and ``<< a.b.0.c >>`` lookups.

    Returns:
        The references, or None when the template needs Jinja's full parser.
    """
    found: list[Reference] = []
    last = 0
    for match in _SIMPLE_EXPR.finditer(source):
        if _NOT_SIMPLE.search(source, last, match.start()):
            return None
        root, *rest = match.group(1).split(".")
        if root in _KEYWORDS:
            return None
        last = match.end()
        if root in ignore:
            continue
        path = tuple(int(part) if part.isdigit() else part for part in rest)
        lineno = source.count("\n", 0, match.start()) + 1
        found.append(Reference(root, path, lineno, exact=True))
    if _NOT_SIMPLE.search(source, last):
        return None
    return found


def unsafe_attributes(ast: nodes.Template) -> list[tuple[str, int]]:
    """Lookups of private names (``x.__class__``, ``x["_y"]``): refused before the run."""
    from jinja2 import nodes

    found: list[tuple[str, int]] = []
    for node in _all_nodes(ast):
        if isinstance(node, nodes.Getattr):
            name: object = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif (
            isinstance(node, nodes.Filter)
            and node.name == "attr"
            and node.args
            and isinstance(node.args[0], nodes.Const)
        ):
            name = node.args[0].value  # << x | attr("__class__") >>
        else:
            continue
        if isinstance(name, str) and name.startswith("_"):
            found.append((name, node.lineno))
    return found


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = {**defs.get(name, {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _describe(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "array":
        return "a list"
    if kind == "object" or "properties" in schema:
        return "an object"
    if isinstance(kind, str):
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    return "a value"


def check_path(
    schema: dict[str, Any],
    path: Sequence[str | int],
    shown: str,
    defs: dict[str, Any] | None = None,
) -> tuple[str, str] | None:
    """Check a lookup path against a JSON Schema.

    The path is followed with a loop, not recursion, so a recursive schema (a tree whose
    nodes hold nodes) takes a path of any length. Where the schema allows several types
    (``anyOf``), each is tried in order: the path is fine when one of them takes it, and
    otherwise the first one's failure is reported.

    Args:
        schema: The schema of the value the path starts at.
        path: The lookups.
        shown: How the starting value is written (``hero.output``), for messages.
        defs: ``$defs`` to resolve ``$ref`` against (taken from ``schema`` if not given).

    Returns:
        None when the path can exist, else ``(message, hint)``.
    """
    defs = schema.get("$defs", {}) if defs is None else defs
    # Places still to try, the next one last: (schema, how many lookups done, shown).
    todo: list[tuple[dict[str, Any], int, str]] = [(schema, 0, shown)]
    first_failure: tuple[str, str] | None = None
    while todo:
        current, done, here = todo.pop()
        current = _resolve(current, defs)
        if done == len(path):
            return None
        branches = current.get("anyOf") or current.get("oneOf")
        if branches:
            typed = [b for b in branches if _resolve(b, defs).get("type") != "null"]
            if not typed:
                return None
            todo.extend((branch, done, here) for branch in reversed(typed))
            continue
        found = _lookup(current, path[done], here)
        if isinstance(found, _Inside):
            todo.append((found.schema, done + 1, found.shown))
        elif found is _ANYTHING:
            return None
        else:
            first_failure = first_failure or found
    return first_failure


@dataclass(frozen=True)
class _Inside:
    """One lookup went into a part of the value: its schema and how it is written."""

    schema: dict[str, Any]
    shown: str


_ANYTHING = ("", "")
"""A lookup into a value that may hold anything: the rest of the path is fine."""


def _lookup(schema: dict[str, Any], head: str | int, shown: str) -> _Inside | tuple[str, str]:
    """One lookup, ``head``, in a value of ``schema`` (resolved, not a union)."""
    here = _joined(shown, head)
    kind = schema.get("type")
    if kind == "array" or "items" in schema or "prefixItems" in schema:
        if isinstance(head, int) or (isinstance(head, str) and head.isdigit()):
            prefix: list[dict[str, Any]] = schema.get("prefixItems") or []
            index = int(head)
            inside = -len(prefix) <= index < len(prefix)
            item = prefix[index] if inside else schema.get("items", {})
            return _Inside(item, here)
        return (
            f"{shown} is a list, it has no field {head!r}",
            f"pick an item first: {shown}.0.{head}",
        )
    if kind == "object" or "properties" in schema or "additionalProperties" in schema:
        properties: dict[str, Any] = schema.get("properties", {})
        if isinstance(head, str) and head in properties:
            return _Inside(properties[head], here)
        extra = schema.get("additionalProperties", kind != "object" or not properties)
        if isinstance(extra, dict):
            return _Inside(extra, here)
        if extra is True or head in _DICT_METHODS:
            return _ANYTHING
        suggestion = closest(str(head), list(properties))
        fields = ", ".join(properties) or "none"
        message = f"{shown} has no field {str(head)!r}"
        if suggestion:
            return (f"{message}; did you mean {suggestion!r}?", f"use {shown}.{suggestion}")
        return (message, f"fields of {shown}: {fields}")
    if kind == "string" and isinstance(head, str) and hasattr(str, head):
        return _ANYTHING  # a string method such as .upper()
    if kind in ("string", "integer", "number", "boolean", "null"):
        return (
            f"{shown} is {_describe(schema)}, it has no field {str(head)!r}",
            f"use {shown} itself",
        )
    return _ANYTHING  # an untyped value: anything may be inside


def check_index(
    length: OutputLength, path: Sequence[str | int], shown: str
) -> tuple[str, str] | None:
    """Check the first lookup of ``path`` (an item of a list output) against its length.

    Args:
        length: What the step's fields say of its output's length.
        path: The lookups after ``output``.
        shown: How the list is written (``hero.output``), for messages.

    Returns:
        None when the item can exist, else ``(message, hint)``.
    """
    if not path:
        return None
    head = path[0]
    if isinstance(head, str) and head.isdigit():
        head = int(head)
    if not isinstance(head, int) or isinstance(head, bool):
        return None
    decided_by = " and ".join(length.fields)
    either = " or ".join(length.fields)
    one = len(length.fields) == 1
    if length.items is not None:
        size = length.items
        if -size <= head < size:
            return None
        return (
            f"{shown} has {size} item{'' if size == 1 else 's'} (set by {decided_by}), "
            f"so there is no item {head}",
            f"use an index from 0 to {size - 1} (or -{size} to -1), or change {either}"
            if size > 1
            else f"use {shown}.0, or change {either}"
            if size
            else f"change {either}, or do not read an item of {shown}",
        )
    if length.at_most is None or -length.at_most <= head < length.at_most:
        return None
    if length.why:
        return (
            f"{shown} has at most {length.at_most} items ({length.why}), so there is no "
            f"item {head}",
            f"use an index below {length.at_most}",
        )
    return (
        f"{shown} has at most {length.at_most} items ({decided_by} "
        f"{'is a template' if one else 'are templates'}), so there is no item {head}",
        f"use an index below {length.at_most}; the exact number is known only once "
        f"{decided_by} {'is' if one else 'are'} rendered, when the step runs",
    )


def missing_item(references: Sequence[Reference], scope: Mapping[str, object]) -> str | None:
    """Why a template failed at run time, when a constant index is past a list's end.

    Args:
        references: The template's references.
        scope: The values it was rendered with.

    Returns:
        ``"hero.output.5.file_url": hero.output has 2 items, so there is no item 5``, for
        the first reference that reads past the end of a list; else None.
    """
    for ref in references:
        value: object = scope.get(ref.root)
        shown = ref.root
        for part in ref.path:
            index = int(part) if isinstance(part, str) and part.isdigit() else part
            if isinstance(value, list) and isinstance(index, int):
                if not -len(value) <= index < len(value):
                    plural = "item" if len(value) == 1 else "items"
                    return (
                        f'"{ref.text}": {shown} has {len(value)} {plural}, '
                        f"so there is no item {index}"
                    )
                value = value[index]
            elif isinstance(value, Mapping) and part in value:
                value = value[part]
            else:
                break
            shown = _joined(shown, part)
    return None
