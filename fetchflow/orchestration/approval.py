"""Approval before billable calls: the run pauses with a typed form (part of the runner).

A step with ``approval: required`` waits, right before it would run, for a reviewer: the
Prefect UI shows a form with the resolved values (prompt, model, size or aspect ratio,
count, style, ...), editable, the estimated cost, and a decision (approve or deny);
``fetchflow approve RUN_ID`` / ``fetchflow deny RUN_ID`` answer from a terminal. A workflow
with ``approval: batch`` asks once, before anything runs, for every billable step, each as
its own row. Steps that cost nothing never ask. A form nobody answers in time fails the
step with a clear message (its ``on_failure`` applies) and the run goes on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, cast

from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

from fetchflow.errors import ApprovalAnswerError
from fetchflow.field_issues import describe_value
from fetchflow.step import CostEstimate
from fetchflow.workflow.matrix import combination_label
from fetchflow.workflow.plan import PlannedStep

__all__ = [
    "ApprovalAnswerError",
    "ApprovalDecision",
    "ApprovalRequest",
    "answer_paused_run",
    "ask_for_approval",
]

POLL_SECONDS = 2
Decision = Literal["approve", "deny"]


@dataclass(frozen=True)
class ApprovalRequest:
    """One step waiting for a reviewer.

    A step with a matrix asks with one request per combination: the form lists each as its
    own row, and its editable fields are the first combination's (an edit applies to every
    combination; the decision is the step's).

    Attributes:
        step: The step.
        values: The current values of its editable fields (rendered where known).
        estimate: What it is expected to cost, when known.
        combination: The matrix combination's axis values (empty without a matrix).
    """

    step: PlannedStep
    values: dict[str, object]
    estimate: CostEstimate | None
    combination: dict[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The step's id, with the combination when there is one: ``hero [style=ink]``."""
        if not self.combination:
            return self.step.id
        return f"{self.step.id} [{combination_label(self.combination)}]"


@dataclass(frozen=True)
class ApprovalDecision:
    """What the reviewer decided for one step.

    Attributes:
        approved: Whether the step may run.
        overrides: Fields the reviewer changed, with their new values.
        message: Why the step does not run (denied, timed out), for its error.
    """

    approved: bool
    overrides: dict[str, object] = field(default_factory=dict)
    message: str = ""


def _cost_text(estimate: CostEstimate | None) -> str:
    if estimate is None or estimate.cost_usd is None:
        return "unknown (no published price)"
    return f"${estimate.cost_usd:.4f}"


def _row_model(request: ApprovalRequest) -> type[BaseModel]:
    """The form of one step: a decision, a note, then its editable fields."""
    fields: dict[str, Any] = {
        "decision": (Decision, Field("approve", description="approve runs it; deny fails it")),
        "note": (str, Field("", description="Why (kept in the run's log).")),
    }
    model_fields = request.step.step_cls.config_model.model_fields
    for name, value in request.values.items():
        info = model_fields[name]
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[annotation, *info.metadata]
        fields[name] = (annotation, Field(value, description=info.description))
    return create_model(f"Approve_{request.step.id}", **fields)


def _description(requests: Sequence[ApprovalRequest]) -> str:
    lines = ["### Approve billable steps", ""]
    lines += ["| step | type | estimated cost | what |", "|---|---|---|---|"]
    total: float | None = 0.0
    for request in requests:
        estimate = request.estimate
        what = (estimate.detail if estimate else "") or ", ".join(
            f"{key}={describe_value(value, 40)}"
            for key, value in request.values.items()
            if key != "prompt" and value is not None
        )
        lines.append(f"| {request.label} | {request.step.type} | {_cost_text(estimate)} | {what} |")
        if total is not None:
            total = (
                None
                if estimate is None or estimate.cost_usd is None
                else (total + estimate.cost_usd)
            )
    lines += ["", f"**Estimated total:** {'unknown' if total is None else f'${total:.4f}'}"]
    lines += ["", "Edit any value, then resume. Set decision to deny to stop a step."]
    return "\n".join(lines)


def _decision(request: ApprovalRequest, answer: BaseModel) -> ApprovalDecision:
    data = answer.model_dump()
    note = str(data.get("note") or "").strip()
    if data.get("decision") == "deny":
        reason = f" ({note})" if note else ""
        return ApprovalDecision(False, message=f"denied by the reviewer{reason}")
    overrides = {
        name: data[name]
        for name in request.values
        if name in data and data[name] != request.values[name]
    }
    return ApprovalDecision(True, overrides=overrides)


def _resume_after_timeout() -> None:
    """Put the flow run back to Running so the other steps can go on."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(), force=True)


def ask_for_approval(
    requests: Sequence[ApprovalRequest], *, timeout: float, key: str
) -> Mapping[str, ApprovalDecision]:
    """Pause the flow run until a reviewer answers the form (or ``timeout`` seconds pass).

    One request shows its fields directly; several (a batch) show one row per step.

    Returns:
        The decision for each step id.
    """
    seconds = max(1, math.ceil(timeout))
    # One editable row per step: a matrix step's combinations share it (the first one's).
    firsts: dict[str, ApprovalRequest] = {}
    for request in requests:
        firsts.setdefault(request.step.id, request)
    single = len(firsts) == 1
    rows = {step_id: _row_model(request) for step_id, request in firsts.items()}
    base: Any = (RunInput, rows[requests[0].step.id]) if single else RunInput
    fields: dict[str, Any] = (
        {}
        if single
        else {
            step_id: (row, Field(row(), description=f"step {step_id}"))
            for step_id, row in rows.items()
        }
    )
    model = cast(type[RunInput], create_model("Approve", __base__=base, **fields))
    form = model.with_initial_data(description=_description(requests))
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=seconds, poll_interval=POLL_SECONDS, key=key
        )
    except FlowPauseTimeout:
        _resume_after_timeout()
        message = f"not approved within {seconds} s (approval_timeout_seconds)"
        return {step_id: ApprovalDecision(False, message=message) for step_id in firsts}
    if single:
        return {requests[0].step.id: _decision(requests[0], answer)}
    return {
        step_id: _decision(request, getattr(answer, step_id)) for step_id, request in firsts.items()
    }


def _parse_edit(text: str) -> tuple[list[str], object]:
    import yaml

    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ApprovalAnswerError(
            f"expected FIELD=VALUE or STEP.FIELD=VALUE, got {text!r}", "--set count=2"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return name.strip().split("."), value


def answer_paused_run(
    run_id: str, *, approve: bool, edits: Sequence[str] = (), note: str = ""
) -> str:
    """Answer the approval form a paused run waits on (what the UI's Resume does).

    Args:
        run_id: The flow run's id.
        approve: Approve (True) or deny (False) every step in the form.
        edits: ``field=value`` (one step) or ``step.field=value`` (a batch).
        note: Kept with the decision.

    Returns:
        A line saying what was answered.

    Raises:
        ApprovalAnswerError: The run is not waiting for approval, or an edit is invalid.
    """
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run
    from prefect.input.run_input import keyset_from_paused_state

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise ApprovalAnswerError(
            f"{run_id!r} is not a run id", "copy the run id fetchflow run printed"
        ) from None
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise ApprovalAnswerError(
                f"no run {run_id} on the Prefect server at {client.api_url}",
                "copy the id fetchflow run printed, and answer on the server the run runs on",
            ) from None
        state = flow_run.state
        if state is None or not state.is_paused():
            raise ApprovalAnswerError(
                f"run {run_id} is not waiting for approval (it is "
                f"{state.name if state else 'unknown'})",
                "check the run in the UI",
            )
        keyset = keyset_from_paused_state(state)
        schema = json.loads(client.read_flow_run_input(flow_run_id, keyset["schema"]))
    properties: dict[str, Any] = schema.get("properties", {})
    decision = "approve" if approve else "deny"
    single = "decision" in properties
    if single:
        answer: dict[str, Any] = {name: spec.get("default") for name, spec in properties.items()}
        answer.update(decision=decision, note=note)
    else:
        answer = {
            name: {**(spec.get("default") or {}), "decision": decision, "note": note}
            for name, spec in properties.items()
        }
    for edit in edits:
        path, value = _parse_edit(edit)
        target = answer if single else answer.get(path[0])
        field_name = path[-1]
        if target is None or (not single and len(path) != 2) or (single and len(path) != 1):
            raise ApprovalAnswerError(
                f"cannot set {edit!r}: the form has "
                + (", ".join(answer) if single else "steps " + ", ".join(answer)),
                "--set FIELD=VALUE for one step, --set STEP.FIELD=VALUE for a batch",
            )
        if field_name not in target:
            raise ApprovalAnswerError(
                f"cannot set {edit!r}: no field {field_name!r} (fields: {', '.join(target)})",
                "edit one of the listed fields",
            )
        target[field_name] = value
    resume_flow_run(flow_run_id, run_input=answer)
    steps = "the step" if single else f"{len(answer)} steps"
    return f"{'approved' if approve else 'denied'} {steps} of run {run_id}"
