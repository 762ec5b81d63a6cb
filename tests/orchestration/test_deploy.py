"""``fetchflow serve``: workflows as Prefect deployments with a run form.

The schema and the file handling are pure and tested directly. The end-to-end tests serve
``flows/hello.yaml`` and ``tests/data/deploy/typed.yaml`` (one input of every type) from a
subprocess, the way ``fetchflow serve`` does, against the session's Prefect server; they read
the deployments back through Prefect's client, start flow runs from them, check the runs
ran fetchflow's engine (one task run per step, the step outputs as artifacts) and stop the
serving process with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest

from fetchflow.errors import WorkflowInvalid
from fetchflow.orchestration.deploy import (
    ServeError,
    check_workflows,
    deployment_schema,
    serve_target,
    workflow_files,
)
from fetchflow.registry import StepRegistry
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "deploy"
TYPED = DATA / "typed.yaml"
HELLO = REPO / "flows" / "hello.yaml"
T = TypeVar("T")


@pytest.fixture
def registry(plugin_registry: StepRegistry) -> StepRegistry:
    """Built-in steps and the test plugin's (typed.yaml reports through its fail step)."""
    return plugin_registry


# -- the run form's schema (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "title",
            {"type": "string", "description": "The headline (required, no default)."},
            id="string-required-no-default",
        ),
        pytest.param(
            "count",
            {"type": "integer", "default": 3, "description": "How many variants."},
            id="integer",
        ),
        pytest.param(
            "ratio", {"type": "number", "default": 1.5, "description": "Aspect ratio."}, id="number"
        ),
        pytest.param(
            "draft",
            {"type": "boolean", "default": False, "description": "Mark the result as a draft."},
            id="boolean",
        ),
        pytest.param(
            "angles",
            {"type": "array", "default": ["front", "side"], "description": "Camera angles."},
            id="list-is-array",
        ),
        pytest.param(
            "extra",
            {"type": "object", "default": {"lens": "35mm"}, "description": "Free-form options."},
            id="object",
        ),
        pytest.param(
            "note",
            {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "Optional; nothing when not given.",
            },
            id="optional-without-default-accepts-null",
        ),
        pytest.param("strict", {"type": "boolean", "default": True}, id="no-description"),
    ],
)
def test_each_input_is_a_property(
    registry: StepRegistry, name: str, expected: dict[str, object]
) -> None:
    plan = check_file(TYPED, registry)
    properties = deployment_schema(plan)["properties"]
    assert isinstance(properties, dict)
    position = list(plan.header.inputs).index(name)
    assert properties[name] == {"title": name, "position": position, **expected}


def test_schema_lists_required_inputs_in_file_order(registry: StepRegistry) -> None:
    schema = deployment_schema(check_file(TYPED, registry))
    assert schema["type"] == "object"
    assert schema["required"] == ["title", "strict"]  # strict: required despite its default
    properties = schema["properties"]
    assert isinstance(properties, dict)
    assert list(properties) == [
        "title",
        "count",
        "ratio",
        "draft",
        "angles",
        "extra",
        "note",
        "strict",
    ]


def test_prefect_s_own_schema_loses_the_descriptions(registry: StepRegistry) -> None:
    """Why the schema is set explicitly: Prefect reads descriptions from a docstring."""
    from prefect.utilities.callables import parameter_schema

    from fetchflow.orchestration.runner import build_flow

    plan = check_file(HELLO, registry)
    prefects = parameter_schema(build_flow(plan, settings=Settings())).model_dump()
    assert prefects["properties"]["product"]["default"] == "ceramic mug"
    assert "description" not in prefects["properties"]["product"]
    ours = deployment_schema(plan)["properties"]
    assert isinstance(ours, dict)
    assert ours["product"]["description"] == "What the shot shows."


# -- which files, and checking them all first (pure) ------------------------------------------


def test_a_folder_means_its_workflow_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("name: b\n")
    (tmp_path / "a.yml").write_text("name: a\n")
    (tmp_path / "notes.txt").write_text("not a workflow\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "c.yaml").write_text("name: c\n")
    found = workflow_files([tmp_path, tmp_path / "b.yaml"])
    assert [path.name for path in found] == ["a.yml", "b.yaml"]


def test_missing_paths_and_empty_folders_are_problems(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        workflow_files([tmp_path / "nope.yaml", tmp_path])
    text = caught.value.format()
    assert "nope.yaml: no such file or folder" in text
    assert "the folder holds no workflow file (*.yaml, *.yml)" in text


def test_every_problem_of_every_file_is_reported_before_anything_is_served(
    registry: StepRegistry, tmp_path: Path
) -> None:
    with pytest.raises(WorkflowInvalid, match="no_such_step") as caught:
        check_workflows([DATA / "broken", HELLO, tmp_path / "gone.yaml"], registry)
    text = caught.value.format()
    assert 'unknown step type "no_such_step"' in text
    assert 'no input "missing" is declared' in text
    assert "gone.yaml: no such file or folder" in text
    assert 'workflow name "hello" is also the name of' in text
    assert len(caught.value.problems) == 4


def test_valid_workflows_are_checked_into_plans(registry: StepRegistry) -> None:
    plans = check_workflows([TYPED, REPO / "flows"], registry)
    examples = sorted((REPO / "flows").glob("*.yaml"))
    assert [plan.name for plan in plans] == ["typed", *(path.stem for path in examples)]


# -- where to serve (no Prefect) --------------------------------------------------------------


def test_serving_needs_a_server(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match=r"no `fetchflow server` is running") as caught:
        serve_target(Settings(home=tmp_path / "home"), environ={})
    assert "hint: start one in another terminal (fetchflow server)" in str(caught.value)


def test_prefect_api_url_wins(tmp_path: Path) -> None:
    target = serve_target(
        Settings(home=tmp_path / "home"), environ={"PREFECT_API_URL": "http://prefect:4200/api"}
    )
    assert target.api_url == "http://prefect:4200/api"
    assert target.ui_url is None


# -- served for real --------------------------------------------------------------------------

SERVE = """
import sys
from pathlib import Path
from fetchflow.orchestration.deploy import serve_workflows
from fetchflow.settings import load_settings
from fetchflow.registry import StepRegistry

serve_workflows(
    [Path(arg) for arg in sys.argv[1:]],
    settings=load_settings(),
    registry=StepRegistry.from_entry_points(),
)
"""


@dataclass
class Served:
    """The serving subprocess and where its output goes."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def read_deployment(name: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


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


def read_artifact(run_id: UUID, key: str) -> str | None:
    """The text of one artifact of a flow run (its own or its task runs'), if it is there."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        # Not client.read_artifacts: Prefect 3.8.8's client sends the filters left out as
        # null, which its server refuses (422).
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(run_id)]}, "key": {"any_": [key]}},
                "limit": 10,
            },
        )
    found = response.json()
    return str(found[0]["data"]) if found else None


@pytest.fixture(scope="module")
def served(
    prefect_api: str, plugin_pythonpath: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``serve_workflows`` for hello and typed in a subprocess, until both are registered.

    The test plugin is on its ``PYTHONPATH``: the flow-run processes it spawns find it too.
    """
    home = tmp_path_factory.mktemp("serve-home")
    # The session fixture already put its quiet Prefect settings in os.environ.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHFLOW_")}
    env.update(
        {
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "FETCHFLOW_HOME": str(home / "fetchflow"),
            "PYTHONPATH": plugin_pythonpath,
        }
    )
    log = home / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(HELLO), str(TYPED)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    serving = Served(process, log)
    try:
        wait_for(
            lambda: "2 workflow(s) served" in serving.output() or process.poll() is not None,
            bool,
            timeout=60,
        )
        assert process.poll() is None, serving.output()
        yield serving
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.prefect
def test_deployments_carry_the_run_form(served: Served, registry: StepRegistry) -> None:
    typed = read_deployment("typed/typed")
    assert typed is not None, served.output()
    assert typed.name == "typed"
    assert typed.description == check_file(TYPED, registry).header.description
    assert typed.enforce_parameter_schema is True
    assert typed.work_pool_name is None  # served here, not through a work pool
    schema = typed.parameter_openapi_schema
    assert schema == deployment_schema(check_file(TYPED, registry))
    assert schema["properties"]["count"]["description"] == "How many variants."
    assert schema["properties"]["angles"]["type"] == "array"
    assert schema["required"] == ["title", "strict"]

    hello = read_deployment("hello/hello")
    assert hello is not None
    assert hello.parameter_openapi_schema["properties"]["product"] == {
        "title": "product",
        "position": 0,
        "type": "string",
        "default": "ceramic mug",
        "description": "What the shot shows.",
    }
    assert "serving typed/typed" in served.output()


@pytest.mark.prefect
def test_a_run_from_the_deployment_runs_the_engine_with_its_inputs(served: Served) -> None:
    from prefect.deployments import run_deployment

    parameters = {
        "title": "Headline",
        "count": 7,
        "ratio": 0.5,
        "angles": ["top", "back"],
        "extra": {"lens": "85mm"},
        "strict": False,
    }
    flow_run = run_deployment("typed/typed", parameters=parameters, timeout=60)
    assert flow_run.state is not None and flow_run.state.is_completed(), (
        flow_run.state,
        served.output(),
    )
    # fetchflow's own final state: the report step failed on purpose, with continue.
    assert flow_run.state.message.startswith("1 step(s) failed (report)")
    assert flow_run.parameters == parameters
    task_runs = wait_for(
        lambda: read_task_runs(flow_run.id),
        lambda runs: len(runs) == 3 and all(run.state and run.state.is_final() for run in runs),
        timeout=15,
    )
    assert [(run.name, run.state_name) for run in task_runs] == [
        ("render", "Completed"),
        ("report", "Failed"),
        ("shout", "Completed"),
    ]
    assert [run.tags for run in task_runs] == [[], [], []]  # free steps carry no type tag
    report = task_runs[1].state.message
    assert (
        "HEADLINE X14 AT 0.5; ANGLES TOP+BACK; LENS 85MM; DRAFT FALSE; NOTE NULL; STRICT FALSE"
        in report
    ), report


@pytest.mark.prefect
def test_defaults_apply_to_what_the_run_does_not_give(served: Served) -> None:
    from prefect.deployments import run_deployment

    flow_run = run_deployment(
        "typed/typed", parameters={"title": "Bare", "strict": True}, timeout=60
    )
    assert flow_run.state is not None and flow_run.state.is_completed(), served.output()
    task_runs = wait_for(
        lambda: read_task_runs(flow_run.id),
        lambda runs: len(runs) == 3 and all(run.state and run.state.is_final() for run in runs),
        timeout=15,
    )
    report = task_runs[1].state.message
    assert (
        "BARE X6 AT 1.5; ANGLES FRONT+SIDE; LENS 35MM; DRAFT FALSE; NOTE NULL; STRICT TRUE"
        in report
    ), report


@pytest.mark.prefect
def test_hello_runs_from_its_deployment(served: Served) -> None:
    from prefect.deployments import run_deployment

    flow_run = run_deployment("hello/hello", parameters={"product": "teapot"}, timeout=60)
    assert flow_run.state is not None and flow_run.state.is_completed(), served.output()
    assert flow_run.state.message == "3 step(s) completed"
    assert flow_run.parameters == {"product": "teapot"}
    task_runs = wait_for(
        lambda: read_task_runs(flow_run.id),
        lambda runs: len(runs) == 3 and all(run.state and run.state.is_final() for run in runs),
        timeout=15,
    )
    assert [(run.name, run.state_name) for run in task_runs] == [
        ("brief", "Completed"),
        ("caption", "Completed"),
        ("handoff", "Completed"),
    ]
    summary = wait_for(
        lambda: read_artifact(flow_run.id, "hello-run-summary"),
        lambda found: found is not None,
        timeout=15,
    )
    assert summary is not None and "hello: completed" in summary


@pytest.mark.prefect
def test_the_api_refuses_parameters_of_the_wrong_type(served: Served) -> None:
    from prefect.client.orchestration import get_client

    typed = read_deployment("typed/typed")
    with (
        get_client(sync_client=True) as client,
        pytest.raises(Exception, match=r"Validation failed|validation") as caught,
    ):
        client.create_flow_run_from_deployment(
            typed.id, parameters={"title": "x", "strict": True, "count": "many"}
        )
    assert "count" in str(caught.value)


@pytest.mark.prefect
def test_ctrl_c_stops_serving(served: Served) -> None:
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(30) == 0, served.output()
    assert "stopped serving" in served.output()
