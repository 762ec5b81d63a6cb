"""A matrix step's fields checked for each combination, before the run.

When every axis of a step's matrix is written out, a field whose template reads only
``matrix`` (``model: << matrix.model >>``, ``images: << matrix.photo >>``) has a known value
in each combination: :func:`combination_issues` renders it there and validates the config as
``fetchflow validate`` does for written values (a model that refuses the step's quality, a
file that is not there). Each problem is reported once, for the first combination that has
it. A field that reads anything else (inputs, upstream outputs) stays a template and is
checked when the step runs, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fetchflow.field_issues import FieldIssue
from fetchflow.templating import Templates
from fetchflow.workflow.matrix import MatrixMode, combination_label, combinations
from fetchflow.workflow.validation import validate_config

__all__ = ["combination_issues"]


def combination_issues(
    model: type[BaseModel],
    config: Mapping[str, object],
    templated: frozenset[str],
    matrix: Mapping[str, object],
    mode: MatrixMode,
    templates: Templates,
    *,
    project_root: Path | None = None,
) -> list[FieldIssue]:
    """The problems of the config in each combination (see the module); their messages
    start with ``matrix <axis>=<value> ...:``.

    Args:
        model: The step's config model.
        config: The step's own fields as written.
        templated: The fields that hold a template.
        matrix: The step's axes (nothing is checked unless every one is a written list).
        mode: ``product`` or ``zip``.
        templates: The workflow's template environment.
        project_root: The folder files are named relative to.
    """
    if not templated or not all(isinstance(values, list) for values in matrix.values()):
        return []
    axes: dict[str, list[Any]] = {a: v for a, v in matrix.items() if isinstance(v, list)}
    found: list[FieldIssue] = []
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    for values in combinations(axes, mode):
        rendered = dict(config)
        waiting = set(templated)
        for name in templated:
            try:
                rendered[name] = templates.render_value(config[name], {"matrix": values})
            except Exception:  # reads more than matrix: it waits for the run
                continue
            waiting.discard(name)
        if waiting == set(templated):
            return []  # no field renders from the matrix alone, in any combination
        _, issues = validate_config(model, rendered, frozenset(waiting), project_root=project_root)
        for issue in issues:
            key = (issue.loc, issue.message)
            if key in seen:
                continue
            seen.add(key)
            label = combination_label(values)
            found.append(dataclasses.replace(issue, message=f"matrix {label}: {issue.message}"))
    return found
