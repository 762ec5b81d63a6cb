"""The fetchflow exception tree.

::

    Exception
    ├── FetchflowError             the root: catch this to catch everything of ours
    │   ├── WorkflowInvalid        a workflow file (or its inputs) cannot run; holds Problems
    │   ├── CommandError           a command cannot do what was asked (no server, port taken)
    │   │   ├── ServerError        the local Prefect server cannot start (port taken, crashed)
    │   │   ├── ServeError         no Prefect API to serve the workflows to
    │   │   └── UsageError         a mistake on the command line (the CLI exits 2)
    │   │       ├── ResumeError    --resume names no saved run of this workflow
    │   │       └── ApprovalAnswerError  approve/deny cannot answer that run (--set, run id)
    │   ├── PluginError            a step plugin is broken or registered twice (start-up)
    │   ├── SettingsInvalid        a FETCHFLOW_* setting (environment or .env) is invalid
    │   └── RunError               something failed while a run was going
    │       ├── BudgetExceeded     the run's estimate is over its budget (refused before it starts)
    │       ├── StepError          a step failed in an expected way (bad answer, bad data)
    │       │   ├── Interrupted    a stop was requested (Ctrl-C, SIGTERM): nothing new starts
    │       │   ├── PartialImages* an image step failed after paying for some images (kept)
    │       │   └── LocalModelMissing* a model: local/<name> folder is not on this machine
    │       ├── TemplateError      a template failed to render with the run's values
    │       ├── StorageError       the asset store refused or could not be reached
    │       └── ProviderError      an image provider refused or could not be reached
    │           ├── RateLimited*   the provider said 429 (retried after its Retry-After)
    │           ├── ModerationBlocked* the safety system refused (never retried as it is;
    │           │                  the step's on_moderation decides)
    │           └── StreamBroken*  a streamed call stopped before its final image (partial
    │                              images may be billed; retried like a dropped connection)
    ├── ValueError
    │   └── RuleViolation          a cross-field rule of a step config (raised in validators,
    │                              told as a Problem, deferred while a field is a template)
    ├── jinja2 SecurityError
    │   └── TemplateLimitError     (fetchflow.template_limits) a template built too much or ran
    │                              too long; jinja's sandbox raises it, so it stays jinja's kind
    ├── UpstreamError*             an SDK exception, redacted: what a ProviderError chains
    └── Undecodable*               bytes Pillow refused; its caller words it as a StepError

    * defined by the step library (``steps/imaging``: ``providers/errors.py``,
      ``providers/redaction.py``, ``providers/base.py``, ``providers/local_diffusers.py``,
      ``partial.py``, ``pixels/decoding.py``), which the engine does not know; drawn here so
      the whole tree is in one place.

Every error of ours has a ``message`` (what is wrong, with the value found) and a ``hint``
(a concrete fix), and one function, :func:`with_hint`, puts them together: the first line,
then ``  hint: ...`` on its own line. Workflow problems are collected, not raised one at a
time: every problem in a file is a :class:`Problem` with its location, and
:class:`WorkflowInvalid` carries them all, sorted in file order. Located messages are built
from structured fields (:meth:`Problem.format`, :meth:`RunError.format`) so the shape is the
same everywhere: first line where + what + the value found, second line ``hint:``.

Messages never contain secrets: the errors that wrap SDK exceptions keep only the status,
the endpoint and a trimmed body, and chain the original with ``from``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ApprovalAnswerError",
    "BudgetExceeded",
    "CommandError",
    "FetchflowError",
    "Interrupted",
    "PluginError",
    "Problem",
    "ProviderError",
    "ResumeError",
    "RuleViolation",
    "RunError",
    "ServeError",
    "ServerError",
    "SettingsInvalid",
    "StepError",
    "StorageError",
    "TemplateError",
    "UsageError",
    "WorkflowInvalid",
    "closest",
    "with_hint",
]


def with_hint(message: str, hint: str) -> str:
    """A message as users read it: ``message``, then ``hint`` on its own ``  hint:`` line.

    The one place that shape is written; every error's text goes through it.
    """
    return f"{message}\n  hint: {hint}" if hint else message


class FetchflowError(Exception):
    """Root of every error fetchflow raises on purpose.

    Args:
        message: What is wrong, with the value found.
        hint: A concrete fix, shown on its own ``hint:`` line (empty: none).
    """

    message: str
    hint: str

    def __init__(self, message: str = "", hint: str = "") -> None:
        # args rebuild the error when it is unpickled (a Prefect worker hands it back).
        super().__init__(*((message, hint) if hint else (message,)))
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        """The error as users read it: the message and, when there is one, a hint line."""
        return with_hint(self.message, self.hint)


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
        return with_hint(first, self.hint)

    def sort_key(self) -> tuple[str, int, int]:
        """File order: by file, line and column (problems at one place keep their order)."""
        return (self.file, self.line, self.column)


class WorkflowInvalid(FetchflowError):
    """A workflow file, or the inputs given to it, cannot run.

    Carries every problem found, in file order; ``str()`` is the full report (each problem
    with its own hint), which is also the ``message``; ``hint`` is empty.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=Problem.sort_key)
        super().__init__(self.format())

    def format(self) -> str:
        """Every problem, one or two lines each, in file order."""
        return "\n".join(problem.format() for problem in self.problems)


class CommandError(FetchflowError):
    """A command cannot do what was asked (no server to reach, port taken, unknown run)."""


class ServerError(CommandError):
    """The local Prefect server cannot be started (port taken, already running, crashed)."""


class ServeError(CommandError):
    """Workflows cannot be served (no Prefect API to serve them to)."""


class UsageError(CommandError):
    """The command line asks for something that cannot be: an unknown or malformed run id,
    a run of another workflow, an edit an approval form does not have. The CLI exits 2."""


class ResumeError(UsageError):
    """``--resume`` cannot resume that run: unknown or malformed id, another workflow's run,
    an unreadable record. A mistake on the command line: the CLI exits 2."""


class ApprovalAnswerError(UsageError):
    """``fetchflow approve`` / ``deny`` cannot answer this run."""


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
        where: ``file:line`` of the step in the workflow, when the error is about what the
            file asks for (a check before the run: a missing key or model); shown first.
        step_type: The step's type, shown after its id when ``where`` is set.
    """

    message: str
    hint: str = ""
    step_id: str | None = None
    retryable: bool = True
    # Out of repr: Prefect logs an exception's repr, and records hold presigned links.
    partial_output: object = field(default=None, repr=False)
    where: str = field(default="", kw_only=True)
    step_type: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__init__(self.message, self.hint)

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        """``[file:line: ]step "id"[ (type)]: message`` and, when there is one, a ``hint:``
        line."""
        first = self.message
        if self.step_id:
            kind = f" ({self.step_type})" if self.where and self.step_type else ""
            first = f'step "{self.step_id}"{kind}: {self.message}'
        if self.where:
            first = f"{self.where}: {first}"
        return with_hint(first, self.hint)


class BudgetExceeded(RunError):
    """The estimate of a run is over its budget (``budget_usd`` or ``--budget``)."""


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
