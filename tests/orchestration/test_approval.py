"""Approval before billable calls, on real Prefect runs.

A run pauses with a typed form (Prefect ``pause_flow_run``); a reviewer thread answers it
the way ``fetchflow approve`` / ``fetchflow deny`` do (:func:`answer_paused_run`, through
Prefect's API), and the tests check what ran, with which values, and what Prefect shows.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from fetchflow.run.report import RunReport, StepResult
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from fetchflow.workflow.plan import PlannedStep

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry

FLOWS = Path(__file__).resolve().parents[1] / "data" / "approval"


@dataclass
class RunIds:
    """Receives the run id as soon as the flow run exists."""

    ids: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def run_started(self, report: RunReport) -> None:
        self.ids.append(report.run_id)
        self.ready.set()

    def step_started(self, step: PlannedStep, attempt: int) -> None:
        pass

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        pass


def wait_until_paused(run_id: str, timeout: float = 60.0) -> dict[str, object]:
    """Poll Prefect until the run is Paused; return the form's JSON schema.

    The form's description (markdown shown above it) is added as ``"x-description"``.
    """
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None and state.is_paused():
                keyset = keyset_from_paused_state(state)
                for _ in range(50):  # the schema is saved right after the pause
                    try:
                        schema = json.loads(
                            client.read_flow_run_input(UUID(run_id), keyset["schema"])
                        )
                        description = client.read_flow_run_input(
                            UUID(run_id), keyset["description"]
                        )
                    except Exception:
                        time.sleep(0.1)
                        continue
                    return {**schema, "x-description": json.loads(description)}
            time.sleep(0.2)
    raise AssertionError(f"run {run_id} never paused")


@dataclass
class Reviewed:
    report: RunReport
    forms: list[dict[str, object]]
    answers: list[str]
    seconds: float


@pytest.fixture
def run_reviewed(
    plugin_registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> Callable[..., Reviewed]:
    """Run a workflow; a reviewer thread answers each pause with the next of ``answers``."""

    def run(name: str, answers: list[Callable[[str], str]]) -> Reviewed:
        from fetchflow.orchestration.runner import run_plan

        plan = check_file(FLOWS / f"{name}.yaml", plugin_registry)
        ids = RunIds()
        forms: list[dict[str, object]] = []
        said: list[str] = []
        failures: list[BaseException] = []

        def reviewer() -> None:
            try:
                assert ids.ready.wait(60)
                for answer in answers:
                    forms.append(wait_until_paused(ids.ids[0]))
                    said.append(answer(ids.ids[0]))
                    time.sleep(0.5)  # let the run leave the Paused state
            except BaseException as error:  # reported by the test, not lost in a thread
                failures.append(error)

        thread = threading.Thread(target=reviewer, daemon=True)
        thread.start()
        started = time.monotonic()
        report = run_plan(
            plan,
            resolve_inputs(plan.header, {}),
            settings=Settings(home=tmp_path / "home"),
            observer=ids,
            drain=False,
        )
        seconds = time.monotonic() - started
        thread.join(30)
        assert not failures, failures
        return Reviewed(report, forms, said, seconds)

    return run


def approve(*edits: str, note: str = "") -> Callable[[str], str]:
    from fetchflow.orchestration.approval import answer_paused_run

    return lambda run_id: answer_paused_run(run_id, approve=True, edits=edits, note=note)


def deny(note: str = "") -> Callable[[str], str]:
    from fetchflow.orchestration.approval import answer_paused_run

    return lambda run_id: answer_paused_run(run_id, approve=False, note=note)


@pytest.mark.prefect
def test_the_form_shows_the_resolved_values_and_the_estimate(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    reviewed = run_reviewed("one_step", [approve()])

    [form] = reviewed.forms
    properties = form["properties"]
    assert isinstance(properties, dict)
    assert properties["decision"]["default"] == "approve"
    assert properties["prompt"]["default"] == "a poster of a lighthouse"
    assert properties["count"]["default"] == 2
    assert properties["count"]["maximum"] == 10  # the field's own limits come along
    description = str(form["x-description"])
    assert "| poster | priced | $0.0800 | 2 x $0.04 |" in description
    assert "**Estimated total:** $0.0800" in description


@pytest.mark.prefect
def test_approve_with_an_edit_runs_the_step_with_the_edited_values(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    reviewed = run_reviewed("one_step", [approve("count=3", "prompt=a red lighthouse")])

    report = reviewed.report
    assert reviewed.answers == [f"approved the step of run {report.run_id}"]
    assert report.status == "completed"
    assert report.steps["poster"].output == {"prompt": "a red lighthouse", "count": 3}
    assert report.steps["caption"].output == "caption for a red lighthouse"
    assert report.steps["free"].output == "independent"


@pytest.mark.prefect
def test_deny_fails_the_step_and_its_on_failure_applies(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    reviewed = run_reviewed("one_step", [deny(note="too expensive")])

    report = reviewed.report
    assert report.status == "partial"
    poster = report.steps["poster"]
    assert poster.status == "failed"
    assert poster.error == 'step "poster": denied by the reviewer (too expensive)'
    assert report.steps["caption"].status == "skipped"
    assert report.steps["caption"].error == 'skipped: upstream step "poster" failed'
    assert report.steps["free"].status == "completed"


@pytest.mark.prefect
def test_a_form_nobody_answers_fails_the_step_after_its_timeout(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    reviewed = run_reviewed("timeout", [])

    report = reviewed.report
    poster = report.steps["poster"]
    assert poster.status == "failed"
    assert poster.error == 'step "poster": not approved within 3 s (approval_timeout_seconds)'
    assert report.steps["free"].output == "still runs"
    assert report.status == "partial"
    assert reviewed.seconds < 30


@pytest.mark.prefect
def test_a_batch_asks_once_for_every_billable_step_each_its_own_row(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    def answer(run_id: str) -> str:
        # Approve hero with an edit and deny the banner: per-row decisions in one form,
        # sent the way the UI's Resume button sends them.
        from prefect.flow_runs import resume_flow_run

        form = wait_until_paused(run_id)
        rows = form["properties"]
        assert isinstance(rows, dict)
        answer = {name: dict(spec["default"]) for name, spec in rows.items()}
        answer["hero"]["prompt"] = "hero shot, golden hour"
        answer["banner"]["decision"] = "deny"
        resume_flow_run(UUID(run_id), run_input=answer)
        return "answered"

    reviewed = run_reviewed("batch", [answer])

    [form] = reviewed.forms
    rows = form["properties"]
    assert isinstance(rows, dict)
    assert sorted(rows) == ["banner", "hero"]  # the free step is not in the form
    report = reviewed.report
    assert report.steps["hero"].output == {"prompt": "hero shot, golden hour", "count": 1}
    assert report.steps["banner"].status == "failed"
    assert report.steps["banner"].error == 'step "banner": denied by the reviewer'
    assert report.steps["gratis"].status == "completed"
    assert report.steps["note"].output == "hero: hero shot, golden hour"
    assert report.status == "partial"


@pytest.mark.prefect
def test_a_step_that_costs_nothing_never_asks(run_reviewed: Callable[..., Reviewed]) -> None:
    reviewed = run_reviewed("free", [])

    assert reviewed.forms == []
    assert reviewed.report.status == "completed"
    assert reviewed.report.steps["sample"].output == {"prompt": "free sample", "count": 1}


@pytest.mark.prefect
def test_answering_a_run_that_is_not_paused_is_a_clear_error(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    from fetchflow.orchestration.approval import ApprovalAnswerError, answer_paused_run

    reviewed = run_reviewed("free", [])

    with pytest.raises(ApprovalAnswerError, match=r"is not waiting for approval \(it is Comp"):
        answer_paused_run(reviewed.report.run_id, approve=True)
    with pytest.raises(ApprovalAnswerError, match="is not a run id"):
        answer_paused_run("yesterday", approve=True)


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_the_cli_says_when_there_is_no_server_to_answer_on(
    verb: str, tmp_path: Path, clean_env: Mapping[str, str]
) -> None:
    import subprocess
    import sys

    env = {**clean_env, "FETCHFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", verb, "0b7f1b3e-4c1a-4d5e-9f00-000000000000"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "fetchflow: no Prefect server to reach: the run waits on the server it runs on",
        "  hint: start `fetchflow server` before `fetchflow run`, or set PREFECT_API_URL to "
        "the server of the run",
    ]


@pytest.mark.prefect
def test_a_matrix_step_shows_each_combination_as_its_own_priced_row(
    run_reviewed: Callable[..., Reviewed],
) -> None:
    reviewed = run_reviewed("matrix", [approve()])

    [form] = reviewed.forms
    description = str(form["x-description"])
    rows = [line for line in description.splitlines() if line.startswith("| hero")]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| hero [size=small count=1]", "priced", "$0.0400"],
        ["| hero [size=small count=2]", "priced", "$0.0800"],
        ["| hero [size=large count=1]", "priced", "$0.0400"],
        ["| hero [size=large count=2]", "priced", "$0.0800"],
    ]
    assert "**Estimated total:** $0.2400" in description
    assert form["properties"] and "prompt" in form["properties"]  # one row of fields: the step's
    output = reviewed.report.steps["hero"].output
    assert [(item["prompt"], item["count"]) for item in output] == [  # type: ignore[union-attr]
        ("hero small", 1),
        ("hero small", 2),
        ("hero large", 1),
        ("hero large", 2),
    ]
