"""Unit-test helpers for step authors: a run context, and one step run the way a run runs it.

::

    from fetchflow.testing import run_step

    def test_shout(tmp_path):
        assert run_step(ShoutStep, {"text": "<< inputs.word >>"}, tmp_path,
                        inputs={"word": "hi"}) == "HI"

:func:`run_step` checks the step class as the registry does, checks the fields as
``fetchflow validate`` does (templates not rendered yet), renders the templates with the
given inputs and upstream outputs, validates the result as a run does, and calls ``run``
with a context from :func:`make_context`: a local asset store, settings and a project folder
under the given folder, nothing read from the environment's ``.env`` file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, overload

from fetchflow.errors import PluginError, Problem, RunError, StepError, WorkflowInvalid, closest
from fetchflow.registry import StepRegistry
from fetchflow.run.execution import validated_config
from fetchflow.settings import Settings
from fetchflow.step import Step, StepConfig, StepContext, definition_problem
from fetchflow.storage import AssetStore
from fetchflow.storage.local import LocalStore
from fetchflow.templating import Templates, is_template
from fetchflow.workflow.plan import PlannedStep
from fetchflow.workflow.spec import StepCommon
from fetchflow.workflow.validation import validate_config

__all__ = ["STARTED_AT", "make_context", "run_step"]

_ConfigT = TypeVar("_ConfigT", bound=StepConfig)
_OutputT = TypeVar("_OutputT")

#: When test runs start, unless told otherwise: a fixed moment keeps outputs reproducible.
STARTED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def make_context(
    root: Path,
    *,
    step_id: str = "step",
    step_type: str = "step",
    inputs: Mapping[str, object] | None = None,
    upstream: Mapping[str, object] | None = None,
    settings: Settings | None = None,
    store: AssetStore | None = None,
    secrets: Mapping[str, str] | None = None,
    started_at: datetime = STARTED_AT,
    timeout_seconds: float | None = None,
    kept: object = None,
) -> StepContext:
    """A step's run context for a test, with everything kept under ``root``.

    Args:
        root: The project folder (a test's ``tmp_path``): templates are read from
            ``root/templates``, relative files under ``root``, and the settings' home and
            the local asset store are made in ``root/.fetchflow``.
        step_id: The step's id (its templates reach upstream outputs by id).
        step_type: The step's type name.
        inputs: The run's inputs (``<< inputs.name >>``).
        upstream: ``{step id: output as JSON data}`` (``<< hero.output >>``).
        settings: fetchflow's settings; default: ``Settings(home=root/.fetchflow)`` read
            without a ``.env`` file (``FETCHFLOW_*`` variables still count).
        store: The asset store; default: a local store under the settings' home.
        secrets: What ``ctx.secret(name)`` returns; without it, asking for one is an error.
        started_at: When the run started.
        timeout_seconds: The step's ``timeout_seconds``.
        kept: What an earlier run of the step made and kept (``--resume``).
    """
    if settings is None:
        settings = Settings(home=root / ".fetchflow", _env_file=None)
    chosen = store if store is not None else _local_store(settings)
    run = {"id": "test-run", "name": "test run", "started_at": started_at.isoformat()}
    scope: dict[str, object] = {"inputs": dict(inputs or {}), "run": run}
    scope.update({name: {"output": output} for name, output in (upstream or {}).items()})
    known = dict(secrets) if secrets is not None else None
    return StepContext(
        step_id=step_id,
        step_type=step_type,
        run_id=run["id"],
        run_name=run["name"],
        workflow="test",
        started_at=started_at,
        logger=logging.getLogger(f"fetchflow.testing.{step_id}"),
        settings=settings,
        templates=Templates([root / "templates"]),
        scope=scope,
        open_store=lambda: chosen,
        read_secret=None if known is None else _secret_reader(known),
        timeout_seconds=timeout_seconds,
        kept=kept,
    )


@overload
def run_step(
    step: type[Step[_ConfigT, _OutputT]],
    config: Mapping[str, object],
    root: Path,
    *,
    ctx: StepContext | None = ...,
    inputs: Mapping[str, object] | None = ...,
    upstream: Mapping[str, object] | None = ...,
) -> _OutputT: ...


@overload
def run_step(
    step: str,
    config: Mapping[str, object],
    root: Path,
    *,
    ctx: StepContext | None = ...,
    inputs: Mapping[str, object] | None = ...,
    upstream: Mapping[str, object] | None = ...,
) -> object: ...


def run_step(
    step: type[Step[Any, Any]] | str,
    config: Mapping[str, object],
    root: Path,
    *,
    ctx: StepContext | None = None,
    inputs: Mapping[str, object] | None = None,
    upstream: Mapping[str, object] | None = None,
) -> object:
    """Check and run one step as a run would; return what its ``run`` returned.

    Args:
        step: The step class, or a registered type name (read from the entry points).
        config: The step's fields as a workflow writes them (templates allowed).
        root: The project folder (see :func:`make_context`).
        ctx: The context to run in; default: ``make_context(root, ...)`` with the step's
            id and type, ``inputs`` and ``upstream``.
        inputs: The run's inputs, for templates.
        upstream: ``{step id: output as JSON data}``, for templates.

    Raises:
        PluginError: The step class is not a usable step (as the registry would say).
        WorkflowInvalid: The fields break the config model (as ``fetchflow validate`` says).
        RunError: A template failed, a rendered value is invalid, or the step failed.
    """
    step_cls, type_name = _resolve(step)
    problem = definition_problem(step_cls)
    if problem is not None:
        message, hint = problem
        raise PluginError(f'step type "{type_name}": {message}', hint)
    if ctx is None:
        ctx = make_context(
            root, step_id="step", step_type=type_name, inputs=inputs, upstream=upstream
        )
    raw = dict(config)
    templated = frozenset(name for name, value in raw.items() if _has_template(value))
    _, issues = validate_config(step_cls.config_model, raw, templated, project_root=root)
    if issues:
        raise WorkflowInvalid(
            [
                Problem(
                    message=issue.message,
                    hint=issue.hint,
                    step_id=ctx.step_id,
                    step_type=type_name,
                    field=issue.field or None,
                )
                for issue in issues
            ]
        )
    planned = PlannedStep(
        common=StepCommon(id=ctx.step_id, type=type_name),
        step_cls=step_cls,
        raw_config=raw,
        templated=templated,
        depends_on=(),
        line=0,
    )
    validated = validated_config(planned, ctx.templates, ctx.scope)
    try:
        output = step_cls().run(validated, ctx)
    except RunError as error:  # named after its step, as a run names it
        error.step_id = error.step_id or ctx.step_id
        raise
    step_cls.dump_output(output)  # what downstream templates would see must serialise
    return output


def _resolve(step: type[Step[Any, Any]] | str) -> tuple[type[Step[Any, Any]], str]:
    if not isinstance(step, str):
        return step, step.__name__
    registry = StepRegistry.from_entry_points()
    found = registry.get(step)
    if found is None:
        suggestion = closest(step, registry.names())
        raise PluginError(
            f'no step type "{step}" is registered'
            + (f'; did you mean "{suggestion}"?' if suggestion else ""),
            "install the package that registers it, or pass the step class itself; "
            f"registered: {', '.join(registry.names())}",
        )
    return found, step


def _has_template(value: object) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, list):
        return any(_has_template(item) for item in value)
    if isinstance(value, dict):
        return any(_has_template(item) for item in value.values())
    return False


def _local_store(settings: Settings) -> AssetStore:
    return LocalStore(settings.home / "assets", spool_dir=settings.spool_dir)


def _secret_reader(secrets: Mapping[str, str]) -> Callable[[str], str]:
    def read(name: str) -> str:
        if name not in secrets:
            raise StepError(
                message=f'no secret "{name}" in this test',
                hint=f"pass secrets={{{name!r}: ...}} to make_context",
                retryable=False,
            )
        return secrets[name]

    return read
