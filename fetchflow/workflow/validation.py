"""Step configs checked around templates, every problem of a step collected.

The errors are told in fetchflow's words by :mod:`fetchflow.field_issues`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError

from fetchflow.errors import RuleViolation, closest
from fetchflow.field_issues import FieldIssue, field_issue
from fetchflow.step import PROJECT_ROOT_CONTEXT_KEY, TEMPLATED_CONTEXT_KEY

__all__ = ["validate_config"]


def _templated_field(issue_loc: Iterable[str | int], templated: frozenset[str]) -> bool:
    head = next(iter(issue_loc), None)
    return isinstance(head, str) and head in templated


def validate_config(
    model: type[BaseModel],
    raw: Mapping[str, object],
    templated: frozenset[str],
    *,
    project_root: Path | None = None,
) -> tuple[BaseModel | None, list[FieldIssue]]:
    """Validate a step config whose templated fields are not known yet; find every problem.

    Fields holding templates are checked once rendered; here they are left out when their
    type cannot hold the template text, and rules involving them wait: a
    :class:`~fetchflow.errors.RuleViolation` that names a templated field in its ``fields``
    is not reported (it is checked once the template is rendered, before the step runs),
    whether or not its validator asked :func:`fetchflow.step.deferred` first. Asking first
    is still better: the rules after it then see the fields' values, where a rule that
    raises makes its fields wait for every rule after it. Everything else is checked now;
    ``project_root`` lets validators check that files named relative to the project exist.

    Pydantic runs a model's cross-field rules only when every field is valid, so one bad
    field (an unknown key, a wrong type) would hide a broken rule. Each field found bad is
    therefore left out and the rest validated again, the rules that involve a left-out
    field waiting as for a template: every problem that can be known is reported at once.

    Returns:
        The model when everything known is valid and no field is templated, and the issues.
    """
    known = list(model.model_fields)
    data = dict(raw)
    waiting = set(templated)  # fields whose rules wait: templated, or found bad
    issues: list[FieldIssue] = []
    # Every round but the last makes at least one more field wait, so this ends.
    for _round in range(len(raw) + len(known) + 2):
        context: dict[str, object] = {TEMPLATED_CONTEXT_KEY: frozenset(waiting)}
        if project_root is not None:
            context[PROJECT_ROOT_CONTEXT_KEY] = project_root
        try:
            config = model.model_validate(data, context=context)
        except ValidationError as error:
            details = error.errors()
        else:
            return (None if templated or issues else config), issues
        newly: set[str] = set()
        for detail in details:
            issue = field_issue(detail, known)
            head = issue.loc[0] if issue.loc and isinstance(issue.loc[0], str) else None
            if head is not None and head in waiting and head not in templated:
                continue  # about a field found bad in an earlier round, reported there
            rule = (detail.get("ctx") or {}).get("error")
            # A rule over a field that waits (a template, or a value found bad) cannot be
            # judged yet: it waits too, as if its validator had asked deferred() first.
            judged = not (isinstance(rule, RuleViolation) and waiting.intersection(rule.fields))
            if judged and not _templated_field(issue.loc, templated):
                issues.append(issue)
            # What waits from now on: the field, every field a broken rule names (a rule
            # stops the rules after it, and a "before" rule stops every field), and the
            # field a misspelt key was meant to be (templat: ... must not also read as
            # "neither template nor file").
            involved = {head} if head is not None else set()
            if isinstance(rule, RuleViolation):
                involved.update(rule.fields)
            if detail["type"] == "extra_forbidden" and head is not None:
                involved.add(closest(head, known) or head)
            newly |= involved - waiting
        if not newly:
            break
        waiting |= newly
        data = {key: value for key, value in data.items() if key not in newly}
    return None, issues
