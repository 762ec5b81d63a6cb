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
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from fetchflow.cli.common import EXIT_FAILED, EXIT_INVALID
from fetchflow.errors import (
    FetchflowError,
    PluginError,
    RunError,
    SettingsInvalid,
    UsageError,
    WorkflowInvalid,
    with_hint,
)

__all__ = ["main"]

#: Each command's module, imported only when that command runs.
COMMANDS = {
    "validate": "validate",
    "run": "run",
    "push": "push",
    "server": "server",
    "approve": "answer",
    "deny": "answer",
    "serve": "serve",
    "deploy": "deploy",
    "recover": "recover",
    "steps": "steps",
    "schema": "schema",
    "runs": "history",
    "show": "history",
    "export": "history",
    "refs": "refs",
    "lsp": "lsp",
}


def _version() -> str:
    """This fetchflow's version and Prefect's, from the installed packages' metadata (no
    Prefect import)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    python = platform.python_version()
    return f"fetchflow {of('fetchflow')} (Prefect {of('prefect')}, Python {python})"


class _VersionAction(argparse.Action):
    """``--version``: the versions are looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_version())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetchflow",
        description="Check and run YAML image-production workflows on Prefect.",
        epilog="Exit codes: 0 ok, 1 the run failed, 2 invalid workflow, inputs, arguments or "
        "settings, 130/143 interrupted (Ctrl-C/SIGTERM; resumable with --resume).",
    )
    parser.add_argument("--version", action=_VersionAction)
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
        "--only",
        metavar="STEP[,STEP...]",
        help="run just these steps; every step they need is reused from the latest run of "
        "the workflow that completed it (or --using): not run, not paid for",
    )
    run.add_argument(
        "--from",
        dest="start",
        metavar="STEP",
        help="run STEP and every step after it; the steps before it are reused like --only",
    )
    run.add_argument(
        "--using",
        metavar="RUN_ID",
        help="with --only/--from: the run whose outputs are reused (default: the latest)",
    )
    run.add_argument(
        "--budget",
        metavar="USD",
        help="stop before any billable call when the estimate is over this (overrides budget_usd)",
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="also show Prefect's own log lines"
    )
    run.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="when the run ends (also failed or interrupted), write the files it made into "
        "DIR as <step>-<n>.<ext> (like fetchflow export)",
    )

    commands.add_parser("push", help="upload the files kept in the spool after failed uploads")

    server = commands.add_parser(
        "server", help="start a local Prefect server with its UI (Ctrl-C stops it)"
    )
    server.add_argument("--port", type=int, default=4200, help="port (default 4200)")
    server.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    server.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="PostgreSQL for the server's history: postgresql+asyncpg://USER:PASSWORD@HOST:"
        "5432/DB (default: FETCHFLOW_DATABASE_URL, else the embedded SQLite database); "
        "keep the password out of the command line with PGPASSWORD or FETCHFLOW_DATABASE_URL",
    )
    server.add_argument(
        "--files-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port of the local asset store's file server, which makes the UI's image links "
        "open (default: --port + 1, or a free port when that one is taken)",
    )

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

    deploy = commands.add_parser(
        "deploy",
        help="register workflows as deployments on a Prefect work pool "
        "(run by `prefect worker start --pool NAME` on any machine with fetchflow)",
    )
    deploy.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="workflow files or folders of *.yaml"
    )
    deploy.add_argument(
        "--pool", required=True, metavar="NAME", help="the work pool (it must exist; any type)"
    )
    deploy.add_argument(
        "--work-queue", metavar="NAME", default=None, help="the pool's queue (default: its own)"
    )
    deploy.add_argument(
        "--job-variables",
        metavar="JSON",
        default=None,
        help='overrides of the pool\'s job template, e.g. \'{"image": "...", "env": {...}}\'',
    )

    recover = commands.add_parser(
        "recover",
        help="mark runs whose machine died Crashed and reschedule them to resume from their "
        "checkpoints (a run is dead after 6 heartbeats without one)",
    )
    recover.add_argument(
        "--watch", action="store_true", help="keep looking (Ctrl-C stops); once otherwise"
    )
    recover.add_argument(
        "--every",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between two looks with --watch (default 10)",
    )
    recover.add_argument(
        "--pending-seconds",
        type=float,
        default=600.0,
        metavar="S",
        help="a run claimed by a worker (Pending) but not started after this is dead "
        "(default 600; it has no heartbeat yet: keep it longer than a run takes to start)",
    )
    recover.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="a run that crashed N times is marked Crashed and not rescheduled (default 3)",
    )

    steps = commands.add_parser("steps", help="list the step types and their fields")
    steps.add_argument("--json", action="store_true", help="as JSON")

    commands.add_parser("schema", help="print the JSON Schema of workflow files")

    refs = commands.add_parser(
        "refs", help="every << reference >> each step can use, with types (the variable picker)"
    )
    refs.add_argument("file", type=Path, metavar="FILE")
    refs.add_argument("step", nargs="?", metavar="STEP", help="only this step")
    refs.add_argument(
        "--run", metavar="RUN_ID", help="with the values this run produced (from the store)"
    )
    refs.add_argument("--json", action="store_true", help="as JSON")

    commands.add_parser(
        "lsp",
        help="a language server for workflow files over stdio: diagnostics, completion, "
        "hover (needs fetchflow[lsp])",
    )

    runs = commands.add_parser(
        "runs", help="list the latest runs from the run records in the store (FETCHFLOW_STORE)"
    )
    runs.add_argument(
        "file", nargs="?", type=Path, metavar="FILE", help="only this workflow's runs"
    )
    runs.add_argument(
        "--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)"
    )
    runs.add_argument("--json", action="store_true", help="as JSON")

    show = commands.add_parser("show", help="one run's steps and outputs, with links to its files")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="as JSON (outputs in full)")

    export = commands.add_parser(
        "export", help="write a run's files into a folder as <step>-<n>.<ext> and <step>.txt"
    )
    export.add_argument("run_id", metavar="RUN_ID")
    export.add_argument("dir", type=Path, metavar="DIR", help="the folder (made if missing)")
    export.add_argument(
        "--force", action="store_true", help="replace files in DIR that differ from the run's"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fetchflow`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    # A log handler that fails (Prefect's API log handler while the process exits after a
    # second Ctrl-C) must never print "--- Logging error ---" and a traceback to the user.
    logging.raiseExceptions = False
    if args.command not in ("run", "serve", "deploy", "recover"):
        # Pydantic looks for its own plugins (scanning every installed distribution, ~40 ms)
        # when the first model is built; checking a file needs none of them.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        command = import_module(f"fetchflow.cli.{COMMANDS[args.command]}")
        code: int = command.main(args)
        return code
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
    except BrokenPipeError:
        # The reader went away (`fetchflow steps | head`): nothing more to say, no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        from fetchflow.interrupt import exit_code_for, stop_signal

        print("fetchflow: interrupted", file=sys.stderr)
        return exit_code_for(stop_signal())
    except Exception as error:
        if os.environ.get("FETCHFLOW_DEBUG"):
            raise
        message = with_hint(
            f"fetchflow: internal error: {type(error).__name__}: {error}",
            "this is a bug in fetchflow or a plugin; run again with FETCHFLOW_DEBUG=1 for the "
            "traceback and report it",
        )
        print(message, file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
