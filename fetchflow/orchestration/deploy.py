"""``fetchflow serve``: every workflow a Prefect deployment with a run form, served here.

Each workflow file becomes one deployment, named after the workflow (flow ``hello``,
deployment ``hello``, so ``hello/hello``). Its parameter schema is made from the declared
inputs (:func:`deployment_schema`): the UI's Run form shows each input with its type, its
default and its description, and the API refuses parameters of the wrong type.

How Prefect 3.8 runs a served deployment, and why a flow built from YAML works: a
``Runner`` registers each flow with ``add_flow``, which keeps the ``Flow`` object in memory
(``add_deployment`` does not: its runs would import the entrypoint, and fail);
it polls the API for scheduled runs of those deployments (``PREFECT_RUNNER_POLL_FREQUENCY``,
set to :data:`POLL_SECONDS` here unless the user set it), claims a run by proposing
``Pending`` (the server refuses a second claim, so several serving processes never run the
same flow run twice), then runs it with ``run_flow_in_subprocess``: the in-memory flow is
cloudpickled into a fresh ``spawn`` process. The flow's entrypoint is never imported, so the
closure :func:`fetchflow.orchestration.runner.build_flow` returns (plan, settings and its generated
signature included) runs as it is, in a child process that imports fetchflow and the step
plugins again. A run from the UI therefore executes the same engine as ``fetchflow run``,
with the pre-run checks at the start of each flow run. Because the child is spawned, the
program that calls :func:`serve_workflows` needs the usual ``if __name__ == "__main__":``
guard (console scripts and ``python -m`` have it).

Work-pool workers (``prefect worker start``) are a different mechanism: they load a flow
from the deployment's entrypoint and pull steps; ``fetchflow deploy``
(:mod:`fetchflow.orchestration.pool`) makes such deployments, carrying the workflow itself.

Both pin the workflow's version: the deployment's ``version`` and the flow's ``version``
are the content hash of the workflow and the files it reads
(:func:`fetchflow.orchestration.bundle.workflow_version`), and a flow run created for
another version than the one about to run it is refused, ``Failed`` with both hashes
(:func:`fetchflow.orchestration.bundle.version_refusal`): two serve processes with different
files under one name never silently run either.

Prefect is imported only by the functions that serve; checking and the schema need none.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

from fetchflow.errors import Problem, ServeError, WorkflowInvalid
from fetchflow.settings import Settings
from fetchflow.workflow.plan import Plan
from fetchflow.workflow.spec import InputSpec

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry

__all__ = [
    "POLL_SECONDS",
    "ServeError",
    "ServeTarget",
    "check_workflows",
    "deployment_schema",
    "serve_target",
    "serve_workflows",
    "workflow_files",
]

#: How often a serving process asks the API for new runs (Prefect's default is 10 s: a run
#: started from the UI would wait that long before it starts).
POLL_SECONDS = 2.0
WORKFLOW_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ServeTarget:
    """The Prefect API that deployments are served to.

    Attributes:
        api_url: For ``PREFECT_API_URL``.
        ui_url: The UI's address when known (the server ``fetchflow server`` started).
    """

    api_url: str
    ui_url: str | None = None


def serve_target(settings: Settings, environ: Mapping[str, str] | None = None) -> ServeTarget:
    """The API to serve to: ``PREFECT_API_URL`` when set, else ``fetchflow server``'s.

    Serving needs a server that outlives this process and that the UI reaches: Prefect's
    temporary server (what ``fetchflow run`` starts without one) would vanish with it.

    Raises:
        ServeError: Neither is there.
    """
    from fetchflow.orchestration.server import running_server

    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return ServeTarget(env["PREFECT_API_URL"])
    found = running_server(settings, timeout=2.0)
    if found is None:
        raise ServeError(
            "no Prefect server to serve the workflows to: PREFECT_API_URL is not set and "
            "no `fetchflow server` is running",
            "start one in another terminal (fetchflow server), then run this again; or set "
            "PREFECT_API_URL to a shared Prefect server",
        )
    return ServeTarget(found.api_url, found.ui_url)


# -- what is served (pure) -------------------------------------------------------------------


def _expand(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in WORKFLOW_SUFFIXES)
            if not found:
                problems.append(
                    Problem(
                        message="the folder holds no workflow file (*.yaml, *.yml)",
                        hint="give the workflow files, or the folder that holds them",
                        file=str(path),
                    )
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(
                Problem(
                    message="no such file or folder",
                    hint="check the path (relative paths start at the current folder)",
                    file=str(path),
                )
            )
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values()), problems


def workflow_files(paths: Sequence[Path]) -> list[Path]:
    """The workflow files ``paths`` name: files as given, folders' ``*.yaml``/``*.yml``.

    Folders are not searched recursively (their ``templates/`` are no workflows); a file
    named twice counts once.

    Raises:
        WorkflowInvalid: A path does not exist or a folder holds no workflow file.
    """
    files, problems = _expand(paths)
    if problems:
        raise WorkflowInvalid(problems)
    return files


def check_workflows(paths: Sequence[Path], registry: StepRegistry) -> list[Plan]:
    """Check every workflow file ``paths`` name; all problems of all files, or the plans.

    Two workflows with the same name would be one deployment: that is a problem too.

    Raises:
        WorkflowInvalid: Anything is wrong, in any file.
    """
    from fetchflow.workflow.checking import check_file

    files, problems = _expand(paths)
    plans: list[Plan] = []
    for file in files:
        try:
            plans.append(check_file(file, registry))
        except WorkflowInvalid as error:
            problems.extend(error.problems)
    first: dict[str, Plan] = {}
    for plan in plans:
        other = first.setdefault(plan.name, plan)
        if other is not plan:
            problems.append(
                Problem(
                    message=f'workflow name "{plan.name}" is also the name of {other.file}; '
                    "each workflow is served as the deployment of its name",
                    hint=f"change the name: of one of them (name: {plan.name}_2)",
                    file=str(plan.file),
                    subject="name",
                )
            )
    if problems:
        raise WorkflowInvalid(problems)
    return plans


def _input_schema(name: str, spec: InputSpec, position: int) -> dict[str, object]:
    kind = spec.json_schema()["type"]
    schema: dict[str, object] = {"title": name, "position": position}
    if spec.is_required or (spec.has_default and spec.default is not None):
        schema["type"] = kind
    else:
        # Optional with no value: the form may send null, and the run then goes without.
        schema["anyOf"] = [{"type": kind}, {"type": "null"}]
    if spec.description:
        schema["description"] = spec.description
    if spec.has_default:
        schema["default"] = spec.default
    return schema


def deployment_schema(plan: Plan) -> dict[str, object]:
    """The deployment's parameter schema (Prefect's ``parameter_openapi_schema``).

    One property per declared input, in file order (``position`` orders the form): its JSON
    type (``list`` is ``array``), ``title``, the input's ``description`` and ``default``;
    inputs a run must give are ``required``. An optional input without a value also
    accepts ``null``.

    Prefect's own schema, made from the flow's signature, has the types and defaults but
    reads descriptions from a docstring, which a flow built from YAML does not have.
    """
    inputs = plan.header.inputs
    return {
        "title": "Parameters",
        "type": "object",
        "properties": {
            name: _input_schema(name, spec, position)
            for position, (name, spec) in enumerate(inputs.items())
        },
        "required": [name for name, spec in inputs.items() if spec.is_required],
        "definitions": {},
    }


# -- serving (Prefect) -----------------------------------------------------------------------


def _add_workflow(
    runner: Any, plan: Plan, *, settings: Settings, ui_url: str | None
) -> tuple[UUID, str, str | None]:
    """Register a plan's deployment with ``runner``; returns the deployment's id, its
    version and the version it carried before (None when it is new).

    ``Runner.add_flow`` is what keeps the flow object in memory for the runner to run
    (``add_deployment`` would make it import the flow's entrypoint, which a flow built from
    YAML does not have), but it applies Prefect's schema made from the signature, without
    the descriptions: the run form's schema is set right after, before anything runs.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import ObjectNotFound

    from fetchflow.orchestration.bundle import workflow_version
    from fetchflow.orchestration.runner import build_flow

    version = workflow_version(plan)
    with get_client(sync_client=True) as client:
        try:
            before = client.read_deployment_by_name(f"{plan.name}/{plan.name}").version
        except ObjectNotFound:
            before = None
    workflow_flow = build_flow(plan, settings=settings, ui_url=ui_url)
    workflow_flow.version = version  # what each run checks its deployment's version against
    deployment_id: UUID = runner.add_flow(
        workflow_flow,
        name=plan.name,
        description=plan.header.description or None,
        version=version,
        tags=["fetchflow"],
        enforce_parameter_schema=True,
    )
    schema = deployment_schema(plan)
    with get_client(sync_client=True) as client:
        client.update_deployment(deployment_id, DeploymentUpdate(parameter_openapi_schema=schema))
    return deployment_id, version, before


def _poll_seconds() -> float:
    value = os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY")
    return float(value) if value else POLL_SECONDS


def _require_api() -> str:
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise ServeError(
            "PREFECT_API_URL is not set: served workflows need a Prefect server that "
            "outlives this process",
            "start one (fetchflow server) or set PREFECT_API_URL",
        )
    return str(api_url)


def serve_workflows(
    paths: Sequence[Path],
    *,
    settings: Settings,
    registry: StepRegistry,
    limit: int | None = None,
    ui_url: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Check the workflows, register one deployment each, and run their flow runs until
    interrupted (Ctrl-C or SIGTERM).

    Nothing is registered unless every workflow passes its checks. Each flow run started
    from the UI or the API runs in a child process of this one (see the module docstring).

    Args:
        paths: Workflow files, or folders of them.
        settings: fetchflow settings.
        registry: The step types.
        limit: Most flow runs at the same time (Prefect's default, 5, when not given).
        ui_url: The Prefect UI's address, to print each deployment's page.
        out: Where to say what is served (stderr by default).

    Raises:
        WorkflowInvalid: Any workflow is invalid (every problem of every file).
        ServeError: No Prefect API is configured.
    """
    plans = check_workflows(paths, registry)
    api_url = _require_api()
    out = out or sys.stderr

    from prefect.runner import Runner
    from prefect.utilities.annotations import NotSet

    runner = Runner(
        name=f"fetchflow-{socket.gethostname()}".replace("/", "-").replace("%", "-"),
        pause_on_shutdown=False,  # other machines may be serving the same deployments
        limit=NotSet if limit is None else limit,
        query_seconds=_poll_seconds(),
    )
    for plan in plans:
        deployment_id, version, before = _add_workflow(
            runner, plan, settings=settings, ui_url=ui_url
        )
        where = (
            f"{ui_url.rstrip('/')}/deployments/deployment/{deployment_id}"
            if ui_url
            else str(deployment_id)
        )
        print(
            f"serving {plan.name}/{plan.name}  version {version}  {where}  ({plan.file})",
            file=out,
            flush=True,
        )
        if before is not None and before != version:
            print(
                f"  note: {plan.name}/{plan.name} was version {before}; runs created for it "
                "are refused (Failed), not run with this file",
                file=out,
                flush=True,
            )
    print(
        f"{len(plans)} workflow(s) served to {api_url}; start runs from the UI "
        "(Deployments > Run) or `prefect deployment run NAME/NAME`; Ctrl-C stops.",
        file=out,
        flush=True,
    )
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        print("stopped serving", file=out, flush=True)
