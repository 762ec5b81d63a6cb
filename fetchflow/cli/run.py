"""``fetchflow run FILE``: check, estimate, preflight, then one Prefect flow run.

Prefect is imported only once the workflow, its inputs and the settings are known to be
good; until then every problem exits 2 and nothing is called.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from fetchflow.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, bad_flag, step_types, with_home
from fetchflow.errors import RunError, SettingsInvalid

__all__ = ["main"]


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
    raise bad_flag(
        "--budget",
        f"expected an amount of US dollars above 0, got {text!r} ({found})",
        "give the most the run may cost, e.g. --budget 2.50 (or leave it out)",
    )


def _check_selection_flags(args: argparse.Namespace) -> None:
    """``--only``, ``--from``, ``--using`` and ``--resume`` go together only as they can.

    Raises:
        WorkflowInvalid: Two that exclude each other, or ``--using`` alone.
    """
    if args.only is not None and args.start is not None:
        raise bad_flag(
            "--only",
            "--only and --from cannot be given together",
            "--only runs just the steps named; --from runs a step and everything after it",
        )
    selecting = args.only is not None or args.start is not None
    if args.resume is not None and (selecting or args.using is not None):
        raise bad_flag(
            "--resume",
            "--resume cannot be given with --only, --from or --using",
            "--resume continues a run as it was; --only/--from --using RUN_ID run chosen "
            "steps on that run's outputs",
        )
    if args.using is not None and not selecting:
        raise bad_flag(
            "--using",
            "--using needs --only or --from (it names the run their upstream outputs come from)",
            "add --only STEP or --from STEP; to continue a run as it was, use --resume",
        )


def _check_resumed_inputs(
    earlier: dict[str, object], given: dict[str, object], run_id: str
) -> None:
    """``--input`` with ``--resume`` may only repeat the run's own values: its reused
    outputs were made from them.

    Raises:
        WorkflowInvalid: An ``--input`` that differs from the value the run had.
    """
    changed = [name for name, value in given.items() if name in earlier and earlier[name] != value]
    if not changed:
        return
    name = changed[0]
    raise bad_flag(
        "--input",
        f"{name}={given[name]!r} differs from the value run {run_id} had "
        f"({name}={earlier[name]!r}); --resume continues a run with its own inputs, and the "
        "outputs it reuses were made from them",
        f"leave --input {name} out to resume run {run_id}, or run without --resume for a new "
        "run with the new value (steps with cache: true reuse identical requests)",
    )


def _resume_command(file: Path, run_id: str) -> str:
    return f"fetchflow run {shlex.quote(str(file))} --resume {run_id}"


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


def _noted(estimate: Any, reuse: dict[str, Any], not_selected: dict[str, str]) -> Any:
    """The estimate with each step that does not run said as such: ``reused from run …``
    (not a bare ``reused``) or ``not selected (--only …)``, which is not reused at all."""
    from fetchflow.run.cost import PlanEstimate, StepEstimate
    from fetchflow.step import CostEstimate

    notes = {step_id: reused.note for step_id, reused in reuse.items() if reused.complete}
    notes.update(not_selected)
    return PlanEstimate(
        [
            StepEstimate(row.step, CostEstimate(0.0, detail=notes[row.step.id]))
            if row.step.id in notes
            else row
            for row in estimate.steps
        ]
    )


def main(args: argparse.Namespace) -> int:
    """Check, estimate, preflight, then run the workflow as one Prefect flow run."""
    from fetchflow.cli.console import ConsoleProgress, format_summary
    from fetchflow.cli.history import check_out_folder, export_after_run, output_lines
    from fetchflow.interrupt import exit_code_for, stop_on_interrupt, stop_requested, stop_signal
    from fetchflow.orchestration.prefect_env import prepare_prefect_environment
    from fetchflow.orchestration.server import check_prefect_api, running_server
    from fetchflow.orchestration.task_runners import check_task_runner
    from fetchflow.run.cost import check_budget, estimate_plan, format_estimate
    from fetchflow.run.preflight import StoreOpener, preflight
    from fetchflow.run.reuse import Reused, outputs_to_resume
    from fetchflow.run.selection import parse_steps, read_selection
    from fetchflow.settings import load_settings
    from fetchflow.workflow.checking import check_file
    from fetchflow.workflow.inputs import parse_input_args, resolve_inputs

    settings = load_settings()
    budget_flag = _budget(args.budget)
    check_out_folder(args.out)
    plan = check_file(args.file, step_types())
    given = parse_input_args(plan.header, args.input)
    reuse: dict[str, Reused] = {}
    not_selected: dict[str, str] = {}
    resumed_from: str | None = args.resume
    _check_selection_flags(args)
    if args.resume is not None:  # --resume= (empty) is a mistake, not no resume
        earlier, reuse = outputs_to_resume(
            StoreOpener(settings)(),
            args.resume,
            plan,
            heartbeat_seconds=settings.heartbeat_seconds,
        )
        _check_resumed_inputs(earlier, given, args.resume)
        given = {**earlier, **given}
    elif args.only is not None or args.start is not None:
        selection = read_selection(
            StoreOpener(settings)(),
            plan,
            only=parse_steps(args.only, plan, "--only") if args.only is not None else (),
            start=parse_steps(args.start, plan, "--from")[0] if args.start is not None else None,
            using=args.using,
            given=given,
        )
        reuse, not_selected = selection.reuse, selection.not_selected
        resumed_from = selection.run_id or None
        given = {**selection.inputs, **given}
    inputs = resolve_inputs(plan.header, given)
    budget = budget_flag if budget_flag is not None else plan.header.budget_usd
    done = {step_id for step_id, reused in reuse.items() if reused.complete} | set(not_selected)
    estimate = estimate_plan(plan, inputs, settings, reused=done)
    estimate = _noted(estimate, reuse, not_selected)
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
        with_home(settings)
        check_task_runner(settings)
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
        from fetchflow.orchestration.runner import (
            run_plan,  # Prefect is imported here, and only here
        )

        if "PREFECT_API_URL" not in os.environ:
            # Prefect's temporary server, out of the terminal's process group: Ctrl-C
            # stops the run gracefully instead of killing the server it talks to.
            from fetchflow.orchestration.temporary_server import start_temporary_server

            start_temporary_server()
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
            not_selected=not_selected,
            resumed_from=resumed_from,
            stop_on_signals=True,
        )
    finally:
        restore_signals()
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        print(format_summary(report), file=sys.stderr)
        if report.run_id:
            for line in output_lines(store(), report):
                print(line, file=sys.stderr)
    if report.status == "interrupted" and report.run_id:
        print(f"resume it: {_resume_command(args.file, report.run_id)}", file=sys.stderr)
    # --out: what was made, whatever the end; a failed export fails a completed run.
    if (
        args.out
        and report.run_id
        and not export_after_run(store(), report.run_id, args.out, settings)
    ):
        return report.exit_code or EXIT_FAILED
    return report.exit_code
