"""``fetchflow deploy``: workflows as deployments on a Prefect work pool, run by plain workers.

Each workflow becomes the deployment ``<workflow>/<workflow>`` on the pool, with the typed
run form of ``fetchflow serve`` (:func:`~fetchflow.orchestration.deploy.deployment_schema`)
and ``version`` = the content hash of the workflow and every file it reads
(:mod:`fetchflow.orchestration.bundle`). How a worker on another machine runs it, with
nothing but fetchflow installed (checked against Prefect 3.9.1's own code):

1. The deployment's only pull step is :func:`unpack_workflow`, an importable function of
   fetchflow whose arguments carry the whole bundle (YAML, templates, named project files)
   as one base64 string. A process worker runs pull steps in the flow run's supervisor
   process (``prefect.runner._workspace_resolver``), Docker and Kubernetes workers in the
   container's engine process (``prefect.flows.load_flow_from_flow_run``). It writes the
   bundle once under ``<FETCHFLOW_HOME>/deployed/<workflow>-<version>/`` (atomically: a
   temporary folder renamed into place; later runs reuse it) and names the workflow file in
   ``FETCHFLOW_DEPLOYED_WORKFLOW``, which reaches the engine process in both cases. It
   returns no ``directory``: the flow run keeps the working folder the worker gives it
   (a process worker's ``working_dir`` job variable), so its ``.env`` is read as usual.
2. The entrypoint is the module path ``fetchflow.orchestration.deployed.workflow``: that
   module builds, on first access, the flow of the unpacked workflow with
   :func:`fetchflow.orchestration.runner.build_flow`: its signature carries the inputs, and
   each flow run starts with the same pre-run checks as ``fetchflow run``.
3. The flow carries the bundle's version; a run created for another version is refused
   (:func:`fetchflow.orchestration.bundle.version_refusal`).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from fetchflow.errors import UsageError, closest
from fetchflow.orchestration.bundle import TEMPLATES, WorkflowBundle, bundle_workflow
from fetchflow.orchestration.deploy import deployment_schema
from fetchflow.settings import load_settings
from fetchflow.workflow.plan import Plan

__all__ = [
    "DEPLOYED_WORKFLOW_VARIABLE",
    "ENTRYPOINT",
    "deploy_workflows",
    "deployed_flow",
    "pull_step",
    "unpack_workflow",
]

#: The entrypoint of every deployment ``fetchflow deploy`` makes.
ENTRYPOINT = "fetchflow.orchestration.deployed.workflow"
#: Set by :func:`unpack_workflow` for the engine: the unpacked workflow file.
DEPLOYED_WORKFLOW_VARIABLE = "FETCHFLOW_DEPLOYED_WORKFLOW"
#: Set with it: the version the pull step unpacked.
DEPLOYED_VERSION_VARIABLE = "FETCHFLOW_DEPLOYED_VERSION"
_UNPACK = f"{__name__}.unpack_workflow"


def pull_step(bundle: WorkflowBundle) -> dict[str, Any]:
    """The deployment's pull step: :func:`unpack_workflow` with the bundle as arguments."""
    return {
        _UNPACK: {
            "workflow": bundle.name,
            "version": bundle.version,
            "bundle": bundle.encode(),
        }
    }


def _cache_root() -> Path:
    try:
        home = load_settings().home
    except Exception:  # the run's own checks report bad settings; unpacking needs a folder
        home = Path(os.environ.get("FETCHFLOW_HOME") or ".fetchflow")
    return home.expanduser().resolve() / "deployed"


def unpack_workflow(workflow: str, version: str, bundle: str) -> dict[str, str]:
    """Pull step: write the bundled workflow under ``<FETCHFLOW_HOME>/deployed`` and name it
    for the engine (``FETCHFLOW_DEPLOYED_WORKFLOW``); returns ``{"workflow_file": path}``.

    Idempotent and safe with concurrent runs: the folder is keyed by the version, written
    in a temporary folder and renamed into place; an existing one is reused.

    Raises:
        ValueError: The bundle is damaged or its content is not ``version``.
    """
    unpacked = WorkflowBundle.decode(bundle)
    if unpacked.version != version or unpacked.name != workflow:
        raise ValueError(
            f"the bundle of workflow {workflow!r} holds version {unpacked.version} of "
            f"{unpacked.name!r}, not {version}: deploy it again (fetchflow deploy)"
        )
    root = _cache_root()
    target = root / f"{workflow}-{version}"
    if not (target / unpacked.workflow).is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".{workflow}-{version}-{uuid.uuid4().hex[:8]}"
        try:
            for path, data in unpacked.files.items():
                destination = staging / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(data)
            # Always a templates/ folder: it makes the bundle the project folder that
            # relative paths are read under, wherever the run's working folder is.
            (staging / TEMPLATES).mkdir(exist_ok=True)
            try:
                staging.rename(target)
            except OSError:
                if not (target / unpacked.workflow).is_file():
                    raise  # not another run that got there first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    workflow_file = str(target / unpacked.workflow)
    os.environ[DEPLOYED_WORKFLOW_VARIABLE] = workflow_file
    os.environ[DEPLOYED_VERSION_VARIABLE] = version
    return {"workflow_file": workflow_file}


def deployed_flow(environ: Mapping[str, str] | None = None) -> Any:
    """The Prefect flow of the workflow :func:`unpack_workflow` unpacked in this process's
    environment, checked as ``fetchflow run`` checks it, carrying its version.

    Raises:
        RuntimeError: No pull step unpacked a workflow (not a ``fetchflow deploy``
            deployment).
        WorkflowInvalid: The workflow does not check on this machine (a step type that is
            not installed here, ...).
    """
    from fetchflow.orchestration.runner import build_flow
    from fetchflow.registry import StepRegistry
    from fetchflow.settings import check_home
    from fetchflow.workflow.checking import check_file

    env = os.environ if environ is None else environ
    workflow_file = env.get(DEPLOYED_WORKFLOW_VARIABLE)
    if not workflow_file:
        raise RuntimeError(
            f"{ENTRYPOINT} runs the deployments `fetchflow deploy` makes: their pull step "
            f"unpacks the workflow and sets {DEPLOYED_WORKFLOW_VARIABLE}, which is not set here"
        )
    settings = load_settings()
    check_home(settings)
    plan = check_file(Path(workflow_file), StepRegistry.from_entry_points())
    workflow_flow = build_flow(plan, settings=settings)
    workflow_flow.version = env.get(DEPLOYED_VERSION_VARIABLE) or bundle_workflow(plan).version
    return workflow_flow


# -- deploying (Prefect) ---------------------------------------------------------------------


def _work_pool(client: Any, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_work_pool(name)
    except ObjectNotFound:
        known = [pool.name for pool in client.read_work_pools(limit=200)]
        suggestion = closest(name, known)
        raise UsageError(
            f'--pool: no work pool "{name}" on this Prefect server'
            + (f'; did you mean "{suggestion}"?' if suggestion else "")
            + f" (pools: {', '.join(known) or 'none'})",
            f"create it first: prefect work-pool create {name} --type process (or docker, "
            "kubernetes), then deploy again",
        ) from None


def deploy_workflows(
    plans: Sequence[Plan],
    *,
    pool: str,
    work_queue: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
    ui_url: str | None = None,
    out: TextIO | None = None,
) -> list[tuple[str, str]]:
    """Register each checked plan as the deployment ``<name>/<name>`` on the work pool.

    A deployment that exists is updated in place (same id, new version, new bundle). Prints
    one line per deployment and how to start a worker.

    Args:
        plans: Checked workflows (see :func:`~fetchflow.orchestration.deploy.check_workflows`).
        pool: The work pool (it must exist; any type).
        work_queue: The pool's queue for their runs (the pool's default queue when None).
        job_variables: Overrides of the pool's job template (``env``, ``image``, ...).
        ui_url: The Prefect UI's address, for each deployment's page.
        out: Where to print (stderr by default).

    Returns:
        ``(deployment name, version)`` of each deployment.

    Raises:
        WorkflowInvalid: A workflow's bundle is too large.
        UsageError: No such work pool.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    out = out or sys.stderr
    bundles = [bundle_workflow(plan) for plan in plans]
    done: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        work_pool = _work_pool(client, pool)
        api_url = str(client.api_url)
        for plan, bundle in zip(plans, bundles, strict=True):
            name = f"{plan.name}/{plan.name}"
            try:
                before = client.read_deployment_by_name(name).version
            except ObjectNotFound:
                before = None
            flow_id = client.create_flow_from_name(plan.name)
            deployment_id = client.create_deployment(
                flow_id=flow_id,
                name=plan.name,
                version=bundle.version,
                description=plan.header.description or None,
                work_pool_name=work_pool.name,
                work_queue_name=work_queue,
                tags=["fetchflow"],
                entrypoint=ENTRYPOINT,
                pull_steps=[pull_step(bundle)],
                parameter_openapi_schema=deployment_schema(plan),
                enforce_parameter_schema=True,
                job_variables=dict(job_variables or {}),
                paused=False,
            )
            where = (
                f"{ui_url.rstrip('/')}/deployments/deployment/{deployment_id}"
                if ui_url
                else str(deployment_id)
            )
            change = (
                ""
                if before is None
                else "  (unchanged)"
                if before == bundle.version
                else f"  (was {before})"
            )
            print(
                f"deployed {name}  version {bundle.version}{change}  pool {work_pool.name} "
                f"({work_pool.type})  {where}  ({plan.file}, {len(bundle.files)} file(s))",
                file=out,
                flush=True,
            )
            done.append((name, bundle.version))
    print(
        f"{len(done)} workflow(s) deployed to work pool {work_pool.name} at {api_url}. On any "
        "machine with fetchflow installed and PREFECT_API_URL set to this server, run them "
        f"with: prefect worker start --pool {work_pool.name}; start runs from the UI "
        f"(Deployments > Run) or `prefect deployment run {done[0][0] if done else 'NAME/NAME'}`.",
        file=out,
        flush=True,
    )
    return done
