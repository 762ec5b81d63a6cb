"""What every command shares: exit codes, the step registry, the checked home, flag errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fetchflow.errors import Problem, ServeError, UsageError, WorkflowInvalid

if TYPE_CHECKING:
    from fetchflow.orchestration.deploy import ServeTarget
    from fetchflow.registry import StepRegistry
    from fetchflow.settings import Settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "bad_flag",
    "prefect_server",
    "step_types",
    "with_home",
]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def step_types() -> StepRegistry:
    """Every installed step type (the ``fetchflow.steps`` entry points)."""
    from fetchflow.registry import StepRegistry

    return StepRegistry.from_entry_points()


def with_home(settings: Settings) -> Settings:
    """The settings, once ``FETCHFLOW_HOME`` is known to be a writable folder."""
    from fetchflow.settings import check_home

    check_home(settings)
    return settings


def bad_flag(flag: str, message: str, hint: str) -> WorkflowInvalid:
    """A command-line value that cannot be used, located at its flag (exit 2)."""
    return WorkflowInvalid([Problem(message=message, hint=hint, file=flag)])


def prefect_server(settings: Settings, purpose: str) -> ServeTarget:
    """The Prefect API a command works on (``PREFECT_API_URL``, else a running ``fetchflow
    server``); ``purpose`` says what for (``to deploy the workflows to``).

    Raises:
        UsageError: Neither is there (exit 2: nothing was done).
    """
    from fetchflow.orchestration.deploy import serve_target

    try:
        return serve_target(settings)
    except ServeError as error:
        raise UsageError(
            f"no Prefect server {purpose}: PREFECT_API_URL is not set and no `fetchflow "
            "server` is running",
            error.hint,
        ) from None
