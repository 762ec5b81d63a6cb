"""The ``fetchflow`` command.

``validate``, ``steps``, ``schema`` and ``--help`` never import Prefect (they answer in a
fraction of a second); ``run`` imports it only once the workflow and inputs are known to be
valid. Exit codes: 0 done (a run that completed, ``continue`` failures included), 1 the run
failed, 2 the workflow, its inputs, the command line or the configuration are invalid (also
an unknown ``--resume`` id, or a Prefect server or store that cannot be reached), 130 or 143
the run was interrupted by Ctrl-C or SIGTERM (it is saved: ``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetchflow.errors import (
    FetchflowError,
    PluginError,
    Problem,
    RunError,
    SettingsInvalid,
    UsageError,
    WorkflowInvalid,
)

if TYPE_CHECKING:
    from fetchflow.settings import Settings

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetchflow",
        description="Check and run YAML image-production workflows on Prefect.",
        epilog="Exit codes: 0 ok, 1 the run failed, 2 invalid workflow, inputs, arguments or "
        "settings, 130/143 interrupted (Ctrl-C/SIGTERM; resumable with --resume).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser("validate", help="check workflow files without running anything")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")

    run = commands.add_parser("run", help="run a workflow as a Prefect flow run")
    run.add_argument("file", type=Path, metavar="FILE")
    run.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a workflow input (repeatable); lists and objects as JSON",
    )
    run.add_argument("--json", action="store_true", help="print one JSON document, no progress")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved plan and its cost estimate; call nothing",
    )
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="re-run a failed or partial run, reusing the outputs of every step that "
        "completed (no provider call); its inputs unless given again",
    )
    run.add_argument(
        "--budget",
        metavar="USD",
        help="stop before any billable call when the estimate is over this (overrides budget_usd)",
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="also show Prefect's own log lines"
    )

    commands.add_parser("push", help="upload the files kept in the spool after failed uploads")

    server = commands.add_parser(
        "server", help="start a local Prefect server with its UI (Ctrl-C stops it)"
    )
    server.add_argument("--port", type=int, default=4200, help="port (default 4200)")
    server.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")

    for verb, what in (("approve", "approve"), ("deny", "deny")):
        answer = commands.add_parser(
            verb, help=f"{what} the billable steps a paused run waits on (needs a server)"
        )
        answer.add_argument("run_id", metavar="RUN_ID")
        answer.add_argument("--note", default="", help="why (kept with the decision)")
        if verb == "approve":
            answer.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="FIELD=VALUE",
                help="edit a value before approving (STEP.FIELD=VALUE in a batch)",
            )

    serve = commands.add_parser(
        "serve", help="serve workflows as Prefect deployments (typed run forms in the UI)"
    )
    serve.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="workflow files or folders of *.yaml"
    )
    serve.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="most flow runs at the same time on this machine (default 5)",
    )

    steps = commands.add_parser("steps", help="list the step types and their fields")
    steps.add_argument("--json", action="store_true", help="as JSON")

    commands.add_parser("schema", help="print the JSON Schema of workflow files")
    return parser


def _registry() -> Any:
    from fetchflow.step import StepRegistry

    return StepRegistry.from_entry_points()


def _validate(files: Sequence[Path]) -> int:
    from fetchflow.checking import check_file

    registry = _registry()
    status = EXIT_OK
    for file in files:
        try:
            plan = check_file(file, registry)
        except WorkflowInvalid as error:
            print(error.format(), file=sys.stderr)
            count = len(error.problems)
            print(f"{file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
            status = EXIT_INVALID
        else:
            count = len(plan.steps)
            print(f"{file}: ok ({count} step{'s' if count != 1 else ''})")
    return status


def _budget(text: str | None) -> float | None:
    """``--budget`` as a number of dollars: finite and above 0, like ``budget_usd``.

    Raises:
        WorkflowInvalid: Not a number, not finite (nan, inf) or not above 0: such a budget
            would switch the guard off.
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
        found = "not a number"
    else:
        found = "not finite" if not math.isfinite(value) else "not above 0"
    if math.isfinite(value) and value > 0:
        return value
    raise WorkflowInvalid(
        [
            Problem(
                message=f"expected an amount of US dollars above 0, got {text!r} ({found})",
                hint="give the most the run may cost, e.g. --budget 2.50 (or leave it out)",
                file="--budget",
            )
        ]
    )


def _with_home(settings: Settings) -> Settings:
    """The settings, once ``FETCHFLOW_HOME`` is known to be a writable folder."""
    from fetchflow.settings import check_home

    check_home(settings)
    return settings


def _resume_command(file: Path, run_id: str) -> str:
    return f"fetchflow run {shlex.quote(str(file))} --resume {run_id}"


def _run(args: argparse.Namespace) -> int:
    from fetchflow.checking import check_file
    from fetchflow.console import ConsoleProgress, format_summary
    from fetchflow.cost import check_budget, estimate_plan, format_estimate
    from fetchflow.inputs import parse_input_args, resolve_inputs
    from fetchflow.interrupt import exit_code_for, stop_on_interrupt, stop_requested, stop_signal
    from fetchflow.prefect_env import prepare_prefect_environment
    from fetchflow.preflight import preflight
    from fetchflow.reuse import Reused, outputs_to_resume
    from fetchflow.server import check_prefect_api, running_server
    from fetchflow.settings import load_settings

    settings = load_settings()
    budget_flag = _budget(args.budget)
    plan = check_file(args.file, _registry())
    given = parse_input_args(plan.header, args.input)
    reuse: dict[str, Reused] = {}
    if args.resume is not None:  # --resume= (empty) is a mistake, not no resume
        earlier, reuse = outputs_to_resume(settings.home, args.resume, plan)
        given = {**earlier, **given}
    inputs = resolve_inputs(plan.header, given)
    budget = budget_flag if budget_flag is not None else plan.header.budget_usd
    done = {step_id for step_id, reused in reuse.items() if reused.complete}
    estimate = estimate_plan(plan, inputs, settings, reused=done)
    if args.dry_run:
        if args.json:
            print(json.dumps(_estimate_json(plan.name, estimate, budget), indent=2))
        else:
            print(format_estimate(plan, estimate, budget))
        try:
            check_budget(estimate, budget)
        except RunError as error:
            print(f"fetchflow: {error.format()}", file=sys.stderr)
            return EXIT_INVALID
        return EXIT_OK
    try:
        check_budget(estimate, budget)
        if os.environ.get("PREFECT_API_URL"):  # before the store check writes its probe
            check_prefect_api(os.environ["PREFECT_API_URL"])
        _with_home(settings)
        store = preflight(plan, settings)
    except (RunError, SettingsInvalid) as error:
        # Refused before anything ran (a missing key, the budget, the store, the server):
        # like a broken file, exit 2, and nothing was called.
        text = error.format() if isinstance(error, RunError) else str(error)
        if args.json:  # scripts reading --json get a document for this failure too
            document: dict[str, object] = {
                "workflow": plan.name,
                "run_id": None,
                "status": "failed",
                "message": "refused before the run started",
                "steps": {},
                "error": text,
            }
            print(json.dumps(document, indent=2))
        print(f"fetchflow: {text}", file=sys.stderr)
        return EXIT_INVALID
    # A server started by `fetchflow server` is used when it runs: no embedded start-up,
    # and the run's page can be linked.
    server = None if "PREFECT_API_URL" in os.environ else running_server(settings)
    if server is not None:
        os.environ["PREFECT_API_URL"] = server.api_url
    prepare_prefect_environment(settings, verbose=args.verbose)
    # From here on Ctrl-C and SIGTERM stop the run without spending more: nothing new
    # starts, calls in flight finish and are kept, the run is saved for --resume.
    restore_signals = stop_on_interrupt()
    try:
        from fetchflow.runner import run_plan  # Prefect is imported here, and only here

        if stop_requested():
            print(
                "fetchflow: interrupted before the run started; nothing was called", file=sys.stderr
            )
            return exit_code_for(stop_signal())
        observer = None if args.json else ConsoleProgress(plan)
        report = run_plan(
            plan,
            inputs,
            settings=settings,
            observer=observer,
            open_store=store,
            ui_url=server.ui_url if server is not None else None,
            reuse=reuse,
            stop_on_signals=True,
        )
    finally:
        restore_signals()
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        print(format_summary(report), file=sys.stderr)
    if report.status == "interrupted" and report.run_id:
        print(f"resume it: {_resume_command(args.file, report.run_id)}", file=sys.stderr)
    return report.exit_code


def _push() -> int:
    from fetchflow.preflight import check_store
    from fetchflow.settings import load_settings
    from fetchflow.storage import open_store, push_spooled

    settings = _with_home(load_settings())
    store = check_store(lambda: open_store(settings))
    records = push_spooled(store, settings.spool_dir)
    for record in records:
        print(f"{record.file_name}  {record.storage_uri}")
    print(f"pushed {len(records)} file(s) from {settings.spool_dir} to {store.describe()}")
    return EXIT_OK


def _estimate_json(workflow: str, estimate: Any, budget: float | None) -> dict[str, object]:
    return {
        "workflow": workflow,
        "dry_run": True,
        "budget_usd": budget,
        "estimated_total_usd": estimate.total_usd,
        "steps": {
            row.step.id: {
                "type": row.step.type,
                "after": list(row.step.depends_on),
                "estimated_cost_usd": row.cost_usd,
                "detail": row.estimate.detail if row.estimate else row.note,
            }
            for row in estimate.steps
        },
    }


def _serve(args: argparse.Namespace) -> int:
    from fetchflow.deploy import check_workflows, serve_target
    from fetchflow.prefect_env import prepare_prefect_environment
    from fetchflow.settings import load_settings

    if args.limit is not None and args.limit < 1:
        raise WorkflowInvalid(
            [
                Problem(
                    message=f"expected at least 1 flow run at a time, got {args.limit}",
                    hint="leave --limit out for Prefect's default (5), or give --limit 1 or more",
                    file="--limit",
                )
            ]
        )
    settings = _with_home(load_settings())
    registry = _registry()
    check_workflows(args.paths, registry)  # every problem of every file, before Prefect
    target = serve_target(settings)
    if os.environ.get("PREFECT_API_URL"):
        from fetchflow.server import check_prefect_api

        check_prefect_api(target.api_url)
    os.environ["PREFECT_API_URL"] = target.api_url
    prepare_prefect_environment(settings, verbose=True)
    from fetchflow.deploy import serve_workflows

    serve_workflows(
        args.paths, settings=settings, registry=registry, limit=args.limit, ui_url=target.ui_url
    )
    return EXIT_OK


def _answer(args: argparse.Namespace) -> int:
    from fetchflow.prefect_env import prepare_prefect_environment
    from fetchflow.server import check_prefect_api, running_server
    from fetchflow.settings import load_settings

    settings = _with_home(load_settings())
    if os.environ.get("PREFECT_API_URL"):
        check_prefect_api(os.environ["PREFECT_API_URL"])
    else:
        server = running_server(settings)
        if server is None:
            print(
                "fetchflow: no Prefect server to reach: the run waits on the server it runs "
                "on\n  hint: start `fetchflow server` before `fetchflow run`, or set "
                "PREFECT_API_URL to the server of the run",
                file=sys.stderr,
            )
            return EXIT_INVALID
        os.environ["PREFECT_API_URL"] = server.api_url
    prepare_prefect_environment(settings)
    from fetchflow.approval import answer_paused_run

    print(
        answer_paused_run(
            args.run_id,
            approve=args.command == "approve",
            edits=getattr(args, "set", []),
            note=args.note,
        )
    )
    return EXIT_OK


def _steps(as_json: bool) -> int:
    registry = _registry()
    described: dict[str, Any] = {}
    for name, step_cls in registry.items():
        schema = step_cls.config_model.model_json_schema()
        required = set(schema.get("required", []))
        described[name] = {
            "summary": step_cls.summary(),
            "billable": step_cls.billable,
            "fields": {
                field: {
                    "required": field in required,
                    "description": spec.get("description", ""),
                    **({"default": spec["default"]} if "default" in spec else {}),
                }
                for field, spec in schema.get("properties", {}).items()
            },
        }
    if as_json:
        print(json.dumps(described, indent=2))
        return EXIT_OK
    for name, info in described.items():
        print(f"{name}: {info['summary']}")
        for field, spec in info["fields"].items():
            flag = "required" if spec["required"] else f"default {json.dumps(spec.get('default'))}"
            print(f"  {field:<22} {spec['description']} ({flag})")
        print()
    from fetchflow.spec import STEP_COMMON_KEYS

    print(f"Every step also takes: {', '.join(STEP_COMMON_KEYS)}.")
    return EXIT_OK


def _schema() -> int:
    from fetchflow.schema import workflow_schema

    print(json.dumps(workflow_schema(_registry()), indent=2))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fetchflow`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command not in ("run", "serve"):
        # Pydantic looks for its own plugins (scanning every installed distribution, ~40 ms)
        # when the first model is built; checking a file needs none of them.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        if args.command == "validate":
            return _validate(args.files)
        if args.command == "run":
            return _run(args)
        if args.command == "push":
            return _push()
        if args.command in ("approve", "deny"):
            return _answer(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "server":
            from fetchflow.server import serve_forever
            from fetchflow.settings import load_settings

            if not 1 <= args.port <= 65535:
                raise WorkflowInvalid(
                    [
                        Problem(
                            message=f"expected a port number from 1 to 65535, got {args.port}",
                            hint="leave --port out for 4200, or give a free port such as 4201",
                            file="--port",
                        )
                    ]
                )
            return serve_forever(_with_home(load_settings()), port=args.port, host=args.host)
        if args.command == "steps":
            return _steps(args.json)
        return _schema()
    except WorkflowInvalid as error:
        print(error.format(), file=sys.stderr)
        return EXIT_INVALID
    except (PluginError, SettingsInvalid, UsageError) as error:
        print(f"fetchflow: {error}", file=sys.stderr)
        return EXIT_INVALID
    except RunError as error:
        print(f"fetchflow: {error.format()}", file=sys.stderr)
        return EXIT_FAILED
    except FetchflowError as error:
        print(f"fetchflow: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        from fetchflow.interrupt import exit_code_for, stop_signal

        print("fetchflow: interrupted", file=sys.stderr)
        return exit_code_for(stop_signal())
    except Exception as error:
        if os.environ.get("FETCHFLOW_DEBUG"):
            raise
        print(
            f"fetchflow: internal error: {type(error).__name__}: {error}\n"
            "  hint: this is a bug in fetchflow or a plugin; run again with FETCHFLOW_DEBUG=1 "
            "for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
