"""Bounds on what one template render may build and how long it may work.

Templates are user code run inside the engine's process, so the sandbox must refuse a value
before building it, not notice it once memory is gone (``<< 'a' * 10**10 >>``). Every way a
template can grow a value faster than it reads one is checked against :data:`MAX_VALUE_SIZE`
*before* Python builds it: ``*``, ``**``, ``+``, ``~`` and ``%``; list and mapping literals;
the string methods and filters that pad, repeat, replace or join; format widths in
``str.format`` and ``%``. Each render has a budget of :data:`MAX_TEMPLATE_STEPS` loop
iterations and calls, and of :data:`MAX_VALUE_SIZE` characters written in all.

The checks raise :class:`TemplateLimitError`, a ``jinja2.SecurityError`` that carries the
limit in its hint. This module imports Jinja: :mod:`fetchflow.templating` imports it on
first use, so ``fetchflow validate`` stays light.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from jinja2 import nodes, pass_context
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedFormatter
from jinja2.visitor import NodeTransformer

__all__ = [
    "HOOKS",
    "LIMITS_HINT",
    "MAX_INT_BITS",
    "MAX_TEMPLATE_STEPS",
    "MAX_VALUE_SIZE",
    "TemplateLimitError",
    "bounded_filters",
    "bounded_lipsum",
    "bounded_str_format",
    "check_binop",
    "check_call",
    "check_format_spec",
    "check_format_string",
    "check_printf",
    "check_size",
    "count_step",
    "limit_error",
    "render_budget",
    "size_of",
    "transform",
]

MAX_VALUE_SIZE = 1_000_000
"""Characters of a string, or items of a list or mapping counted all the way down, that a
template may build; also the characters one render may write in all."""
MAX_TEMPLATE_STEPS = 100_000
"""Loop iterations and calls one render may make."""
MAX_INT_BITS = 10_000
"""Bits of an integer a template may compute (about 3000 digits)."""

LIMITS_HINT = (
    f"templates may build values of at most {MAX_VALUE_SIZE} characters or items, "
    f"integers of {MAX_INT_BITS} bits, and make {MAX_TEMPLATE_STEPS} loop steps and calls "
    "per field: build smaller values, or do the heavy work in a step"
)


class TemplateLimitError(SecurityError):
    """A template tried to build too much or work too long (the hint says the limits)."""

    hint = LIMITS_HINT


def limit_error(message: str) -> TemplateLimitError:
    """The error for a refused template operation (raise it)."""
    return TemplateLimitError(message)


# -- sizes ------------------------------------------------------------------------------------


def size_of(value: object, stop: int = MAX_VALUE_SIZE) -> int:
    """Characters plus items of ``value``, counted all the way down (a list that holds the
    same list twice counts it twice); counting stops soon after passing ``stop``."""
    total = 0
    stack = [value]
    while stack and total <= stop:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def check_size(value: object, what: str) -> object:
    """Return ``value``, or refuse it when it is over :data:`MAX_VALUE_SIZE`."""
    size = size_of(value)
    if size > MAX_VALUE_SIZE:
        raise limit_error(f"{what} would make a value over {MAX_VALUE_SIZE} characters or items")
    return value


def _refuse_size(size: int, what: str) -> None:
    if size > MAX_VALUE_SIZE:
        raise limit_error(
            f"{what} would make a value of {size} characters or items, "
            f"over the limit of {MAX_VALUE_SIZE}"
        )


def _refuse_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise limit_error(
            f"{what} would make an integer of about {bits} bits, over the limit of {MAX_INT_BITS}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- the budget of one render -----------------------------------------------------------------


@dataclass
class _Budget:
    steps: int = 0
    written: int = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_TEMPLATE_STEPS:
            raise limit_error(
                f"the template made more than {MAX_TEMPLATE_STEPS} loop steps and calls"
            )

    def write(self, value: object) -> None:
        self.written += len(value) if isinstance(value, str) else size_of(value)
        if self.written > MAX_VALUE_SIZE:
            raise limit_error(f"the template wrote more than {MAX_VALUE_SIZE} characters")


_BUDGET: ContextVar[_Budget | None] = ContextVar("fetchflow_template_budget", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """A fresh budget for one render (nested renders, such as includes, share it)."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _budget() -> _Budget:
    # Outside a render (constant folding while compiling) only the sizes are checked.
    return _BUDGET.get() or _Budget()


def count_step() -> None:
    """One loop step or call against the current render's budget."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()


# -- operators --------------------------------------------------------------------------------


def check_binop(operator: str, left: object, right: object) -> None:
    """Refuse ``left <operator> right`` when its result would be over the limits."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and _is_int(times):
                count = int(times)  # type: ignore[call-overload]
                if count > 1:
                    _refuse_size(size_of(seq, MAX_VALUE_SIZE // count + 1) * count, "'*'")
                return
        if _is_int(left) and _is_int(right):
            _refuse_bits(int(left).bit_length() + int(right).bit_length(), "'*'")  # type: ignore[call-overload]
    elif operator == "**":
        if _is_int(left) and _is_int(right) and int(right) > 0:  # type: ignore[call-overload]
            base = abs(int(left))  # type: ignore[call-overload]
            if base > 1:
                _refuse_bits(base.bit_length() * int(right), "'**'")  # type: ignore[call-overload]
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _refuse_size(size_of(left) + size_of(right), "'+'")
    elif operator == "%" and isinstance(left, str):
        check_printf(left, right)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_printf(text: str, args: object) -> None:
    """Refuse ``text % args`` when a width or precision would pad past the limit."""
    values = args if isinstance(args, tuple) else (args,)
    for width, precision in _PRINTF.findall(text):
        for number in (width, precision):
            if number == "*":
                _refuse_size(
                    max([int(v) for v in values if _is_int(v)] or [0]), "a '*' width in '%'"
                )
            elif number:
                _refuse_size(int(number), f"the width {number} in '%'")


_SPEC_NUMBER = re.compile(r"\d+")


def check_format_spec(spec: str) -> None:
    """Refuse a ``str.format`` spec whose width or precision would pad past the limit."""
    for number in _SPEC_NUMBER.findall(spec):
        _refuse_size(int(number), f"the width {number} in a format spec")


def check_format_string(text: str) -> None:
    """Refuse a ``str.format`` string whose literal specs pad past the limit."""
    for _, _, spec, _ in string.Formatter().parse(text):
        if spec and "{" not in spec:
            check_format_spec(spec)


def bounded_str_format(env: Environment, method: Any) -> Callable[..., str] | None:
    """``str.format``/``format_map`` for the sandbox, with every field's width bounded
    (nested ``{:>{w}}`` widths included, checked once they are known)."""
    owner = getattr(method, "__self__", None)
    if type(owner) is not str or getattr(method, "__name__", "") not in ("format", "format_map"):
        return None
    check_format_string(owner)
    formatter = _BoundedFormatter(env)
    is_map = method.__name__ == "format_map"

    @wraps(method)
    def format_text(*args: Any, **kwargs: Any) -> str:
        if not is_map:
            return formatter.vformat(owner, args, kwargs)
        if kwargs or len(args) != 1:
            raise TypeError("format_map() takes exactly one argument")
        return formatter.vformat(owner, (), args[0])

    return format_text


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec)
        return super().format_field(value, format_spec)


# -- calls ------------------------------------------------------------------------------------


def _str_method_size(owner: str, name: str, args: tuple[Any, ...]) -> int | None:
    """The size of what ``owner.<name>(*args)`` would return, for the methods that grow."""
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        return max(len(owner), int(args[0]))
    if name == "expandtabs":
        tab = int(args[0]) if args and _is_int(args[0]) else 8
        return len(owner) + owner.count("\t") * max(tab, 0)
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], str(args[1])
        found = owner.count(old) if old else len(owner) + 1
        if len(args) > 2 and _is_int(args[2]) and int(args[2]) >= 0:
            found = min(found, int(args[2]))
        return len(owner) + found * max(len(new) - len(old), 0)
    if name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple | str):
            return size_of(items) + len(owner) * len(items)
    return None


def check_call(function: object, args: tuple[Any, ...]) -> None:
    """Count a call against the budget; refuse a string method that would grow too much."""
    count_step()
    owner = getattr(function, "__self__", None)
    name = getattr(function, "__name__", "")
    if isinstance(owner, str):
        size = _str_method_size(owner, name, args)
        if size is not None:
            _refuse_size(size, f"str.{name}()")


def bounded_lipsum(original: Callable[..., str]) -> Callable[..., str]:
    """``lipsum`` with its paragraph and word counts bounded."""

    @wraps(original)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        _refuse_size(int(n) * int(max) * 12, "lipsum()")
        return original(n, html, min, max)

    return lipsum


# -- filters ----------------------------------------------------------------------------------


def _filter_size(
    name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    def arg(index: int, key: str, default: Any) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    if name == "center":
        width = arg(0, "width", 80)
        return int(width) if _is_int(width) else None
    if name == "indent":
        width = arg(0, "width", 4)
        text = str(value)
        pad = len(width) if isinstance(width, str) else int(width) if _is_int(width) else 0
        return len(text) + (text.count("\n") + 1) * max(pad, 0)
    if name == "replace" and isinstance(value, str):
        return _str_method_size(
            value, "replace", (arg(0, "old", ""), arg(1, "new", ""), arg(2, "count", -1))
        )
    if name == "format" and isinstance(value, str):
        check_printf(value, args or tuple(kwargs.values()))
        return None
    if name == "join" and isinstance(value, list | tuple):
        return size_of(value) + len(str(arg(0, "d", ""))) * len(value)
    if name == "wordwrap":
        text = str(value)
        width = arg(0, "width", 79)
        wrap = arg(2, "wrapstring", None)
        lines = text.count("\n") + 1 + len(text) // max(int(width) if _is_int(width) else 1, 1)
        return len(text) + lines * len(str(wrap or "\n"))
    if name in ("batch", "slice"):
        count = arg(0, "linecount" if name == "batch" else "slices", 1)
        return int(count) if _is_int(count) else None
    return None


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Every filter wrapped: growth checked before it runs, text results after."""
    return {name: _bounded_filter(name, function) for name, function in filters.items()}


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    passes_context = getattr(function, "jinja_pass_arg", None) is not None

    @wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        lead, rest = (args[:1], args[1:]) if passes_context else ((), args)
        if rest:
            value, more = rest[0], rest[1:]
            if name == "join" and not isinstance(value, list | tuple | str | dict):
                value = list(_counted(value))
            size = _filter_size(name, value, more, kwargs)
            if size is not None:
                _refuse_size(size, f"the filter {name}")
            args = (*lead, value, *more)
        result = function(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_VALUE_SIZE:
            _refuse_size(len(result), f"the filter {name}")
        return result

    return bounded


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    for total, item in enumerate(items, 1):
        if total > MAX_VALUE_SIZE:
            _refuse_size(total, "a sequence")
        yield item


# -- the template tree ------------------------------------------------------------------------


@pass_context
def _iterate(context: Context, items: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in items:
        budget.step()
        yield item


@pass_context
def _concat(context: Context, values: tuple[Any, ...]) -> str:
    texts = [value if isinstance(value, str) else str(value) for value in values]
    _refuse_size(sum(len(text) for text in texts), "'~'")
    return "".join(texts)


@pass_context
def _output(context: Context, value: Any) -> Any:
    _budget().write(value)
    return value


@pass_context
def _built(context: Context, value: Any) -> Any:
    return check_size(value, "a list or mapping")


HOOKS: dict[str, Callable[..., Any]] = {
    "fetchflow_iterate": _iterate,
    "fetchflow_concat": _concat,
    "fetchflow_output": _output,
    "fetchflow_built": _built,
}
"""Filters the rewritten template code calls. They take the context only so that Jinja's
optimizer never runs them while compiling (their counts belong to the render)."""


def transform(template: nodes.Template) -> nodes.Template:
    """Rewrite a parsed template so loops, ``~``, output and literals go through the hooks."""

    def hook(name: str, node: nodes.Expr) -> nodes.Expr:
        call = nodes.Filter(node, name, [], [], None, None)
        call.set_lineno(node.lineno or 1)
        return call

    class Rewriter(NodeTransformer):
        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)
            node.iter = hook("fetchflow_iterate", cast(nodes.Expr, node.iter))
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            values = nodes.Tuple(list(node.nodes), "load")
            values.set_lineno(node.lineno or 1)
            return hook("fetchflow_concat", values)

        def visit_Output(self, node: nodes.Output) -> nodes.Node:
            self.generic_visit(node)
            node.nodes = [hook("fetchflow_output", child) for child in node.nodes]
            return node

        def visit_List(self, node: nodes.List) -> nodes.Node:
            self.generic_visit(node)
            return hook("fetchflow_built", node)

        def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
            self.generic_visit(node)
            return hook("fetchflow_built", node)

        def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
            self.generic_visit(node)
            return hook("fetchflow_built", node) if node.ctx == "load" else node

    result: nodes.Template = Rewriter().visit(template)
    return result
