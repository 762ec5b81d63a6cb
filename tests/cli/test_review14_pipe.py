"""``fetchflow run`` whose terminal goes away mid-run (``| head``, a closed window): the
progress display stops, the run does not. Through the real command and a real Prefect run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

FLOW = """\
name: piped
steps:
  - id: a
    type: template
    template: hello
  - id: b
    type: template
    template: "<< a.output >> again"
  - id: c
    type: template
    template: "<< b.output >>, and once more"
"""


@pytest.mark.prefect
def test_a_reader_that_goes_away_fails_no_step_and_the_run_ends_recorded(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    flow = sandbox.tmp / "cwd" / "piped.yaml"
    flow.write_text(FLOW, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "run", str(flow)],
        env={**sandbox.env, "PREFECT_API_URL": prefect_api},
        cwd=sandbox.tmp / "cwd",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # "▶ piped · run <id>", then the reader is gone
    process.stderr.close()
    process.wait(timeout=240)

    assert first.startswith("▶ piped · run ".encode())
    run_id = first.decode().split(" · run ")[1].split()[0]
    folder = sandbox.store / "runs" / run_id
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    steps = {
        step: json.loads((folder / "steps" / f"{step}.json").read_text(encoding="utf-8"))
        for step in ("a", "b", "c")
    }
    assert {step: document["status"] for step, document in steps.items()} == dict.fromkeys(
        ("a", "b", "c"), "completed"
    )
    assert steps["c"]["output"] == "hello again, and once more"
    assert record["status"] == "completed"
