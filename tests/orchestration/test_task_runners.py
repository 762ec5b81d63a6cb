"""``FETCHFLOW_TASK_RUNNER``: a run's steps in Dask worker processes, through the real CLI.

Every run here is ``python -m fetchflow.cli run ... --json`` in a subprocess, with step
types registered by entry point: the suite's test plugin and ``whereami``
(``tests/data/task_runners/fetchflow_whereami.py``), whose output is the process that ran
it and the Prefect API its task run reported to. So a worker has to import a plugin module
to run a step, and the test sees where each step ran.

- ``dask`` in a plain ``fetchflow run FILE`` (no ``PREFECT_API_URL``, Prefect's temporary
  server): the steps run in other processes, report to the run's own server, and their
  results, the stored images and the paid items are in the run's checkpoints.
- ``dask://host:port`` against a ``dask scheduler`` and ``dask worker`` the test starts:
  the steps run in that worker's process; a failure comes back with its message, attempts
  and partial output, and its dependants are skipped.
- Ctrl-C to the whole process group (as a terminal sends it): the step in flight finishes
  and is kept, the run ends interrupted, no process of the run is left.
- A bad value, and ``dask`` without prefect-dask, are refused before the run (exit 2).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import cloudpickle
import pytest
from prefect.utilities.annotations import allow_failure, quote

from fetchflow.orchestration.dask_runner import ShippedAllowFailure, ShippedQuote, shippable
from fetchflow.orchestration.step_task import StepJob
from fetchflow.orchestration.task_runners import DASK_WORKERS_MAX, dask_workers
from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.preflight import StoreOpener
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from tests.conftest import PLUGIN_DIR, QUIET_PREFECT, TEST_STEP_ENTRY_POINTS, write_dist_info

DATA = Path(__file__).resolve().parent.parent / "data" / "task_runners"
FOUR_STEPS = DATA / "four_steps.yaml"
FAILURES = DATA / "failures.yaml"
NAP = DATA / "nap.yaml"
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test steps and ``whereami``, registered by entry point, for subprocesses."""
    site = tmp_path_factory.mktemp("task-runner-plugins")
    write_dist_info(site, {**TEST_STEP_ENTRY_POINTS, "whereami": "fetchflow_whereami:WhereAmIStep"})
    return os.pathsep.join([str(site), str(PLUGIN_DIR), str(DATA)])


def run_env(
    clean_env: Mapping[str, str], pythonpath: str, home: Path, **extra: str
) -> dict[str, str]:
    return {
        **clean_env,
        **QUIET_PREFECT,
        "PYTHONPATH": pythonpath,
        "FETCHFLOW_HOME": str(home),
        **extra,
    }


def cli(
    env: Mapping[str, str], *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *(prefix or ("-m", "fetchflow.cli")), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def state(home: Path, key: str) -> dict[str, object]:
    document = json.loads((home / "assets" / key).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def kept_items(home: Path, run_id: str, step_id: str) -> list[object]:
    folder = home / "assets" / "runs" / run_id / "kept" / step_id
    return sorted(
        (json.loads(path.read_text(encoding="utf-8"))["item"] for path in folder.iterdir()),
        key=str,
    )


# -- a plain `fetchflow run FILE` on a local Dask cluster --------------------------------


@pytest.mark.prefect
def test_dask_runs_the_steps_in_worker_processes_on_the_runs_own_server(
    tmp_path: Path, clean_env: Mapping[str, str], pythonpath: str
) -> None:
    home = tmp_path / "home"
    # Prefect's INFO lines on the console: each process that starts a temporary server
    # says so ("Starting temporary server on ..."), the workers too (they share stderr).
    env = run_env(
        clean_env,
        pythonpath,
        home,
        FETCHFLOW_TASK_RUNNER="dask",
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO",
    )
    assert "PREFECT_API_URL" not in env  # Prefect's temporary server, as a user gets it

    done = cli(env, "run", str(FOUR_STEPS), "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "completed", report
    steps = report["steps"]
    assert [steps[s]["status"] for s in ("first", "second", "picture", "last")] == ["completed"] * 4
    run_id = report["run_id"]
    record = state(home, f"runs/{run_id}/run.json")
    run_pid = record["pid"]
    assert record["status"] == "completed"
    wheres = [steps[s]["output"] for s in ("first", "second", "last")]
    # Steps ran in other processes than the run's...
    assert all(where["pid"] != run_pid for where in wheres), (run_pid, wheres)
    assert steps["last"]["output"]["note"] == "picture-1.png"
    # ...and their task runs reported to the one temporary server the run started, where
    # each worker would otherwise start its own (15-23 s each) and report there.
    started = re.findall(r"Starting temporary server on (http://127\.0\.0\.1:\d+)", done.stderr)
    assert len(started) == 1, done.stderr
    assert {where["api"].rstrip("/") for where in wheres} == {f"{started[0]}/api"}
    database = sqlite3.connect(home / "prefect" / "prefect.db")
    try:
        rows = database.execute(
            "SELECT name, state_type FROM task_run WHERE flow_run_id = ?", (run_id,)
        ).fetchall()
    finally:
        database.close()
    assert sorted(rows) == [
        ("first", "COMPLETED"),
        ("last", "COMPLETED"),
        ("picture", "COMPLETED"),
        ("second", "COMPLETED"),
    ]
    # The checkpoints have every step, and the two images the worker stored and kept.
    for step_id in ("first", "second", "picture", "last"):
        checkpoint = state(home, f"runs/{run_id}/steps/{step_id}.json")
        assert checkpoint["status"] == "completed"
        assert checkpoint["output"] == steps[step_id]["output"]
    images = steps["picture"]["output"]
    assert [image["file_name"] for image in images] == ["picture-1.png", "picture-2.png"]
    for image in images:
        assert Path(image["storage_uri"].removeprefix("file://")).stat().st_size > 0
    kept = kept_items(home, run_id, "picture")  # each recorded by the worker as stored
    assert sorted(item["sha256"] for item in kept) == sorted(image["sha256"] for image in images)


# -- dask://host:port: an existing scheduler -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> set[int]:
    """Every process below ``pid``."""
    found: set[int] = set()
    parents = {pid}
    for _ in range(5):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in parents:
                found.add(int(entry.name))
        parents = found | {pid}
    return found


@pytest.fixture
def dask_scheduler(
    tmp_path: Path, clean_env: Mapping[str, str], pythonpath: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``dask scheduler`` and one ``dask worker`` (2 threads); yields the address for
    ``FETCHFLOW_TASK_RUNNER`` and the worker's process."""
    port = free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**clean_env, **QUIET_PREFECT, "PYTHONPATH": pythonpath}
    log = (tmp_path / "dask.log").open("wb")
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=env,
        stdout=log,
        stderr=log,
    )
    worker = subprocess.Popen(
        [
            *(dask, "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1", "--nthreads", "2"),
            *("--no-dashboard", "--local-directory", str(tmp_path / "dask-worker")),
        ],
        env=env,
        stdout=log,
        stderr=log,
        cwd=tmp_path,
    )
    try:
        yield f"dask://127.0.0.1:{port}", worker
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.mark.prefect
def test_dask_address_runs_the_steps_on_that_scheduler_failures_come_back_whole(
    tmp_path: Path,
    clean_env: Mapping[str, str],
    pythonpath: str,
    prefect_api: str,
    dask_scheduler: tuple[str, subprocess.Popen[bytes]],
) -> None:
    address, worker = dask_scheduler
    home = tmp_path / "home"
    env = run_env(
        clean_env, pythonpath, home, FETCHFLOW_TASK_RUNNER=address, PREFECT_API_URL=prefect_api
    )

    done = cli(env, "run", str(FAILURES), "--json")

    assert done.returncode == 0, done.stdout + done.stderr  # partial: continue failures
    report = json.loads(done.stdout)
    steps = report["steps"]
    assert report["status"] == "partial", report
    assert report["message"] == (
        "2 step(s) failed (keeper, flaky) and 1 were skipped; on_failure: continue let the "
        "rest finish"
    )
    # Ran in the worker process of the `dask worker` this test started.
    worker_pids = children(worker.pid)
    assert steps["fine"]["status"] == "completed"
    assert steps["fine"]["output"]["pid"] in worker_pids, (steps["fine"], worker_pids)
    assert steps["fine"]["output"]["api"].rstrip("/") == prefect_api.rstrip("/")
    # A StepError raised in the worker: its message, step and partial output came back.
    keeper = steps["keeper"]
    assert keeper["status"] == "failed"
    assert keeper["error"] == (
        'step "keeper": out of luck\n  hint: the task-runner tests\' step doing its job'
    )
    keeper_pid = keeper["output"][0]["pid"]
    assert keeper_pid in worker_pids
    assert keeper["output"] == [
        {"file_name": "kept-0.png", "pid": keeper_pid},
        {"file_name": "kept-1.png", "pid": keeper_pid},
    ]
    run_id = report["run_id"]
    assert kept_items(home, run_id, "keeper") == keeper["output"]  # written by the worker
    assert steps["after_keeper"] == {
        "status": "skipped",
        "output": None,
        "error": 'skipped: upstream step "keeper" failed',
    }
    # Retried in the worker (retries: 1): the attempt count came back with the error.
    assert steps["flaky"]["error"] == (
        'step "flaky": provider said no\n  hint: this is the test suite\'s fail step doing its job'
    )
    assert state(home, f"runs/{run_id}/steps/flaky.json")["attempts"] == 2
    for step_id in ("fine", "keeper", "after_keeper", "flaky"):
        assert (
            state(home, f"runs/{run_id}/steps/{step_id}.json")["status"]
            == (steps[step_id]["status"])
        )
    # Prefect shows the skipped step as skipped, with the reason (allow_failure arrived).
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    states = {run.name: (run.state_type.value, run.run_count) for run in runs}
    assert states == {
        "fine": ("COMPLETED", 1),
        "keeper": ("FAILED", 1),
        "after_keeper": ("CANCELLED", 1),
        "flaky": ("FAILED", 2),
    }
    skipped = next(run for run in runs if run.name == "after_keeper")
    assert skipped.state is not None
    assert skipped.state.message == 'skipped: upstream step "keeper" failed'


# -- Ctrl-C ------------------------------------------------------------------------------


def group_members(pgid: int) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.add(int(entry.name))
    return members


@pytest.mark.prefect
def test_ctrl_c_to_the_process_group_lets_the_step_in_flight_finish_and_ends_the_run(
    tmp_path: Path, clean_env: Mapping[str, str], pythonpath: str, prefect_api: str
) -> None:
    home = tmp_path / "home"
    started = tmp_path / "nap-started"
    env = run_env(
        clean_env, pythonpath, home, FETCHFLOW_TASK_RUNNER="dask", PREFECT_API_URL=prefect_api
    )
    command = [sys.executable, "-m", "fetchflow.cli", "run", str(NAP), "--json"]
    process = subprocess.Popen(
        [*command, "--input", f"started={started}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: Ctrl-C reaches the run and its workers
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), process.communicate(timeout=30)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert process.returncode == 130, out + err
    report = json.loads(out)
    assert report["status"] == "interrupted"
    assert report["message"] == (
        "interrupted (SIGINT): kept 1 completed step(s) (nap); not finished: after"
    )
    # The worker ignored the Ctrl-C: the step in flight finished and was kept.
    assert report["steps"]["nap"]["status"] == "completed"
    assert report["steps"]["nap"]["output"]["marker"] == "napped"
    assert report["steps"]["after"]["error"] == "not started: the run was interrupted"
    assert state(home, f"runs/{report['run_id']}/steps/nap.json")["status"] == "completed"
    assert "Traceback" not in err
    # Nothing of the run is left: no worker, no nanny, no resource tracker.
    deadline = time.monotonic() + 20
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(process.pid) == set()


# -- refused before the run -------------------------------------------------------------


@pytest.mark.parametrize("value", ["dask:/127.0.0.1:8786", "dask://scheduler", "processes"])
def test_a_bad_task_runner_is_one_settings_error(
    tmp_path: Path, clean_env: Mapping[str, str], pythonpath: str, value: str
) -> None:
    env = run_env(clean_env, pythonpath, tmp_path / "home", FETCHFLOW_TASK_RUNNER=value)

    done = cli(env, "run", str(FOUR_STEPS))

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"fetchflow: setting FETCHFLOW_TASK_RUNNER: must be threads, dask or dask://host:port; "
        f'got "{value}"\n'
        "  hint: e.g. FETCHFLOW_TASK_RUNNER=dask (a local cluster of worker processes) or "
        "dask://127.0.0.1:8786 (a running Dask scheduler)\n"
    )


#: ``python -c``: run the CLI where ``import prefect_dask`` fails, as if not installed.
WITHOUT_PREFECT_DASK = (
    "import runpy, sys; sys.modules['prefect_dask'] = None; "
    "sys.argv = ['fetchflow', *sys.argv[1:]]; "
    "runpy.run_module('fetchflow.cli', run_name='__main__')"
)


@pytest.mark.parametrize("value", ["dask", "dask://127.0.0.1:8786"])
def test_dask_without_prefect_dask_is_refused_before_the_run(
    tmp_path: Path, clean_env: Mapping[str, str], pythonpath: str, value: str
) -> None:
    home = tmp_path / "home"
    env = run_env(clean_env, pythonpath, home, FETCHFLOW_TASK_RUNNER=value)

    done = cli(env, "run", str(FOUR_STEPS), prefix=("-c", WITHOUT_PREFECT_DASK))

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"fetchflow: setting FETCHFLOW_TASK_RUNNER: {value} runs steps on Dask, but the Dask "
        "task runner is not installed (no module named 'prefect_dask')\n"
        "  hint: pip install 'fetchflow[dask]' (prefect-dask), or set "
        "FETCHFLOW_TASK_RUNNER=threads\n"
    )
    assert not (home / "assets").exists()  # refused before the store was touched
    assert not (home / "prefect").exists()  # and before Prefect


# -- what travels to a worker -----------------------------------------------------------


def test_a_step_job_pickles_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``run_step`` gets in a worker: the plan (step classes of an entry-point plugin
    by reference), the settings, a store opener and checkpoints that open their own store."""
    from fetchflow.registry import StepRegistry

    site = tmp_path / "site"
    write_dist_info(site, {"whereami": "fetchflow_whereami:WhereAmIStep"})
    monkeypatch.syspath_prepend(str(DATA))
    monkeypatch.syspath_prepend(str(site))
    plan = check_file(FOUR_STEPS, StepRegistry.from_entry_points())
    settings = Settings(home=tmp_path / "home", store=str(tmp_path / "store"))
    opener = StoreOpener(settings)
    opener()  # opened here: the copy opens its own
    job = StepJob(
        plan=plan,
        step_id="last",
        settings=settings,
        scope={"inputs": {}, "picture": {"output": [{"file_name": "picture-1.png"}]}},
        run_info={"id": "run-1", "name": "a-run", "started_at": "2026-11-30T00:00:00+00:00"},
        started_at=datetime(2026, 11, 30, tzinfo=UTC),
        open_store=opener,
        checkpoints=Checkpoints(opener, "run-1"),
    )

    copy = cloudpickle.loads(cloudpickle.dumps(job))

    assert list(copy.plan.steps) == ["first", "second", "picture", "last"]
    assert copy.step.step_cls is plan.steps["last"].step_cls  # by reference, not a copy
    assert (copy.settings, copy.scope, copy.run_info) == (settings, job.scope, job.run_info)
    assert copy.watcher is None
    assert copy.open_store is not opener and copy.open_store() is not opener()
    assert copy.checkpoints is not None and copy.checkpoints.run_id == "run-1"
    copy.checkpoints.keep("last", {"file_name": "a.png"})  # through the copy's own store
    (kept,) = (tmp_path / "store" / "runs" / "run-1" / "kept" / "last").iterdir()
    assert json.loads(kept.read_text(encoding="utf-8"))["item"] == {"file_name": "a.png"}


def test_annotations_arrive_as_they_were_sent() -> None:
    job = {"a": [1, 2]}
    sent = shippable(quote(job))
    assert type(sent) is ShippedQuote
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        back = loads(dumps(sent))
        assert isinstance(back, quote) and back.unwrap() == job
        failure = loads(dumps(shippable(allow_failure("state"))))
        assert isinstance(failure, ShippedAllowFailure) and failure.unwrap() == "state"
    # Prefect's own quote does not survive pickling: the reason ShippedQuote exists.
    assert pickle.loads(pickle.dumps(quote(job))).unwrap() == (job,)
    assert shippable("plain") == "plain"


@pytest.mark.parametrize(
    ("parallel", "cpus", "shape"),
    [(8, 2, (2, 4)), (1, 16, (1, 1)), (8, 16, (DASK_WORKERS_MAX, 2)), (3, 2, (2, 2))],
)
def test_local_cluster_shape(parallel: int, cpus: int, shape: tuple[int, int]) -> None:
    assert dask_workers(parallel, cpus) == shape
