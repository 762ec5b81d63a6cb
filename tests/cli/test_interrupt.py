"""Ctrl-C and SIGTERM stop a run without spending more, keep what was paid for, and the run
can be resumed.

Through the real command: ``python -m fetchflow.cli run`` in a subprocess against the fake
Gemini server (one call per image) answering slowly, the signal sent once the first call has
reached the fake. Then ``--resume`` makes only the calls that were missing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

from fetchflow.errors import Interrupted
from fetchflow.interrupt import (
    check_interrupt,
    clear_stop,
    exit_code_for,
    request_stop,
    stop_requested,
    stop_signal,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "interrupt"
FLOW = DATA / "three_gemini.yaml"
#: How long each fake Gemini answer takes: long enough to signal while it is in flight.
SLOW_SECONDS = 3.0


def start_run(box: Sandbox, prefect_api: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "run", *args],
        # One call in flight when the signal comes (a step's calls one at a time).
        env={**box.env, "PREFECT_API_URL": prefect_api, "FETCHFLOW_PROVIDER_CONCURRENCY": "1"},
        cwd=box.tmp / "cwd",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def wait_for_requests(box: Sandbox, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 180
    while len(box.gemini.requests) < count:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended before call {count} arrived:\n{out}\n{err}")
        assert time.monotonic() < deadline, "the first call never reached the fake"
        time.sleep(0.02)


def seeds(box: Sandbox) -> list[int]:
    return [int(r.json["generationConfig"]["seed"]) for r in box.gemini.requests if r.json]


def saved_run(box: Sandbox, run_id: str) -> dict[str, object]:
    """The run as its checkpoints in the store say: status, and each step's end."""
    from fetchflow.run.checkpoints import SavedRun
    from fetchflow.storage import LocalStore

    saved = SavedRun.load(LocalStore(box.store, spool_dir=box.home / "spool"), run_id)
    assert saved is not None
    steps = {
        step_id: {key: document[key] for key in ("status", "output", "error")}
        for step_id, document in saved.steps.items()
    }
    return {"status": saved.status, "steps": steps}


def stored_images(box: Sandbox) -> list[Path]:
    return sorted(p for p in box.store.rglob("*.png") if p.is_file())


@pytest.mark.prefect
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_step_starts_no_new_call_keeps_the_paid_image_and_resume_makes_the_rest(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
    signum: int,
    code: int,
) -> None:
    # Only the first call is slow: the signal lands while it is in flight; the resumed calls
    # need no wait.
    sandbox.gemini.queue_slow(SLOW_SECONDS)

    process = start_run(sandbox, prefect_api, str(FLOW))
    wait_for_requests(sandbox, 1, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=180)

    # The call in flight finished (its image is kept); no call started after the signal.
    assert len(sandbox.gemini.requests) == 1, err
    assert process.returncode == code, err
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err
    lines = err.splitlines()
    assert (
        "fetchflow: stopping: no new step or provider call will start; calls in flight finish "
        "and what they make is kept (press Ctrl-C again to stop waiting)"
    ) in lines
    run_id = next(line for line in lines if line.startswith("▶ interrupt_me · run ")).split()[4]
    name = signal.Signals(signum).name
    assert f"interrupt_me: interrupted  (run {run_id})" in lines
    assert (
        f'interrupted ({name}): kept 1 file(s) made by step "hero"; not finished: hero, note'
    ) in lines
    assert lines[-1] == f"resume it: fetchflow run {FLOW} --resume {run_id}"
    assert len(stored_images(sandbox)) == 1

    # The run is saved with what it kept: the paid image is the step's partial output.
    saved = saved_run(sandbox, run_id)
    assert saved["status"] == "interrupted"
    steps = saved["steps"]
    assert isinstance(steps, dict)
    hero, note = steps["hero"], steps["note"]
    assert hero["status"] == "failed"
    assert hero["error"].startswith('step "hero": interrupted: image 2 of 3 not started; 1 of 3')
    assert [record["index"] for record in hero["output"]] == [0]
    assert note == {
        "status": "skipped",
        "output": None,
        "error": "not started: the run was interrupted",
    }

    # --resume makes only the two missing images (seeds 8 and 9), keeps the first.
    resumed = start_run(sandbox, prefect_api, str(FLOW), "--resume", run_id, "--json")
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert seeds(sandbox) == [7, 8, 9]
    document = json.loads(out)
    assert document["status"] == "completed"
    records = document["steps"]["hero"]["output"]
    assert [record["index"] for record in records] == [0, 1, 2]
    assert records[0]["storage_uri"] == hero["output"][0]["storage_uri"]
    assert document["steps"]["note"]["output"] == "made: 3"
    assert len(stored_images(sandbox)) == 3


# -- the flag itself ---------------------------------------------------------------------------


@pytest.fixture
def fresh_flag() -> object:
    clear_stop()
    yield
    clear_stop()


@pytest.mark.usefixtures("fresh_flag")
def test_check_interrupt_raises_a_not_retryable_error_once_a_stop_is_requested() -> None:
    check_interrupt("image 2 of 3")  # nothing requested: nothing happens
    assert not stop_requested()

    request_stop(signal.SIGTERM)
    request_stop(signal.SIGINT)  # the first signal is the one that counts

    assert stop_requested() and stop_signal() == signal.SIGTERM
    with pytest.raises(
        Interrupted, match=r"^interrupted: image 2 of 3 not started\n  hint: "
    ) as caught:
        check_interrupt("image 2 of 3")
    assert caught.value.retryable is False
    assert exit_code_for(stop_signal()) == 143
    assert exit_code_for(signal.SIGINT) == 130


@pytest.mark.prefect
def test_a_second_ctrl_c_stops_waiting_but_still_starts_no_call_and_saves_the_run(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    for _ in range(3):
        sandbox.gemini.queue_slow(SLOW_SECONDS)

    process = start_run(sandbox, prefect_api, str(FLOW))
    wait_for_requests(sandbox, 1, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert out == ""
    time.sleep(SLOW_SECONDS)  # a call started at exit would have reached the fake by now

    assert len(sandbox.gemini.requests) == 1, err
    assert process.returncode == 130, err
    assert "Traceback" not in err and "internal error" not in err
    lines = err.splitlines()
    run_id = next(line for line in lines if line.startswith("▶ interrupt_me · run ")).split()[4]
    assert lines[-1] == f"resume it: fetchflow run {FLOW} --resume {run_id}"
    assert saved_run(sandbox, run_id)["status"] == "interrupted"


@pytest.mark.prefect
@pytest.mark.usefixtures("fresh_flag")
def test_a_stop_before_the_first_step_starts_nothing_and_the_run_can_be_resumed(
    prefect_api: str, tmp_path: Path
) -> None:
    from fetchflow.orchestration.runner import run_plan
    from fetchflow.registry import StepRegistry
    from fetchflow.run.preflight import StoreOpener
    from fetchflow.run.reuse import outputs_to_resume
    from fetchflow.settings import Settings
    from fetchflow.workflow.checking import check_file

    plan = check_file(DATA / "other_workflow.yaml", StepRegistry.from_entry_points())
    settings = Settings(_env_file=None, home=tmp_path / "home")  # type: ignore[call-arg]

    request_stop(signal.SIGTERM)
    stopped = run_plan(plan, {}, settings=settings, drain=False)

    assert (stopped.status, stopped.exit_code) == ("interrupted", 143)
    assert stopped.message == "interrupted (SIGTERM): kept nothing; not finished: greet"
    assert stopped.steps["greet"].status == "skipped"
    assert (tmp_path / "home" / "assets" / "runs" / stopped.run_id / "run.json").is_file()

    clear_stop()
    inputs, reuse = outputs_to_resume(StoreOpener(settings)(), stopped.run_id, plan)
    resumed = run_plan(plan, inputs, settings=settings, drain=False, reuse=reuse)

    assert (resumed.status, resumed.steps["greet"].output) == ("completed", "hello")
