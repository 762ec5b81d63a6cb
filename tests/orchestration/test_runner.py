"""The runner: checked plans executed as real Prefect flow runs.

Every test runs a workflow from ``tests/data/runs/`` with the test step plugin
(``tests/plugin/fetchflow_teststeps.py``, registered through a real entry point) against the
session's Prefect server, then checks both fetchflow's report and what Prefect recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import pytest

from fetchflow.errors import WorkflowInvalid
from fetchflow.run.report import RunReport, StepResult
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from fetchflow.workflow.plan import Plan, PlannedStep

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry

RUNS = Path(__file__).resolve().parents[1] / "data" / "runs"
T = TypeVar("T")


@dataclass
class RecordingObserver:
    """Keeps every progress callback the runner makes, in order."""

    run_ids: list[str] = field(default_factory=list)
    started: list[tuple[str, int]] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run_started(self, report: RunReport) -> None:
        self.run_ids.append(report.run_id)

    def step_started(self, step: PlannedStep, attempt: int) -> None:
        with self.lock:
            self.started.append((step.id, attempt))

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        with self.lock:
            self.finished.append((step.id, result.status))

    def attempts(self, step_id: str) -> list[int]:
        """The attempt numbers announced for one step."""
        return [attempt for sid, attempt in self.started if sid == step_id]


@dataclass
class Ran:
    """One finished run: its plan, report and what the observer saw."""

    plan: Plan
    report: RunReport
    observer: RecordingObserver
    seconds: float

    def step(self, step_id: str) -> StepResult:
        return self.report.steps[step_id]


@pytest.fixture
def run_workflow(
    plugin_registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> Callable[..., Ran]:
    """Check ``tests/data/runs/<name>.yaml`` and run it for real; ``given`` are the inputs."""

    def run(name: str, **given: object) -> Ran:
        from fetchflow.orchestration.runner import run_plan

        plan = check_file(RUNS / f"{name}.yaml", plugin_registry)
        inputs = resolve_inputs(plan.header, given)
        observer = RecordingObserver()
        started = time.perf_counter()
        report = run_plan(
            plan, inputs, settings=Settings(home=tmp_path / "home"), observer=observer
        )
        return Ran(plan, report, observer, time.perf_counter() - started)

    return run


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 15.0) -> T:
    """Poll ``read()`` until ``done`` says yes (the server records task runs from events,
    asynchronously); return the last value read either way."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def read_flow_run(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id))


def read_task_runs(run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        # Prefect 3.8.8's clients send sort=None and limit=None when not given, which its
        # own server refuses (422): always pass both.
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])),
            sort=TaskRunSort.NAME_ASC,
            limit=100,
        )


# -- static checks of the plugin's list output (no Prefect) ---------------------------------


def test_plugin_steps_come_from_the_entry_point(plugin_registry: StepRegistry) -> None:
    names = set(plugin_registry.names())
    assert {"echo", "sleep", "fail", "crash", "list_output", "template"} <= names
    assert plugin_registry.get("list_output").__module__ == "fetchflow_teststeps"


def test_list_item_field_is_checked_statically(plugin_registry: StepRegistry) -> None:
    with pytest.raises(
        WorkflowInvalid,
        match=r"list_bad_field\.yaml:9:\d+: step \"name\" \(echo\) field \"value\": "
        r".*has no field 'file_nme'; did you mean 'file_name'\?",
    ):
        check_file(RUNS / "list_bad_field.yaml", plugin_registry)


def test_list_index_passes_the_static_check(plugin_registry: StepRegistry) -> None:
    plan = check_file(RUNS / "list_index.yaml", plugin_registry)
    assert plan.edges == {"files": (), "second_url": ("files",), "sixth_url": ("files",)}


# -- real runs -------------------------------------------------------------------------------


@pytest.mark.prefect
def test_outputs_flow_downstream(run_workflow: Callable[..., Ran]) -> None:
    ran = run_workflow("downstream", word="hi")

    assert ran.report.status == "completed", ran.report.message
    assert ran.step("greet").output == "hi, world"
    assert ran.step("shout").output == "upstream said: hi, world"
    assert ran.step("same_numbers").output == [1, 2, 3]  # native, not the text "[1, 2, 3]"
    assert ran.step("second").output == 2
    assert all(result.attempts == 1 for result in ran.report.steps.values())
    assert list(ran.report.steps) == list(ran.plan.steps)  # file order


@pytest.mark.prefect
def test_independent_steps_run_at_the_same_time(
    run_workflow: Callable[..., Ran], tmp_path: Path
) -> None:
    ran = run_workflow("parallel", state_dir=str(tmp_path))

    assert ran.report.status == "completed", ran.report.message
    left, right = ran.step("left").output, ran.step("right").output
    assert isinstance(left, dict) and isinstance(right, dict)
    assert left["found_after_file"] and right["found_after_file"], "one waited for the other"
    overlap = min(left["finished"], right["finished"]) - max(left["started"], right["started"])
    assert overlap > 0, f"the two 0.5 s steps ran one after the other ({overlap:.2f} s apart)"
    assert ran.step("both").output == ["L", "R"]


@pytest.mark.prefect
def test_terminate_stops_the_run_and_names_the_failing_step(
    run_workflow: Callable[..., Ran], tmp_path: Path
) -> None:
    ran = run_workflow("terminate", state_dir=str(tmp_path))
    report = ran.report

    assert report.status == "failed"
    assert report.exit_code == 1
    assert 'step "bad"' in report.message
    assert "the provider refused the prompt" in report.message
    assert "upstream" not in report.message.lower()
    assert ran.step("bad").status == "failed"
    assert "the provider refused the prompt" in (ran.step("bad").error or "")
    # Running when "bad" failed: it finishes and keeps its output.
    assert ran.step("slow").status == "completed"
    assert ran.step("slow").output["marker"] == "still running"  # type: ignore[index]
    assert ran.step("slow").output["found_after_file"] is True  # type: ignore[index]
    for step_id in ("after_slow", "after_bad"):
        skipped = ran.step(step_id)
        assert skipped.status == "skipped"
        assert 'step "bad" failed' in (skipped.error or "")
        assert skipped.attempts == 0
    assert ("after_slow", 1) not in ran.observer.started

    flow_run = read_flow_run(report.run_id)
    assert flow_run.state.is_failed()
    assert "the provider refused the prompt" in flow_run.state.message
    assert "upstream" not in flow_run.state.message.lower()


@pytest.mark.prefect
def test_continue_skips_dependents_and_runs_the_rest(run_workflow: Callable[..., Ran]) -> None:
    ran = run_workflow("continue")
    report = ran.report

    assert report.status == "partial"
    assert report.exit_code == 0
    assert ran.step("bad").status == "failed"
    assert "the provider refused the prompt" in (ran.step("bad").error or "")
    for step_id in ("child", "grandchild"):
        assert ran.step(step_id).status == "skipped"
        assert 'upstream step "bad" failed' in (ran.step(step_id).error or "")
    assert ran.step("other").status == "completed"
    assert ran.step("other").output == "hello x2"

    flow_run = read_flow_run(report.run_id)
    assert flow_run.state.is_completed()
    assert "bad" in flow_run.state.message
    assert "failed" in flow_run.state.message


@pytest.mark.prefect
def test_retries_stop_at_success_and_never_retry_fatal_errors(
    run_workflow: Callable[..., Ran], tmp_path: Path
) -> None:
    ran = run_workflow("retries", state_dir=str(tmp_path))

    flaky = ran.step("flaky")
    assert flaky.status == "completed"
    assert flaky.output == "ok"
    assert flaky.attempts == 3
    assert ran.observer.attempts("flaky") == [1, 2, 3]
    assert (tmp_path / "flaky").read_text() == "3"

    fatal = ran.step("fatal")
    assert fatal.status == "failed"
    assert fatal.attempts == 1
    assert (tmp_path / "fatal").read_text() == "1"
    assert "the prompt was blocked by moderation" in (fatal.error or "")

    stubborn = ran.step("stubborn")
    assert stubborn.status == "failed"
    assert stubborn.attempts == 2
    assert "still down" in (stubborn.error or "")
    assert ran.report.status == "partial"


@pytest.mark.prefect
def test_timeout_fails_the_step_early(run_workflow: Callable[..., Ran]) -> None:
    ran = run_workflow("timeout")

    nap = ran.step("nap")
    assert nap.status == "failed"
    assert nap.output is None
    # The attempt ended soon after 0.5 s; a sleep that ran on would have taken 5 s.
    assert nap.seconds < 2.0, f"the step ran {nap.seconds:.1f} s despite a 0.5 s timeout"
    assert ran.report.status == "failed"
    assert ran.seconds < 5.0, f"the run took {ran.seconds:.1f} s: the 5 s sleep was not stopped"


@pytest.mark.prefect
def test_timeout_error_says_it_timed_out(run_workflow: Callable[..., Ran]) -> None:
    ran = run_workflow("timeout")

    error = ran.step("nap").error or ""
    assert error.startswith("timed out"), error
    assert "0.5 second" in error
    assert "timed out" in ran.report.message


@pytest.mark.prefect
def test_template_failure_at_run_time_names_the_field(run_workflow: Callable[..., Ran]) -> None:
    ran = run_workflow("list_index")

    assert ran.step("files").output == [
        {"file_url": "https://example.test/files/item-0.png", "file_name": "item-0.png"},
        {"file_url": "https://example.test/files/item-1.png", "file_name": "item-1.png"},
    ]
    assert ran.step("second_url").output == "https://example.test/files/item-1.png"
    sixth = ran.step("sixth_url")
    assert sixth.status == "failed"
    assert sixth.attempts == 1
    error = sixth.error or ""
    assert error.startswith('step "sixth_url": field "value": template failed:')
    assert "hint:" in error
    assert "Traceback" not in error
    assert 'File "' not in error
    assert ran.report.status == "partial"


@pytest.mark.prefect
def test_crashing_step_reports_the_exception(run_workflow: Callable[..., Ran]) -> None:
    ran = run_workflow("crash")

    assert ran.step("broken").status == "failed"
    assert ran.step("broken").error == "ValueError: boom"
    assert ran.report.status == "failed"
    assert ran.report.message == 'step "broken" failed: ValueError: boom'


@pytest.mark.prefect
def test_prefect_records_one_flow_run_and_a_task_run_per_step(
    run_workflow: Callable[..., Ran],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    ran = run_workflow("records", word="hi")
    report = ran.report
    assert report.status == "partial"
    assert ran.observer.run_ids == [report.run_id]

    flow_run = read_flow_run(report.run_id)
    assert flow_run.parameters == {"word": "hi", "count": 2}
    with get_client(sync_client=True) as client:
        assert client.read_flow(flow_run.flow_id).name == "records"
        runs_of_flow = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["records"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=10,
        )
    assert [run.id for run in runs_of_flow] == [UUID(report.run_id)]

    task_runs = wait_for(
        lambda: read_task_runs(report.run_id),
        lambda runs: len(runs) >= 4 and all(run.state and run.state.is_final() for run in runs),
    )
    by_name = {run.name: run for run in task_runs}
    assert sorted(run.name for run in task_runs) == sorted(ran.plan.steps)
    assert by_name["first"].state.is_completed()
    assert by_name["last"].state.is_completed()
    assert by_name["broken"].state.is_failed()
    cancelled = by_name["after_broken"].state
    assert cancelled.is_cancelled()
    assert 'upstream step "broken" failed' in cancelled.message
    assert by_name["broken"].tags == []  # only billable steps carry their type as a tag


@pytest.mark.prefect
def test_the_last_attempt_decides_the_error(
    run_workflow: Callable[..., Ran], tmp_path: Path
) -> None:
    ran = run_workflow("retry_then_timeout", state_dir=str(tmp_path))

    flaky = ran.step("flaky")
    assert flaky.status == "failed"
    assert flaky.attempts == 2
    assert (tmp_path / "flaky").read_text() == "2"
    assert (flaky.error or "").startswith("timed out"), flaky.error
    assert "first attempt refused" not in (flaky.error or "")
