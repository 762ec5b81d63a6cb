"""``run --only/--from/--using`` with what a new user (or a bad store) gives it.

Through the real command with ``--dry-run`` (no Prefect): the earlier runs are run records
as every run writes them to the store (``runs/<id>/run.json`` and ``steps/<step>.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from test_bad_input_catalogue import (  # noqa: F401
    Sandbox,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

from fetchflow.registry import StepRegistry
from fetchflow.run.reuse import step_fingerprint
from fetchflow.workflow.checking import check_file

FLOW = Path(__file__).resolve().parents[1] / "data" / "only" / "loop.yaml"
EARLIER = "0f1e2d3c-0000-4000-8000-000000000001"
LATER = "0f1e2d3c-0000-4000-8000-000000000002"
OTHER = "0f1e2d3c-0000-4000-8000-000000000003"

#: The steps as written now: a run with these made its outputs from the same definitions.
FINGERPRINTS = {
    step_id: step_fingerprint(step)
    for step_id, step in check_file(FLOW, StepRegistry.from_entry_points()).steps.items()
}
IMAGE = {
    "file_name": "first-1.png",
    "storage_uri": "file:///nowhere/ab/ab.png",
    "file_url": "file:///nowhere/ab/ab.png",
    "sha256": "ab" * 32,
}


def record(
    box: Sandbox,
    run_id: str,
    started: str,
    *,
    workflow: str = "loop",
    steps: dict[str, object] | None = None,
) -> Path:
    """A run's records in the sandbox's store, as a run leaves them."""
    folder = box.store / "runs" / run_id
    (folder / "steps").mkdir(parents=True)
    document = {
        "fetchflow_state": 1,
        "kind": "run",
        "run_id": run_id,
        "workflow": workflow,
        "file": str(FLOW),
        "inputs": {"product": "kettle"},
        "started_at": started,
        "ended_at": started,
        "heartbeat_at": started,
        "status": "completed",
        "fingerprints": FINGERPRINTS,
    }
    (folder / "run.json").write_text(json.dumps(document), encoding="utf-8")
    for step_id, output in (steps if steps is not None else {"first": [IMAGE]}).items():
        step = {
            "fetchflow_state": 1,
            "kind": "step",
            "step_id": step_id,
            "status": "completed",
            "output": output,
            "error": None,
        }
        (folder / "steps" / f"{step_id}.json").write_text(json.dumps(step), encoding="utf-8")
    return folder


def test_a_using_id_that_cannot_be_a_run_is_said_so_not_reported_as_a_bug(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    for given in ("../x", ""):
        outcome = sandbox.fetchflow("run", str(FLOW), "--only", "hero", "--using", given)

        assert outcome.code == 2, outcome.stderr
        assert outcome.stderr.splitlines() == [
            f"fetchflow: --using {given!r} is not a run id",
            "  hint: give the id fetchflow run printed (▶ workflow · run <id>) or `fetchflow "
            f"runs` lists; latest runs in {sandbox.store.resolve()}: none yet",
        ]
        sandbox.assert_nothing_happened(outcome)


def test_using_is_checked_even_when_nothing_before_the_step_is_reused(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    record(sandbox, OTHER, "2026-01-01T10:00:00+00:00", workflow="other")

    unknown = sandbox.fetchflow("run", str(FLOW), "--from", "first", "--using", "nope", "--dry-run")
    foreign = sandbox.fetchflow("run", str(FLOW), "--from", "first", "--using", OTHER, "--dry-run")

    assert unknown.code == 2, unknown.stdout
    assert unknown.stdout == ""
    assert unknown.stderr.splitlines() == [
        f"fetchflow: --using nope: no run in the asset store {sandbox.store.resolve()}, "
        "not a run of loop",
        f"  hint: give the id of a run of this workflow (fetchflow runs {FLOW} lists them)",
    ]
    assert foreign.code == 2, foreign.stdout
    assert foreign.stderr.splitlines()[0] == (
        f"fetchflow: --using {OTHER}: a run of 'other' in the asset store "
        f"{sandbox.store.resolve()}, not a run of loop"
    )
    assert unknown.prefect_modules == foreign.prefect_modules == []


def test_a_corrupted_run_record_is_passed_over_not_a_stop_for_every_only(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    record(sandbox, EARLIER, "2026-01-01T10:00:00+00:00")
    # The latest run's record was cut short; another run's step document too.
    broken = record(sandbox, LATER, "2026-01-01T11:00:00+00:00")
    (broken / "run.json").write_text('{"kind": "run", "run_id": ', encoding="utf-8")
    torn = record(sandbox, OTHER, "2026-01-01T12:00:00+00:00")
    (torn / "steps" / "first.json").write_text("{not json", encoding="utf-8")

    outcome = sandbox.fetchflow("run", str(FLOW), "--only", "hero", "--dry-run")

    assert outcome.code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert f"  first    image_generation   $0.0000  reused from run {EARLIER}" in lines
    assert outcome.prefect_modules == []


def test_a_dry_run_of_only_costs_the_selected_steps_and_says_what_the_others_are(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    record(sandbox, EARLIER, "2026-01-01T10:00:00+00:00")

    outcome = sandbox.fetchflow("run", str(FLOW), "--only", "hero", "--dry-run")
    document = sandbox.fetchflow("run", str(FLOW), "--only", "hero", "--dry-run", "--json")

    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines() == [
        "loop: dry run (nothing was called)",
        "",
        f"  first    image_generation   $0.0000  reused from run {EARLIER}",
        "  hero     image_generation   $0.0390  1 x gemini-2.5-flash-image auto 1:1 at $0.039 "
        "after first",
        "  caption  template           free  not selected (--only hero)",
        "  note     template           free  not selected (--only hero) after hero",
        "",
        "estimated total: $0.0390",
    ]
    steps = json.loads(document.stdout)["steps"]
    assert {step: row["detail"] for step, row in steps.items() if step != "hero"} == {
        "first": f"reused from run {EARLIER}",
        "caption": "not selected (--only hero)",
        "note": "not selected (--only hero)",
    }
    assert outcome.prefect_modules == document.prefect_modules == []
    assert sandbox.gemini.requests == []


def test_an_output_reused_after_an_edit_stays_edited_since_in_the_next_only(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    # The run that reused first after it was edited records first under its new
    # fingerprint, with its note: the output is still the old definition's.
    later = record(sandbox, LATER, "2026-01-01T11:00:00+00:00")
    step = json.loads((later / "steps" / "first.json").read_text(encoding="utf-8"))
    step["reused"] = f"reused from run {EARLIER} (edited since)"
    (later / "steps" / "first.json").write_text(json.dumps(step), encoding="utf-8")

    outcome = sandbox.fetchflow("run", str(FLOW), "--only", "hero", "--dry-run")

    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[2] == (
        f"  first    image_generation   $0.0000  reused from run {LATER} (edited since)"
    )


BRANCHES = """\
name: branches
steps:
  - id: a
    type: template
    template: A
  - id: b
    type: template
    template: "B << a.output >>"
  - id: d
    type: template
    template: D
  - id: e
    type: template
    template: "<< b.output >> << d.output >>"
"""


def branch_run(
    box: Sandbox, flow: Path, run_id: str, started: str, outputs: dict[str, str]
) -> None:
    """A run of ``branches`` that completed the steps in ``outputs`` (the rest not selected)."""
    plan = check_file(flow, StepRegistry.from_entry_points())
    folder = box.store / "runs" / run_id
    (folder / "steps").mkdir(parents=True)
    document = {
        "fetchflow_state": 1,
        "kind": "run",
        "run_id": run_id,
        "workflow": "branches",
        "file": str(flow),
        "inputs": {},
        "started_at": started,
        "ended_at": started,
        "heartbeat_at": started,
        "status": "completed",
        "fingerprints": {step_id: step_fingerprint(step) for step_id, step in plan.steps.items()},
    }
    (folder / "run.json").write_text(json.dumps(document), encoding="utf-8")
    for step_id in plan.steps:
        done = step_id in outputs
        step = {
            "fetchflow_state": 1,
            "kind": "step",
            "step_id": step_id,
            "status": "completed" if done else "skipped",
            "output": outputs.get(step_id),
            "error": None if done else "not selected (--only b)",
        }
        (folder / "steps" / f"{step_id}.json").write_text(json.dumps(step), encoding="utf-8")


def test_each_needed_step_comes_from_the_latest_run_that_completed_it(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    # The loop: the whole workflow, then b changed and run alone; e needs b and d.
    flow = sandbox.tmp / "cwd" / "branches.yaml"
    flow.write_text(BRANCHES, encoding="utf-8")
    branch_run(
        sandbox, flow, EARLIER, "2026-01-01T10:00:00+00:00", {"a": "A", "b": "B A", "d": "D"}
    )
    branch_run(sandbox, flow, LATER, "2026-01-01T11:00:00+00:00", {"a": "A", "b": "B2 A"})

    outcome = sandbox.fetchflow("run", str(flow), "--only", "e", "--dry-run")

    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[2:6] == [
        f"  a  template           free  reused from run {LATER}",
        f"  b  template           free  reused from run {LATER} after a",
        f"  d  template           free  reused from run {EARLIER}",
        "  e  template           free after b, d",
    ]


def test_an_output_made_from_an_older_upstream_output_says_so(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    # a was run alone after the whole run: b (from the whole run) was made from the old a.
    flow = sandbox.tmp / "cwd" / "branches.yaml"
    flow.write_text(BRANCHES, encoding="utf-8")
    branch_run(
        sandbox, flow, EARLIER, "2026-01-01T10:00:00+00:00", {"a": "A", "b": "B A", "d": "D"}
    )
    branch_run(sandbox, flow, LATER, "2026-01-01T11:00:00+00:00", {"a": "A new"})

    outcome = sandbox.fetchflow("run", str(flow), "--only", "e", "--dry-run")

    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[3] == (
        f"  b  template           free  reused from run {EARLIER} (made from an older a) after a"
    )


def test_from_takes_one_step_not_a_list_of_which_it_ran_the_first(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    outcome = sandbox.fetchflow("run", str(FLOW), "--from", "hero,caption", "--dry-run")

    assert outcome.code == 2, outcome.stdout
    assert outcome.stdout == ""
    assert outcome.stderr.splitlines() == [
        "fetchflow: --from takes one step, got 'hero,caption'",
        "  hint: --from hero runs hero and every step after it; to run just some steps, use "
        "--only hero,caption",
    ]
    sandbox.assert_nothing_happened(outcome)


def test_an_output_made_with_another_value_of_an_input_its_step_reads_says_so(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    record(sandbox, EARLIER, "2026-01-01T10:00:00+00:00")  # made with product=kettle

    changed = sandbox.fetchflow(
        "run", str(FLOW), "--only", "hero", "-i", "product=vase", "--dry-run"
    )
    same = sandbox.fetchflow(
        "run", str(FLOW), "--only", "hero", "-i", "product=kettle", "--dry-run"
    )

    assert changed.code == 0, changed.stderr
    assert changed.stdout.splitlines()[2] == (
        f"  first    image_generation   $0.0000  reused from run {EARLIER} "
        "(made with product='kettle')"
    )
    assert same.stdout.splitlines()[2] == (
        f"  first    image_generation   $0.0000  reused from run {EARLIER}"
    )
