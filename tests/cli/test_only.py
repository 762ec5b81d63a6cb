"""Run one step, or from one step on: ``--only``, ``--from``, ``--using``.

Through the real command against the fake Gemini server (one call per image): a whole run
first, then only the chosen steps run; every step they need comes from the earlier run's
checkpoints in the store, with no provider call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

FLOW = Path(__file__).resolve().parents[1] / "data" / "only" / "loop.yaml"


def run(box: Sandbox, prefect_api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(FLOW), *args],
        env={**box.env, "PREFECT_API_URL": prefect_api},
        cwd=box.tmp / "cwd",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )


def prompts(box: Sandbox) -> list[str]:
    return [r.json["contents"][0]["parts"][0]["text"] for r in box.gemini.requests if r.json]


@pytest.fixture
def whole(sandbox: Sandbox, prefect_api: str) -> dict[str, object]:  # noqa: F811
    done = run(sandbox, prefect_api, "--json", "-i", "product=kettle")
    assert done.returncode == 0, done.stderr
    assert len(sandbox.gemini.requests) == 2
    document: dict[str, object] = json.loads(done.stdout)
    return document


@pytest.mark.prefect
def test_only_one_step_runs_it_alone_on_the_latest_run_s_outputs(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
    whole: dict[str, object],
) -> None:
    first_run = whole["run_id"]

    done = run(sandbox, prefect_api, "--only", "hero", "--json")

    assert done.returncode == 0, done.stderr
    assert len(sandbox.gemini.requests) == 3  # hero only: first was not run again
    assert prompts(sandbox)[2].startswith("a hero shot next to ")
    document = json.loads(done.stdout)
    steps = document["steps"]
    assert steps["first"]["reused"] == f"reused from run {first_run}"
    assert steps["first"]["output"][0]["sha256"] == whole["steps"]["first"]["output"][0]["sha256"]  # type: ignore[index]
    assert steps["hero"]["status"] == "completed" and "reused" not in steps["hero"]
    for other in ("caption", "note"):
        assert steps[other] == {
            "status": "skipped",
            "output": None,
            "error": "not selected (--only hero)",
        }
    assert (document["status"], document["message"]) == (
        "completed",
        "2 step(s) completed, 2 not selected",
    )


@pytest.mark.prefect
def test_from_a_step_runs_it_and_everything_after_it_and_says_so_in_the_terminal(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
    whole: dict[str, object],
) -> None:
    done = run(sandbox, prefect_api, "--from", "hero")

    assert done.returncode == 0, done.stderr
    assert len(sandbox.gemini.requests) == 3
    lines = done.stderr.splitlines()
    assert f"  ✓ first    reused from run {whole['run_id']}" in lines
    assert "  – caption  not selected (--from hero)" in lines
    # The summary says why they did not run here, too.
    assert f"  ✓ first    completed       -  reused from run {whole['run_id']}" in lines
    assert "  – caption  skipped         -  not selected (--from hero)" in lines
    assert any(line.startswith("  ✓ hero     completed in ") for line in lines)
    assert any(line.startswith("  ✓ note     completed in ") for line in lines)


@pytest.mark.prefect
def test_using_names_the_run_whose_outputs_are_reused_and_its_inputs(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
    whole: dict[str, object],
) -> None:
    later = run(sandbox, prefect_api, "--json", "-i", "product=vase")
    assert later.returncode == 0, later.stderr

    done = run(
        sandbox, prefect_api, "--only", "caption,note", "--using", str(whole["run_id"]), "--json"
    )

    assert done.returncode == 0, done.stderr
    assert len(sandbox.gemini.requests) == 4  # the two whole runs; nothing for this one
    steps = json.loads(done.stdout)["steps"]
    assert steps["caption"]["output"] == "Meet the kettle."  # that run's inputs
    assert steps["hero"]["reused"] == f"reused from run {whole['run_id']}"
    assert steps["first"]["reused"] == f"reused from run {whole['run_id']}"  # hero needs it


def test_only_without_an_earlier_run_says_which_step_it_needs(sandbox: Sandbox) -> None:  # noqa: F811
    outcome = sandbox.fetchflow("run", str(FLOW), "--only", "hero")

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [
        f"fetchflow: --only hero: no earlier run of loop in the asset store "
        f"{sandbox.store.resolve()} to take the output of first from",
        f"  hint: run the whole workflow once (fetchflow run {FLOW}), or run those steps too "
        "(--only first,hero)",
    ]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--only", "heor"],
            [
                'fetchflow: --only: workflow loop has no step "heor"; did you mean "hero"?',
                "  hint: its steps: first, hero, caption, note",
            ],
            id="unknown-step",
        ),
        pytest.param(
            ["--only", " , "],
            [
                "fetchflow: --only: expected step ids, got ' , '",
                "  hint: give step ids of loop: first, hero, caption, note",
            ],
            id="no-step",
        ),
    ],
)
def test_a_step_that_is_not_there_is_refused_with_the_closest_name(
    sandbox: Sandbox,  # noqa: F811
    args: list[str],
    expected: list[str],
) -> None:
    outcome = sandbox.fetchflow("run", str(FLOW), *args)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines() == expected
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.parametrize(
    ("args", "flag", "message", "hint"),
    [
        pytest.param(
            ["--only", "hero", "--from", "hero"],
            "--only",
            "--only and --from cannot be given together",
            "--only runs just the steps named; --from runs a step and everything after it",
            id="only-and-from",
        ),
        pytest.param(
            ["--resume", "abc", "--only", "hero"],
            "--resume",
            "--resume cannot be given with --only, --from or --using",
            "--resume continues a run as it was; --only/--from --using RUN_ID run chosen "
            "steps on that run's outputs",
            id="resume-and-only",
        ),
        pytest.param(
            ["--using", "abc"],
            "--using",
            "--using needs --only or --from (it names the run their upstream outputs come from)",
            "add --only STEP or --from STEP; to continue a run as it was, use --resume",
            id="using-alone",
        ),
    ],
)
def test_flags_that_exclude_each_other_are_refused(
    sandbox: Sandbox,  # noqa: F811
    args: list[str],
    flag: str,
    message: str,
    hint: str,
) -> None:
    outcome = sandbox.fetchflow("run", str(FLOW), *args)

    assert outcome.code == 2, outcome.stderr
    assert outcome.stderr.splitlines()[:2] == [f"{flag}: {message}", f"  hint: {hint}"]
    sandbox.assert_nothing_happened(outcome)
