"""Running one step: render its templates, validate the result, call the step.

Pure of Prefect: the runner calls :func:`execute_step` inside a task run. Every failure is a
:class:`~fetchflow.errors.RunError` whose message names the step and the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import jinja2
from pydantic import BaseModel, ValidationError

from fetchflow.errors import RunError, StepError, TemplateError
from fetchflow.field_issues import describe_value, translate_errors
from fetchflow.run.matrix_execution import execute_matrix
from fetchflow.step import StepContext
from fetchflow.templating import Templates
from fetchflow.workflow.plan import PlannedStep
from fetchflow.workflow.references import find_references, missing_item, simple_references

__all__ = ["execute_step", "render_config", "run_config", "validated_config"]


def render_config(
    step: PlannedStep, templates: Templates, scope: Mapping[str, object]
) -> dict[str, object]:
    """The step's fields with every template rendered against ``scope``.

    Raises:
        TemplateError: A template failed (undefined path, refused attribute, filter error).
    """
    rendered: dict[str, object] = {}
    for name, value in step.raw_config.items():
        if name not in step.templated:
            rendered[name] = value
            continue
        try:
            rendered[name] = templates.render_value(value, scope)
        except jinja2.exceptions.SecurityError as error:
            raise TemplateError(
                message=f'field "{name}": template refused: {error}',
                # A limit refusal (fetchflow.template_limits) says the limits in its hint.
                hint=getattr(error, "hint", "templates may read inputs, run and step outputs only"),
                step_id=step.id,
                field=name,
                retryable=False,
            ) from None
        except jinja2.TemplateError as error:
            past_end = _past_end(value, templates, scope)
            raise TemplateError(
                message=f'field "{name}": template failed: {past_end or error}',
                hint="check the references in this field against the upstream outputs "
                "(fetchflow validate checks list indexes only against lengths written out, "
                "such as count: 2; a length set by a template is known once its step has run)",
                step_id=step.id,
                field=name,
                retryable=False,
            ) from None
    return rendered


def _past_end(value: object, templates: Templates, scope: Mapping[str, object]) -> str | None:
    """Which reference of a failed field reads past the end of a list, said plainly."""
    texts: list[object] = (
        list(value.values())
        if isinstance(value, dict)
        else list(value)
        if isinstance(value, list)
        else [value]
    )
    for text in texts:
        if not isinstance(text, str):
            continue
        references = simple_references(text, templates.globals)
        if references is None:
            references = find_references(templates.parse(text), templates.globals)
        found = missing_item(references, scope)
        if found:
            return found
    return None


def validated_config(
    step: PlannedStep,
    templates: Templates,
    scope: Mapping[str, object],
    overrides: Mapping[str, object] | None = None,
) -> BaseModel:
    """The step's config with its templates rendered, a reviewer's edits applied, validated.

    Edited values are taken as they are: they are not templates.

    Raises:
        RunError: A template failed or a rendered value breaks a field's rule.
    """
    rendered = render_config(step, templates, scope)
    rendered.update(overrides or {})
    try:
        return step.step_cls.config_model.model_validate(rendered)
    except ValidationError as error:
        issues = translate_errors(error, list(step.step_cls.config_model.model_fields))
        first = issues[0]
        raw = step.raw_config.get(str(first.loc[0])) if first.loc else None
        origin = (
            f" (rendered from {describe_value(raw)})"
            if first.loc and str(first.loc[0]) in step.templated
            else ""
        )
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise StepError(
            message=f'field "{first.field}": {first.message}{origin}{more}',
            hint=first.hint,
            step_id=step.id,
            retryable=False,
        ) from None


def execute_step(
    step: PlannedStep,
    templates: Templates,
    ctx: StepContext,
    overrides: Mapping[str, object] | None = None,
) -> object:
    """Render, validate and run one step; return its output as JSON data.

    Args:
        step: The planned step.
        templates: The run's template environment.
        ctx: The step's run context (its ``scope`` renders the templates).
        overrides: Values a reviewer set when approving the step.

    A step with ``matrix:`` runs once per combination (:mod:`fetchflow.run.matrix_execution`).

    Raises:
        RunError: Any failure, with the step id filled in.
    """
    if step.common.matrix is not None:
        return execute_matrix(
            step,
            templates,
            ctx,
            lambda scope: validated_config(step, templates, scope, overrides),
        )
    return run_config(step, validated_config(step, templates, ctx.scope, overrides), ctx)


def run_config(step: PlannedStep, config: BaseModel, ctx: StepContext) -> object:
    """Run a step with its validated config; return its output as JSON data.

    Raises:
        RunError: Any failure, with the step id filled in.
    """
    try:
        output = step.step_cls().run(config, ctx)
    except RunError as error:
        error.step_id = error.step_id or step.id
        raise
    return step.step_cls.dump_output(output)
