"""Run inputs: ``--input NAME=VALUE`` pairs read as the declared types, defaults applied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fetchflow.errors import Problem, WorkflowInvalid, closest
from fetchflow.workflow.spec import WorkflowHeader, parse_input_value

__all__ = ["parse_input_args", "resolve_inputs"]


def parse_input_args(header: WorkflowHeader, pairs: Sequence[str]) -> dict[str, object]:
    """Read ``NAME=VALUE`` strings as the types the workflow declares.

    Raises:
        WorkflowInvalid: A pair is malformed, names an undeclared input, or has a value of
            the wrong type; every bad pair is reported.
    """
    values: dict[str, object] = {}
    problems: list[Problem] = []
    declared = list(header.inputs)
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(
                Problem(
                    message=f"expected NAME=VALUE, got {pair!r}",
                    hint="write --input count=3",
                    file="--input",
                )
            )
            continue
        spec = header.inputs.get(name)
        if spec is None:
            suggestion = closest(name, declared)
            problems.append(
                Problem(
                    message=f'the workflow declares no input "{name}"'
                    + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                    hint=f"use --input {suggestion}=..."
                    if suggestion
                    else f"declared inputs: {', '.join(declared) or 'none'}",
                    file="--input",
                    subject=f'input "{name}"',
                )
            )
            continue
        try:
            values[name] = parse_input_value(spec, text)
        except ValueError as error:
            problems.append(
                Problem(
                    message=str(error),
                    hint=f"give {name} a value of type {spec.type}",
                    file="--input",
                    subject=f'input "{name}"',
                )
            )
    if problems:
        raise WorkflowInvalid(problems)
    return values


def resolve_inputs(
    header: WorkflowHeader, given: Mapping[str, object], file: str = "--input"
) -> dict[str, object]:
    """The full ``inputs`` mapping of a run: given values checked, defaults filled in.

    Raises:
        WorkflowInvalid: A required input is missing, a value has the wrong type, or a name
            is not declared.
    """
    problems: list[Problem] = []
    resolved: dict[str, object] = {}
    for name, spec in header.inputs.items():
        if name in given:
            value = given[name]
            problem = spec.check(value) if value is not None else None
            if problem:
                problems.append(
                    Problem(
                        message=problem,
                        hint=f"give a value of type {spec.type}",
                        file=file,
                        subject=f'input "{name}"',
                    )
                )
            resolved[name] = value
        elif spec.has_default:
            resolved[name] = spec.default
        elif spec.is_required:
            problems.append(
                Problem(
                    message="is required and has no default",
                    hint=f"run with --input {name}=<{spec.type}>",
                    file=file,
                    subject=f'input "{name}"',
                )
            )
        else:
            resolved[name] = None
    for name in given:
        if name not in header.inputs:
            suggestion = closest(name, list(header.inputs))
            problems.append(
                Problem(
                    message=f'the workflow declares no input "{name}"'
                    + (f'; did you mean "{suggestion}"?' if suggestion else ""),
                    hint=f"declared inputs: {', '.join(header.inputs) or 'none'}",
                    file=file,
                    subject=f'input "{name}"',
                )
            )
    if problems:
        raise WorkflowInvalid(problems)
    return resolved
