"""The static check: a workflow file becomes a :class:`~fetchflow.workflow.plan.Plan` or a
full report.

Everything is checked before anything runs, and every problem is collected (not just the
first): YAML syntax, duplicate and unknown keys, types and rules of every field, unknown
step types, template syntax, every reference path against the referenced step's output
schema, ``needs`` names and cycles. No Prefect, no network, no step code is run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fetchflow.errors import Problem, WorkflowInvalid
from fetchflow.field_issues import FieldIssue, describe_value, translate_errors
from fetchflow.registry import StepRegistry
from fetchflow.step import OutputLength, Step, project_root
from fetchflow.templating import Templates, is_template
from fetchflow.workflow.graph import cycle_text, find_cycles
from fetchflow.workflow.loading import DataPath, SourceMap, Span, load_yaml, path_text
from fetchflow.workflow.matrix import is_list_output, matrix_output_length, matrix_output_schema
from fetchflow.workflow.matrix_checks import combination_issues
from fetchflow.workflow.plan import Plan, PlannedStep
from fetchflow.workflow.references import (
    closest,
)
from fetchflow.workflow.spec import (
    RESERVED_IDS,
    STEP_COMMON_KEYS,
    TOP_LEVEL_KEYS,
    InputSpec,
    StepCommon,
    WorkflowHeader,
)
from fetchflow.workflow.template_checks import TemplateChecks
from fetchflow.workflow.validation import validate_config

__all__ = ["check_file", "check_text", "template_search_path"]


def template_search_path(workflow_file: Path, extra: Path | None = None) -> list[Path]:
    """Folders searched for templates: ``extra``, the nearest ``templates/`` above the
    workflow file, and ``./templates``."""
    found: list[Path] = []
    if extra is not None:
        found.append(extra)
    for folder in [workflow_file.resolve().parent, *workflow_file.resolve().parents]:
        if (folder / "templates").is_dir():
            found.append(folder / "templates")
            break
    cwd_templates = Path.cwd() / "templates"
    if cwd_templates.is_dir():
        found.append(cwd_templates)
    unique: list[Path] = []
    for path in found:
        if path.resolve() not in [known.resolve() for known in unique]:
            unique.append(path)
    return unique


def check_file(path: Path, registry: StepRegistry, *, extra_templates: Path | None = None) -> Plan:
    """Check a workflow file.

    Raises:
        WorkflowInvalid: With every problem found, in file order.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise WorkflowInvalid(
            [
                Problem(
                    message=f"cannot read the workflow file: {reason}",
                    hint="check the path (fetchflow validate flows/<name>.yaml)",
                    file=str(path),
                )
            ]
        ) from None
    templates = Templates(template_search_path(path, extra_templates))
    return check_text(text, str(path), registry, templates, file_path=path)


def check_text(
    text: str,
    file: str,
    registry: StepRegistry,
    templates: Templates,
    *,
    file_path: Path | None = None,
) -> Plan:
    """Check a workflow given as text (``file`` is the name used in messages).

    Raises:
        WorkflowInvalid: With every problem found, in file order.
    """
    checker = _Checker(text, file, registry, templates)
    plan = checker.check(file_path or Path(file))
    if checker.problems or plan is None:
        raise WorkflowInvalid(checker.problems)
    return plan


class _Checker(TemplateChecks):
    def __init__(self, text: str, file: str, registry: StepRegistry, templates: Templates):
        loaded = load_yaml(text, file)
        self.data = loaded.data
        self.source: SourceMap = loaded.source
        self.problems: list[Problem] = list(loaded.problems)
        self.file = file
        self.registry = registry
        self.templates = templates
        self.header: WorkflowHeader | None = None
        # Declared inputs; None for one that is declared but invalid (reported on its own).
        self.declared_inputs: dict[str, InputSpec | None] = {}
        self.step_ids: dict[str, int] = {}
        self.broken: set[str] = set()
        self.step_types: dict[str, type[Step[Any, Any]]] = {}
        self.output_lengths: dict[str, OutputLength] = {}
        self.output_schemas: dict[str, dict[str, Any]] = {}
        self._syntax_failed = bool(loaded.problems) and loaded.data is None

    # -- reporting -------------------------------------------------------------------------

    def add(
        self,
        span: Span,
        message: str,
        hint: str,
        *,
        step: tuple[str | None, str | None] = (None, None),
        field: str | None = None,
        subject: str | None = None,
        file: str | None = None,
    ) -> None:
        self.problems.append(
            Problem(
                message=message,
                hint=hint,
                file=file or self.file,
                line=span.line,
                column=span.column,
                step_id=step[0],
                step_type=step[1],
                field=field,
                subject=subject,
            )
        )

    def add_issue(
        self,
        issue: FieldIssue,
        base: DataPath,
        step: tuple[str | None, str | None] = (None, None),
        subject: str | None = None,
        field_prefix: DataPath = (),
    ) -> None:
        path = (*base, *issue.loc)
        span = self.source.key(path[:-1] if issue.at_parent else path)
        field = path_text((*field_prefix, *issue.loc)) or None
        self.add(span, issue.message, issue.hint, step=step, field=field, subject=subject)

    # -- the whole file ----------------------------------------------------------------------

    def check(self, file_path: Path) -> Plan | None:
        if self._syntax_failed:
            return None
        data = self.data
        if data is None:
            self.add(Span(1, 1), "the file is empty", "start with name: and steps:")
            return None
        if not isinstance(data, dict):
            self.add(
                Span(1, 1),
                f"a workflow is a mapping with name and steps, got {type(data).__name__}",
                "start the file with name: <workflow name> and a steps: list",
            )
            return None
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self._unknown_key(key, (key,), TOP_LEVEL_KEYS, "workflow")
        self.header = self._header(data)
        steps = self._steps(data)
        if self.header is None or steps is None:
            return None
        return Plan(header=self.header, steps=steps, file=file_path, templates=self.templates)

    def _unknown_key(self, key: str, path: DataPath, known: tuple[str, ...], where: str) -> None:
        suggestion = closest(key, known)
        message = f'unknown key "{key}"' + (f'; did you mean "{suggestion}"?' if suggestion else "")
        hint = f"rename it to {suggestion}" if suggestion else f"{where} keys: {', '.join(known)}"
        self.add(self.source.key(path), message, hint, field=key)

    def _header(self, data: dict[str, Any]) -> WorkflowHeader | None:
        inputs = self._inputs(data.get("inputs", {}))
        raw = {
            key: data[key]
            for key in (
                "name",
                "description",
                "budget_usd",
                "approval",
                "approval_timeout_seconds",
            )
            if key in data
        }
        try:
            header = WorkflowHeader.model_validate(raw)
        except ValidationError as error:
            for issue in translate_errors(error, list(WorkflowHeader.model_fields)):
                self.add_issue(issue, ())
            return None
        if inputs is None:
            return None
        return header.model_copy(update={"inputs": inputs})

    def _inputs(self, raw: object) -> dict[str, InputSpec] | None:
        """Each input on its own, so one bad input does not hide the others."""
        if not isinstance(raw, dict):
            self.add(
                self.source.key(("inputs",)),
                f"inputs must be a mapping of names to input specs, got {type(raw).__name__}",
                "write inputs:, then one indented name: {type: string, default: ...} per input",
                field="inputs",
            )
            return None
        valid: dict[str, InputSpec] = {}
        ok = True
        for name, spec in raw.items():
            subject = f'input "{name}"'
            self.declared_inputs[name] = None
            if not name.isidentifier():
                fixed = re.sub(r"\W", "_", name)
                self.add(
                    self.source.key(("inputs", name)),
                    f"input name {name!r} is not an identifier (letters, digits, _)",
                    f"rename it to {fixed}",
                    subject=subject,
                )
                ok = False
                continue
            if spec is not None and not isinstance(spec, dict):
                self.add(
                    self.source.value(("inputs", name)),
                    f"an input is a mapping of its settings, got {describe_value(spec)}",
                    f"write {name}: {{type: string, default: ...}}",
                    subject=subject,
                )
                ok = False
                continue
            found, issues = validate_config(InputSpec, spec or {}, frozenset())
            if isinstance(found, InputSpec):
                valid[name] = self.declared_inputs[name] = found
            ok = ok and not issues
            for issue in issues:
                self.add_issue(issue, ("inputs", name), subject=subject)
        return valid if ok else None

    # -- steps -------------------------------------------------------------------------------

    def _steps(self, data: dict[str, Any]) -> dict[str, PlannedStep] | None:
        raw_steps = data.get("steps")
        if "steps" not in data:
            self.add(Span(1, 1), 'missing required key "steps"', "add a steps: list")
            return None
        if not isinstance(raw_steps, list) or not raw_steps:
            shown = "an empty list" if raw_steps == [] else describe_value(raw_steps)
            self.add(
                self.source.key(("steps",)),
                f"steps must be a non-empty list, got {shown}",
                "list the steps under steps:, each starting with '- id: ...'",
                field="steps",
            )
            return None
        commons: list[tuple[int, StepCommon, dict[str, object]]] = []
        for index, raw in enumerate(raw_steps):
            found = self._step_common(index, raw)
            if found is not None:
                commons.append((index, *found))
        planned: dict[str, PlannedStep] = {}
        for index, common, config in commons:
            step_cls = self.step_types.get(common.id)
            if step_cls is None:
                continue
            step = self._step(index, common, step_cls, config)
            if step is not None and common.id not in self.broken:
                planned[common.id] = step
        for cycle in find_cycles({sid: step.depends_on for sid, step in planned.items()}):
            first = min(cycle[:-1], key=lambda sid: self.step_ids[sid])
            self.add(
                self.source.key(("steps", self.step_ids[first], "id")),
                "steps depend on each other in a cycle: " + cycle_text(cycle),
                "remove one of these references or needs so the steps can run in order",
                step=(first, planned[first].type),
            )
        return planned if len(planned) == len(raw_steps) else None

    def _step_common(self, index: int, raw: object) -> tuple[StepCommon, dict[str, object]] | None:
        base: DataPath = ("steps", index)
        if not isinstance(raw, dict):
            self.add(
                self.source.value(base),
                f"each step is a mapping with id and type, got {type(raw).__name__}",
                "write the step as '- id: <name>' with 'type: <step type>' below it",
                field=f"steps.{index}",
            )
            return None
        step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        step_type = raw.get("type") if isinstance(raw.get("type"), str) else None
        who = (step_id or f"#{index + 1}", step_type)
        common_raw = {key: raw[key] for key in STEP_COMMON_KEYS if key in raw}
        config = {key: value for key, value in raw.items() if key not in STEP_COMMON_KEYS}
        try:
            common = StepCommon.model_validate(common_raw)
        except ValidationError as error:
            for issue in translate_errors(error, STEP_COMMON_KEYS):
                self.add_issue(issue, base, step=who)
            common = None
        step_cls = self.registry.get(step_type) if step_type else None
        if step_type == "":
            self.add(
                self.source.value((*base, "type")),
                "the step type is empty",
                f"step types: {', '.join(self.registry.names())} (see fetchflow steps)",
                step=who,
                field="type",
            )
        elif step_type is not None and step_cls is None:
            suggestion = closest(step_type, self.registry.names())
            self.add(
                self.source.value((*base, "type")),
                f'unknown step type "{step_type}"'
                + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                f"use {suggestion}"
                if suggestion
                else f"step types: {', '.join(self.registry.names())} (see fetchflow steps)",
                step=who,
                field="type",
            )
        if step_id is not None:
            if step_id in self.step_ids:
                first = self.source.key(("steps", self.step_ids[step_id], "id")).line
                self.add(
                    self.source.value((*base, "id")),
                    f'duplicate step id "{step_id}" (first used at line {first})',
                    "give every step its own id",
                    step=who,
                    field="id",
                )
                return None
            self.step_ids[step_id] = index
            if step_id in RESERVED_IDS:
                self.add(
                    self.source.value((*base, "id")),
                    f'"{step_id}" cannot be a step id: it means something else in templates',
                    f"rename the step, e.g. {step_id}_step",
                    step=who,
                    field="id",
                )
                return None
        if step_cls is None or step_id is None:
            return None
        if common is None:
            # The common keys have problems (reported): still check the step's own fields and
            # templates, so every problem of the file is reported at once. Never planned.
            needs = raw.get("needs")
            matrix = raw.get("matrix")
            common = StepCommon.model_construct(
                id=step_id,
                type=str(step_type),
                needs=[n for n in needs if isinstance(n, str)] if isinstance(needs, list) else [],
                # Its axis names still check matrix.<axis> references.
                matrix=matrix if isinstance(matrix, dict) else None,
            )
            self.broken.add(step_id)
        self.step_types[common.id] = step_cls
        templated = frozenset(key for key, value in config.items() if _has_template(value))
        length = step_cls.output_length(config, templated)
        if common.matrix is not None and common.id not in self.broken:
            self.output_schemas[common.id] = matrix_output_schema(step_cls)
            length = matrix_output_length(
                length, common.written_combinations, is_list_output(step_cls)
            )
        if length is not None:  # indexes into its output are checked against it
            self.output_lengths[common.id] = length
        return common, config

    def _step(
        self,
        index: int,
        common: StepCommon,
        step_cls: type[Step[Any, Any]],
        config: dict[str, object],
    ) -> PlannedStep | None:
        base: DataPath = ("steps", index)
        who = (common.id, common.type)
        before = len(self.problems)
        templated = frozenset(key for key, value in config.items() if _has_template(value))
        _, issues = validate_config(
            step_cls.config_model,
            config,
            templated,
            project_root=project_root(self.templates.search_path),
        )
        if not issues and common.matrix is not None:
            # Fields that read only matrix.<axis>: checked in each written-out combination.
            issues = combination_issues(
                step_cls.config_model,
                config,
                templated,
                common.matrix,
                common.matrix_mode,
                self.templates,
                project_root=project_root(self.templates.search_path),
            )
        known = [*STEP_COMMON_KEYS, *step_cls.config_model.model_fields]
        for issue in issues:
            if issue.message.startswith('unknown field "'):
                name = str(issue.loc[-1])
                suggestion = closest(name, known)
                if suggestion:
                    issue = FieldIssue(
                        issue.loc,
                        f'unknown field "{name}"; did you mean "{suggestion}"?',
                        f"rename {name} to {suggestion}",
                    )
                else:
                    issue = FieldIssue(
                        issue.loc,
                        f'unknown field "{name}"',
                        f"fields of {common.type}: "
                        + ", ".join(step_cls.config_model.model_fields),
                    )
            self.add_issue(issue, base, step=who)
        upstream: list[str] = []
        for path, text in _strings(config, (*base,)):
            if is_template(text):
                upstream += self._template(text, path, common, self.file, None)
        for axis, values in (common.matrix or {}).items():
            if isinstance(values, str) and is_template(values):
                upstream += self._template(values, (*base, "matrix", axis), common, self.file, None)
        for field_name in step_cls.template_file_fields:
            file_name = config.get(field_name)
            if isinstance(file_name, str) and not is_template(file_name):
                upstream += self._template_file(file_name, (*base, field_name), common)
        for need in common.needs:
            if need == common.id:
                self.add(
                    self.source.key((*base, "needs")),
                    "a step cannot need itself",
                    f"remove {need} from needs",
                    step=who,
                    field="needs",
                )
            elif need not in self.step_ids:
                suggestion = closest(need, list(self.step_ids))
                self.add(
                    self.source.key((*base, "needs")),
                    f'needs unknown step "{need}"'
                    + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                    f"use {suggestion}" if suggestion else "list ids of steps in this file",
                    step=who,
                    field="needs",
                )
            else:
                upstream.append(need)
        if len(self.problems) > before:
            return None
        order = sorted(set(upstream), key=self.step_ids.__getitem__)
        return PlannedStep(
            common=common,
            step_cls=step_cls,
            raw_config=config,
            templated=templated,
            depends_on=tuple(order),
            line=self.source.value(base).line,
        )


def _has_template(value: object) -> bool:
    return any(is_template(text) for _, text in _strings(value, ()))


def _strings(value: object, path: DataPath) -> Iterator[tuple[DataPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
