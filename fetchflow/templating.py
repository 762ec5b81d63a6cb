"""The one Jinja environment every workflow value is rendered with.

Syntax (YAML-safe, so values need no quoting)::

    << expr >>      a value            (``{{ expr }}`` is accepted too)
    <% stmt %>      a statement        (``{% stmt %}`` is accepted too)
    <# comment #>   a comment          (``{# comment #}`` is accepted too)

A value that is exactly one expression resolves to the native value: ``<<hero.output>>`` is
the list itself, ``<<inputs.count>>`` the integer. Inside longer text, strings are inserted
as they are and every other value as JSON.

The environment is sandboxed (``jinja2.sandbox``), undefined names and paths are errors, and
rendered values are data: they are never rendered again. The ``templates/`` folders are on
the loader path, so ``<% include "brand_style.j2" %>`` works in any prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "EXPRESSION_KEYWORDS",
    "IMPLICIT_NAMES",
    "JINJA_GLOBALS",
    "TEMPLATE_MARKERS",
    "Templates",
    "canonical",
    "is_template",
    "to_text",
]

TEMPLATE_MARKERS = ("<<", "<%", "<#", "{{", "{%", "{#")

_ALTERNATE_SYNTAX = (
    (re.compile(r"\{\{(.*?)\}\}", re.DOTALL), r"<<\1>>"),
    (re.compile(r"\{%(.*?)%\}", re.DOTALL), r"<%\1%>"),
    (re.compile(r"\{#(.*?)#\}", re.DOTALL), r"<#\1#>"),
)


def is_template(value: str) -> bool:
    """Whether a string holds template syntax (and so must be rendered)."""
    return any(marker in value for marker in TEMPLATE_MARKERS)


def canonical(source: str) -> str:
    """Rewrite the accepted ``{{ }}``, ``{% %}``, ``{# #}`` forms to the canonical ones."""
    if "{" not in source:
        return source
    for pattern, replacement in _ALTERNATE_SYNTAX:
        source = pattern.sub(replacement, source)
    return source


def to_text(value: object) -> str:
    """How a value reads inside text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _concat(values: Iterable[Any]) -> Any:
    """One output node gives its native value; several are joined as text."""
    head = list(islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return head[0]
    return "".join(to_text(value) for value in chain(head, values))


JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
IMPLICIT_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self"})
"""Names Jinja defines inside loops, macros and blocks (never the scope's)."""
EXPRESSION_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none"}
    | {"True", "False", "None"}
)
"""Words an expression reads as operators or constants, not as names."""
"""The names Jinja's environment provides by itself (kept equal to ``env.globals`` by a test,
so the static check can know them without importing Jinja)."""


@cache
def _environment_class() -> type[ImmutableSandboxedEnvironment]:
    """Jinja is imported on first use: ``fetchflow validate`` rarely needs it."""
    from jinja2 import Undefined
    from jinja2.nativetypes import NativeCodeGenerator, NativeTemplate
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def strict(value: Any) -> Any:
        # Native rendering never calls str(), so undefined values must fail here.
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return value

    from fetchflow import template_limits as limits

    class Template(NativeTemplate):
        pass

    class Environment(ImmutableSandboxedEnvironment):
        """Sandboxed, strict, native-valued, with the YAML-safe delimiters, and bounded:
        what a template builds and how long it works (see :mod:`fetchflow.template_limits`).
        """

        code_generator_class = NativeCodeGenerator
        template_class = Template
        concat = staticmethod(_concat)
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def __init__(self, **options: Any) -> None:
            super().__init__(finalize=strict, **options)
            self.filters = {**limits.bounded_filters(self.filters), **limits.HOOKS}
            lipsum = cast("Callable[..., str]", self.globals["lipsum"])
            self.globals["lipsum"] = limits.bounded_lipsum(lipsum)

        def _generate(self, source: Any, *args: Any, **kwargs: Any) -> Any:
            return super()._generate(limits.transform(source), *args, **kwargs)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            limits.check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            limits.check_call(__obj, args)
            result = super().call(__context, __obj, *args, **kwargs)
            if isinstance(result, str):
                limits.check_size(result, "this call")
            return result

        def wrap_str_format(self, value: Any) -> Any:
            return limits.bounded_str_format(self, value) or super().wrap_str_format(value)

    Template.environment_class = Environment  # type: ignore[assignment]
    return Environment


@contextmanager
def _bounded() -> Iterator[None]:
    """One render's budget; Python's own limits reached by a template become refusals."""
    from fetchflow import template_limits as limits

    try:
        with limits.render_budget():
            yield
    except RecursionError:
        raise limits.limit_error(
            "the template nests too deeply (macros or includes that call themselves?)"
        ) from None
    except OverflowError as error:  # range() past the sandbox's MAX_RANGE, float overflow
        raise limits.limit_error(str(error)) from None
    except MemoryError:
        raise limits.limit_error("the template ran out of memory") from None


class Templates:
    """Parses and renders workflow templates.

    Args:
        search_path: Folders searched, in order, by ``include``/``import`` and by
            :meth:`render_file`.
    """

    def __init__(self, search_path: Sequence[Path] = ()) -> None:
        self.search_path = tuple(search_path)
        self._env: ImmutableSandboxedEnvironment | None = None

    @property
    def env(self) -> ImmutableSandboxedEnvironment:
        """The Jinja environment (created on first use)."""
        if self._env is None:
            self._env = self._make_env()
        return self._env

    def _make_env(self) -> ImmutableSandboxedEnvironment:
        from jinja2 import FileSystemLoader, StrictUndefined

        env = _environment_class()(
            variable_start_string="<<",
            variable_end_string=">>",
            block_start_string="<%",
            block_end_string="%>",
            comment_start_string="<#",
            comment_end_string="#>",
            undefined=StrictUndefined,
            loader=FileSystemLoader([str(path) for path in self.search_path]),
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
        return env

    @property
    def globals(self) -> frozenset[str]:
        """Names the environment provides by itself (``range``, ``namespace``, ...)."""
        return JINJA_GLOBALS

    def parse(self, source: str) -> nodes.Template:
        """Parse a template (raises ``jinja2.TemplateSyntaxError``)."""
        return self.env.parse(canonical(source))

    def evaluate(self, expression: nodes.Expr) -> object:
        """Run one expression of a parsed template that reads nothing from the scope
        (used by ``validate`` to try constant work within the limits).

        Raises:
            jinja2.TemplateError: As :meth:`render`.
        """
        import copy

        from jinja2 import nodes

        tree = nodes.Template([nodes.Output([copy.deepcopy(expression)])])
        tree.set_environment(self.env)
        tree.set_lineno(expression.lineno or 1)
        with _bounded():
            code = self.env.compile(tree)
            template = self.env.template_class.from_code(self.env, code, self.env.globals)
            return template.render({})

    def file_source(self, name: str) -> tuple[str, str]:
        """The source of a template file on the search path and its full path.

        Raises:
            jinja2.TemplateNotFound: No folder on the search path holds ``name``.
        """
        source, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        return source, filename or name

    def render(self, source: str, scope: Mapping[str, object]) -> object:
        """Render one value: native when it is exactly one expression, else text.

        Raises:
            jinja2.TemplateError: The template is broken, reads something undefined, or was
                refused (a ``template_limits.TemplateLimitError`` when it went past the
                limits of what a template may build or do).
        """
        with _bounded():
            template = self.env.from_string(canonical(source))
            return template.render(scope)

    def render_text(self, source: str, scope: Mapping[str, object]) -> str:
        """Render a template and always return text."""
        return to_text(self.render(source, scope))

    def render_file(self, name: str, scope: Mapping[str, object]) -> str:
        """Render a template file from the search path as text.

        Raises:
            jinja2.TemplateError: As :meth:`render`.
            fetchflow.errors.TemplateError: The file went past the template limits.
        """
        from fetchflow import template_limits as limits
        from fetchflow.errors import TemplateError

        try:
            with _bounded():
                template = self.env.get_template(name)
                return to_text(template.render(scope))
        except limits.TemplateLimitError as error:
            raise TemplateError(
                message=f'template file "{name}": template refused: {error}',
                hint=error.hint,
                retryable=False,
            ) from None

    def render_value(self, value: object, scope: Mapping[str, object]) -> object:
        """Render every template string inside a value (lists and mappings included).

        Strings without template syntax and non-strings are returned as they are, and what
        a template produced is never looked at again.
        """
        if isinstance(value, str):
            return self.render(value, scope) if is_template(value) else value
        if isinstance(value, list):
            return [self.render_value(item, scope) for item in value]
        if isinstance(value, dict):
            return {key: self.render_value(item, scope) for key, item in value.items()}
        return value
