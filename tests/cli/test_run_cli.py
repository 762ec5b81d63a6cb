"""``fetchflow run`` as users call it: a subprocess, the embedded Prefect server, exit codes.

One run starts its own Prefect server (no ``PREFECT_API_URL``), the cold start a user without
``fetchflow server`` gets (~20 s); the others run on the session's server (``prefect_api``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

RUNS = Path(__file__).resolve().parents[1] / "data" / "runs"
REPO = Path(__file__).resolve().parents[2]
PROGRESS_MARKS = ("▶ ", "  ▸ ", "  ✓ ", "  ✗ ", "  – ")


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def base_env(clean_env: Mapping[str, str], home: Path, pythonpath: str) -> dict[str, str]:
    """The machine's environment minus its Prefect, fetchflow and AWS settings, plus ours."""
    env = dict(clean_env)
    # The repository first: the venv's editable install maps ``fetchflow`` as a namespace
    # package outside the repository, where ``from fetchflow import Step`` then fails.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), pythonpath])
    env["FETCHFLOW_HOME"] = str(home)
    env["NO_COLOR"] = "1"
    return env


def fetchflow_run(env: dict[str, str], cwd: Path, *args: str) -> CliResult:
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cold_run_cli(
    clean_env: Mapping[str, str], plugin_pythonpath: str, tmp_path: Path
) -> Callable[..., CliResult]:
    """``fetchflow run ARGS...`` in a subprocess with the test steps installed, starting its
    own Prefect server in a fresh ``FETCHFLOW_HOME``."""
    env = base_env(clean_env, tmp_path / "home", plugin_pythonpath)

    def run(*args: str) -> CliResult:
        return fetchflow_run(env, tmp_path, *args)

    return run


@pytest.fixture
def run_cli(
    clean_env: Mapping[str, str], prefect_api: str, plugin_pythonpath: str, tmp_path: Path
) -> Callable[..., CliResult]:
    """``fetchflow run ARGS...`` in a subprocess with the test steps installed, on the
    session's Prefect server."""
    env = base_env(clean_env, tmp_path / "home", plugin_pythonpath)
    env["PREFECT_API_URL"] = prefect_api

    def run(*args: str) -> CliResult:
        return fetchflow_run(env, tmp_path, *args)

    return run


def assert_quiet(stderr: str) -> None:
    """No traceback and no Prefect log lines on the user's terminal."""
    assert "Traceback" not in stderr
    assert "prefect" not in stderr.lower(), stderr
    assert "| ERROR" not in stderr and "| WARNING" not in stderr, stderr


def test_invalid_input_exits_2_before_anything_runs(
    clean_env: Mapping[str, str], plugin_pythonpath: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = base_env(clean_env, home, plugin_pythonpath)

    done = fetchflow_run(env, tmp_path, str(RUNS / "continue.yaml"), "--input", "count=abc")

    assert done.code == 2
    assert done.stdout == ""
    assert "--input: input \"count\": expected an integer, got 'abc'" in done.stderr
    assert "hint: give count a value of type integer" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (home / "prefect").exists(), "Prefect was started for invalid inputs"


@pytest.mark.prefect
def test_completed_run_prints_progress_and_summary(
    cold_run_cli: Callable[..., CliResult],
) -> None:
    """The suite's one cold start: the embedded server starts, and none of it is shown."""
    done = cold_run_cli(str(RUNS / "downstream.yaml"), "--input", "word=hi")

    assert done.code == 0, done.stderr
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("▶ downstream · run ")
    UUID(lines[0].split(" run ", 1)[1].split()[0])
    step_ids = ["greet", "shout", "numbers", "same_numbers", "second"]
    for step_id in step_ids:
        assert any(line.startswith(f"  ▸ {step_id} ") and "started" in line for line in lines)
        assert any(line.startswith(f"  ✓ {step_id} ") and "completed in" in line for line in lines)
    summary = lines.index(next(line for line in lines if line.startswith("downstream: ")))
    assert lines[summary].startswith("downstream: completed  (run ")
    outputs = lines.index("outputs:")
    assert [line.split()[1] for line in lines[summary + 1 : outputs]] == step_ids
    # Then what each step made, one step a line here (short text and data).
    assert lines[outputs + 1 :] == [
        "  greet         hi, world",
        "  shout         upstream said: hi, world",
        "  numbers       [1, 2, 3]",
        "  same_numbers  [1, 2, 3]",
        "  second        2",
    ]
    # Nothing else on the terminal: every line is progress, the summary or the outputs.
    others = [line for line in lines[:summary] if not line.startswith(PROGRESS_MARKS)]
    assert others == []
    assert_quiet(done.stderr)


@pytest.mark.prefect
def test_partial_run_json_document(run_cli: Callable[..., CliResult]) -> None:
    done = run_cli(str(RUNS / "continue.yaml"), "--json", "--input", "word=hey")

    assert done.code == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"workflow", "run_id", "status", "message", "steps"}
    assert document["workflow"] == "continue"
    UUID(document["run_id"])
    assert document["status"] == "partial"
    steps = document["steps"]
    assert list(steps) == ["bad", "child", "grandchild", "other"]
    assert all(set(step) == {"status", "output", "error"} for step in steps.values())
    assert steps["bad"]["status"] == "failed"
    assert "the provider refused the prompt" in steps["bad"]["error"]
    assert steps["child"] == {
        "status": "skipped",
        "output": None,
        "error": 'skipped: upstream step "bad" failed',
    }
    assert steps["other"] == {"status": "completed", "output": "hey x2", "error": None}
    assert done.stderr.strip() == "", "--json prints nothing but the document"


@pytest.mark.prefect
def test_failed_run_exits_1(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    done = run_cli(str(RUNS / "terminate.yaml"), "--json", "--input", f"state_dir={tmp_path}")

    assert done.code == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "failed"
    steps = document["steps"]
    assert steps["bad"]["status"] == "failed"
    assert "the provider refused the prompt" in steps["bad"]["error"]
    assert steps["slow"]["status"] == "completed"
    assert steps["slow"]["output"]["marker"] == "still running"
    assert steps["after_bad"]["status"] == "skipped"
    assert 'step "bad" failed' in steps["after_bad"]["error"]
    assert_quiet(done.stderr)
