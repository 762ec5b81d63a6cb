"""Crash recovery: a run whose machine died ends Crashed, runs again from its checkpoints,
and a live run is never declared dead.

The end-to-end test deploys ``tests/data/recovery/cranes.yaml`` (two Gemini images, the
second after the first) to a process work pool of the session's Prefect server, runs it on a
real ``prefect worker`` against the fake Gemini, and kills the worker's whole process tree
(SIGKILL: a lost machine) while the second image's call is in flight, after the first image's
checkpoint is in the store. ``fetchflow recover`` marks it Crashed and reschedules it; a new
worker finishes it. ``FETCHFLOW_HEARTBEAT_SECONDS=1`` everywhere: a run is dead after 6 s.

How a run is judged (:func:`fetchflow.orchestration.recovery.judge`) is a decision table,
tested directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fetchflow.orchestration.recovery import Verdict, judge
from fetchflow.run.checkpoints import run_key, step_key
from fetchflow.storage import LocalStore

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "recovery"
POOL = "fetchflow-recovery-pool"
HEARTBEAT = 1
WINDOW = 6 * HEARTBEAT
SLOW_SECONDS = 60.0  # the second image's first call: still in flight when the machine dies

_STEP_TESTS = str(REPO / "tests" / "steps")
if _STEP_TESTS not in sys.path:
    sys.path.insert(0, _STEP_TESTS)

from fakes import RecordedRequest, Reply  # noqa: E402
from fakes.fake_gemini import FakeGemini  # noqa: E402
from lost_machine import kill_machine  # noqa: E402 (tests/orchestration, on sys.path)
from test_pool import Worker, process_pool, read_flow_run, stop_worker, wait_for  # noqa: E402  # noqa: E402
from test_pool import start_worker as start_pool_worker  # noqa: E402

# -- the verdict (pure) ---------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _record(age: float, attempt: int = 1, status: str = "running") -> dict[str, object]:
    return {
        "status": status,
        "attempt": attempt,
        "host": "box-1",
        "pid": 42,
        "heartbeat_at": (NOW - timedelta(seconds=age)).isoformat(),
    }


@pytest.mark.parametrize(
    ("state", "in_state", "run_count", "record", "theirs", "dead", "unsure"),
    [
        pytest.param("RUNNING", 600, 1, _record(59), True, False, False, id="fresh-heartbeat"),
        pytest.param("RUNNING", 600, 1, _record(61), True, True, False, id="stale-heartbeat"),
        pytest.param(
            "RUNNING",
            600,
            1,
            _record(61, status="completed"),
            True,
            True,
            False,
            id="wrote-its-end-prefect-never-heard",
        ),
        pytest.param("RUNNING", 30, 1, None, True, False, False, id="no-record-starting"),
        pytest.param("RUNNING", 61, 1, None, True, True, False, id="no-record-died-starting"),
        pytest.param("RUNNING", 600, 1, None, False, False, True, id="no-record-store-not-theirs"),
        # attempt 2 runs in Prefect, the record is attempt 1's: it waits or takes over.
        pytest.param("RUNNING", 600, 2, _record(100), True, False, False, id="newer-taking-over"),
        pytest.param("RUNNING", 61, 2, _record(500), True, True, False, id="newer-never-wrote"),
        pytest.param("RUNNING", 30, 2, _record(500), True, False, False, id="newer-just-started"),
        pytest.param("PENDING", 599, 1, None, True, False, False, id="pending-a-while"),
        pytest.param("PENDING", 601, 1, _record(900), True, True, False, id="pending-too-long"),
    ],
)
def test_a_run_is_dead_only_when_the_store_says_so(
    state: str,
    in_state: float,
    run_count: int,
    record: dict[str, object] | None,
    theirs: bool,
    dead: bool,
    unsure: bool,
) -> None:
    verdict = judge(
        state=state,
        since=NOW - timedelta(seconds=in_state),
        run_count=run_count,
        record=record,
        window=60,
        pending_seconds=600,
        store_is_theirs=lambda: theirs,
        now=NOW,
    )
    assert (verdict.dead, verdict.unsure) == (dead, unsure), verdict.why


def test_the_verdict_names_the_last_heartbeat_host_and_attempt() -> None:
    verdict = judge(
        state="RUNNING",
        since=NOW - timedelta(minutes=5),
        run_count=1,
        record=_record(75),
        window=60,
        pending_seconds=600,
        store_is_theirs=lambda: True,
        now=NOW,
    )
    assert verdict == Verdict(
        True,
        "no heartbeat for over 60 s: its last heartbeat was 2026-11-30T11:58:45+00:00 (75 s "
        "ago, host box-1, pid 42, attempt 1)",
    )


# -- bad flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param(
            ["--every", "0"],
            [
                "--every: expected at least 1 seconds, got 0",
                "  hint: give --every 10 (seconds between two looks)",
            ],
            id="every",
        ),
        pytest.param(
            ["--max-attempts", "0"],
            [
                "--max-attempts: expected 1 or more, got 0",
                "  hint: give --max-attempts 3 (1: never reschedule, only mark Crashed)",
            ],
            id="max-attempts",
        ),
    ],
)
def test_bad_flags_exit_2(
    arguments: list[str], expected: list[str], clean_env: Mapping[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "recover", *arguments],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == expected


# -- a worker's machine dies mid-run --------------------------------------------------------


class SlowSecondCrane(FakeGemini):
    """The fake Gemini; the first call for a ``second crane`` prompt answers slowly."""

    def __init__(self) -> None:
        super().__init__()
        self.slowed = False

    def answer(self, request: RecordedRequest) -> Reply:
        reply = super().answer(request)
        if "second crane" in prompt_of(request) and not self.slowed:
            self.slowed = True
            return replace(reply, delay=SLOW_SECONDS)
        return reply


def prompt_of(request: RecordedRequest) -> str:
    body = request.json or {}
    return " ".join(
        str(part.get("text", ""))
        for content in body.get("contents", [])
        for part in content.get("parts", [])
    )


@pytest.fixture(scope="module")
def gemini() -> Iterator[SlowSecondCrane]:
    with SlowSecondCrane() as fake:
        yield fake
    assert not fake.crashes, fake.crashes


@pytest.fixture(scope="module")
def env(
    prefect_api: str,
    plugin_pythonpath: str,
    clean_env: Mapping[str, str],
    gemini: SlowSecondCrane,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """What deployer, workers and recover share: the API, the store, the fake Gemini."""
    from tests.conftest import QUIET_PREFECT

    shared = tmp_path_factory.mktemp("recovery-shared")
    return {
        **clean_env,
        **QUIET_PREFECT,
        "PREFECT_API_URL": prefect_api,
        "PYTHONPATH": os.pathsep.join([str(REPO), plugin_pythonpath]),
        "FETCHFLOW_STORE": str(shared / "store"),
        "FETCHFLOW_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "GEMINI_API_KEY": "gemini-recovery-test-key",
        "GOOGLE_GEMINI_BASE_URL": gemini.base_url,
        "NO_COLOR": "1",
    }


def fetchflow(env: Mapping[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", *args],
        env={**env, "FETCHFLOW_HOME": str(cwd / "home")},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_worker(env: Mapping[str, str], folder: Path) -> Worker:
    folder.mkdir(parents=True)
    return start_pool_worker(env, folder, POOL)


@pytest.fixture(scope="module")
def work_pool(prefect_api: str) -> str:
    return process_pool(POOL)


def states_of(run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(run_id)
    return [state.type.value for state in sorted(states, key=lambda s: s.timestamp)]


@pytest.mark.prefect
def test_a_run_whose_machine_died_is_crashed_and_resumed_once_and_a_live_one_is_left_alone(
    env: dict[str, str], work_pool: str, gemini: SlowSecondCrane, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    deployed = fetchflow(env, tmp_path, "deploy", str(DATA / "cranes.yaml"), "--pool", work_pool)
    assert deployed.returncode == 0, deployed.stderr
    store = LocalStore(Path(env["FETCHFLOW_STORE"]), spool_dir=tmp_path / "spool")
    first = start_worker(env, tmp_path / "worker-1")
    second: Worker | None = None
    try:
        flow_run = run_deployment("cranes/cranes", parameters={"tag": "r1"}, timeout=0)
        run_id = str(flow_run.id)

        # The first image is stored and recorded; the second one's call is in flight.
        wait_for(
            lambda: (
                store.get_state(step_key(run_id, "first")) is not None and len(gemini.requests) >= 2
            ),
            bool,
            timeout=120,
        )
        assert store.get_state(step_key(run_id, "first"))["status"] == "completed"  # type: ignore[index]

        # Alive for longer than the window: recover leaves it alone.
        started = read_flow_run(flow_run.id).state
        time.sleep(WINDOW + 1)
        alive = fetchflow(env, tmp_path, "recover")
        assert alive.returncode == 0, alive.stderr
        assert alive.stdout == ""
        assert (
            alive.stderr
            == "fetchflow recover: no dead run (a run is dead after 6 s without a heartbeat)\n"
        )
        assert read_flow_run(flow_run.id).state.id == started.id

        # The machine dies. Until its heartbeat is 6 s old, it is not declared dead.
        kill_machine(first.process)
        killed_at = time.monotonic()
        early = fetchflow(env, tmp_path, "recover")
        assert (early.returncode, early.stdout) == (0, ""), early.stderr
        assert read_flow_run(flow_run.id).state.type.value == "RUNNING"

        record = store.get_state(run_key(run_id))
        assert record is not None and record["attempt"] == 1
        time.sleep(max(0.0, WINDOW + 1 - (time.monotonic() - killed_at)))
        recovered = fetchflow(env, tmp_path, "recover")
        assert recovered.returncode == 0, recovered.stderr
        lines = recovered.stdout.splitlines()
        assert len(lines) == 1, recovered.stdout
        assert lines[0].startswith(
            f"crashed cranes/{flow_run.name} ({run_id}): no heartbeat for over 6 s: its last "
            f"heartbeat was {str(record['heartbeat_at'])[:19]}"
        ), lines
        assert lines[0].endswith(
            f"host {record['host']}, pid {record['pid']}, attempt 1); rescheduled: a worker "
            "runs it again from its checkpoints (completed steps reused, paid images kept)"
        ), lines
        assert states_of(flow_run.id)[-2:] == ["CRASHED", "SCHEDULED"]

        # A new worker (another machine) picks it up and finishes it from the checkpoints.
        second = start_worker(env, tmp_path / "worker-2")
        done = wait_for(
            lambda: read_flow_run(flow_run.id),
            lambda run: run.state is not None and run.state.is_final(),
            timeout=180,
        )
        assert done.state.type.value == "COMPLETED", (done.state, second.output())
        history = states_of(flow_run.id)
        assert history.count("COMPLETED") == 1 and history.count("CRASHED") == 1, history
        assert done.run_count == 2

        # The first image was made once; the second's lost call was made again, once.
        prompts = [prompt_of(request) for request in gemini.requests]
        assert sum("a paper crane, run r1" in p for p in prompts) == 1, prompts
        assert sum("second crane" in p and "run r1" in p for p in prompts) == 2, prompts
        final = store.get_state(run_key(run_id))
        assert final is not None
        assert (final["status"], final["attempt"]) == ("completed", 2)
        # One image per step in the store: nothing was stored twice.
        images = sorted(p.name for p in Path(env["FETCHFLOW_STORE"]).rglob("*.png"))
        assert len(images) == 2, images
        assert "Traceback" not in second.output()
    finally:
        if first.process.poll() is None:
            kill_machine(first.process)
        if second is not None:
            stop_worker(second)
