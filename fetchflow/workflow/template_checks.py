"""Static checks of templates: syntax, refused attributes, and every reference path.

A mixin of the workflow checker (:mod:`fetchflow.workflow.checking`): it reads the checker's source
map, header and step tables, and reports through its ``add``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fetchflow.step import OutputLength, Step
from fetchflow.templating import Templates
from fetchflow.workflow.loading import DataPath, SourceMap, Span, path_text
from fetchflow.workflow.references import (
    Reference,
    check_index,
    check_path,
    closest,
    find_references,
    simple_references,
    unsafe_attributes,
)
from fetchflow.workflow.spec import InputSpec, StepCommon, WorkflowHeader

if TYPE_CHECKING:
    from jinja2 import nodes

    from fetchflow.errors import Problem

__all__ = ["RUN_FIELDS", "TemplateChecks"]

RUN_FIELDS = {"id": "string", "name": "string", "started_at": "string"}

# Kept equal to fetchflow.template_limits.LIMITS_HINT by a test (that module imports Jinja).
LIMITS_HINT = (
    "templates may build values of at most 1000000 characters or items, integers of 10000 "
    "bits, and make 100000 loop steps and calls per field: build smaller values, or do the "
    "heavy work in a step"
)


def private_format_fields(ast: nodes.Template) -> list[tuple[str, int]]:
    """Private names reached through a constant format string: ``'{0.__class__}'.format(x)``
    (``format_map`` too), refused by the sandbox at run time, so refused here before it."""
    import string
    from _string import formatter_field_name_split  # type: ignore[import-not-found]

    from jinja2 import nodes

    found: list[tuple[str, int]] = []
    for call in ast.find_all(nodes.Call):
        method = call.node
        if not (
            isinstance(method, nodes.Getattr)
            and method.attr in ("format", "format_map")
            and isinstance(method.node, nodes.Const)
            and isinstance(method.node.value, str)
        ):
            continue
        try:
            fields = [
                name
                for _, name, spec, _ in string.Formatter().parse(method.node.value)
                for name in (name, *_nested_fields(spec or ""))
                if name
            ]
            for name in fields:
                _, rest = formatter_field_name_split(name)
                private = next((str(key) for _, key in rest if str(key).startswith("_")), None)
                if private is not None:  # the first is enough: the sandbox stops there
                    found.append((private, call.lineno))
        except ValueError:  # a malformed format string: the run reports it
            continue
    return found


# The methods Jinja's immutable sandbox refuses on lists, mappings and sets (its
# ``_mutable_spec``); no other value a template holds has them.
CHANGING_METHODS = frozenset(
    {"add", "append", "appendleft", "clear", "difference_update", "discard", "extend"}
    | {"extendleft", "insert", "pop", "popitem", "popleft", "remove", "reverse", "rotate"}
    | {"setdefault", "sort", "symmetric_difference_update", "update"}
)
CHANGE_HINT = (
    "build a new value instead: << items + [x] >>, << dict(a, key=value) >>, or keep a "
    "running value in <% set ns = namespace(items=[]) %> with <% set ns.items = ns.items + [x] %>"
)


def changing_calls(ast: nodes.Template, names: frozenset[str]) -> list[tuple[str, int]]:
    """Calls of methods that change a value (``<< l.append(1) >>``), refused by the sandbox
    at run time. Those on a reference (``inputs.tags.append``) are left to the reference
    check, which says what the path holds."""
    from jinja2 import nodes

    stored = {node.name for node in ast.find_all(nodes.Name) if node.ctx != "load"}
    found: list[tuple[str, int]] = []
    for call in ast.find_all(nodes.Call):
        method = call.node
        if not (isinstance(method, nodes.Getattr) and method.attr in CHANGING_METHODS):
            continue
        base: nodes.Node = method.node
        while isinstance(base, nodes.Getattr | nodes.Getitem):
            base = base.node
        if isinstance(base, nodes.Name) and base.name not in stored and base.name not in names:
            continue
        found.append((method.attr, call.lineno))
    return found


def _nested_fields(spec: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(spec) if name]


def constant_work(ast: nodes.Template, names: frozenset[str]) -> list[nodes.Expr]:
    """The largest expressions made only of constants (and the globals in ``names``) that
    compute something: an operator, a call or a filter."""
    from jinja2 import nodes

    stored = {node.name for node in ast.find_all(nodes.Name) if node.ctx != "load"}
    work = (nodes.BinExpr, nodes.Call, nodes.Filter, nodes.Concat, nodes.UnaryExpr)

    def constant(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Name):
            return node.name in names and node.name not in stored
        if isinstance(node, nodes.Call) and not isinstance(node.node, nodes.Name | nodes.Getattr):
            return False
        return isinstance(node, nodes.Expr) and all(
            constant(child) for child in node.iter_child_nodes()
        )

    found: list[nodes.Expr] = []

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.Expr) and constant(node):
            if isinstance(node, work) or any(node.find_all(work)):
                found.append(node)
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(ast)
    return found


def _needle(node: nodes.Expr) -> str:
    """Text to find an expression by on its line: its operator, method or filter."""
    from jinja2 import nodes

    if isinstance(node, nodes.BinExpr):
        return node.operator
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        return node.node.attr
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
        return node.node.name
    if isinstance(node, nodes.Filter):
        return node.name or ""
    return ""


class TemplateChecks:
    """Template checking for the workflow checker (see `workflow.checking`)."""

    source: SourceMap
    templates: Templates
    header: WorkflowHeader | None
    declared_inputs: dict[str, InputSpec | None]
    step_ids: dict[str, int]
    step_types: dict[str, type[Step[Any, Any]]]
    output_lengths: dict[str, OutputLength]
    #: The output schema of steps whose output is not their type's (a matrix step's).
    output_schemas: dict[str, dict[str, Any]]
    file: str
    problems: list[Problem]
    add: Callable[..., None]

    def _template(
        self,
        text: str,
        path: DataPath,
        common: StepCommon,
        file: str,
        file_lines: list[str] | None,
        seen: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Check one template; return the steps it reads from."""
        who = (common.id, common.type)
        field = path_text(path[2:])

        # Successive references on one line are searched for after the previous one, so two
        # uses of the same name point at their own places.
        cursors: dict[int, int] = {}

        def where(lineno: int, needle: str) -> Span:
            if file_lines is None:
                span = self.source.text_position(path, lineno, needle, cursors.get(lineno, 0))
            else:
                line = file_lines[lineno - 1] if 0 < lineno <= len(file_lines) else ""
                found = line.find(needle, max(cursors.get(lineno, 1) - 1, 0))
                span = Span(lineno, (found if found >= 0 else 0) + 1)
            cursors[lineno] = span.column + len(needle)
            return span

        simple = simple_references(text, self.templates.globals)
        if simple is not None:
            return [ref.root for ref in simple if self._reference(ref, common, where, field, file)]
        import jinja2
        import jinja2.meta

        try:
            ast = self.templates.parse(text)
            refused = [
                (lineno, name, f"{name!r} is a private attribute, templates cannot reach it", "")
                for name, lineno in [*unsafe_attributes(ast), *private_format_fields(ast)]
            ]
            refused += [
                (lineno, name, f"{name}() would change a value, templates cannot", CHANGE_HINT)
                for name, lineno in changing_calls(ast, self.templates.globals)
            ]
            refused += [(*found, LIMITS_HINT) for found in self._over_limits(ast, text)]
        except jinja2.TemplateSyntaxError as error:
            self.add(
                where(error.lineno or 1, ""),
                f"template syntax error: {error.message}",
                "values are written << expr >>, statements <% ... %>, comments <# ... #>",
                step=who,
                field=field,
                file=file,
            )
            return []
        except RecursionError:
            self.add(
                where(1, ""),
                "template refused: it nests too deeply to be read",
                "write it with fewer nested brackets, operators or blocks",
                step=who,
                field=field,
                file=file,
            )
            return []
        for lineno, needle, message, hint in refused:
            self.add(
                where(lineno, needle),
                f"template refused: {message}",
                hint or "templates may read inputs, run and step outputs only",
                step=who,
                field=field,
                file=file,
            )
        upstream: list[str] = []
        for reference in find_references(ast, self.templates.globals):
            if self._reference(reference, common, where, field, file):
                upstream.append(reference.root)
        for included in jinja2.meta.find_referenced_templates(ast):
            if included is None or included in seen:
                continue
            upstream += self._template_file(included, path, common, seen | {included})
        return upstream

    def _over_limits(self, ast: nodes.Template, text: str) -> list[tuple[int, str, str]]:
        """Parts of the template made only of constants that build too much when run
        (``'a' * 10**10``, ``range(10**9)``): run them, bounded, now rather than at run time.
        A template that reads nothing at all is run whole (its loops count too).
        """
        from jinja2 import nodes

        from fetchflow.template_limits import TemplateLimitError

        found: list[tuple[int, str, str]] = []
        if not find_references(ast, self.templates.globals) and any(
            ast.find_all((nodes.For, nodes.Macro, nodes.CallBlock))
        ):
            try:
                self.templates.render(text, {})
            except TemplateLimitError as error:
                return [(1, "", str(error))]
            except Exception:  # an include that reads the scope: the run reports it
                pass
        for node in constant_work(ast, self.templates.globals):
            try:
                self.templates.evaluate(node)
            except TemplateLimitError as error:
                found.append((node.lineno, _needle(node), str(error)))
            except Exception:  # other failures depend on the run's values: the run reports them
                continue
        return found

    def _template_file(
        self, name: str, path: DataPath, common: StepCommon, seen: frozenset[str] = frozenset()
    ) -> list[str]:
        import jinja2

        try:
            source, filename = self.templates.file_source(name)
        except jinja2.TemplateNotFound:
            folders = ", ".join(str(p) for p in self.templates.search_path) or "none found"
            self.add(
                self.source.value(path),
                f'template file "{name}" not found',
                f"put it in a templates/ folder next to the workflow (searched: {folders})",
                step=(common.id, common.type),
                field=path_text(path[2:]),
            )
            return []
        return self._template(source, path, common, filename, source.splitlines(), seen | {name})

    def _reference(
        self, ref: Reference, common: StepCommon, where: Any, field: str, file: str
    ) -> bool:
        """Check a reference; return True when it reads another step's output."""
        who = (common.id, common.type)
        span = where(ref.lineno, ref.text if ref.exact else ref.root)

        def report(message: str, hint: str) -> None:
            self.add(span, message, hint, step=who, field=field, file=file)

        if ref.root == "inputs":
            inputs = self.declared_inputs
            if not ref.path:
                return False
            name = str(ref.path[0])
            if name in inputs and inputs[name] is None:
                return False  # declared but invalid: reported where it is declared
            spec = inputs.get(name)
            if spec is None:
                suggestion = closest(name, list(inputs))
                declared = ", ".join(inputs) or "none"
                report(
                    f'"{ref.text}": no input "{name}" is declared'
                    + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                    f"use inputs.{suggestion}"
                    if suggestion
                    else f"declare it under inputs: (declared: {declared})",
                )
                return False
            failure = check_path(spec.json_schema(), ref.path[1:], f"inputs.{name}")
            if failure:
                report(f'"{ref.text}": {failure[0]}', failure[1])
            return False
        if ref.root == "run":
            if ref.path and str(ref.path[0]) not in RUN_FIELDS:
                suggestion = closest(str(ref.path[0]), list(RUN_FIELDS))
                report(
                    f'"{ref.text}": run has no field "{ref.path[0]}"'
                    + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                    f"fields of run: {', '.join(RUN_FIELDS)}",
                )
            return False
        if ref.root == "matrix":
            self._matrix_reference(ref, common, field, report)
            return False
        if ref.root == common.id:
            report(
                f'"{ref.text}": a step cannot use its own output',
                "reference an earlier step, or split this step in two",
            )
            return False
        step_cls = self.step_types.get(ref.root)
        if step_cls is None and ref.root in self.step_ids:
            return True  # that step has problems of its own, reported there
        if step_cls is None:
            names = ["inputs", "run", *self.step_ids]
            suggestion = closest(ref.root, names)
            report(
                f'"{ref.text}": unknown name "{ref.root}"'
                + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                f"use {suggestion}"
                if suggestion
                else f"templates can use inputs, run and step ids ({', '.join(self.step_ids)})",
            )
            return False
        if ref.path and ref.path[0] != "output":
            suggestion = "output"
            report(
                f'"{ref.text}": a step exposes only "output", got "{ref.path[0]}"',
                f"use {ref.root}.{suggestion}" + "".join(f".{p}" for p in ref.path[1:]),
            )
            return True
        schema = self.output_schemas.get(ref.root) or step_cls.output_schema()
        failure = check_path(schema, ref.path[1:], f"{ref.root}.output")
        length = self.output_lengths.get(ref.root)
        if failure is None and length is not None and not ref.guarded:
            failure = check_index(length, ref.path[1:], f"{ref.root}.output")
        if failure:
            report(f'"{ref.text}": {failure[0]}', failure[1])
        return True

    def _matrix_reference(
        self, ref: Reference, common: StepCommon, field: str, report: Callable[[str, str], None]
    ) -> None:
        """``matrix.<axis>``: only in a step with a matrix, only its axes, not in an axis."""
        axes = common.matrix
        if axes is None:
            report(
                f'"{ref.text}": matrix values exist only in a step with a matrix',
                "add matrix: {axis: [values]} to this step, or use inputs or a step's output",
            )
            return
        if field == "matrix" or field.startswith("matrix."):
            report(
                f'"{ref.text}": a matrix axis cannot read matrix values',
                "give the axis its values as a list, or from inputs or a step's output",
            )
            return
        if not ref.path:
            return
        name = str(ref.path[0])
        if name not in axes:
            suggestion = closest(name, list(axes))
            report(
                f'"{ref.text}": the matrix has no axis "{name}"'
                + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                f"use matrix.{suggestion}"
                if suggestion
                else f"axes of this matrix: {', '.join(axes)}",
            )
            return
        values = axes[name]
        if isinstance(values, list) and len(ref.path) > 1:
            schema = _values_schema(values)
            failure = check_path(schema, ref.path[1:], f"matrix.{name}")
            if failure:
                report(f'"{ref.text}": {failure[0]}', failure[1])


def _values_schema(values: list[Any]) -> dict[str, Any]:
    """A loose schema of one written axis value, to check paths into it (``matrix.size.w``):
    objects when every value is one (their common keys), else anything."""
    if values and all(isinstance(value, dict) for value in values):
        keys = set(values[0]).intersection(*values[1:])
        return {"type": "object", "properties": {key: {} for key in sorted(keys)}}
    return {}
