"""One step as a plain, serializable Prefect task: :func:`run_step` of a :class:`StepJob`.

Everything a step needs travels in its job (the checked plan, the settings, its template
scope, a reviewer's edits, what an earlier run kept, a picklable store opener and the run's
checkpoints), and nothing refers back to the scheduler: no lock, queue or open client. So
any Prefect task runner can run it, threads in this process or Dask worker processes on
other machines (``FETCHFLOW_TASK_RUNNER``, see :mod:`fetchflow.orchestration.task_runners`).

What the scheduler needs back comes with the result: a :class:`StepOutcome` (the output,
where it came from, the attempt), or the exception with its attempt set on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prefect import get_run_logger
from prefect.context import TaskRunContext
from pydantic import BaseModel

from fetchflow.errors import RunError, StepError
from fetchflow.interrupt import check_interrupt
from fetchflow.orchestration.artifacts import StepProgress, publish_step_output
from fetchflow.orchestration.file_server import public_links
from fetchflow.orchestration.server import server_state_file
from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.execution import execute_step, run_config, validated_config
from fetchflow.run.matrix_execution import (
    CombinationCache,
    execute_matrix,
    resolve_combinations,
)
from fetchflow.run.reuse import GenerationCache, fresh_links
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.workflow.plan import Plan, PlannedStep

if TYPE_CHECKING:
    from fetchflow.storage import AssetStore

__all__ = ["NotingLogger", "StepJob", "StepOutcome", "StepWatcher", "run_step"]


class StepWatcher(Protocol):
    """Told when an attempt of a step starts (only when the step runs in this process)."""

    def attempt_started(self, step_id: str, attempt: int) -> None:
        """Attempt ``attempt`` (1 first) of ``step_id`` began."""


@dataclass(frozen=True)
class StepJob:
    """Everything one step's task needs; picklable (no watcher) for process task runners.

    Attributes:
        plan: The checked workflow.
        step_id: The step to run.
        settings: fetchflow settings.
        scope: The step's template scope (inputs, run, upstream outputs).
        run_info: The run's id, name and start (``run.*`` in templates).
        started_at: When the run started.
        overrides: Values a reviewer set when approving the step.
        kept: What an earlier run of this step kept (``StepContext.kept``), fresh links.
        open_store: Opens the run's asset store (a picklable ``StoreOpener``).
        checkpoints: The run's checkpoints (paid items are recorded as they are stored).
        watcher: Told when each attempt starts; None when the task runs in other processes.
    """

    plan: Plan
    step_id: str
    settings: Settings
    scope: dict[str, object]
    run_info: dict[str, str]
    started_at: datetime
    overrides: dict[str, object] = field(default_factory=dict)
    kept: object = None
    open_store: Callable[[], AssetStore] | None = None
    checkpoints: Checkpoints | None = None
    watcher: StepWatcher | None = None

    @property
    def step(self) -> PlannedStep:
        """The planned step."""
        return self.plan.steps[self.step_id]


@dataclass(frozen=True)
class StepOutcome:
    """A step's task result.

    Attributes:
        output: The step's output as JSON data.
        attempt: Which attempt made it (1 first).
        reused: ``cache hit (made by run …)`` when the cache answered, else None.
        notes: What the step warned about (the terminal says it under the step's line).
    """

    output: object
    attempt: int
    reused: str | None = None
    notes: tuple[str, ...] = ()


class NotingLogger(logging.LoggerAdapter[Any]):
    """The step's logger: everything goes to the task run's log, and each warning (or worse)
    is also kept in ``notes``, which the run's terminal shows under the step's line
    (Prefect's own console lines are hidden without ``-v``)."""

    def __init__(self, logger: Any, notes: list[str]) -> None:
        super().__init__(logger, {})
        self.notes = notes

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.WARNING:
            try:
                self.notes.append(str(msg) % args if args else str(msg))
            except (TypeError, ValueError):
                self.notes.append(str(msg))
        self.logger.log(level, msg, *args, **kwargs)


def _attempt() -> int:
    context = TaskRunContext.get()
    return context.task_run.run_count if context is not None else 1


def run_step(job: StepJob) -> StepOutcome:
    """Run one step of a run (the body of its Prefect task run).

    Raises:
        Exception: The step's failure, with ``fetchflow_attempt`` set on it; a stop that
            came before the step began has ``fetchflow_not_started`` set too.
    """
    step = job.step
    attempt = _attempt()
    if job.watcher is not None:
        job.watcher.attempt_started(step.id, attempt)
    notes: list[str] = []
    logger = NotingLogger(get_run_logger(), notes)  # warnings are said in the terminal too
    checkpoints = job.checkpoints
    # Artifacts off the step's critical path where the run's flow (which waits for them
    # before its summary) is in this process; a worker process publishes before returning.
    background = job.watcher is not None
    ctx = StepContext(
        step_id=step.id,
        step_type=step.type,
        run_id=job.run_info["id"],
        run_name=job.run_info["name"],
        workflow=job.plan.name,
        started_at=job.started_at,
        logger=logger,
        settings=job.settings,
        templates=job.plan.templates,
        scope=job.scope,
        open_store=job.open_store,
        read_secret=_read_secret,
        progress=StepProgress(workflow=job.plan.name, step_id=step.id, background=background),
        timeout_seconds=step.common.timeout_seconds,
        kept=job.kept,
        on_kept=functools.partial(checkpoints.keep, step.id) if checkpoints else None,
    )
    read_bytes = _reader(job.open_store)
    publish = functools.partial(
        publish_step_output,
        workflow=job.plan.name,
        step_id=step.id,
        step_title=step.title,
        step_type=step.type,
        read_bytes=read_bytes,
        links=public_links(server_state_file(job.settings)),
        background=background,
        thumbnail_dir=job.settings.home / "thumbnails",
    )
    try:
        try:
            check_interrupt()  # submitted before the stop request, not started yet
        except RunError as error:
            error.fetchflow_not_started = True  # type: ignore[attr-defined]
            raise
        output, reused = _execute(job, ctx, logger)
    except Exception as error:
        # Only real failures: a timeout arrives as a cancellation Prefect injects into this
        # thread and turns into its own TaskRunTimeoutError.
        error.fetchflow_attempt = attempt  # type: ignore[attr-defined]
        error.fetchflow_notes = tuple(notes)  # type: ignore[attr-defined]
        if isinstance(error, RunError):
            error.step_id = error.step_id or step.id
            logger.error("%s", error.format())
            if error.partial_output is not None and step.step_cls.produces_files:
                # what was paid for shows in the UI too
                publish(output=error.partial_output, notes=tuple(notes), combinations=_every(job))
        raise
    # Outside the try: a display problem is a warning, never the step's error. Steps that
    # make files get their Output artifact (gallery and table), off the step's critical
    # path. Not every text step: 30 trivial steps each with an artifact took bench_runner's
    # ratio from ~1.5 to ~3.4 (one POST each, on the server's one SQLite writer).
    if step.step_cls.produces_files:
        publish(output=output, notes=tuple(notes), combinations=_every(job))
    return StepOutcome(output, attempt, reused, tuple(notes))


def _execute(job: StepJob, ctx: StepContext, logger: Any) -> tuple[object, str | None]:
    """Run the step, or reuse a cached output of exactly the same rendered request."""
    step = job.step
    templates = job.plan.templates
    if not step.common.cache:
        return execute_step(step, templates, ctx, job.overrides), None
    cache = GenerationCache(job.open_store)
    if step.common.matrix is not None:  # each combination is its own request
        return execute_matrix(
            step,
            templates,
            ctx,
            lambda scope: validated_config(step, templates, scope, job.overrides),
            cache=_combination_cache(cache, job),
        ), None
    config = validated_config(step, templates, ctx.scope, job.overrides)
    key = cache.key(step, config)
    hit = cache.get(key)
    if hit is not None:
        logger.info("%s: the same request ran before, its output is reused", hit.note)
        return fresh_links(hit.output, job.open_store), hit.note
    output = run_config(step, config, ctx)
    cache.put(key, output, job.run_info["id"])
    return output, None


def _every(job: StepJob) -> tuple[dict[str, Any], ...]:
    """A matrix step's every combination, for its gallery's grid (rendering the axes again
    is cheap and gives what the step ran); none without a matrix or when they fail."""
    if job.step.common.matrix is None:
        return ()
    try:
        return tuple(resolve_combinations(job.step, job.plan.templates, job.scope))
    except RunError:
        return ()


def _combination_cache(cache: GenerationCache, job: StepJob) -> CombinationCache:
    """``cache: true`` for one combination of a matrix step, by its rendered request."""
    step = job.step

    def get(config: BaseModel) -> object | None:
        hit = cache.get(cache.key(step, config))
        return fresh_links(hit.output, job.open_store) if hit is not None else None

    def put(config: BaseModel, output: object) -> None:
        cache.put(cache.key(step, config), output, job.run_info["id"])

    return get, put


def _reader(open_store: Callable[[], AssetStore] | None) -> Callable[[str], bytes] | None:
    if open_store is None:
        return None

    def read(storage_uri: str) -> bytes:
        return open_store().read(storage_uri)

    return read


def _read_secret(name: str) -> str:
    """A Prefect Secret block's value (what ``StepContext.secret`` reads during a run)."""
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(name)
    except ValueError as error:
        raise StepError(
            message=f'no Prefect Secret block named "{name}" ({error})',
            hint=f"create it: prefect block create secret (name {name}), or in the UI under "
            "Blocks, or use the environment variable instead",
            retryable=False,
        ) from None
    value = block.get()
    return value if isinstance(value, str) else str(value)
