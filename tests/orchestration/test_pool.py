"""``fetchflow deploy``: workflows on a Prefect work pool, run by a plain ``prefect worker``.

The bundle (what a deployment carries, its content hash) is pure and tested directly. The
end-to-end tests deploy ``tests/data/pool/greet.yaml`` (a copy in a temporary project, with
its ``templates/greeting.j2``) through the real CLI against the session's Prefect server,
start one real ``prefect worker start --pool NAME --type process`` for the module, in
another folder with another ``FETCHFLOW_HOME`` (only the store is shared), and run the
deployment: the worker finds the workflow through the deployment alone.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest

from fetchflow.orchestration.bundle import MAX_BUNDLE_CHARS, WorkflowBundle, bundle_workflow
from fetchflow.orchestration.deploy import deployment_schema
from fetchflow.orchestration.pool import ENTRYPOINT, pull_step, unpack_workflow
from fetchflow.registry import StepRegistry
from fetchflow.workflow.checking import check_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "pool"
POOL = "fetchflow-test-pool"
T = TypeVar("T")

#: Runs the CLI, then says on stderr whether anything of Prefect was imported.
CLI = """
import sys
from fetchflow.cli import main
code = main(sys.argv[1:])
imported = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
sys.stderr.write("\\nPREFECT-IMPORTED: %s\\n" % bool(imported))
sys.exit(code)
"""


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def make_project(folder: Path, greeting: str | None = None, name: str = "greet") -> Path:
    """A copy of ``tests/data/pool`` (the workflow and its template) in ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("broken"))
    if greeting is not None:
        (folder / "templates" / "greeting.j2").write_text(greeting, encoding="utf-8")
    workflow = folder / "greet.yaml"
    if name != "greet":
        text = workflow.read_text(encoding="utf-8").replace("name: greet\n", f"name: {name}\n")
        workflow.write_text(text, encoding="utf-8")
    return workflow


# -- the bundle (pure) ------------------------------------------------------------------------


def test_the_bundle_holds_the_workflow_and_the_templates_it_reads(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    workflow = make_project(tmp_path / "project")
    (tmp_path / "project" / "templates" / "unused.j2").write_text("not read", encoding="utf-8")
    bundle = bundle_workflow(check_file(workflow, plugin_registry))
    assert bundle.name == "greet"
    assert bundle.workflow == "greet.yaml"
    assert sorted(bundle.files) == ["greet.yaml", "templates/greeting.j2"]
    assert WorkflowBundle.decode(bundle.encode()) == bundle
    assert "{{" not in bundle.encode()  # Prefect templates pull-step arguments with {{ }}


def test_hello_bundles_its_include_and_compose_its_project_image(
    plugin_registry: StepRegistry,
) -> None:
    hello = bundle_workflow(check_file(REPO / "flows" / "hello.yaml", plugin_registry))
    assert sorted(hello.files) == ["flows/hello.yaml", "templates/brand_style.j2"]
    compose = bundle_workflow(check_file(REPO / "flows" / "compose.yaml", plugin_registry))
    assert sorted(compose.files) == ["flows/assets/linen.png", "flows/compose.yaml"]


def test_any_change_to_a_file_it_reads_is_a_new_version(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    first = bundle_workflow(check_file(make_project(tmp_path / "a"), plugin_registry))
    same = bundle_workflow(check_file(make_project(tmp_path / "b"), plugin_registry))
    changed = bundle_workflow(
        check_file(make_project(tmp_path / "c", greeting="v2 << inputs.who >>"), plugin_registry)
    )
    assert first.version == same.version  # the content, not the folder
    assert len(first.version) == 12
    assert changed.version != first.version


def test_the_pull_step_unpacks_once_per_version(
    plugin_registry: StepRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = bundle_workflow(check_file(make_project(tmp_path / "project"), plugin_registry))
    step = pull_step(bundle)
    assert list(step) == ["fetchflow.orchestration.pool.unpack_workflow"]
    monkeypatch.setenv("FETCHFLOW_HOME", str(tmp_path / "worker-home"))
    monkeypatch.delenv("FETCHFLOW_DEPLOYED_WORKFLOW", raising=False)
    arguments = step["fetchflow.orchestration.pool.unpack_workflow"]
    first = unpack_workflow(**arguments)
    folder = tmp_path / "worker-home" / "deployed" / f"greet-{bundle.version}"
    assert first == {"workflow_file": str(folder / "greet.yaml")}
    assert os.environ["FETCHFLOW_DEPLOYED_WORKFLOW"] == str(folder / "greet.yaml")
    assert (folder / "templates" / "greeting.j2").read_bytes() == bundle.files[
        "templates/greeting.j2"
    ]
    (folder / "marker").write_text("kept", encoding="utf-8")
    assert unpack_workflow(**arguments) == first
    assert (folder / "marker").exists()  # reused, not written again
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left
    with pytest.raises(ValueError, match=r"holds version .* not 000000000000"):
        unpack_workflow("greet", "000000000000", arguments["bundle"])


def test_a_bundle_too_large_to_travel_is_a_problem_of_its_file(
    plugin_registry: StepRegistry, tmp_path: Path
) -> None:
    workflow = make_project(tmp_path / "project", greeting=os.urandom(MAX_BUNDLE_CHARS).hex())
    from fetchflow.errors import WorkflowInvalid

    with pytest.raises(WorkflowInvalid, match=r"more than a deployment carries") as caught:
        bundle_workflow(check_file(workflow, plugin_registry))
    assert caught.value.problems[0].file == str(workflow)
    assert "largest: templates/greeting.j2" in caught.value.format()


@pytest.mark.parametrize(
    ("deployment", "created_for", "running", "refused"),
    [
        pytest.param(False, None, "b" * 12, False, id="no-deployment-fetchflow-run"),
        pytest.param(True, "a" * 12, "a" * 12, False, id="same-version"),
        pytest.param(True, None, "b" * 12, False, id="deployment-without-version"),
        pytest.param(True, "a" * 12, "b" * 12, True, id="another-version-refused"),
    ],
)
def test_a_run_created_for_another_version_is_refused(
    deployment: bool, created_for: str | None, running: str, refused: bool
) -> None:
    from types import SimpleNamespace
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun

    from fetchflow.orchestration.bundle import version_refusal

    flow_run = FlowRun(
        flow_id=uuid4(),
        deployment_id=uuid4() if deployment else None,
        deployment_version=created_for,
    )
    context = SimpleNamespace(
        flow_run=flow_run, flow=SimpleNamespace(name="greet", version=running)
    )
    state = version_refusal(context)  # type: ignore[arg-type]
    if not refused:
        assert state is None
        return
    assert state is not None and state.is_failed()
    assert state.message == (
        "deployment greet/greet: this run was created for workflow version aaaaaaaaaaaa, but "
        "the workflow that picked it up is version bbbbbbbbbbbb (the file was deployed again "
        "with changes, or another `fetchflow serve` serves a different file under this name); "
        "nothing ran\n"
        "  hint: start the run again to run version bbbbbbbbbbbb; to run aaaaaaaaaaaa, deploy or "
        "serve that file again (one file per deployment name)"
    )


# -- deployed for real ------------------------------------------------------------------------


@dataclass
class Deployer:
    """Runs ``fetchflow deploy`` the way a user does, and reads what Prefect holds."""

    env: dict[str, str]
    cwd: Path

    def deploy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", CLI, "deploy", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@dataclass
class Worker:
    """The ``prefect worker`` subprocess and where its output goes."""

    process: subprocess.Popen[bytes]
    log: Path
    home: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def process_pool(name: str) -> str:
    """Create (or reset) the process work pool ``name`` on the session's server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template),
            overwrite=True,
        )
    return name


def stop_worker(worker: Worker) -> None:
    """Stop a worker: it forwards the first signal to itself and may need a second one."""
    process = worker.process
    for sent in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
        if process.poll() is not None:
            return
        process.send_signal(sent)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_worker(env: Mapping[str, str], folder: Path, pool: str, **more: str) -> Worker:
    """``prefect worker start --pool POOL --type process`` in ``folder`` (its own cwd,
    FETCHFLOW_HOME and PREFECT_HOME: nothing of the deployer's but the store and the API),
    its own process group, its log in ``folder/worker.log``; returns once it has started."""
    (folder / "cwd").mkdir(parents=True)
    worker_env = {
        **env,
        "FETCHFLOW_HOME": str(folder / "home"),
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # Its log says what happened to each flow run when a test fails.
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "INFO",
        **more,
    }
    log = folder / "worker.log"
    prefect = str(Path(sys.executable).parent / "prefect")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [prefect, "worker", "start", "--pool", pool, "--type", "process"],
            cwd=folder / "cwd",
            env=worker_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process, log, folder / "home")
    wait_for(lambda: "started!" in worker.output() or process.poll() is not None, bool, 60)
    assert process.poll() is None, worker.output()
    return worker


def read_deployment(name: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def read_flow_run(run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def read_task_runs(run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            sort=TaskRunSort.NAME_ASC,
            limit=100,
        )


def finished_task_runs(run_id: UUID, count: int) -> list[Any]:
    return wait_for(
        lambda: read_task_runs(run_id),
        lambda runs: len(runs) == count and all(run.state and run.state.is_final() for run in runs),
        timeout=20,
    )


@pytest.fixture(scope="module")
def base_env(
    prefect_api: str,
    plugin_pythonpath: str,
    clean_env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """What deployer and worker share: the API, the test plugin, the store."""
    from tests.conftest import QUIET_PREFECT

    shared = tmp_path_factory.mktemp("pool-shared")
    return {
        **clean_env,
        **QUIET_PREFECT,
        "PREFECT_API_URL": prefect_api,
        "PYTHONPATH": os.pathsep.join([str(REPO), plugin_pythonpath]),
        "FETCHFLOW_STORE": str(shared / "store"),
    }


@pytest.fixture(scope="module")
def work_pool(prefect_api: str) -> str:
    return process_pool(POOL)


@pytest.fixture(scope="module")
def deployer(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Deployer:
    folder = tmp_path_factory.mktemp("deployer")
    (folder / "cwd").mkdir()
    env = {
        **base_env,
        "FETCHFLOW_HOME": str(folder / "home"),
        "PREFECT_HOME": str(folder / "prefect"),
    }
    return Deployer(env, folder / "cwd")


@pytest.fixture(scope="module")
def worker(
    base_env: dict[str, str], work_pool: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """``prefect worker start --pool NAME --type process`` in a folder of its own, with its
    own ``FETCHFLOW_HOME``: nothing of the deployer's but the store and the API."""
    folder = tmp_path_factory.mktemp("worker")
    started = start_worker(base_env, folder, work_pool, PREFECT_WORKER_HEARTBEAT_SECONDS="5")
    try:
        yield started
    finally:
        stop_worker(started)


@pytest.fixture(scope="module")
def deployed(
    deployer: Deployer, work_pool: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``fetchflow deploy PROJECT/greet.yaml --pool NAME``, once for the module."""
    workflow = make_project(tmp_path_factory.mktemp("deployed") / "project")
    done = deployer.deploy(str(workflow), "--pool", work_pool)
    assert done.returncode == 0, done.stderr
    return done, workflow


@pytest.mark.prefect
def test_deploy_registers_the_typed_pinned_deployment(
    deployed: tuple[subprocess.CompletedProcess[str], Path], plugin_registry: StepRegistry
) -> None:
    done, workflow = deployed
    plan = check_file(workflow, plugin_registry)
    version = bundle_workflow(plan).version
    deployment = read_deployment("greet/greet")
    assert deployment.work_pool_name == POOL
    assert deployment.version == version
    assert deployment.entrypoint == ENTRYPOINT
    assert deployment.pull_steps == [pull_step(bundle_workflow(plan))]
    assert deployment.enforce_parameter_schema is True
    assert deployment.parameter_openapi_schema == deployment_schema(plan)
    assert deployment.parameter_openapi_schema["properties"]["times"]["type"] == "integer"
    assert deployment.parameter_openapi_schema["required"] == ["who"]
    assert deployment.description == plan.header.description
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"deployed greet/greet  version {version}  pool {POOL} (process)")
    assert f"prefect worker start --pool {POOL}" in done.stderr


@pytest.mark.prefect
def test_a_worker_elsewhere_runs_the_engine_with_the_inputs(
    deployed: tuple[subprocess.CompletedProcess[str], Path], worker: Worker
) -> None:
    from prefect.deployments import run_deployment

    _, workflow = deployed
    shutil.rmtree(workflow.parent)  # the worker needs no copy of the files
    flow_run = run_deployment("greet/greet", parameters={"who": "ada", "times": 3}, timeout=90)
    assert flow_run.state is not None and flow_run.state.is_completed(), (
        flow_run.state,
        worker.output(),
    )
    assert flow_run.state.message.startswith("1 step(s) failed (report)")
    task_runs = finished_task_runs(flow_run.id, 2)
    assert [(run.name, run.state_name) for run in task_runs] == [
        ("greeting", "Completed"),
        ("report", "Failed"),
    ]
    assert "GREETING v1: hello ADA x3" in task_runs[1].state.message
    version = read_deployment("greet/greet").version
    unpacked = worker.home / "deployed" / f"greet-{version}"
    assert (unpacked / "templates" / "greeting.j2").is_file()


@pytest.mark.prefect
def test_the_api_refuses_parameters_of_the_wrong_type(
    deployed: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    from prefect.client.orchestration import get_client

    deployment = read_deployment("greet/greet")
    with (
        get_client(sync_client=True) as client,
        pytest.raises(Exception, match=r"Validation failed|validation") as caught,
    ):
        client.create_flow_run_from_deployment(
            deployment.id, parameters={"who": "x", "times": "many"}
        )
    assert "times" in str(caught.value)


@pytest.mark.prefect
def test_a_changed_file_is_a_new_version_and_old_runs_are_refused(
    deployed: tuple[subprocess.CompletedProcess[str], Path],
    deployer: Deployer,
    worker: Worker,
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    old = read_deployment("greet/greet")
    # A run created for the current version, parked in the future, not yet picked up.
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with get_client(sync_client=True) as client:
        parked = client.create_flow_run_from_deployment(
            old.id, parameters={"who": "old"}, state=Scheduled(scheduled_time=later)
        )
    assert parked.deployment_version == old.version

    unchanged = deployer.deploy(str(make_project(tmp_path / "same")), "--pool", POOL)
    assert unchanged.returncode == 0, unchanged.stderr
    assert f"version {old.version}  (unchanged)" in unchanged.stderr

    workflow = make_project(tmp_path / "v2", greeting="GREETING v2: hi << inputs.who >>")
    done = deployer.deploy(str(workflow), "--pool", POOL)
    assert done.returncode == 0, done.stderr
    new = read_deployment("greet/greet")
    assert new.id == old.id and new.version != old.version
    assert f"version {new.version}  (was {old.version})" in done.stderr

    flow_run = run_deployment("greet/greet", parameters={"who": "bob"}, timeout=90)
    assert flow_run.state is not None and flow_run.state.is_completed(), worker.output()
    assert flow_run.deployment_version == new.version
    assert "GREETING v2: hi bob" in finished_task_runs(flow_run.id, 2)[1].state.message

    # The parked run, due now: the worker loads version 2, the run was made for version 1.
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(parked.id, Scheduled(), force=True)
    refused = wait_for(
        lambda: read_flow_run(parked.id),
        lambda run: run.state is not None and run.state.is_final(),
        timeout=90,
    )
    assert refused.state.is_failed(), (refused.state, worker.output())
    assert refused.state.message.startswith(
        f"deployment greet/greet: this run was created for workflow version {old.version}, "
        f"but the workflow that picked it up is version {new.version}"
    )
    assert f"  hint: start the run again to run version {new.version}" in refused.state.message
    assert read_task_runs(parked.id) == []  # nothing ran


SERVE = """
import sys
from pathlib import Path
from fetchflow.orchestration.deploy import serve_workflows
from fetchflow.registry import StepRegistry
from fetchflow.settings import load_settings

registry = StepRegistry.from_entry_points()
serve_workflows([Path(sys.argv[1])], settings=load_settings(), registry=registry)
"""


@contextmanager
def serving(workflow: Path, env: dict[str, str], log: Path) -> Iterator[Callable[[], str]]:
    """``serve_workflows`` for one file in a subprocess, until it serves; Ctrl-C after."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(workflow)],
            env=env,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return log.read_text(encoding="utf-8", errors="replace")

    try:
        wait_for(lambda: "served to" in output() or process.poll() is not None, bool, 60)
        assert process.poll() is None, output()
        yield output
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.prefect
def test_serve_refuses_a_run_for_another_version_of_its_name(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """Two serve processes, two files, one name: the one serving the old file refuses the
    runs created for the new one (Failed, both hashes) instead of running its own file."""
    from prefect.deployments import run_deployment

    env = {
        **base_env,
        "FETCHFLOW_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    first = make_project(tmp_path / "one", name="greet_served")
    second = make_project(tmp_path / "two", greeting="v2 << inputs.who >>", name="greet_served")
    with serving(first, env, tmp_path / "one.log") as one:
        v1 = read_deployment("greet_served/greet_served").version
        assert f"serving greet_served/greet_served  version {v1}" in one()
        with serving(second, env, tmp_path / "two.log") as two:
            v2 = read_deployment("greet_served/greet_served").version
            assert v2 != v1
            assert f"note: greet_served/greet_served was version {v1}; runs created for it" in two()
        # Only the first file is served now; the deployment says version 2.
        flow_run = run_deployment(
            "greet_served/greet_served", parameters={"who": "eve"}, timeout=90
        )
        assert flow_run.state is not None and flow_run.state.is_failed(), (flow_run.state, one())
        assert flow_run.state.message.startswith(
            "deployment greet_served/greet_served: this run was created for workflow version "
            f"{v2}, but the workflow that picked it up is version {v1}"
        )
        assert read_task_runs(flow_run.id) == []


# -- bad input: one message, exit 2 ----------------------------------------------------------


@pytest.mark.prefect
def test_no_such_pool_is_refused_with_the_command_that_makes_it(
    deployer: Deployer, work_pool: str, tmp_path: Path
) -> None:
    done = deployer.deploy(str(make_project(tmp_path / "p")), "--pool", "fetchflow-test-pol")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[:2] == [
        'fetchflow: --pool: no work pool "fetchflow-test-pol" on this Prefect server; did you '
        f'mean "{work_pool}"? (pools: {work_pool})',
        "  hint: create it first: prefect work-pool create fetchflow-test-pol --type process "
        "(or docker, kubernetes), then deploy again",
    ]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param(
            ["--job-variables", "{image: x}"],
            [
                "--job-variables: not JSON: Expecting property name enclosed in double quotes "
                "at character 2",
                "  hint: give a JSON object, e.g. --job-variables "
                """'{"image": "repo/fetchflow:1", "env": {"FETCHFLOW_STORE": "s3://bucket/prefix"}}'""",
            ],
            id="job-variables-not-json",
        ),
        pytest.param(
            ["--job-variables", '["image"]'],
            [
                "--job-variables: expected a JSON object, got list",
                """  hint: give a JSON object, e.g. --job-variables '{"env": {"FETCHFLOW_HOME": """
                """"/srv/ff"}}'""",
            ],
            id="job-variables-not-an-object",
        ),
        pytest.param(
            ["--job-variables", '{"env": {"FETCHFLOW_MAX_PARALLEL_STEPS": 4}}'],
            [
                '--job-variables: field "env": expected an object of strings (NAME: "value")',
                """  hint: write every value as a string: {"env": """
                """{"FETCHFLOW_MAX_PARALLEL_STEPS": "4"}}""",
            ],
            id="env-value-not-a-string",
        ),
        pytest.param(
            ["--pool", " "],
            ["--pool: the work pool name is empty", "  hint: give --pool NAME"],
            id="empty-pool",
        ),
    ],
)
def test_bad_flags_exit_2_before_prefect(
    arguments: list[str],
    expected: list[str],
    clean_env: Mapping[str, str],
    tmp_path: Path,
) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    pool = [] if "--pool" in arguments else ["--pool", POOL]
    deployer = Deployer(env, tmp_path)
    done = deployer.deploy(str(REPO / "flows" / "hello.yaml"), *pool, *arguments)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [*expected, "", "PREFECT-IMPORTED: False"]


def test_an_invalid_workflow_exits_2_with_every_problem_before_prefect(
    clean_env: Mapping[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    broken = DATA / "broken" / "greet_broken.yaml"
    done = Deployer(env, tmp_path).deploy(str(broken), str(tmp_path / "gone.yaml"), "--pool", POOL)
    assert done.returncode == 2, done.stderr
    problems = sorted(  # every problem of every file, in the order of their paths
        [
            [
                f'{broken}:6:25: step "greeting" (template) field "template": "inputs.nobody": '
                'no input "nobody" is declared',
                "  hint: declare it under inputs: (declared: none)",
            ],
            [
                f"{tmp_path / 'gone.yaml'}: no such file or folder",
                "  hint: check the path (relative paths start at the current folder)",
            ],
        ]
    )
    assert done.stderr.splitlines() == [*problems[0], *problems[1], "", "PREFECT-IMPORTED: False"]


def test_the_pool_is_required(clean_env: Mapping[str, str], tmp_path: Path) -> None:
    env = {**clean_env, "PYTHONPATH": str(REPO), "FETCHFLOW_HOME": str(tmp_path / "home")}
    done = Deployer(env, tmp_path).deploy(str(REPO / "flows" / "hello.yaml"))
    assert done.returncode == 2
    assert "error: the following arguments are required: --pool" in done.stderr
    assert "PREFECT-IMPORTED" not in done.stderr  # argparse exits before anything runs
