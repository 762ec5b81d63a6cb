"""``--resume`` never hands a step an output made from something that changed since.

The earlier run is written to a real local store the way a run writes it (its checkpoints);
what ``--resume`` reuses is read back from there (no Prefect needed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fetchflow.cli.common import step_types
from fetchflow.run.checkpoints import Checkpoints, run_key
from fetchflow.run.preflight import StoreOpener
from fetchflow.run.report import RunReport, StepResult
from fetchflow.run.reuse import ResumeError, outputs_to_resume, step_fingerprint
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.plan import Plan

WORKFLOW = """\
name: greet
inputs:
  who: {type: string, default: world}
steps:
  - id: hello
    type: template
    template: "hello << inputs.who >>"
  - id: shout
    type: template
    template: "<< hello.output | upper >>!"
  - id: aside
    type: template
    template: "unrelated"
"""


def plan_of(tmp_path: Path, text: str) -> Plan:
    path = tmp_path / "greet.yaml"
    path.write_text(text, encoding="utf-8")
    return check_file(path, step_types())


def save_completed_run(home: Path, plan: Plan, run_id: str) -> None:
    """Checkpoints of a run of ``plan`` that completed every step."""
    checkpoints = Checkpoints(StoreOpener(Settings(home=home)), run_id)
    fingerprints = {sid: step_fingerprint(step) for sid, step in plan.steps.items()}
    checkpoints.start(plan, {"who": "world"}, fingerprints)
    outputs = {"hello": "hello world", "shout": "HELLO WORLD!", "aside": "unrelated"}
    report = RunReport(workflow=plan.name, run_id=run_id, status="completed")
    for step_id, output in outputs.items():
        result = StepResult(status="completed", output=output)
        report.steps[step_id] = result
        checkpoints.step(step_id, result, fingerprints[step_id])
    checkpoints.finish(report)


def test_a_step_after_an_edited_step_runs_again_on_resume(tmp_path: Path) -> None:
    home = tmp_path / "home"
    save_completed_run(home, plan_of(tmp_path, WORKFLOW), "run-1")
    edited = plan_of(tmp_path, WORKFLOW.replace('"hello << inputs', '"bye << inputs'))

    _, reuse = outputs_to_resume(StoreOpener(Settings(home=home))(), "run-1", edited)

    # "hello" was edited: it runs again, and so does "shout", which was made from its old
    # output ("HELLO WORLD!" would be wrong next to "bye world"); "aside" read neither.
    assert sorted(reuse) == ["aside"]
    assert reuse["aside"].output == "unrelated"


def test_an_unchanged_workflow_reuses_every_completed_step(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = plan_of(tmp_path, WORKFLOW)
    save_completed_run(home, plan, "run-1")

    inputs, reuse = outputs_to_resume(StoreOpener(Settings(home=home))(), "run-1", plan)

    assert inputs == {"who": "world"}
    assert {sid: r.output for sid, r in reuse.items()} == {
        "hello": "hello world",
        "shout": "HELLO WORLD!",
        "aside": "unrelated",
    }


def save_running_run(home: Path, plan: Plan, run_id: str, **record: object) -> None:
    """A run's record that still says ``running`` (killed, lost, or alive), with
    ``record``'s fields (host, pid, heartbeat_at) as its attempt wrote them."""
    opener = StoreOpener(Settings(home=home))
    checkpoints = Checkpoints(opener, run_id)
    fingerprints = {sid: step_fingerprint(step) for sid, step in plan.steps.items()}
    checkpoints.start(plan, {"who": "world"}, fingerprints)
    checkpoints.step(
        "hello", StepResult(status="completed", output="hello world"), fingerprints["hello"]
    )
    opener().put_state(run_key(run_id), {**checkpoints.record, **record})


def test_resume_of_a_run_still_beating_on_another_machine_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = plan_of(tmp_path, WORKFLOW)
    beat = datetime.now(UTC).isoformat()
    save_running_run(home, plan, "run-1", host="worker-7", heartbeat_at=beat)

    with pytest.raises(ResumeError) as raised:
        outputs_to_resume(StoreOpener(Settings(home=home))(), "run-1", plan)

    assert raised.value.format() == (
        f"run run-1 is still running (on worker-7, last heartbeat {beat}): resuming it now "
        "would run its steps a second time beside it\n"
        "  hint: wait for it to end, or stop it (Ctrl-C where it runs), then resume; a run "
        "whose machine died counts as dead after 6 missed heartbeats of "
        "FETCHFLOW_HEARTBEAT_SECONDS"
    )


def test_resume_of_a_run_whose_process_here_is_alive_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = plan_of(tmp_path, WORKFLOW)
    save_running_run(home, plan, "run-1", pid=os.getpid())  # this very process: alive

    with pytest.raises(ResumeError, match="run run-1 is still running"):
        outputs_to_resume(StoreOpener(Settings(home=home))(), "run-1", plan)


def test_a_run_killed_here_a_moment_ago_resumes_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = plan_of(tmp_path, WORKFLOW)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    save_running_run(home, plan, "run-1", pid=dead.pid)  # fresh heartbeat, process gone

    _, reuse = outputs_to_resume(StoreOpener(Settings(home=home))(), "run-1", plan)

    assert reuse["hello"].output == "hello world"


def test_a_run_silent_for_six_heartbeats_elsewhere_resumes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    plan = plan_of(tmp_path, WORKFLOW)
    old = (datetime.now(UTC) - timedelta(seconds=61)).isoformat()
    save_running_run(home, plan, "run-1", host="worker-7", heartbeat_at=old)

    _, reuse = outputs_to_resume(StoreOpener(Settings(home=home))(), "run-1", plan)

    assert reuse["hello"].output == "hello world"
