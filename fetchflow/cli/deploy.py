"""``fetchflow deploy PATH... --pool NAME``: workflows as deployments on a Prefect work pool.

Any machine with fetchflow installed then runs them with ``prefect worker start --pool NAME``
(see :mod:`fetchflow.orchestration.pool`). Every workflow and flag is checked before Prefect
is imported; nothing is deployed unless all of them pass.
"""

from __future__ import annotations

import argparse
import json
import os

from fetchflow.cli.common import EXIT_OK, bad_flag, prefect_server, step_types, with_home

__all__ = ["main"]


_EXAMPLE = """give a JSON object, e.g. --job-variables '{"env": {"FETCHFLOW_HOME": "/srv/ff"}}'"""


def _not_json(constant: str) -> object:
    raise ValueError(constant)


def _job_variables(text: str | None) -> dict[str, object]:
    if text is None:
        return {}
    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise bad_flag("--job-variables", "nested too deeply", _EXAMPLE) from None
    except json.JSONDecodeError as error:
        raise bad_flag(
            "--job-variables",
            f"not JSON: {error.msg} at character {error.pos + 1}",
            """give a JSON object, e.g. --job-variables '{"image": "repo/fetchflow:1", """
            """"env": {"FETCHFLOW_STORE": "s3://bucket/prefix"}}'""",
        ) from None
    except ValueError as error:  # NaN, Infinity: Python's extension, not JSON
        raise bad_flag(
            "--job-variables",
            f"not JSON: {error} is not a JSON value",
            "write a number, or the value as a string",
        ) from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_flag(
            "--job-variables",
            "holds a lone surrogate (\\ud800-\\udfff), which is not text",
            "write the character itself, or both halves of its surrogate pair",
        ) from None
    if not isinstance(value, dict):
        raise bad_flag(
            "--job-variables",
            f"expected a JSON object, got {type(value).__name__}",
            _EXAMPLE,
        )
    env = value.get("env")
    if env is not None and not (
        isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    ):
        raise bad_flag(
            "--job-variables",
            'field "env": expected an object of strings (NAME: "value")',
            """write every value as a string: {"env": {"FETCHFLOW_MAX_PARALLEL_STEPS": "4"}}""",
        )
    for name, variable in (env or {}).items():
        if not name or "=" in name or "\0" in name:
            raise bad_flag(
                "--job-variables",
                f'field "env": {json.dumps(name)} is not an environment variable name',
                'name each variable with no "=" (e.g. {"env": {"FETCHFLOW_STORE": '
                '"s3://bucket/prefix"}})',
            )
        if "\0" in variable:
            raise bad_flag(
                "--job-variables",
                f'field "env": the value of {name} holds a NUL character (\\u0000), which '
                "no environment variable can hold",
                "remove it from the value",
            )
    return value


def main(args: argparse.Namespace) -> int:
    """Check every workflow and flag, then register one deployment per workflow."""
    from fetchflow.orchestration.bundle import bundle_workflow
    from fetchflow.orchestration.deploy import check_workflows
    from fetchflow.settings import load_settings

    pool = args.pool.strip()
    if not pool:
        raise bad_flag("--pool", "the work pool name is empty", "give --pool NAME")
    work_queue = args.work_queue.strip() if args.work_queue is not None else None
    if work_queue == "":
        raise bad_flag(
            "--work-queue", "the queue name is empty", "leave --work-queue out for the default"
        )
    job_variables = _job_variables(args.job_variables)
    settings = with_home(load_settings())
    plans = check_workflows(args.paths, step_types())  # every problem of every file first
    for plan in plans:
        bundle_workflow(plan)  # too large to travel: a problem of that file, before Prefect
    target = prefect_server(settings, "to deploy the workflows to")
    if os.environ.get("PREFECT_API_URL"):
        from fetchflow.orchestration.server import check_prefect_api

        check_prefect_api(target.api_url)
    os.environ["PREFECT_API_URL"] = target.api_url
    from fetchflow.orchestration.prefect_env import prepare_prefect_environment

    prepare_prefect_environment(settings)
    from fetchflow.orchestration.pool import deploy_workflows
    from fetchflow.orchestration.server import api_refusal

    try:
        deploy_workflows(
            plans,
            pool=pool,
            work_queue=work_queue,
            job_variables=job_variables,
            ui_url=target.ui_url,
        )
    except Exception as error:
        refusal = api_refusal(target.api_url, error)
        if refusal is None:
            raise
        raise refusal from None
    return EXIT_OK
