"""``fetchflow runs``, ``show`` and ``export``: past runs from the run records in the store.

They read ``FETCHFLOW_STORE`` only (any machine sharing it sees the same runs), never
import Prefect and never write to the store. ``export_after_run`` is ``run --out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fetchflow.cli.common import EXIT_OK
from fetchflow.errors import (
    FetchflowError,
    Problem,
    SettingsInvalid,
    StorageError,
    UsageError,
    WorkflowInvalid,
)

if TYPE_CHECKING:
    from fetchflow.run.history import Exported, ExportFile, RunDetail, RunSummary, StepDetail
    from fetchflow.run.report import RunReport
    from fetchflow.settings import Settings
    from fetchflow.storage import AssetStore

__all__ = ["check_out_folder", "export_after_run", "main", "output_lines"]

#: A text output is shown up to this many lines of this many characters.
TEXT_LINES, TEXT_WIDTH = 6, 120
_MARKS = {
    "completed": "✓",
    "failed": "✗",
    "skipped": "–",
    "not finished": "…",
    "not started": "·",
}
NONE = "—"


def main(args: argparse.Namespace) -> int:
    """``runs``, ``show`` or ``export``, as ``args.command`` says."""
    from fetchflow.settings import load_settings

    settings = load_settings()
    store = _open(settings)
    if args.command == "runs":
        return _runs(args, store, settings)
    if args.command == "show":
        return _show(args, store, settings)
    return _export(args, store, settings)


def _open(settings: Settings) -> AssetStore:
    from fetchflow.storage import open_store

    try:
        return open_store(settings)
    except StorageError as error:
        raise SettingsInvalid(error.format()) from None


def _unreadable(error: StorageError) -> SettingsInvalid:
    """The store cannot be listed or read: a setting to fix (exit 2), said as the store
    said it."""
    return SettingsInvalid(error.format())


# -- formatting ------------------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    """A time as this machine's local time, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else NONE


def duration(seconds: float | None) -> str:
    """``4.2s``, ``3m 05s``, ``2h 03m``."""
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def size(count: object) -> str:
    """``812 B``, ``54.2 KB``, ``3.1 MB`` (powers of 1000)."""
    if not isinstance(count, int) or isinstance(count, bool):
        return "? B"
    if count < 1000:
        return f"{count} B"
    if count < 1_000_000:
        return f"{count / 1000:.1f} KB"
    return f"{count / 1_000_000:.1f} MB"


def cost(usd: float | None) -> str:
    """``$0.24``; ``—`` when not recorded."""
    if usd is None:
        return NONE
    return f"${usd:.3f}" if 0 < usd < 0.01 else f"${usd:.2f}"


def status_text(run: RunSummary) -> str:
    """The run's status; a dead one says since when."""
    if run.status == "dead":
        return f"dead (no heartbeat since {when(run.heartbeat_at)})"
    return run.status


def dimensions(record: dict[str, object]) -> str:
    width, height = record.get("width"), record.get("height")
    return f"{width}×{height}" if width and height else "?×?"


def _trimmed(text: str) -> list[str]:
    lines = text.rstrip("\n").split("\n")
    shown = [line if len(line) <= TEXT_WIDTH else f"{line[: TEXT_WIDTH - 1]}…" for line in lines]
    if len(shown) > TEXT_LINES:
        more = len(shown) - TEXT_LINES
        shown = [*shown[:TEXT_LINES], f"… {more} more line(s) (--json or export for all)"]
    return shown


# -- fetchflow runs --------------------------------------------------------------------------


def _workflow_name(path: Path) -> str:
    """The ``name:`` of a workflow file (read as plain YAML: a file that no longer validates
    still names its runs).

    Raises:
        WorkflowInvalid: It cannot be read or has no name.
    """
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        problem = Problem(
            message=f"cannot read the workflow file: {reason}",
            hint="give a workflow file (fetchflow runs flows/<name>.yaml), or no file for "
            "every workflow's runs",
            file=str(path),
        )
        raise WorkflowInvalid([problem]) from None
    except yaml.YAMLError:
        loaded = None
    name = loaded.get("name") if isinstance(loaded, dict) else None
    if not isinstance(name, str) or not name:
        problem = Problem(
            message="no workflow name found in this file (its runs are listed by name)",
            hint="give a workflow file with a `name:` line, or no file for every workflow's runs",
            file=str(path),
        )
        raise WorkflowInvalid([problem])
    return name


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _runs(args: argparse.Namespace, store: AssetStore, settings: Settings) -> int:
    from fetchflow.cli.common import bad_flag
    from fetchflow.run.history import list_runs

    if args.limit < 1:
        raise bad_flag(
            "--limit",
            f"expected a number of runs of 1 or more, got {args.limit}",
            "e.g. --limit 50 (the default is 20)",
        )
    workflow = _workflow_name(args.file) if args.file is not None else None
    try:
        listing = list_runs(
            store, workflow=workflow, limit=args.limit, heartbeat_seconds=settings.heartbeat_seconds
        )
    except StorageError as error:
        raise _unreadable(error) from None
    for key in listing.unreadable:
        print(f"fetchflow: skipped {key}: it cannot be read", file=sys.stderr)
    if args.json:
        document = {
            "store": listing.store,
            "workflow": workflow,
            "total": listing.total,
            "runs": [run.to_json() for run in listing.runs],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return EXIT_OK
    of = f" of workflow {workflow}" if workflow else ""
    if not listing.runs:
        print(f"no runs{of} in the asset store {listing.store} yet")
        return EXIT_OK
    rows = [["RUN", "WORKFLOW", "STATUS", "STARTED", "DURATION", "IMAGES", "COST"]]
    for run in listing.runs:
        rows.append(
            [
                run.run_id,
                run.workflow,
                status_text(run),
                when(run.started_at),
                duration(run.seconds),
                NONE if run.images is None else str(run.images),
                cost(run.cost_usd),
            ]
        )
    print("\n".join(_table(rows)))
    if listing.total > len(listing.runs):
        print(
            f"latest {len(listing.runs)} of {listing.total} runs{of} in {listing.store}; "
            f"--limit {listing.total} shows them all"
        )
    return EXIT_OK


# -- fetchflow show --------------------------------------------------------------------------


def _describe(store: AssetStore, run_id: str, settings: Settings) -> RunDetail:
    from fetchflow.run.history import describe_run

    try:
        return describe_run(store, run_id, heartbeat_seconds=settings.heartbeat_seconds)
    except StorageError as error:
        raise _unreadable(error) from None


def _with_links(store: AssetStore, output: object) -> object:
    """``output`` with each asset record's ``file_url`` renewed through the store."""
    from fetchflow.run.history import is_asset

    if is_asset(output):
        try:
            return {**output, "file_url": store.file_url(str(output["storage_uri"]))}
        except StorageError:
            return output
    if isinstance(output, list):
        return [_with_links(store, item) for item in output]
    return output


def _step_json(store: AssetStore, step: StepDetail) -> dict[str, object]:
    from fetchflow.run.history import local_link

    return {
        "step_id": step.step_id,
        "status": step.status,
        "attempts": step.attempts,
        "seconds": step.seconds,
        "reused": step.reused,
        "error": step.error,
        "output": _with_links(store, step.output),
        "files": [
            {
                "file_name": record.get("file_name"),
                "file_size": record.get("file_size"),
                "width": record.get("width"),
                "height": record.get("height"),
                "open": local_link(store, record),
            }
            for record in step.images
        ],
    }


def _step_lines(store: AssetStore, step: StepDetail, width: int) -> list[str]:
    from fetchflow.run.history import local_link

    head = f"  {_MARKS.get(step.status, '?')} {step.step_id:<{width}}  {step.status:<9}"
    if step.status in ("completed", "failed"):
        head += f"  {step.seconds:.2f}s"
    if step.attempts > 1:
        head += f"  {step.attempts} attempts"
    if step.reused:
        head += f"  {step.reused}"
    lines = [head.rstrip()]
    body: list[str] = []
    if step.error:
        error = step.error if step.status == "skipped" else f"error: {step.error}"
        body.extend(error.split("\n"))
    for record in step.images:
        body.append(
            f"{record.get('file_name')}  {size(record.get('file_size'))}  "
            f"{dimensions(record)}  {local_link(store, record)}"
        )
    if not step.images and isinstance(step.output, str):
        body.extend(_trimmed(step.output))
    elif not step.images and step.output is not None:
        body.extend(_trimmed(json.dumps(step.output, ensure_ascii=False, default=str)))
    return lines + [f"      {line}" for line in body]


def _show(args: argparse.Namespace, store: AssetStore, settings: Settings) -> int:
    detail = _describe(store, args.run_id, settings)
    run = detail.summary
    if args.json:
        document = {
            "store": detail.store,
            **run.to_json(),
            "inputs": detail.inputs,
            "steps": [_step_json(store, step) for step in detail.steps],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
        return EXIT_OK
    said = status_text(run)
    if run.message and run.message != run.status:
        said += f": {run.message}"
    took = f"took {duration(run.seconds)}" if run.status != "running" else "still running"
    where = f" · on {run.host}" if run.host else ""
    attempt = f", attempt {run.attempt}" if run.attempt and run.attempt > 1 else ""
    lines = [
        f"{run.workflow} · run {run.run_id}",
        f"  status   {said}",
        f"  file     {run.file or NONE}",
        f"  started  {when(run.started_at)} · {took}{where}{attempt}",
        f"  images   {run.images} · cost {cost(run.cost_usd)}",
    ]
    if run.resumed_from:
        lines.append(f"  resumed  from run {run.resumed_from}")
    if detail.inputs:
        given = ", ".join(
            f"{name}={json.dumps(value, ensure_ascii=False, default=str)}"
            for name, value in detail.inputs.items()
        )
        lines.append(f"  inputs   {given}")
    lines.append(f"  store    {detail.store}")
    lines.append("")
    width = max((len(step.step_id) for step in detail.steps), default=4)
    for step in detail.steps:
        lines.extend(_step_lines(store, step, width))
    print("\n".join(lines))
    return EXIT_OK


# -- fetchflow export, run --out -------------------------------------------------------------


def _exported_line(item: Exported) -> str:
    file: ExportFile = item.file
    what = size(len(file.data))
    if file.record is not None:
        what += f", {dimensions(file.record)}"
    return f"{item.action:<9} {item.path}  ({what})"


def _write(
    store: AssetStore, detail: RunDetail, folder: Path, *, force: bool, hint: str
) -> list[Exported]:
    from fetchflow.run.history import export_files, files_to_export

    def refuse(paths: list[Path]) -> UsageError:
        return UsageError(
            f"{len(paths)} file(s) in {folder} differ from run {detail.summary.run_id}'s and "
            f"were not replaced (nothing was written): {', '.join(str(p) for p in paths)}",
            hint,
        )

    files = files_to_export(store, detail)
    try:
        return export_files(files, folder, force=force, refuse=refuse)
    except OSError as error:
        raise UsageError(
            f"cannot write into {folder}: {error.strerror or error}",
            "give a folder you can write to",
        ) from None


def _report(detail: RunDetail, folder: Path, written: list[Exported], stream: TextIO) -> None:
    for item in written:
        print(_exported_line(item), file=stream)
    same = sum(1 for item in written if item.action == "unchanged")
    note = f" ({same} unchanged)" if same else ""
    if written:
        print(
            f"exported {len(written)} file(s) of run {detail.summary.run_id} to {folder}{note}",
            file=stream,
        )
    else:
        print(f"run {detail.summary.run_id} has no files to export", file=stream)


def _export(args: argparse.Namespace, store: AssetStore, settings: Settings) -> int:
    detail = _describe(store, args.run_id, settings)
    written = _write(
        store,
        detail,
        args.dir,
        force=args.force,
        hint="export into another folder, or add --force to replace them",
    )
    _report(detail, args.dir, written, sys.stdout)
    return EXIT_OK


def export_after_run(store: AssetStore, run_id: str, folder: Path, settings: Settings) -> bool:
    """``fetchflow run --out DIR``: write what the run made (whatever its end) into
    ``folder``, saying so on stderr. False when that failed (said too)."""
    try:
        detail = _describe(store, run_id, settings)
        hint = (
            f"export into another folder, or replace them: fetchflow export {run_id} "
            f"{folder} --force"
        )
        written = _write(store, detail, folder, force=False, hint=hint)
    except FetchflowError as error:
        text = error.format() if not isinstance(error, WorkflowInvalid) else str(error)
        print(f"fetchflow: --out {folder}: {text}", file=sys.stderr)
        return False
    _report(detail, folder, written, sys.stderr)
    return True


def check_out_folder(folder: Path | None) -> None:
    """``run --out DIR`` is refused before the run when ``DIR`` cannot be a folder.

    Raises:
        WorkflowInvalid: It, or the nearest folder above it that exists, is a file (the
            files could not be written after the run was paid for).
    """
    from fetchflow.cli.common import bad_flag

    if folder is None:
        return
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == folder else f" (in {folder})"
        raise bad_flag(
            "--out",
            f"{existing} is a file, not a folder{where}",
            "give a folder to write the run's files into (made if missing)",
        )


def output_lines(store: AssetStore, report: RunReport) -> list[str]:
    """What each step of a run that just ended made, for the terminal (``fetchflow run``):
    its text (trimmed) or one line per file (name, size, dimensions, a path or link to open).
    Steps that made nothing are left out."""
    from fetchflow.run.history import asset_records, local_link

    outputs = {
        step_id: result.output
        for step_id, result in report.steps.items()
        if result.output not in (None, "", [], {})
    }
    width = max((len(step_id) for step_id in outputs), default=4)
    lines: list[str] = []
    for step_id, output in outputs.items():
        images = asset_records(output)
        if images:
            body = [
                f"{record.get('file_name')}  {size(record.get('file_size'))}  "
                f"{dimensions(record)}  {local_link(store, record)}"
                for record in images
            ]
        elif isinstance(output, str):
            body = _trimmed(output)
        else:
            body = _trimmed(json.dumps(output, ensure_ascii=False, default=str))
        lines.append(f"  {step_id:<{width}}  {body[0]}")
        lines.extend(f"  {'':<{width}}  {line}" for line in body[1:])
    return ["", "outputs:", *lines] if lines else []
