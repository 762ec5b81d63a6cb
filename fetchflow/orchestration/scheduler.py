"""The scheduling loop of one run, in the flow body (part of the runner: imports Prefect).

It submits every step whose upstream steps completed as a Prefect task, takes finished steps
as they come and applies their failure policy itself, so the real cause of a failure is
never hidden behind Prefect's "upstream task did not reach a COMPLETED state":

- ``terminate``: nothing new starts; steps already running finish (their results are kept);
  the run ends Failed with the failing step's error as its message.
- ``continue``: the step is failed, every step that depends on it is skipped (a Cancelled
  task run that says why), unrelated branches go on, the run ends Completed with a note.

A stop request (:mod:`fetchflow.interrupt`: Ctrl-C, SIGTERM) is checked before any step
starts: nothing new starts, steps already running finish (an image step starts no further
call and hands on what it made), and the run ends Cancelled, ``interrupted`` in its report.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.states import Cancelled, Completed, Failed
from prefect.utilities.annotations import allow_failure, quote

from fetchflow.errors import Interrupted, RunError, StepError
from fetchflow.interrupt import stop_requested, stop_signal
from fetchflow.orchestration.approval import ApprovalDecision, ApprovalRequest, ask_for_approval
from fetchflow.orchestration.limits import limited_tags
from fetchflow.orchestration.step_task import StepJob, StepOutcome, run_step
from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.execution import validated_config
from fetchflow.run.matrix_execution import resolve_combinations
from fetchflow.run.report import RunReport, StepResult
from fetchflow.run.reuse import Reused, fresh_links, step_fingerprint
from fetchflow.settings import Settings
from fetchflow.workflow.plan import Plan, PlannedStep

__all__ = ["RunObserver", "RunScheduler", "error_text"]


class RunObserver(Protocol):
    """Receives progress while a run goes (the CLI's live display implements it)."""

    def run_started(self, report: RunReport) -> None:
        """The flow run exists; ``report.run_id`` is set."""

    def step_started(self, step: PlannedStep, attempt: int) -> None:
        """An attempt of a step started (called from the step's worker thread)."""

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        """A step completed, failed or was skipped."""


def error_text(error: BaseException) -> str:
    """How an exception reads in a run's messages."""
    if isinstance(error, RunError):
        return error.format()
    if isinstance(error, TimeoutError):
        detail = str(error).strip()
        return f"timed out: {detail[:1].lower()}{detail[1:]}" if detail else "timed out"
    return f"{type(error).__name__}: {error}"


@dataclass
class _StepState:
    attempts: int = 0
    started: float = 0.0
    error: BaseException | None = None
    reused: str | None = None


@dataclass
class RunScheduler:
    """Everything one run's scheduling loop tracks."""

    plan: Plan
    settings: Settings
    inputs: dict[str, object]
    report: RunReport
    observer: RunObserver | None
    open_store: Callable[[], Any] | None
    run_info: dict[str, str] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    outputs: dict[str, object] = field(default_factory=dict)
    futures: dict[str, PrefectFuture[Any]] = field(default_factory=dict)
    states: dict[str, _StepState] = field(default_factory=dict)
    done: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    decisions: dict[str, ApprovalDecision] = field(default_factory=dict)
    reused: dict[str, Reused] = field(default_factory=dict)
    checkpoints: Checkpoints | None = None
    #: Steps that do not run in this run (``--only``/``--from``), with why.
    not_selected: dict[str, str] = field(default_factory=dict)
    #: Steps run in other processes (a Dask task runner): jobs carry no watcher.
    remote_steps: bool = False
    #: Step types with a Prefect tag concurrency limit (their tasks take a slot).
    limited_types: frozenset[str] = frozenset()
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- a step as a Prefect task --------------------------------------------------------

    def _scope(self, step: PlannedStep) -> dict[str, object]:
        scope: dict[str, object] = {"inputs": self.inputs, "run": self.run_info}
        for upstream in self.plan.steps:
            if upstream in self.outputs:
                scope[upstream] = {"output": self.outputs[upstream]}
        return scope

    def attempt_started(self, step_id: str, attempt: int) -> None:
        """A step's attempt began (its task calls this when it runs in this process)."""
        with self.lock:
            record = self.states.setdefault(step_id, _StepState())
            record.attempts = max(record.attempts, attempt)
            if not record.started:
                record.started = time.monotonic()
        if self.observer is not None:
            self.observer.step_started(self.plan.steps[step_id], attempt)

    def _task(self, step: PlannedStep, overrides: dict[str, object]) -> Any:
        """The step's Prefect task and its job (plain data: any task runner can run it)."""
        common = step.common
        earlier = self.reused.get(step.id)  # only a partial one: a complete one never runs
        kept = fresh_links(earlier.output, self.open_store) if earlier is not None else None
        if self.checkpoints is not None and isinstance(kept, list):
            for item in kept:  # this run holds them too, should it be cut short again
                self.checkpoints.keep(step.id, item)
        job = StepJob(
            plan=self.plan,
            step_id=step.id,
            settings=self.settings,
            scope=self._scope(step),
            run_info=dict(self.run_info),
            started_at=self.started_at,
            overrides=dict(overrides),
            kept=kept,
            open_store=self.open_store,
            checkpoints=self.checkpoints,
            watcher=None if self.remote_steps else self,
        )
        if self.remote_steps:
            self.attempt_started(step.id, 1)  # retries in a worker are not seen from here
        delays = [common.retry_delay_seconds * 2**n for n in range(common.retries)]
        prefect_task = task(
            name=step.id,
            task_run_name=step.id,
            description=f"{step.title} ({step.type})",
            # A tag costs the server a concurrency lease per task run (under load a 503 and a
            # ~2 s back-off): only a step whose type has a tag concurrency limit on the server
            # carries its type as a tag. Every task shows its type in its description.
            tags=[step.type] if step.type in self.limited_types else None,
            retries=common.retries,
            retry_delay_seconds=delays or 0,
            retry_condition_fn=_retry_billable if step.step_cls.billable else _retry_wanted,
            timeout_seconds=common.timeout_seconds,
            cache_policy=NO_CACHE,
            persist_result=False,
            log_prints=False,
        )(run_step)
        return prefect_task, job

    def _marker(
        self, step: PlannedStep, state: Callable[[str], State], note: str, tag: str
    ) -> PrefectFuture[Any]:
        """A task run that records a step which did not run: skipped, reused or refused.

        It ends in the ``state`` made from ``note``, so the UI says why.
        """
        marker = task(
            name=step.id,
            task_run_name=step.id,
            description=f"{step.title} ({step.type})",
            tags=[tag],  # never a limited type: a step that does not run takes no slot
            cache_policy=NO_CACHE,
            persist_result=False,
        )(state)
        future = marker.submit(note, return_state=False, wait_for=self._upstream_futures(step.id))
        self.futures[step.id] = future
        return future

    def _submit_reused(self, step: PlannedStep, reused: Reused) -> None:
        """A step whose output an earlier run made: a task run that says so, no call."""
        self.states.setdefault(step.id, _StepState()).reused = reused.note
        future = self._marker(step, _reused, reused.note, "reused")
        future.add_done_callback(lambda _: self.done.put(step.id))

    def _upstream_futures(self, step_id: str) -> list[Any]:
        step = self.plan.steps[step_id]
        return [allow_failure(self.futures[up]) for up in step.depends_on if up in self.futures]

    def _submit(self, step: PlannedStep) -> None:
        reused = self.reused.get(step.id)
        if reused is not None and reused.complete:
            self._submit_reused(step, reused)
            return
        decision = self.decisions.get(step.id)
        if decision is None and step.common.approval == "required":
            try:
                decision = self._ask([step], timeout=step.common.approval_timeout_seconds)
            except RunError as error:  # its templates or values fail once rendered
                self._refuse(step, error)
                return
        if decision is not None and not decision.approved:
            self._refuse(step, StepError(message=decision.message, retryable=False))
            return
        overrides = decision.overrides if decision is not None else {}
        prefect_task, job = self._task(step, overrides)
        # quote: Prefect would otherwise walk the whole job (the plan) looking for futures.
        future = prefect_task.submit(quote(job), wait_for=self._upstream_futures(step.id))
        self.futures[step.id] = future
        future.add_done_callback(lambda _: self.done.put(step.id))

    # -- approval --------------------------------------------------------------------------

    def _requests(self, step: PlannedStep) -> list[ApprovalRequest]:
        """What to show the reviewer: one row per combination of a matrix step; none when
        the step costs nothing (it never asks)."""
        if not step.step_cls.billable:
            return []
        scope = self._scope(step)
        combos: list[dict[str, object]] = [{}]
        if step.common.matrix is not None:
            combos = resolve_combinations(step, self.plan.templates, scope)
        requests = []
        for values in combos:
            config = validated_config(
                step, self.plan.templates, {**scope, "matrix": values} if values else scope
            )
            estimate = step.step_cls.estimate(config, self.settings)
            if estimate is not None and estimate.cost_usd == 0:
                continue
            dumped = config.model_dump()
            fields = step.step_cls.approval_fields
            requests.append(
                ApprovalRequest(step, {name: dumped[name] for name in fields}, estimate, values)
            )
        return requests

    def _ask(self, steps: list[PlannedStep], timeout: float) -> ApprovalDecision | None:
        requests = [request for step in steps for request in self._requests(step)]
        if not requests:
            return None
        key = "approve-" + ("batch" if len(steps) > 1 else steps[0].id)
        decisions = ask_for_approval(requests, timeout=timeout, key=key)
        self.decisions.update(decisions)
        return decisions.get(steps[0].id)

    def _approve_batch(self) -> None:
        """``approval: batch``: one form, before anything runs, for every billable step.

        A step whose values need upstream outputs is shown as far as it can be rendered
        now; it is checked again, with the reviewer's edits, when it runs.
        """
        requests = []
        for step in self.plan.steps.values():
            try:
                requests += self._requests(step)
            except RunError:
                continue  # needs upstream outputs: rendered (and checked) when it runs
        if requests:
            self.decisions.update(
                ask_for_approval(
                    requests,
                    timeout=self.plan.header.approval_timeout_seconds,
                    key="approve-batch",
                )
            )

    def _refuse(self, step: PlannedStep, error: RunError) -> None:
        """Fail a step without running it (denied, not approved in time, invalid values)."""
        error.step_id = error.step_id or step.id
        self.states.setdefault(step.id, _StepState()).error = error
        future = self._marker(step, _refused, error.format(), "not-run")
        future.add_done_callback(lambda _: self.done.put(step.id))

    def _skip(self, step_id: str, reason: str) -> None:
        step = self.plan.steps[step_id]
        result = StepResult(status="skipped", error=reason)
        self.report.steps[step_id] = result
        if self.checkpoints is not None:
            self.checkpoints.step(step_id, result, step_fingerprint(step))
        self._marker(step, _skipped, reason, "skipped")
        if self.observer is not None:
            self.observer.step_finished(step, result)

    # -- the loop --------------------------------------------------------------------------

    def schedule(self) -> State:
        billable = {step.type for step in self.plan.steps.values() if step.step_cls.billable}
        if billable:
            self.limited_types = limited_tags(billable)
        if self.plan.header.approval == "batch":
            self._approve_batch()
        waiting = self.plan.order()
        for step_id, reason in self.not_selected.items():
            waiting.remove(step_id)
            self._skip(step_id, reason)
        running: set[str] = set()
        terminated_by: str | None = None
        failed: list[str] = []
        while True:
            if terminated_by is None and not stop_requested():
                for step_id in list(waiting):
                    step = self.plan.steps[step_id]
                    if all(up in self.outputs for up in step.depends_on):
                        waiting.remove(step_id)
                        running.add(step_id)
                        self._submit(step)
            if not running:
                break
            step_id = self.done.get()
            running.discard(step_id)
            step = self.plan.steps[step_id]
            result = self._settle(step)
            self.report.steps[step_id] = result
            if self.observer is not None:
                self.observer.step_finished(step, result)
            if result.status == "completed":
                continue
            failed.append(step_id)
            if stop_requested():
                continue  # everything still waiting is "not started", said once at the end
            if step.common.on_failure == "terminate":
                terminated_by = terminated_by or step_id
                continue
            for downstream in self.plan.downstream(step_id):
                if downstream in waiting:
                    waiting.remove(downstream)
                    self._skip(downstream, f'skipped: upstream step "{step_id}" failed')
        for step_id in waiting:
            if stop_requested():
                self._skip(step_id, _NOT_STARTED)
            elif terminated_by is not None:
                self._skip(
                    step_id,
                    f'not started: step "{terminated_by}" failed and its on_failure is terminate',
                )
        for future in self.futures.values():
            future.wait()
        self.report.steps = {sid: self.report.steps[sid] for sid in self.plan.steps}
        unfinished = any(result.status != "completed" for result in self.report.steps.values())
        if stop_requested() and unfinished:  # a stop after the last step started changes nothing
            return self._interrupted()
        return self._final_state(terminated_by, failed)

    def _settle(self, step: PlannedStep) -> StepResult:
        """How a finished step ended, recorded in the run's checkpoints at once."""
        result = self._result(step)
        if self.checkpoints is not None:
            self.checkpoints.step(step.id, result, step_fingerprint(step))
        return result

    def _result(self, step: PlannedStep) -> StepResult:
        future = self.futures[step.id]
        future.wait()
        record = self.states.get(step.id, _StepState())
        seconds = time.monotonic() - record.started if record.started else 0.0
        state = future.state
        if state.is_completed():
            reused = self.reused.get(step.id)
            notes: tuple[str, ...] = ()
            if reused is not None and reused.complete:
                output = fresh_links(reused.output, self.open_store)
                attempts = 0
            else:
                outcome = future.result()
                assert isinstance(outcome, StepOutcome)
                output, attempts, notes = outcome.output, outcome.attempt, outcome.notes
                record.reused = outcome.reused
            self.outputs[step.id] = output
            return StepResult(
                "completed", output, None, seconds, attempts, reused=record.reused, notes=notes
            )
        error = record.error
        if error is None:
            found = state.result(raise_on_failure=False)
            error = found if isinstance(found, BaseException) else None
        message = error_text(error) if error is not None else (state.message or state.name)
        kept = error.partial_output if isinstance(error, RunError) else None
        if isinstance(error, Interrupted) and getattr(error, "fetchflow_not_started", False):
            return StepResult("skipped", None, _NOT_STARTED)
        attempts = getattr(error, "fetchflow_attempt", 0) or record.attempts
        notes = tuple(getattr(error, "fetchflow_notes", ()))
        return StepResult("failed", kept, message, seconds, attempts, notes=notes)

    def _interrupted(self) -> State:
        """End a run whose stop was requested: say what was kept and what did not start."""
        steps = self.report.steps
        done = [sid for sid, result in steps.items() if result.status == "completed"]
        partial = {
            sid: result.output
            for sid, result in steps.items()
            if result.status == "failed" and result.output is not None
        }
        not_run = [sid for sid, result in steps.items() if result.status != "completed"]
        kept = [f"{len(done)} completed step(s) ({', '.join(done)})"] if done else []
        kept += [
            f'{len(output)} file(s) made by step "{sid}"'
            if isinstance(output, list)
            else f'the partial output of step "{sid}"'
            for sid, output in partial.items()
        ]
        number = stop_signal()
        self.report.status = "interrupted"
        self.report.stop_signal = number
        self.report.message = (
            f"interrupted ({_signal_name(number)}): kept {', '.join(kept) or 'nothing'}; "
            f"not finished: {', '.join(not_run) or 'none'}"
        )
        return Cancelled(message=self.report.message)

    def _final_state(self, terminated_by: str | None, failed: list[str]) -> State:
        steps = self.report.steps
        skipped = [sid for sid, result in steps.items() if result.status == "skipped"]
        if terminated_by is not None:
            self.report.status = "failed"
            error = steps[terminated_by].error or "unknown error"
            # A run error's text starts with its step already: say the step once.
            said = error.removeprefix(f'step "{terminated_by}": ')
            self.report.message = f'step "{terminated_by}" failed: {said}'
            return Failed(message=self.report.message)
        if failed:
            self.report.status = "partial"
            self.report.message = (
                f"{len(failed)} step(s) failed ({', '.join(failed)}) and "
                f"{len(skipped)} were skipped; on_failure: continue let the rest finish"
            )
            return Completed(message=self.report.message)
        self.report.status = "completed"
        done = len(steps) - len(self.not_selected)
        self.report.message = f"{done} step(s) completed" + (
            f", {len(self.not_selected)} not selected" if self.not_selected else ""
        )
        return Completed(message=self.report.message)


_NOT_STARTED = "not started: the run was interrupted"


def _signal_name(number: int | None) -> str:
    try:
        return signal.Signals(number).name if number is not None else "stop requested"
    except ValueError:
        return f"signal {number}"


def _reused(note: str) -> State:
    return Completed(message=note)


def _refused(message: str) -> State:
    return Failed(message=message)


def _skipped(reason: str) -> State:
    return Cancelled(message=reason)


def _retry_wanted(task: Any, task_run: Any, state: State) -> bool:
    """Prefect's retry condition: never retry what cannot succeed (refusals, bad config)."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, RunError):
        # Never retry what cannot succeed, nor a step that kept paid-for work: a retry would
        # make (and pay for) it again.
        return error.retryable and error.partial_output is None
    return True


def _retry_billable(task: Any, task_run: Any, state: State) -> bool:
    """:func:`_retry_wanted` for a billable step, which a timeout also ends for good.

    A step that timed out may have a provider call still in flight (its thread cannot be
    stopped) that will be billed: a retry would pay for the same work again.
    """
    if isinstance(state.result(raise_on_failure=False), TimeoutError):
        return False
    return _retry_wanted(task, task_run, state)
