"""Static checks of templates: syntax, refused attributes, and every reference path.

A mixin of the workflow checker (:mod:`fetchflow.checking`): it reads the checker's source
map, header and step tables, and reports through its ``add``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fetchflow.loading import DataPath, SourceMap, Span, path_text
from fetchflow.references import (
    Reference,
    check_path,
    closest,
    find_references,
    simple_references,
    unsafe_attributes,
)
from fetchflow.spec import InputSpec, StepCommon, WorkflowHeader
from fetchflow.step import Step
from fetchflow.templating import Templates

if TYPE_CHECKING:
    from fetchflow.errors import Problem

__all__ = ["RUN_FIELDS", "TemplateChecks"]

RUN_FIELDS = {"id": "string", "name": "string", "started_at": "string"}


class TemplateChecks:
    """Template checking for the workflow checker (see :class:`fetchflow.checking._Checker`)."""

    source: SourceMap
    templates: Templates
    header: WorkflowHeader | None
    declared_inputs: dict[str, InputSpec | None]
    step_ids: dict[str, int]
    step_types: dict[str, type[Step[Any, Any]]]
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
        for name, lineno in unsafe_attributes(ast):
            self.add(
                where(lineno, name),
                f"template refused: {name!r} is a private attribute, templates cannot reach it",
                "templates may read inputs, run and step outputs only",
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
        failure = check_path(step_cls.output_schema(), ref.path[1:], f"{ref.root}.output")
        if failure:
            report(f'"{ref.text}": {failure[0]}', failure[1])
        return True
