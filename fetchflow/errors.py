"""The fetchflow exception tree.

::

    FetchflowError                 the root: catch this to catch everything of ours
    ├── WorkflowInvalid            a workflow file (or its inputs) cannot run; holds Problems
    ├── CommandError               a command cannot do what was asked (no server, port taken)
    │   └── UsageError             a mistake on the command line (the CLI exits 2)
    │       └── ResumeError        --resume names no saved run of this workflow
    ├── PluginError                a step plugin is broken or registered twice (start-up)
    ├── SettingsInvalid            a FETCHFLOW_* setting (environment or .env) is invalid
    └── RunError                   something failed while a run was going
        ├── StepError              a step failed in an expected way (bad answer, bad data)
        │   └── Interrupted        a stop was requested (Ctrl-C, SIGTERM): nothing new starts
        ├── TemplateError          a template failed to render with the run's values
        ├── StorageError           the asset store refused or could not be reached
        └── ProviderError          an image provider refused or could not be reached

Workflow problems are collected, not raised one at a time: every problem in a file is a
:class:`Problem` with its location, and :class:`WorkflowInvalid` carries them all, sorted in
file order. Every message is built from structured fields in one place
(:meth:`Problem.format`, :meth:`RunError.format`) so the shape is the same everywhere:
first line where + what + the value found, second line ``hint:`` with a concrete fix.

Messages never contain secrets: the errors that wrap SDK exceptions keep only the status,
the endpoint and a trimmed body, and chain the original with ``from``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CommandError",
    "FetchflowError",
    "Interrupted",
    "PluginError",
    "Problem",
    "ProviderError",
    "ResumeError",
    "RuleViolation",
    "RunError",
    "SettingsInvalid",
    "StepError",
    "StorageError",
    "TemplateError",
    "UsageError",
    "WorkflowInvalid",
    "closest",
]


class FetchflowError(Exception):
    """Root of every error fetchflow raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, with where it is and how to fix it.

    Attributes:
        message: What is wrong, including the value found.
        hint: A concrete fix, shown on its own ``hint:`` line.
        file: The workflow file (or template file) the problem is in.
        line: 1-based line, 0 when unknown.
        column: 1-based column, 0 when unknown.
        step_id: The step the problem belongs to, if any.
        step_type: That step's type, if known.
        field: The field (dotted for nested values), if any.
        subject: Overrides the ``step ... field ...`` part (e.g. ``input "count"``).
    """

    message: str
    hint: str = ""
    file: str = ""
    line: int = 0
    column: int = 0
    step_id: str | None = None
    step_type: str | None = None
    field: str | None = None
    subject: str | None = None

    @property
    def where(self) -> str:
        """``file:line:col`` (as much of it as is known)."""
        parts = [self.file or "<workflow>"]
        if self.line:
            parts.append(str(self.line))
            if self.column:
                parts.append(str(self.column))
        return ":".join(parts)

    @property
    def what(self) -> str:
        """``step "id" (type) field "f"`` (as much of it as applies)."""
        if self.subject is not None:
            head = self.subject
        elif self.step_id is not None:
            head = f'step "{self.step_id}"' + (f" ({self.step_type})" if self.step_type else "")
        else:
            head = ""
        if self.field:
            head = f'{head} field "{self.field}"'.strip()
        return head

    def format(self) -> str:
        """The problem as the two lines users read."""
        what = self.what
        first = f"{self.where}: {what}: {self.message}" if what else f"{self.where}: {self.message}"
        return f"{first}\n  hint: {self.hint}" if self.hint else first

    def sort_key(self) -> tuple[str, int, int]:
        """File order: by file, line and column (problems at one place keep their order)."""
        return (self.file, self.line, self.column)


class WorkflowInvalid(FetchflowError):
    """A workflow file, or the inputs given to it, cannot run.

    Carries every problem found, in file order; ``str()`` is the full report.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=Problem.sort_key)
        super().__init__(self.format())

    def format(self) -> str:
        """Every problem, one or two lines each, in file order."""
        return "\n".join(problem.format() for problem in self.problems)


class CommandError(FetchflowError):
    """A command cannot do what was asked (no server to reach, port taken, unknown run).

    Attributes:
        message: What went wrong.
        hint: How to fix it (its own ``hint:`` line).
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}\n  hint: {hint}" if hint else message)
        self.message = message
        self.hint = hint


class UsageError(CommandError):
    """The command line asks for something that cannot be: an unknown or malformed run id,
    a run of another workflow, an edit an approval form does not have. The CLI exits 2."""


class ResumeError(UsageError):
    """``--resume`` cannot resume that run: unknown or malformed id, another workflow's run,
    an unreadable record. A mistake on the command line: the CLI exits 2."""


class PluginError(FetchflowError):
    """A step plugin cannot be loaded, or two plugins claim the same step type."""


class SettingsInvalid(FetchflowError):
    """A ``FETCHFLOW_*`` setting has a value fetchflow cannot use."""


@dataclass
class RunError(FetchflowError):
    """Something failed while a run was going.

    Attributes:
        message: What failed, with the values involved (never a secret).
        hint: What the user can do about it.
        step_id: The step that failed, filled in by the runner when the step raised it.
        retryable: Whether trying again could help (a moderation block cannot).
        partial_output: What the step made and kept before it failed (paid-for images), as
            the JSON data its output would hold; the run keeps it in the step's result and
            summary, and never retries the step (that would pay for it again).
    """

    message: str
    hint: str = ""
    step_id: str | None = None
    retryable: bool = True
    # Out of repr: Prefect logs an exception's repr, and records hold presigned links.
    partial_output: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        """``step "id": message`` and, when there is one, a ``hint:`` line."""
        first = f'step "{self.step_id}": {self.message}' if self.step_id else self.message
        return f"{first}\n  hint: {self.hint}" if self.hint else first


@dataclass
class StepError(RunError):
    """A step failed in a way it understands (bad data, a refused request, ...)."""


@dataclass
class Interrupted(StepError):
    """A stop was requested (Ctrl-C, SIGTERM) before a step or a billable call started.

    Never retried: the run is stopping. What the step made before it is kept (an image step
    hands it on as its partial output) and ``fetchflow run --resume`` makes the rest.
    """

    retryable: bool = False


@dataclass
class TemplateError(RunError):
    """A template could not be rendered with the values of this run.

    Attributes:
        field: The config field whose template failed.
    """

    field: str | None = None


@dataclass
class StorageError(RunError):
    """The asset store refused a request or could not be reached.

    Attributes:
        target: The bucket/key or directory involved.
        endpoint: The S3 endpoint, when not AWS's default.
        spooled: Where the bytes were kept locally when an upload gave up.
    """

    target: str = ""
    endpoint: str = ""
    spooled: list[Path] = field(default_factory=list)


@dataclass
class ProviderError(RunError):
    """An image provider refused a request or could not be reached.

    Attributes:
        provider: The provider's name (``openai``, ``google``, ...).
        endpoint: The URL called, without query string or credentials.
        status: The HTTP status, when there was a response.
        body: The start of the response body, trimmed.
    """

    provider: str = ""
    endpoint: str = ""
    status: int | None = None
    body: str = ""


class RuleViolation(ValueError):
    """A cross-field rule of a step config is broken.

    Args:
        message: What is wrong, naming the fields and the values found
            (``background: transparent needs output_format png or webp, got jpeg``).
        fields: The fields involved; the first one is where the error is shown.
        hint: The way out (``use output_format png or webp``).
    """

    def __init__(self, message: str, *, fields: tuple[str, ...], hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.hint = hint


def closest(name: str, options: Sequence[str]) -> str | None:
    """The option most like ``name``, if any is close enough.

    A plain spelling distance first (``promt`` -> ``prompt``); failing that, an option that
    has ``name`` as one of its ``_``-separated words (``url`` -> ``file_url``).
    """
    found = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    if found:
        return found[0]
    lowered = name.lower()
    if len(lowered) < 2:
        return None
    partial = [option for option in options if lowered in option.lower().split("_")]
    return min(partial, key=len) if partial else None
