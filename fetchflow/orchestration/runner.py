"""Plan -> one Prefect flow run.

Only :mod:`fetchflow.orchestration` imports Prefect: this module (the flow), the scheduler
(the scheduling loop in the flow body, one task run per step), approval and artifacts (what
the UI shows). One flow run per workflow run, named after the workflow; one task run per
step, named after the step id, tagged with its type when it is billable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from inspect import Parameter, Signature
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, get_run_context
from prefect.exceptions import TerminationSignal
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from fetchflow.interrupt import handle_stop_signals, stop_requested, stop_signal
from fetchflow.orchestration.artifacts import publish_run_summary
from fetchflow.orchestration.bundle import version_refusal
from fetchflow.orchestration.run_claim import claim_run, end_when_superseded
from fetchflow.orchestration.scheduler import RunObserver, RunScheduler, error_text
from fetchflow.orchestration.server import run_url
from fetchflow.orchestration.task_runners import make_task_runner, runs_steps_elsewhere
from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.preflight import preflight
from fetchflow.run.report import RunReport
from fetchflow.run.reuse import Reused, step_fingerprint
from fetchflow.settings import Settings
from fetchflow.workflow.inputs import resolve_inputs
from fetchflow.workflow.plan import Plan

__all__ = ["RunObserver", "build_flow", "error_text", "run_plan"]

_PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "list": list,
    "object": dict,
}


def _signature(plan: Plan) -> Signature:
    """The flow's parameters: one per declared input, so the UI shows them separately."""
    parameters = []
    for name, spec in plan.header.inputs.items():
        default = (
            spec.default if spec.has_default else (Parameter.empty if spec.is_required else None)
        )
        parameters.append(
            Parameter(
                name, Parameter.KEYWORD_ONLY, default=default, annotation=_PYTHON_TYPES[spec.type]
            )
        )
    return Signature(parameters)


def _drain_prefect_workers() -> None:
    """Make sure every task run and log reached the server before the process exits."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception:  # a worker that never started has nothing to drain
            logging.getLogger(__name__).debug("drain of %s failed", worker, exc_info=True)


def build_flow(
    plan: Plan,
    *,
    settings: Settings,
    observer: RunObserver | None = None,
    open_store: Callable[[], Any] | None = None,
    ui_url: str | None = None,
    on_report: Callable[[RunReport], None] | None = None,
    reuse: Mapping[str, Reused] | None = None,
    not_selected: Mapping[str, str] | None = None,
    resumed_from: str | None = None,
    stop_on_signals: bool = False,
) -> Any:
    """The Prefect flow of a checked plan: one flow run per call, one task run per step.

    Its parameters are the workflow's inputs (so Prefect's run form shows them); every call
    resolves them against the declared types and defaults, runs the steps, and hands its
    :class:`RunReport` to ``on_report`` as soon as the flow run exists (it is filled in as
    the run goes).

    Args:
        plan: The checked workflow.
        settings: fetchflow settings.
        observer: Receives progress.
        open_store: Opens the asset store; when not given, the pre-run checks
            (:func:`fetchflow.run.preflight.preflight`) run at the start of each flow run.
        ui_url: The Prefect UI's address, to put the run's link in the report.
        on_report: Receives each run's report.
        reuse: Outputs of an earlier run to reuse instead of running those steps
            (``--resume``, see :func:`fetchflow.run.reuse.outputs_to_resume`).
        not_selected: Steps that do not run in this run (``--only``/``--from``), with why.
        resumed_from: The run whose outputs this one reuses (recorded in its run record).
        stop_on_signals: SIGINT and SIGTERM request a stop (:mod:`fetchflow.interrupt`)
            while the flow body runs, instead of Prefect's SIGTERM handler crashing it.
    """

    def body(**given: object) -> State:
        context = get_run_context()
        assert isinstance(context, FlowRunContext) and context.flow_run is not None
        flow_run = context.flow_run
        if (refused := version_refusal(context)) is not None:
            return refused  # created for another version of the workflow (bundle.py)
        report = RunReport(workflow=plan.name, run_id=str(flow_run.id))
        if on_report is not None:
            on_report(report)
        if ui_url:
            report.url = run_url(ui_url, report.run_id)
        inputs = resolve_inputs(plan.header, {k: v for k, v in given.items() if v is not None})
        opener = open_store if open_store is not None else preflight(plan, settings)
        checkpoints = Checkpoints(opener, report.run_id)
        attempt = max(1, flow_run.run_count or 1)
        claim = claim_run(opener, report.run_id, plan, attempt=attempt, settings=settings)
        if claim.finished_by_other is not None:
            # Another copy of this very run was alive and finished it while this one
            # waited: say what it did, never run it twice nor overwrite its end.
            return claim.finished_by_other.mirror(report)
        run = RunScheduler(plan, settings, inputs, report, observer, opener)
        run.reused = {**dict(reuse or {}), **claim.reuse}
        run.not_selected = dict(not_selected or {})
        run.checkpoints = checkpoints
        run.remote_steps = runs_steps_elsewhere(settings)
        run.run_info = {
            "id": str(flow_run.id),
            "name": flow_run.name,
            "started_at": run.started_at.isoformat(),
        }
        checkpoints.start(
            plan,
            inputs,
            {sid: step_fingerprint(step) for sid, step in plan.steps.items()},
            attempt=attempt,
            resumed_from=resumed_from,
            heartbeat_seconds=settings.heartbeat_seconds,
        )
        if observer is not None:
            observer.run_started(report)
        started = time.monotonic()
        signals = handle_stop_signals() if stop_on_signals else contextlib.nullcontext()
        with signals, _heartbeat(checkpoints, settings.heartbeat_seconds):
            # Also over the summary and the record: a signal never loses the record.
            return _finish(run, report, started)

    def _finish(run: RunScheduler, report: RunReport, started: float) -> State:
        try:
            final = run.schedule()
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting for the steps in flight, keep what is known.
            report.status = "interrupted"
            report.stop_signal = stop_signal()
            report.message = (
                "interrupted again: stopped without waiting for the steps in flight; kept "
                f"{sum(r.status == 'completed' for r in report.steps.values())} completed "
                "step(s)"
            )
            _record_end(run, report)
            raise
        publish_run_summary(
            report,
            step_titles={sid: step.title for sid, step in plan.steps.items()},
            step_types={sid: step.type for sid, step in plan.steps.items()},
            seconds=time.monotonic() - started,
        )
        return _record_end(run, report) or final

    def _record_end(run: RunScheduler, report: RunReport) -> State | None:
        """Write the run's end in the store; when a later attempt took the run over, end
        the way that one ended instead (its state, not this stale copy's)."""
        checkpoints = run.checkpoints
        if checkpoints is None:
            return None
        mirrored = end_when_superseded(checkpoints, report, settings)
        if mirrored is None:
            checkpoints.finish(report)
        return mirrored

    body.__signature__ = _signature(plan)  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = "fetchflow_" + "".join(
        c if c.isalnum() else "_" for c in plan.name
    )
    return flow(
        name=plan.name,
        description=plan.header.description or None,
        validate_parameters=False,
        persist_result=False,
        log_prints=False,
        task_runner=make_task_runner(settings),
    )(body)


@contextlib.contextmanager
def _heartbeat(checkpoints: Checkpoints, every: float) -> Iterator[None]:
    """Refresh the run's record in the store every ``every`` seconds while the block runs:
    how other machines know this run is alive (and never take it over)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            checkpoints.heartbeat()

    thread = threading.Thread(target=beat, name="fetchflow-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)


def run_plan(
    plan: Plan,
    inputs: Mapping[str, object],
    *,
    settings: Settings,
    observer: RunObserver | None = None,
    open_store: Callable[[], Any] | None = None,
    drain: bool = True,
    ui_url: str | None = None,
    reuse: Mapping[str, Reused] | None = None,
    not_selected: Mapping[str, str] | None = None,
    resumed_from: str | None = None,
    stop_on_signals: bool = False,
) -> RunReport:
    """Run a checked plan as one Prefect flow run, in this process.

    Args:
        plan: The checked workflow.
        inputs: Resolved inputs (see :func:`fetchflow.workflow.inputs.resolve_inputs`).
        settings: fetchflow settings.
        observer: Receives progress.
        open_store: Opens the asset store (steps that write files use it). When not given,
            the pre-run checks (:func:`fetchflow.run.preflight.preflight`) run here, before
            Prefect starts.
        drain: Flush Prefect's event and log workers before returning (so the run's
            history is complete even if the process exits right after).
        ui_url: The Prefect UI's address, to put the run's link in the report.
        reuse: Outputs of an earlier run to reuse (``--resume``, ``--only``).
        not_selected: Steps that do not run (``--only``/``--from``), with why.
        resumed_from: The run whose outputs this one reuses (recorded in its run record).
        stop_on_signals: SIGINT and SIGTERM request a stop during the run (the CLI's
            behaviour, see :mod:`fetchflow.interrupt`); the report then says
            ``interrupted``.

    Returns:
        The run's report; ``report.status`` says how it ended.
    """
    if open_store is None:
        open_store = preflight(plan, settings)
    reports: list[RunReport] = []
    workflow_flow = build_flow(
        plan,
        settings=settings,
        observer=observer,
        open_store=open_store,
        ui_url=ui_url,
        on_report=reports.append,
        reuse=reuse,
        not_selected=not_selected,
        resumed_from=resumed_from,
        stop_on_signals=stop_on_signals,
    )
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = workflow_flow(**inputs, return_state=True)
    except (KeyboardInterrupt, TerminationSignal):
        # A second Ctrl-C, or a SIGTERM that reached Prefect's own handler (it holds SIGTERM
        # while the flow run starts and ends, outside the flow body).
        if not (stop_on_signals and stop_requested()):
            raise
        if reports and (reports[0].status == "interrupted" or reports[0].steps):
            return reports[0]  # the flow body saved it; the caller says how to resume
        return RunReport(
            workflow=plan.name,
            run_id="",  # nothing ran and nothing was saved: there is nothing to resume
            status="interrupted",
            message="interrupted before any step started; nothing was called",
            stop_signal=stop_signal(),
        )
    if drain:
        _drain_prefect_workers()
    report = reports[0] if reports else RunReport(workflow=plan.name, run_id="")
    if not report.run_id:
        report.run_id = str(state.state_details.flow_run_id or "")
    if state.is_failed() and report.status != "failed":
        # The loop itself broke (a bug or a crash): never report that as success.
        error = state.result(raise_on_failure=False)
        report.status = "failed"
        report.message = (
            error_text(error) if isinstance(error, BaseException) else state.message or ""
        )
    return report
