"""``fetchflow run FILE --resume RUN_ID`` refuses what would hand back wrong outputs, through
the real command: one message with a hint, exit 2, no traceback, nothing run."""

from __future__ import annotations

from pathlib import Path

from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

from fetchflow.cli.common import step_types
from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.preflight import StoreOpener
from fetchflow.run.report import RunReport, StepResult
from fetchflow.run.reuse import step_fingerprint
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file

WORKFLOW = """\
name: greet
inputs:
  who: {type: string, default: world}
steps:
  - id: hello
    type: template
    template: "hello << inputs.who >>"
"""


def saved_run(box: Sandbox, run_id: str) -> Path:
    """The workflow file, and a completed run of it (who=world) in the sandbox's store."""
    path = box.tmp / "greet.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    plan = check_file(path, step_types())
    opener = StoreOpener(Settings(home=box.home, store=str(box.store)))
    checkpoints = Checkpoints(opener, run_id)
    fingerprint = step_fingerprint(plan.steps["hello"])
    checkpoints.start(plan, {"who": "world"}, {"hello": fingerprint})
    result = StepResult(status="completed", output="hello world")
    checkpoints.step("hello", result, fingerprint)
    checkpoints.finish(RunReport(workflow="greet", run_id=run_id, status="completed"))
    return path


def state_files(box: Sandbox) -> list[str]:
    return sorted(p.relative_to(box.store).as_posix() for p in box.store.rglob("*") if p.is_file())


def test_resume_with_another_input_value_is_refused(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    path = saved_run(sandbox, "run-1")
    before = state_files(sandbox)

    outcome = sandbox.fetchflow("run", str(path), "--resume", "run-1", "--input", "who=mars")

    assert outcome.code == 2
    assert outcome.stderr.splitlines() == [
        "--input: who='mars' differs from the value run run-1 had (who='world'); --resume "
        "continues a run with its own inputs, and the outputs it reuses were made from them",
        "  hint: leave --input who out to resume run run-1, or run without --resume for a new "
        "run with the new value (steps with cache: true reuse identical requests)",
    ]
    assert "Traceback" not in outcome.stderr
    assert outcome.prefect_modules == []
    assert state_files(sandbox) == before  # no new run was recorded
    assert sandbox.openai.requests == [] and sandbox.gemini.requests == []


def test_resume_repeating_the_runs_own_input_value_is_checked_as_usual(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    path = saved_run(sandbox, "run-1")

    outcome = sandbox.fetchflow(
        "run", str(path), "--resume", "run-1", "--input", "who=world", "--dry-run"
    )

    assert (outcome.code, outcome.stderr) == (0, "")
    assert outcome.prefect_modules == []
