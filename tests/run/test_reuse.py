"""Never pay twice: ``--resume`` reuses what a run already made; ``cache: true`` reuses an
earlier run's output for the same rendered request. Real Prefect runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.preflight import StoreOpener
from fetchflow.run.report import RunReport
from fetchflow.run.reuse import ResumeError, outputs_to_resume, step_fingerprint
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry
    from fetchflow.storage import AssetStore
    from fetchflow.workflow.plan import Plan

FLOWS = Path(__file__).resolve().parents[1] / "data" / "reuse"


def store_of(home: Path) -> AssetStore:
    """The store a run with this home writes to (the embedded default, <home>/assets)."""
    return StoreOpener(Settings(home=home))()


def save(home: Path, plan: Plan, inputs: dict[str, object], report: RunReport) -> None:
    """Write a run's checkpoints the way a run does, one step at a time."""
    checkpoints = Checkpoints(StoreOpener(Settings(home=home)), report.run_id)
    fingerprints = {sid: step_fingerprint(step) for sid, step in plan.steps.items()}
    checkpoints.start(plan, inputs, fingerprints)
    for step_id, result in report.steps.items():
        checkpoints.step(step_id, result, fingerprints[step_id])
    checkpoints.finish(report)


def counter(path: Path) -> int:
    return int(path.read_text(encoding="utf-8")) if path.exists() else 0


@pytest.fixture
def run(
    plugin_registry: StepRegistry, prefect_api: str, tmp_path: Path
) -> Callable[..., RunReport]:
    home = tmp_path / "home"

    def run_it(name: str, resume: str | None = None, **given: object) -> RunReport:
        from fetchflow.orchestration.runner import run_plan

        plan = check_file(FLOWS / f"{name}.yaml", plugin_registry)
        reuse = {}
        if resume is not None:
            earlier, reuse = outputs_to_resume(store_of(home), resume, plan)
            given = {**earlier, **given}
        return run_plan(
            plan,
            resolve_inputs(plan.header, given),
            settings=Settings(home=home),
            drain=False,
            reuse=reuse,
        )

    return run_it


@pytest.mark.prefect
def test_resume_reuses_what_completed_and_runs_the_rest(
    run: Callable[..., RunReport], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = run("resume", state=str(state))
    assert (first.status, first.steps["flaky"].status) == ("failed", "failed")
    assert counter(state / "counted") == 1

    second = run("resume", resume=first.run_id)  # the inputs come from the first run

    assert second.status == "completed"
    assert second.run_id != first.run_id
    counted = second.steps["counted"]
    assert (counted.output, counted.reused) == ("ok", f"reused from run {first.run_id}")
    assert counter(state / "counted") == 1  # not run again
    assert second.steps["flaky"].reused is None and second.steps["flaky"].output == "ok"
    assert second.steps["after"].output == "ok then ok"
    assert second.to_json()["steps"]["counted"] == {  # type: ignore[index]
        "status": "completed",
        "output": "ok",
        "error": None,
        "reused": f"reused from run {first.run_id}",
    }


@pytest.mark.prefect
def test_the_same_rendered_request_is_a_cache_hit_across_runs(
    run: Callable[..., RunReport], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()

    first = run("cached", state=str(state))
    second = run("cached", state=str(state))
    third = run("cached", state=str(state), word="different")

    assert first.steps["made"].reused is None
    assert second.steps["made"].reused == f"cache hit (made by run {first.run_id})"
    assert second.steps["made"].output == first.steps["made"].output == "ok"
    assert third.steps["made"].reused is None  # another rendered request: it ran
    assert counter(state / "made") == 2


@pytest.mark.prefect
def test_resume_refuses_unknown_runs_and_other_workflows(
    run: Callable[..., RunReport], plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    done = run("cached", state=str(state))
    plan = check_file(FLOWS / "resume.yaml", plugin_registry)

    with pytest.raises(
        ResumeError,
        match=r"run .* was a run of workflow 'cached', not "
        r"'resume_me'\n  hint: resume it with its own workflow file",
    ):
        outputs_to_resume(store_of(tmp_path / "home"), done.run_id, plan)
    with pytest.raises(
        ResumeError,
        match=r"no run 'nope' in the asset store .*assets\n  hint: resume a run that wrote "
        r"to this store \(the same FETCHFLOW_STORE, on any machine\); latest runs of "
        r"resume_me: none yet$",
    ):
        outputs_to_resume(store_of(tmp_path / "home"), "nope", plan)


def test_an_edited_step_is_not_reused(plugin_registry: StepRegistry, tmp_path: Path) -> None:
    from fetchflow.run.checkpoints import run_key
    from fetchflow.run.report import StepResult

    plan = check_file(FLOWS / "resume.yaml", plugin_registry)
    report = RunReport(workflow="resume_me", run_id="r1", status="failed")
    report.steps = {
        "counted": StepResult("completed", "ok"),
        "flaky": StepResult("failed", None, "boom"),
        "after": StepResult("skipped", None, "skipped"),
    }
    save(tmp_path, plan, {"state": "/tmp/x"}, report)
    store = store_of(tmp_path)
    saved = store.get_state(run_key("r1"))
    assert saved is not None
    saved["fingerprints"] = {**saved["fingerprints"], "counted": "edited since"}  # type: ignore[dict-item]
    store.put_state(run_key("r1"), saved)

    inputs, reuse = outputs_to_resume(store, "r1", plan)

    assert inputs == {"state": "/tmp/x"}
    assert reuse == {}  # counted changed since: it runs again
    assert step_fingerprint(plan.steps["counted"]) != "edited since"


def test_a_cache_key_counts_an_input_record_by_its_content_not_its_link(tmp_path: Path) -> None:
    from fetchflow.registry import StepRegistry
    from fetchflow.run.reuse import GenerationCache
    from steps.image_edit import ImageEditConfig

    workflow = tmp_path / "edit.yaml"
    workflow.write_text(
        "name: edit\nsteps:\n  - id: warmer\n    type: image_edit\n"
        "    images: a.png\n    prompt: warmer\n    model: preview\n",
        encoding="utf-8",
    )
    (tmp_path / "templates").mkdir()  # the project folder: validate checks a.png is there
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    step = check_file(workflow, StepRegistry.from_entry_points()).steps["warmer"]
    record = {
        "storage_uri": "s3://bucket/ab/abc.png",
        "sha256": "abc",
        "file_url": "https://x?X-Amz-Signature=1",
    }

    def key(**changed: object) -> str:
        config = ImageEditConfig(images=[{**record, **changed}], prompt="warmer", model="preview")
        return GenerationCache.key(step, config)

    # A presigned link is renewed every run: the same object must hit the cache.
    assert key(file_url="https://x?X-Amz-Signature=2") == key()
    # Another object, or another prompt, is another request.
    assert key(storage_uri="s3://bucket/cd/cde.png", sha256="cde") != key()
    assert (
        GenerationCache.key(
            step, ImageEditConfig(images=[record], prompt="cooler", model="preview")
        )
        != key()
    )


def test_an_interrupted_run_hands_its_kept_partial_output_back_to_the_step(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    from fetchflow.run.report import StepResult
    from fetchflow.run.reuse import Reused

    plan = check_file(FLOWS / "resume.yaml", plugin_registry)
    report = RunReport(workflow="resume_me", run_id="r2", status="interrupted")
    kept = [{"storage_uri": "file:///store/a.png", "file_url": "file:///store/a.png", "index": 0}]
    report.steps = {
        "counted": StepResult("completed", "ok"),
        "flaky": StepResult("failed", kept, "interrupted: image 2 of 3 not started"),
        "after": StepResult("skipped", None, "not started: the run was interrupted"),
    }
    save(tmp_path, plan, {"state": "/tmp/x"}, report)

    inputs, reuse = outputs_to_resume(store_of(tmp_path), "r2", plan)

    assert inputs == {"state": "/tmp/x"}
    assert reuse == {
        "counted": Reused("ok", "reused from run r2"),
        "flaky": Reused(kept, "continued from run r2 (1 item kept)", complete=False),
    }


def test_a_failed_step_that_kept_nothing_is_not_handed_anything(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    from fetchflow.run.report import StepResult

    plan = check_file(FLOWS / "resume.yaml", plugin_registry)
    report = RunReport(workflow="resume_me", run_id="r3", status="failed")
    report.steps = {
        "counted": StepResult("failed", [], "boom"),
        "flaky": StepResult("failed", "not a list", "boom"),
        "after": StepResult("skipped"),
    }
    save(tmp_path, plan, {"state": "/tmp/x"}, report)

    assert outputs_to_resume(store_of(tmp_path), "r3", plan)[1] == {}


@pytest.mark.parametrize("run_id", ["../r1", "r1/..", "", ".r1", "r 1"])
def test_a_malformed_run_id_is_refused_without_reading_a_path(
    plugin_registry: StepRegistry, tmp_path: Path, run_id: str
) -> None:
    plan = check_file(FLOWS / "resume.yaml", plugin_registry)

    with pytest.raises(
        ResumeError,
        match=rf"^--resume {re.escape(repr(run_id))} is not a run id\n  hint: give the id "
        r"fetchflow run printed \(▶ workflow · run <id>\); latest runs of resume_me: none yet$",
    ):
        outputs_to_resume(store_of(tmp_path), run_id, plan)
